"""Regression inputs in tests/regress/ (fuzz findings; see its README.md): each is
refused with one clear error line or handled, never a crash. The HTTP inputs each get
the one outcome HTTP_EXPECTED names for them."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.parse
from pathlib import Path

import pytest

import helpers

REGRESS = helpers.REPO / "tests" / "regress"


def _files(kind):
    d = REGRESS / kind
    return sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith(".")) if d.is_dir() else []


def check_contract(proc):
    info = helpers.describe(proc)
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}\n" + info
    assert proc.returncode in (0, 1), info
    if proc.returncode == 1:
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(helpers.ERROR_PREFIX), "not one error line\n" + info


MAX_RSS_KB = 512 * 1024  # the OOM findings made libhdf5 touch gigabytes


def check_memory(argv, env=None, max_kb=MAX_RSS_KB):
    """Runs argv, sampling the VmHWM (peak RSS of its own address space) of it and of the
    child process it reads files in (util/isolate.h) until it exits: each must stay
    under max_kb. (wait4's ru_maxrss would include the pytest process the command was
    forked from.) Returns the process."""
    import os
    import time

    full_env = None if env is None else {**os.environ, **env}
    proc = subprocess.Popen([str(a) for a in argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=full_env, text=True, errors="replace")
    peak = 0
    while proc.poll() is None:
        for pid in helpers.process_tree(proc.pid):
            try:
                for line in open(f"/proc/{pid}/status"):
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
            except (OSError, ValueError):
                pass
        if peak >= max_kb:
            for pid in helpers.process_tree(proc.pid)[::-1]:
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass
        time.sleep(0.001)
    proc.stderr_text = proc.stderr.read()
    assert peak < max_kb, f"{argv}: peak RSS {peak} kB"
    assert proc.returncode >= 0, f"{argv}: killed by signal {-proc.returncode}"
    return proc


def test_regress_dir_exists():
    assert REGRESS.is_dir(), f"missing {REGRESS}"


@pytest.mark.parametrize("path", _files("h5ad"), ids=lambda p: p.name)
def test_h5ad_regress(cellcube, path, tmp_path):
    proc = helpers.run([cellcube, "inspect", "--check", path], timeout=120)
    check_contract(proc)
    if "superblock" in path.name or "driver-info" in path.name:  # refused before libhdf5 reads it
        assert "superblock" in proc.stderr, helpers.describe(proc)
    check_memory([cellcube, "inspect", "--check", path])
    check_contract(helpers.run([cellcube, "inspect", "--json", path], timeout=120))
    out = tmp_path / "store.h5ad"
    proc = helpers.run([cellcube, "build", "-o", out, "--quiet", "--threads", "1", path], timeout=120)
    check_contract(proc)
    if proc.returncode == 1:
        assert not out.exists() and not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


@pytest.mark.parametrize("path", _files("store"), ids=lambda p: p.name)
def test_store_regress(cellcube, path):
    check_contract(helpers.run([cellcube, "info", path], timeout=120))
    check_memory([cellcube, "info", path])
    check_contract(helpers.run([cellcube, "query", path, "--genes", "CD3E", "--by", "cell_type"], timeout=120))


def _http_request(data: bytes) -> bytes:
    """The http_fuzz input as a raw HTTP/1.1 request (bytes percent-encoded)."""
    lines = data.split(b"\n")
    method = lines[0] if lines and lines[0] else b"GET"
    path = lines[1] if len(lines) > 1 else b"/"
    params, inm = [], None
    for line in lines[2:]:
        if line.startswith(b"#"):
            inm = line[1:]
            continue
        k, _, v = line.partition(b"=")
        params.append(urllib.parse.quote_from_bytes(k, safe="") + "=" + urllib.parse.quote_from_bytes(v, safe=""))
    target = urllib.parse.quote_from_bytes(path, safe="/") + ("?" + "&".join(params) if params else "")
    method = bytes(c for c in method if 0x21 <= c < 0x7F) or b"GET"
    req = method + b" " + target.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    if inm is not None:
        req += b"If-None-Match: " + bytes(c for c in inm if 0x20 <= c < 0x7F) + b"\r\n"
    return req + b"\r\n"


def _request_bytes(path: Path) -> bytes:
    """A `.raw` file is sent as it is (what the fuzz format cannot say: bodies, other
    headers); any other file is an http_fuzz input."""
    data = path.read_bytes()
    return data if path.suffix == ".raw" else _http_request(data)


# The outcome each input in tests/regress/http must get (the kinds: test_http_regress).
HTTP_EXPECTED = {
    "api-nul-after-path": (404, "json"),                   # %00 is U+FFFD, never a cut
    "static-nul-in-path": (404, "json"),                   # not app.js
    "query-nul-in-gene": (400, "json"),                    # not CD79B
    "cookie-8KB-invalid-utf8.raw": (200, "json"),          # the Cookie is no part of the API: ignored
    "genes-limit-huge": (400, "json"),
    "get-with-body.raw": (413, "json"),
    "post-with-body.raw": (413, "json"),                   # the body is refused before the method
    "head-query": (200, "empty"),
    "method-brew": (405, "json"),
    "method-delete": (405, "json"),
    "query-genes-900-names": (400, "json"),                # over 200 genes
    "query-genes-query-string-over-8KiB": (414, "json"),   # cellcube's own query-string limit
    "query-genes-request-over-16KiB": (414, "json"),       # a long request reaches the API's limit
    "query-where-3000-repeats": (414, "json"),             # 51 KB: JSON too, as every error
    "query-where-51-values": (400, "json"),                # over 50 where values
    "query-where-one-value-2000-commas": (400, "json"),    # one value that names nothing
    "query-if-none-match-20KiB": (200, "json"),            # headers up to 384 KiB: not a tag, the answer
    "query-if-none-match-garbage": (200, "json"),          # not a tag: the answer itself
    "query-invalid-utf8-by": (400, "json"),
    "query-unknown-parameter": (400, "json"),
}


def exchange(port, data: bytes, timeout=10):
    """Sends the whole request, then reads until the server closes. Returns (outcome,
    status, body): outcome "answered", "closed" (nothing came back) or "timeout".

    The send buffer holds every input whole, and a reset while sending is ignored, so
    an answer the server wrote before closing is read rather than lost to the race
    between our send and its close."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    s.settimeout(timeout)
    got, outcome = b"", None
    try:
        s.connect(("127.0.0.1", port))
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        while True:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                break
            except socket.timeout:
                outcome = "timeout"
                break
            if not b:
                break
            got += b
    finally:
        s.close()
    head, _, body = got.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else None
    if outcome is None:
        outcome = "closed" if not got else "answered"
    return outcome, status, body


def test_http_regress_inputs_all_have_an_outcome():
    names = [p.name for p in _files("http")]
    assert names, f"no HTTP regression inputs in {REGRESS / 'http'}"
    assert sorted(names) == sorted(HTTP_EXPECTED), (
        f"inputs without an outcome in HTTP_EXPECTED: {sorted(set(names) - set(HTTP_EXPECTED))}; "
        f"outcomes without an input: {sorted(set(HTTP_EXPECTED) - set(names))}")


@pytest.fixture(scope="module")
def http_server(cellcube, tmp_path_factory):
    from test_server import Server, run_ok

    work = tmp_path_factory.mktemp("regress_http")
    syn = work / "synth"
    run_ok([cellcube, "synth", "-o", syn, "--datasets", "2", "--cells", "300", "--genes", "300", "--seed", "7",
            "--quiet"])
    store = work / "store.h5ad"
    run_ok([cellcube, "build", "-o", store, "--quiet", *sorted(syn.glob("*.h5ad"))])
    server = Server(cellcube, store, work)
    yield server
    server.stop()


@pytest.mark.parametrize("path", _files("http"), ids=lambda p: p.name)
def test_http_regress(http_server, path):
    """Each input gets exactly the outcome HTTP_EXPECTED names for it, decided input by
    input, and the server then still answers /healthz. The kinds:
      (status, "json")  cellcube's own answer with that status; a 4xx body is
                        {"error": "..."} in UTF-8;
      (status, "page")  libmicrohttpd's own "Request too big" page, sent before cellcube
                        sees the request (request line or headers past its 16 KiB pool);
      (200, "empty")    a HEAD answer: headers only;
      (None, "closed")  the connection closed without a byte. Only where libmicrohttpd
                        runs out of its 16 KiB pool in a parser that has no error answer.
    A timeout (no answer, connection left open) is never right. A new input needs its
    entry: test_http_regress_inputs_all_have_an_outcome fails until it has one."""
    from test_server import raw_request

    server = http_server
    assert path.name in HTTP_EXPECTED, f"{path.name}: no outcome in HTTP_EXPECTED"
    want_status, want_kind = HTTP_EXPECTED[path.name]
    outcome, status, body = exchange(server.port, _request_bytes(path))
    got = f"{path.name}: {outcome}, status {status}, body {body[:200]!r}"
    if want_kind == "closed":
        assert outcome == "closed", got
    else:
        assert outcome == "answered" and status == want_status, f"want {want_status} {want_kind}; got " + got
        if want_kind == "empty":
            assert body == b"", got
        elif want_kind == "page":
            assert b"Request too big" in body, got
        elif status >= 400:
            doc = json.loads(body.decode("utf-8"))
            assert isinstance(doc.get("error"), str) and doc["error"], got
        else:
            json.loads(body.decode("utf-8"))
    assert server.proc.poll() is None, f"{path.name} killed the server\n{server.output()}"
    status, _, _, _ = raw_request(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200, path.name


# Inputs on which libhdf5 1.10.8 itself crashes or allocates without end
# (fuzz/libhdf5-findings/README.md). cellcube reads user files in a child process under a
# memory limit (util/isolate.h), so these too must end in one error line.
LIBHDF5_FINDINGS = sorted((helpers.REPO / "fuzz" / "libhdf5-findings").glob("*.h5ad"))


def check_libhdf5_error(proc, path, reads_all=True):
    """Exit 0 (a command that never reaches the damage) or one error line. A command
    that reads the whole file (`reads_all`) must fail, naming a crash or the runaway
    allocation as such."""
    check_contract(proc)
    line = proc.stderr.strip()
    if not reads_all:
        return
    assert proc.returncode == 1, helpers.describe(proc)
    if "segv" in path.name.lower():
        assert "crashed (SIGSEGV" in line and path.name in line, line
    if "unbounded" in path.name:
        assert "out of memory" in line and "CELLCUBE_MEMORY_LIMIT" in line, line


# Read the store-shaped findings as inputs: their counts are in layers/nnz.
AS_INPUT = ["--matrix", "layers/nnz", "--cell-type", "cell_type", "--quiet"]


@pytest.mark.parametrize("path", LIBHDF5_FINDINGS, ids=lambda p: p.name)
def test_libhdf5_findings_give_one_error_line(cellcube, path, tmp_path):
    env = helpers.libhdf5_bug_env()
    # `info` reads the metadata it shows (not the gene names, since issue 11); `info
    # --check` reads everything.
    for argv, reads_all in ((["inspect", "--check", path], True), (["inspect", "--json", path], False),
                            (["info", path], False), (["info", "--check", path], True),
                            (["query", path, "--genes", "CD3E"], True)):
        check_libhdf5_error(helpers.run([cellcube, *argv], timeout=120, env=env), path, reads_all)
    out = tmp_path / "store.h5ad"
    proc = helpers.run([cellcube, "build", "-o", out, *AS_INPUT, path], timeout=120, env=env)
    check_libhdf5_error(proc, path)
    assert path.name in proc.stderr, helpers.describe(proc)  # names the input
    assert not out.exists() and not list(tmp_path.iterdir()), list(tmp_path.iterdir())
    # The limit holds the reading process to about 1 GiB (RSS counts touched pages only;
    # the sanitizer build's watch, ten times a second, lets it overshoot a little).
    max_kb = (2048 if helpers.sanitized_build() else 1200) * 1024
    check_memory([cellcube, "info", "--check", path], env=env, max_kb=max_kb)


def test_libhdf5_findings_list_is_not_empty():
    assert len(LIBHDF5_FINDINGS) >= 5, LIBHDF5_FINDINGS


def test_crash_while_adding_keeps_the_store(cellcube, tmp_path):
    """`add` of a file that crashes libhdf5: one error line, the store byte-identical,
    no temporary file and no process left behind."""
    synth = tmp_path / "synth"
    helpers.run_ok([cellcube, "synth", "-o", synth, "--datasets", "1", "--cells", "500",
                    "--genes", "300", "--quiet"])
    store = tmp_path / "store.h5ad"
    helpers.run_ok([cellcube, "build", "-o", store, "--quiet", *sorted(synth.glob("*.h5ad"))])
    before = store.read_bytes()
    bad = helpers.REPO / "fuzz" / "libhdf5-findings" / "H5HG_read-segv.h5ad"
    proc = helpers.run([cellcube, "add", store, *AS_INPUT, f"broken={bad}"], env=helpers.libhdf5_bug_env())
    helpers.assert_error(proc, mentions=["crashed", bad.name])
    assert store.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.h5ad", "synth"]
