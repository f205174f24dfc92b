"""Replicas behind nginx (issue 14): deploy/nginx.conf, its ports substituted, in front
of two `cellcube serve` replicas of one store file.

- Under a load loop of GETs (some asking for gzip) the store is replaced the documented
  way (a new store built beside, renamed over): every replica reloads, and no request
  fails or gets anything but the old or the new store's answer.
- A replica killed under load: nginx retries on the other and marks the dead one down
  (passive health check); no request fails.

nginx is Debian's (scripts/install-deps.sh): a missing one fails. It runs in the
foreground on a free port with its own prefix, logs and temp paths under the test's
directory, never Debian's default site on port 80.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

import helpers

CONF = helpers.REPO / "deploy" / "nginx.conf"
# Answers that depend on the store only (not on the replica), JSON, cached by the server.
PATHS = [
    "/api/v1/meta",
    "/api/v1/query?genes=CD3E,MS4A1,LYZ&by=cell_type",
    "/api/v1/query?genes=CD3E,MS4A1&by=dataset,cell_type&layout=compact",
    "/api/v1/counts?where=" + urllib.parse.quote("disease:normal"),
    "/api/v1/genes?q=CD",
    "/api/v1/query?genes=LYZ&by=disease&metrics=n_cells,mean,std",
]


def nginx_binary() -> str:
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if path is None:
        pytest.fail("nginx is not installed: scripts/install-deps.sh installs Debian's 'nginx' package",
                    pytrace=False)
    return path


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(port, path, headers=None, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def canonical(body: bytes) -> str:
    """The answer without the engine's timing (each replica computes its own)."""
    doc = json.loads(body)
    doc.pop("took_us", None)
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def wait_until(what, predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {what}", pytrace=False)


def answers_healthz(port, proc, timeout) -> bool:
    """Whether the process serving `port` answers /healthz with 200 within `timeout` s
    (False at once if it exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if get(port, "/healthz", timeout=2)[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


class Replica:
    """`cellcube serve STORE --port P --quiet`."""

    def __init__(self, cellcube, store, logdir, index):
        self.log_path = Path(logdir) / f"replica-{index}.log"
        self.proc = None
        for _ in range(5):  # the free port may be taken between free_port() and bind
            self.port = free_port()
            self.log = open(self.log_path, "a")
            self.proc = subprocess.Popen([str(cellcube), "serve", str(store), "--port", str(self.port), "--quiet"],
                                         stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            if self._ready():
                return
            self.stop()
        pytest.fail(f"cellcube serve did not start: {self.output()}", pytrace=False)

    def _ready(self):
        return answers_healthz(self.port, self.proc, timeout=30)

    def generation(self) -> int:
        status, _, body = get(self.port, "/healthz")
        assert status == 200, body
        return json.loads(body)["generation"]

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()


def proxy_config(listen_port: int, replica_ports: list[int]) -> str:
    """deploy/nginx.conf with the test's ports: the listen line, and one `server` line per
    replica carrying the parameters (max_fails, fail_timeout) of the committed ones."""
    text = CONF.read_text()
    servers = re.findall(r"^([ \t]*)server 127\.0\.0\.1:\d+( [^;\n]*)?;\n", text, flags=re.M)
    assert len(servers) >= 2, "deploy/nginx.conf should list the replicas as 'server 127.0.0.1:PORT ...;' lines"
    indent, params = servers[0]
    block = "".join(f"{indent}server 127.0.0.1:{p}{params};\n" for p in replica_ports)
    text, n = re.subn(r"(?:^[ \t]*server 127\.0\.0\.1:\d+[^;\n]*;\n)+", lambda _: block, text, count=1, flags=re.M)
    assert n == 1
    text, n = re.subn(r"^(\s*)listen 8080;", rf"\1listen 127.0.0.1:{listen_port};", text, flags=re.M)
    assert n == 1, "deploy/nginx.conf should have one 'listen 8080;'"
    return text


class Proxy:
    """nginx in the foreground on its own prefix (logs, pid and temp paths inside)."""

    def __init__(self, prefix: Path, replica_ports):
        self.prefix = prefix
        (prefix / "logs").mkdir(parents=True)
        (prefix / "temp").mkdir()
        for _ in range(5):
            self.port = free_port()
            conf = prefix / "nginx.conf"
            conf.write_text(proxy_config(self.port, replica_ports))
            self.out = open(prefix / "nginx.out", "a")
            self.proc = subprocess.Popen(
                [nginx_binary(), "-p", f"{prefix}/", "-c", str(conf), "-e", "logs/error.log",
                 "-g", "daemon off;"],
                stdout=self.out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            if self._ready():
                return
            self.stop()
        pytest.fail(f"nginx did not start: {self.errors()}", pytrace=False)

    def _ready(self):
        return answers_healthz(self.port, self.proc, timeout=15)

    def errors(self) -> str:
        parts = []
        for name in ("nginx.out", "logs/error.log"):
            p = self.prefix / name
            if p.exists():
                parts.append(p.read_text(errors="replace")[-2000:])
        return "\n".join(parts)

    def access_log(self) -> list[dict]:
        rows = []
        for line in (self.prefix / "logs" / "access.log").read_text().splitlines():
            m = re.search(r'"GET (\S+) [^"]*" (\d+) .*upstream="([^"]*)" upstream_status="([^"]*)"', line)
            if m:
                rows.append({"path": m.group(1), "status": int(m.group(2)),
                             "upstreams": m.group(3).split(", "), "statuses": m.group(4).split(", ")})
        return rows

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: finishes what is in flight
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.out.close()


class Load:
    """Threads sending GETs through nginx on keep-alive connections, every other one
    asking for gzip; each answer is checked as it comes and recorded."""

    def __init__(self, port, threads=4):
        self.port = port
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.answers = []  # (time, path, gzip asked, canonical answer)
        self.failures = []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=60)

    def _run(self, index):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        i = index
        while not self.stop_flag.is_set():
            path = PATHS[i % len(PATHS)]
            zipped = (i // len(PATHS)) % 2 == 1
            i += 1
            try:
                conn.request("GET", path, headers={"Accept-Encoding": "gzip"} if zipped else {})
                r = conn.getresponse()
                body = r.read()
                headers = {k.lower(): v for k, v in r.getheaders()}
                problem = self._check(r.status, headers, body, zipped)
                if problem is None:
                    if zipped:
                        body = gzip.decompress(body)
                    answer = canonical(body)
            except Exception as e:  # noqa: BLE001 - every failure is a finding here
                problem = f"{type(e).__name__}: {e}"
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            with self.lock:
                if problem is None:
                    self.answers.append((time.monotonic(), path, zipped, answer))
                else:
                    self.failures.append((path, zipped, problem))
        conn.close()

    @staticmethod
    def _check(status, headers, body, zipped):
        if status != 200:
            return f"status {status}: {body[:200]!r}"
        if "accept-encoding" not in headers.get("vary", "").lower():
            return f"no Vary: Accept-Encoding ({headers})"
        encoding = headers.get("content-encoding")
        if zipped and (encoding != "gzip" or not headers.get("etag", "").endswith('-gzip"')):
            return f"asked for gzip, got Content-Encoding {encoding!r}, ETag {headers.get('etag')!r}"
        if not zipped and encoding is not None:
            return f"asked for no encoding, got Content-Encoding {encoding!r}"
        return None

    def count(self):
        with self.lock:
            return len(self.answers)

    def count_since(self, t):
        with self.lock:
            return sum(1 for a in self.answers if a[0] > t)

    def wait(self, what, n, since=0.0, timeout=60):
        """Until n answers came after `since`; a failed request ends the wait at once
        (the assertions after the loop name it)."""
        wait_until(what, lambda: self.failures or self.count_since(since) >= n, timeout)


def expected_answers(port) -> dict:
    """{path: canonical answer} asked of one replica directly, without gzip."""
    out = {}
    for path in PATHS:
        status, _, body = get(port, path)
        assert status == 200, (path, body[:300])
        out[path] = canonical(body)
    return out


@pytest.fixture(scope="module")
def inputs(cellcube, tmp_path_factory):
    d = tmp_path_factory.mktemp("replica-inputs")
    helpers.run_ok([cellcube, "synth", "-o", d, "--datasets", "4", "--cells", "400", "--genes", "400",
                    "--seed", "21", "--quiet"])
    files = sorted(d.glob("*.h5ad"))
    assert len(files) == 4
    return files


@pytest.fixture
def cluster(cellcube, inputs, tmp_path):
    """A store of the first three inputs, two replicas of it and nginx in front."""
    store = tmp_path / "atlas.h5ad"
    helpers.run_ok([cellcube, "build", "--quiet", "-o", store, *inputs[:3]])
    replicas, proxy = [], None
    try:
        replicas = [Replica(cellcube, store, tmp_path, i) for i in range(2)]
        proxy = Proxy(tmp_path / "nginx", [r.port for r in replicas])
        yield store, replicas, proxy
    finally:
        if proxy is not None:
            proxy.stop()
        for r in replicas:
            r.stop()


def test_store_replaced_under_load_every_replica_reloads_no_request_fails(cellcube, inputs, cluster):
    store, replicas, proxy = cluster
    old = expected_answers(replicas[0].port)
    assert expected_answers(replicas[1].port) == old
    assert [r.generation() for r in replicas] == [1, 1]

    with Load(proxy.port) as load:
        load.wait("load through nginx", 200)
        # The update procedure: a new store built beside the served one, renamed over it.
        beside = store.with_name("atlas.next.h5ad")
        shutil.copy2(store, beside)
        helpers.run_ok([cellcube, "add", "--quiet", beside, inputs[3]])
        swapped = time.monotonic()
        os.replace(beside, store)
        wait_until("every replica's reload", lambda: [r.generation() for r in replicas] == [2, 2], 60)
        reloaded = time.monotonic()
        load.wait("load after the reload", 200, since=reloaded + 0.5)

    new = expected_answers(replicas[0].port)
    assert expected_answers(replicas[1].port) == new
    assert new["/api/v1/meta"] != old["/api/v1/meta"], "the new store should answer differently"
    assert not load.failures, f"{len(load.failures)} of {len(load.failures) + len(load.answers)} " \
                              f"requests failed, e.g. {load.failures[:3]}"
    wrong = [a for a in load.answers if a[3] not in (old[a[1]], new[a[1]])]
    assert not wrong, f"{len(wrong)} answers are neither the old nor the new store's, e.g. {wrong[:2]}"
    before = [a for a in load.answers if a[0] < swapped]
    after = [a for a in load.answers if a[0] > reloaded + 0.5]
    assert before and all(a[3] == old[a[1]] for a in before)
    assert after and all(a[3] == new[a[1]] for a in after), "old answers after every replica reloaded"
    assert {a[2] for a in after} == {False, True}, "both plain and gzip answers after the reload"

    served_by = {u for row in proxy.access_log() for u in row["upstreams"]}
    assert served_by == {f"127.0.0.1:{r.port}" for r in replicas}, served_by

    # Conditional requests pass through too: one replica's ETag is the other's.
    path = PATHS[1]
    tags = set()
    for _ in range(4):
        status, headers, _ = get(proxy.port, path, {"Accept-Encoding": "gzip"})
        assert status == 200
        tags.add(headers["etag"])
    assert len(tags) == 1, tags
    status, headers, body = get(proxy.port, path, {"Accept-Encoding": "gzip", "If-None-Match": tags.pop()})
    assert status == 304 and body == b"", (status, headers, body[:100])


def test_a_killed_replica_is_routed_around(cluster):
    store, replicas, proxy = cluster
    expected = expected_answers(replicas[1].port)
    victim, survivor = replicas
    with Load(proxy.port) as load:
        load.wait("load through nginx", 200)
        killed = time.monotonic()
        victim.proc.kill()
        victim.proc.wait(timeout=10)
        load.wait("load after the kill", 400, since=killed)

    assert not load.failures, f"{len(load.failures)} of {len(load.failures) + len(load.answers)} " \
                              f"requests failed, e.g. {load.failures[:3]}"
    assert all(a[3] == expected[a[1]] for a in load.answers)
    assert [a for a in load.answers if a[0] > killed], "no answers after the kill"
    assert survivor.generation() == 1

    rows = proxy.access_log()
    assert all(r["status"] == 200 for r in rows), [r for r in rows if r["status"] != 200][:3]
    dead, alive = f"127.0.0.1:{victim.port}", f"127.0.0.1:{survivor.port}"
    assert any(r["upstreams"] == [dead] for r in rows), "the victim answered nothing before it was killed"
    # Requests that reached the dead replica were retried on the other (proxy_next_upstream).
    retried = [r for r in rows if len(r["upstreams"]) > 1]
    assert retried and all(r["upstreams"][-1] == alive and r["statuses"][-1] == "200" for r in retried), \
        retried[:3]
    # Passive health check: once marked down, the dead replica is no longer tried; the
    # last requests went straight to the survivor.
    assert rows[-50:] and all(r["upstreams"] == [alive] for r in rows[-50:]), rows[-5:]
