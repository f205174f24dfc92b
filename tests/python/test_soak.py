"""Load, soak and hostile clients for `cellcube serve` (docs/RELIABILITY.md).

 1. test_soak_with_store_replacements: 24 keep-alive client threads query the server
    for ~60 s (query, counts, meta, genes, healthz) while the store file is replaced
    8 times (rename of a prebuilt store over it, alternating a 2- and a 3-dataset
    store, and `cellcube add`): zero failed requests, the server reloads every
    replacement, its RSS after warm-up stays within 10% of the warm-up level (with a
    4 MiB answer cache, full by then), and it holds the same number of file descriptors
    before and after.
 2. Hostile requests: thousands of genes (400, or 414 past 8 KiB), huge where lists,
    oversized and very many headers, invalid UTF-8 in the path, parameters and
    headers, path traversal in every spelling: each gets the one answer this server
    gives it (a 4xx, or for the few that libmicrohttpd cannot parse in its 16 KiB
    pool, a connection closed without a byte), never a file, and the server answers
    the next client at once. Each request is sent whole before its answer is read, so
    the outcome does not depend on when the server closes.
 3. test_slowloris: 16 connections that send a request one byte a second: other
    clients are answered quickly meanwhile, and each slow connection is dropped within
    the idle timeout (15 s) of its start plus a margin.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

import helpers
import query_reference as qr
from test_regress import exchange
from test_server import Server, free_port, get, raw_request, request, target  # noqa: F401

SOAK_SECONDS = float(os.environ.get("CELLCUBE_SOAK_SECONDS", "60"))
CLIENTS = 24


def run_ok(args, **kw):
    proc = helpers.run([str(a) for a in args], **kw)
    assert proc.returncode == 0, "command failed\n" + helpers.describe(proc)
    return proc


@pytest.fixture(scope="module")
def cc():
    return qr.cellcube_binary()


@pytest.fixture(scope="module")
def stores(cc, tmp_path_factory):
    """Two prebuilt stores (2 and 3 datasets) and a third input for `add`."""
    work = tmp_path_factory.mktemp("soak")
    syn = work / "synth"
    run_ok([cc, "synth", "-o", syn, "--datasets", "4", "--cells", "2000", "--genes", "300", "--seed", "11",
            "--quiet"])
    inputs = sorted(syn.glob("*.h5ad"))
    two, three = work / "two.h5ad", work / "three.h5ad"
    run_ok([cc, "build", "-o", two, *inputs[:2], "--quiet"])
    run_ok([cc, "build", "-o", three, *inputs[:3], "--quiet"])
    return {"work": work, "two": two, "three": three, "extra": inputs[3]}


def proc_status(pid, key):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class Client(threading.Thread):
    """One keep-alive connection sending a random mix of valid requests."""

    def __init__(self, port, genes, columns, values, stop, seed):
        super().__init__(daemon=True)
        self.port, self.genes, self.columns, self.values = port, genes, columns, values
        self.stop, self.rnd = stop, random.Random(seed)
        self.ok = 0
        self.failures = []
        self.max_latency = 0.0

    def target(self):
        r = self.rnd
        kind = r.random()
        if kind < 0.6:
            params = [("genes", ",".join(r.sample(self.genes, r.randint(1, 8))))]
            if r.random() < 0.7:
                params.append(("by", ",".join(r.sample(self.columns, r.randint(1, 2)))))
            if r.random() < 0.4:
                col = r.choice(list(self.values))
                params.append(("where", f"{col}:{r.choice(self.values[col])}"))
            if r.random() < 0.3:
                params.append(("layout", "compact"))
            if r.random() < 0.1:
                params.append(("format", "csv"))
            return "/api/v1/query?" + urllib.parse.urlencode(params)
        if kind < 0.75:
            col = r.choice(list(self.values))
            return "/api/v1/counts?" + urllib.parse.urlencode([("where", f"{col}:{r.choice(self.values[col])}")])
        if kind < 0.85:
            return "/api/v1/genes?" + urllib.parse.urlencode([("q", r.choice(self.genes)[:3])])
        if kind < 0.95:
            return "/api/v1/meta"
        return "/healthz"

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            while not self.stop.is_set():
                tgt = self.target()
                t0 = time.monotonic()
                try:
                    conn.request("GET", tgt)
                    resp = conn.getresponse()
                    body = resp.read()
                except (OSError, http.client.HTTPException) as e:
                    self.failures.append(f"{tgt}: {type(e).__name__}: {e}")
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                    continue
                self.max_latency = max(self.max_latency, time.monotonic() - t0)
                if resp.status != 200:
                    self.failures.append(f"{tgt}: {resp.status} {body[:200]!r}")
                else:
                    self.ok += 1
        finally:
            conn.close()


def test_soak_with_store_replacements(cc, stores, tmp_path):
    store = tmp_path / "live.h5ad"
    shutil.copyfile(stores["two"], store)
    # A 4 MiB answer cache: full long before the warm-up ends (the clients' queries are
    # nearly all distinct), so the RSS check also holds its bound under churn and reloads.
    server = Server(cc, store, tmp_path, extra_args=["--cache-mb", "4"])
    pid = server.proc.pid
    try:
        meta = get(server.port, "/api/v1/meta").json()
        # Genes and values every version of the store has (the 2-dataset store's).
        genes = [g["id"] for g in get(server.port, "/api/v1/genes", [("q", "ENSG"), ("limit", "100")]).json()["genes"]]
        assert len(genes) >= 50, genes
        columns = [c["name"] for c in meta["columns"]]
        values = {c["name"]: [v["value"] for v in c["values"]] for c in meta["columns"] if c["values"]}
        time.sleep(0.5)
        fds_before = fd_count(pid)

        stop = threading.Event()
        clients = [Client(server.port, genes, columns, values, stop, seed=k) for k in range(CLIENTS)]
        t_start = time.monotonic()
        for c in clients:
            c.start()

        replacements = 8
        interval = SOAK_SECONDS / (replacements + 1)
        warmup = interval * 2.5  # both store versions have been loaded by then
        rss, reloads, gen0 = [], 0, server.generation()
        next_replace = t_start + interval
        done = 0
        rss_warm = None
        while time.monotonic() - t_start < SOAK_SECONDS:
            now = time.monotonic()
            if done < replacements and now >= next_replace:
                if done == replacements - 1:  # the last one: `cellcube add` onto the live store
                    run_ok([cc, "add", store, stores["extra"], "--quiet"])
                else:
                    src = stores["three"] if done % 2 == 0 else stores["two"]
                    tmp = tmp_path / "incoming.h5ad"
                    shutil.copyfile(src, tmp)
                    os.replace(tmp, store)
                done += 1
                next_replace += interval
            vm = proc_status(pid, "VmRSS")
            if now - t_start >= warmup:
                if rss_warm is None:
                    rss_warm = vm
                rss.append(vm)
            time.sleep(0.5)
        stop.set()
        for c in clients:
            c.join(timeout=30)
        reloads = server.generation() - gen0
        total_ok = sum(c.ok for c in clients)
        failures = [f for c in clients for f in c.failures]
        max_latency = max(c.max_latency for c in clients)

        # fds: the clients are gone; the server closes their sockets promptly.
        deadline = time.monotonic() + 5
        while fd_count(pid) > fds_before and time.monotonic() < deadline:
            time.sleep(0.1)
        fds_after = fd_count(pid)
        summary = (f"soak: {total_ok} requests OK, {len(failures)} failed, {CLIENTS} clients, "
                   f"{SOAK_SECONDS:.0f}s, {done} replacements, {reloads} reloads, max latency "
                   f"{max_latency * 1000:.0f} ms, RSS after warm-up {rss_warm} kB -> min {min(rss)} "
                   f"max {max(rss)} kB, fds {fds_before} -> {fds_after}")
        print("\n" + summary)
        assert not failures, summary + "\n" + "\n".join(failures[:20])
        assert done == replacements and reloads >= replacements // 2, summary + "\n" + server.output()
        # Under AddressSanitizer (make test-asan) freed memory sits in ASan's quarantine,
        # so RSS says nothing about leaks there; the release build is what is promised.
        sanitized = "libasan" in Path(f"/proc/{pid}/maps").read_text()
        if not sanitized:
            assert max(rss) <= rss_warm * 1.10 and min(rss) >= rss_warm * 0.90, summary
        assert fds_after <= fds_before, summary
        assert server.proc.poll() is None, "the server died"
    finally:
        server.stop()


# --------------------------------------------------------------------------
# hostile requests
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(cc, stores):
    s = Server(cc, stores["two"], stores["work"], cwd=helpers.REPO)
    yield s
    s.stop()


def assert_alive(server):
    t0 = time.monotonic()
    r = get(server.port, "/healthz")
    assert r.status == 200 and time.monotonic() - t0 < 2, r
    assert server.proc.poll() is None


def assert_4xx_json(r, statuses):
    """The status is one of `statuses`; our own errors are JSON (a URL past the 16 KiB
    header limit gets libmicrohttpd's own 414 page)."""
    assert r.status in statuses, r
    if r.headers.get("content-type", "").startswith("application/json") or r.status == 400:
        assert "error" in r.json(), r


def send_whole(server, path, params=(), head=b""):
    """GET path?params (plus raw header lines `head`), sent whole before the answer is
    read: (outcome, status, body) as test_regress.exchange gives them."""
    req = f"GET {target(path, params)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
    return exchange(server.port, req + head + b"\r\n")


def assert_page(got, status):
    """libmicrohttpd's own "Request too big" answer with `status`: the request line or
    headers passed its 384 KiB connection pool before cellcube saw the request."""
    outcome, st, body = got
    assert outcome == "answered" and st == status and b"Request too big" in body, (outcome, st, body[:200])


# A connection that has sent its request counts as waiting until the server's request
# deadline (15 s) closes it; a margin for a loaded machine.
DEADLINE = 15 + 5


def assert_json_error(got, status):
    """cellcube's own JSON error with `status` (the request reached the API)."""
    outcome, st, body = got
    assert outcome == "answered" and st == status and "error" in json.loads(body), (outcome, st, body[:200])


def assert_dropped_unanswered(server, requests):
    """Requests with more than about 6,000 parameters exhaust libmicrohttpd's 384 KiB pool
    while it splits the query string; it then never answers. Each of `requests` (path,
    params) must have its connection closed without a byte, no later than the request
    deadline (docs/RELIABILITY.md, known limits). libmicrohttpd drops such a connection
    as soon as anything else wakes its thread, so /healthz is asked meanwhile; the
    deadline alone would close them too."""
    socks = []
    for path, params in requests:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        s.connect(("127.0.0.1", server.port))
        s.sendall(f"GET {target(path, params)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        s.setblocking(False)
        socks.append({"sock": s, "what": f"{path} with {len(params)} parameters", "got": b"", "closed": None})
    t0 = time.monotonic()
    try:
        while any(c["closed"] is None for c in socks) and time.monotonic() - t0 < DEADLINE:
            for c in socks:
                if c["closed"] is not None:
                    continue
                try:
                    b = c["sock"].recv(65536)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    b = b""
                if b:
                    c["got"] += b
                else:
                    c["closed"] = time.monotonic() - t0
            assert get(server.port, "/healthz", timeout=5).status == 200
            time.sleep(0.2)
    finally:
        for c in socks:
            c["sock"].close()
    for c in socks:
        assert c["got"] == b"", f"{c['what']}: answered {c['got'][:200]!r}"
        assert c["closed"] is not None, f"{c['what']}: still open {DEADLINE} s after it was sent"


def test_thousands_of_genes(server):
    ids = [g["id"] for g in get(server.port, "/api/v1/genes", [("q", "ENSG"), ("limit", "100")]).json()["genes"]]
    # 1,000 names within 8 KiB: too many genes
    r = get(server.port, "/api/v1/query", [("genes", ",".join(["x"] * 1000))])
    assert_4xx_json(r, {400})
    assert "200" in r.json()["error"]
    r = get(server.port, "/api/v1/query", [("genes", ",".join(ids[i % len(ids)][-4:] for i in range(1500)))])
    assert_4xx_json(r, {400})
    # 5,000 real ids, 90 KB: past the API's 8 KiB query string, in JSON as every error
    assert_json_error(send_whole(server, "/api/v1/query", [("genes", ",".join(ids[i % len(ids)] for i in range(5000)))]),
                      414)
    # 3,000 genes= parameters, 24 KB
    assert_json_error(send_whole(server, "/api/v1/query", [("genes", "a")] * 3000), 414)
    r = get(server.port, "/api/v1/query", [("genes", "a")] * 200)
    assert_4xx_json(r, {400})
    assert_alive(server)


def test_huge_where_lists(server):
    r = get(server.port, "/api/v1/query", [("genes", "x")] + [("where", "sex:a")] * 200)
    assert_4xx_json(r, {400})
    r = get(server.port, "/api/v1/query", [("genes", "x")] + [("where", "s:" + "v" * 60)] * 51)
    assert_4xx_json(r, {400})
    assert_json_error(send_whole(server, "/api/v1/query", [("genes", "x")] + [("where", "sex:" + "v" * 100)] * 1000), 414)
    assert_json_error(send_whole(server, "/api/v1/counts", [("where", "sex:x")] * 5000), 414)
    r = get(server.port, "/api/v1/query", [("genes", "x"), ("where", "sex:" + "é" * 1200)])
    assert_4xx_json(r, {400})
    assert_alive(server)


def test_many_parameters_get_json_answers(server):
    """900 genes= or 300 where= parameters (7 and 4 KB) reach the API and get its 400s;
    only tens of thousands exhaust libmicrohttpd's pool, which then never answers."""
    for path, params in [("/api/v1/query", [("genes", "a")] * 900),
                         ("/api/v1/query", [("genes", "x")] + [("where", "sex:a")] * 300),
                         ("/api/v1/counts", [("where", "sex:a")] * 260)]:
        assert_json_error(send_whole(server, path, params), 400)
    assert_dropped_unanswered(server, [("/api/v1/counts", [("w", "")] * 40000)])
    assert_alive(server)


@pytest.mark.parametrize("head", [
    b"X-Pad: " + b"a" * (1 << 20) + b"\r\n",                            # one 1 MiB header
    b"".join(b"X-H%d: v\r\n" % i for i in range(5000)),                 # 5,000 headers
    b"Cookie: " + b"\xff\xfe" * 4000 + b"\r\n",                         # invalid UTF-8, 8 KB
    b"X-Bad: \xc3\x28\xa0\xa1\r\n",                                     # invalid UTF-8
    b"Content-Length: 99999999999999999999\r\n",                        # absurd body size
    b"Content-Length: 1048576\r\n\r\n" + b"b" * (1 << 20),              # an actual 1 MiB body
], ids=["1MiB-header", "5000-headers", "utf8-cookie", "utf8-header", "absurd-length", "1MiB-body"])
def test_hostile_headers(server, head):
    got = send_whole(server, "/api/v1/meta", head=head)
    outcome, status, body = got
    if head.startswith(b"X-Pad"):  # past the 384 KiB header limit
        assert_page(got, 431)
    elif head.startswith(b"X-H0:") or head.startswith(b"Cookie") or head.startswith(b"X-Bad"):
        # headers (and a cookie) cellcube does not read, within the pool: the answer
        assert outcome == "answered" and status == 200 and "columns" in json.loads(body), got
    elif head.startswith(b"Content-Length: 9999"):
        # libmicrohttpd's own refusal, before cellcube sees the request
        assert outcome == "answered" and status == 413 and b"too large value for <b>Content-Length" in body, got
    else:  # a body cellcube reads and refuses
        assert outcome == "answered" and status == 413 and "error" in json.loads(body), got
    assert_alive(server)


@pytest.mark.parametrize("raw", [
    b"GET /api/v1/query?genes=%FF%FE HTTP/1.1",
    b"GET /\xff\xfe\xfd HTTP/1.1",
    b"GET /api/v1/genes?q=\xc0\xaf HTTP/1.1",
    b"GET /api/v1/counts?where=\xed\xa0\x80:x HTTP/1.1",                 # a UTF-16 surrogate
    b"GET /api/v1/query?genes=a&by=%F4%90%80%80 HTTP/1.1",               # beyond U+10FFFF
], ids=["pct-ff", "raw-path", "overlong", "surrogate", "beyond-max"])
def test_invalid_utf8(server, raw):
    status, _, body, _ = raw_request(server.port, raw + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status is not None and 400 <= status < 500, (status, body[:200])
    json.loads(body.decode("utf-8"))  # the error is strict UTF-8 JSON
    assert_alive(server)


TRAVERSALS = [
    "/../../../../etc/passwd", "/assets/../../README.md", "/assets/..%2f..%2fREADME.md",
    "/%2e%2e/%2e%2e/etc/passwd", "/assets/%2e%2e/%2e%2e/CMakeLists.txt", "//etc/passwd",
    "/assets//etc/passwd", "/..%5c..%5cREADME.md", "/assets/..\\..\\README.md", "/README.md",
    "/assets/%252e%252e/README.md", "/.git/config", "/assets/../.git/HEAD", "/index.html/../../Makefile",
    "/assets/app.js%00.txt", "/assets/..%00/README.md", "/~root", "/proc/self/environ",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal(server, path):
    status, _, body, _ = raw_request(server.port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert status is not None and 400 <= status < 500, (path, status, body[:200])
    for secret in (b"root:", b"cmake_minimum_required", b"# cellcube", b"[core]", b"ref: refs", b"PATH="):
        assert secret not in body, (path, body[:200])


# --------------------------------------------------------------------------
# slowloris
# --------------------------------------------------------------------------


def test_slowloris(server):
    """16 connections dribble a request one byte a second. Other clients keep being
    answered quickly; every slow connection is dropped within ~20 s of opening."""
    n_slow, limit = 16, 21.0
    request_bytes = b"GET /api/v1/meta HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    slow = []
    for _ in range(n_slow):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        s.setblocking(False)
        slow.append({"sock": s, "opened": time.monotonic(), "sent": 0, "dropped": None})
    latencies, errors = [], []
    t0 = time.monotonic()
    last_byte = 0.0
    while time.monotonic() - t0 < limit and any(c["dropped"] is None for c in slow):
        now = time.monotonic()
        if now - last_byte >= 1.0:
            last_byte = now
            for c in slow:
                if c["dropped"] is not None:
                    continue
                try:
                    c["sock"].send(request_bytes[c["sent"]:c["sent"] + 1])
                    c["sent"] += 1
                except (BrokenPipeError, ConnectionResetError, BlockingIOError, OSError):
                    c["dropped"] = now - c["opened"]
        for c in slow:  # a closed connection reads as EOF (or a reset)
            if c["dropped"] is not None:
                continue
            try:
                if c["sock"].recv(4096) == b"":
                    c["dropped"] = time.monotonic() - c["opened"]
            except BlockingIOError:
                pass
            except (ConnectionResetError, OSError):
                c["dropped"] = time.monotonic() - c["opened"]
        q0 = time.monotonic()
        try:
            r = get(server.port, "/api/v1/meta", timeout=5)
            if r.status != 200:
                errors.append(r.status)
        except OSError as e:
            errors.append(repr(e))
        latencies.append(time.monotonic() - q0)
        time.sleep(0.2)
    for c in slow:
        c["sock"].close()
    dropped = [c["dropped"] for c in slow if c["dropped"] is not None]
    summary = (f"slowloris: {len(dropped)} of {n_slow} slow connections dropped "
               f"(after {min(dropped, default=0):.1f}-{max(dropped, default=0):.1f} s), "
               f"{len(latencies)} other requests meanwhile, max latency {max(latencies) * 1000:.0f} ms, "
               f"errors {errors[:5]}")
    print("\n" + summary)
    assert not errors, summary
    assert max(latencies) < 1.0, summary
    assert len(dropped) == n_slow, summary
    assert_alive(server)
