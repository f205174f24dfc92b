"""Regression inputs in tests/regress/ (fuzz findings; see its README.md): each is
refused with one clear error line or handled, never a crash."""

from __future__ import annotations

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


def check_memory(argv):
    """Runs argv, sampling its VmHWM (peak RSS of its own address space) until it exits:
    it must stay under MAX_RSS_KB. (wait4's ru_maxrss would include the pytest process
    the child was forked from.)"""
    import time

    proc = subprocess.Popen([str(a) for a in argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        try:
            for line in open(f"/proc/{proc.pid}/status"):
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        if peak >= MAX_RSS_KB:
            proc.kill()
        time.sleep(0.001)
    assert peak < MAX_RSS_KB, f"{argv}: peak RSS {peak} kB"
    assert proc.returncode >= 0, f"{argv}: killed by signal {-proc.returncode}"


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


def test_http_regress(cellcube, tmp_path):
    from test_server import Server, raw_request, run_ok

    if not _files("http"):
        return  # none yet (http_fuzz has found nothing so far)

    syn = tmp_path / "synth"
    run_ok([cellcube, "synth", "-o", syn, "--datasets", "2", "--cells", "300", "--genes", "300", "--seed", "7",
            "--quiet"])
    store = tmp_path / "store.h5ad"
    run_ok([cellcube, "build", "-o", store, "--quiet", *sorted(syn.glob("*.h5ad"))])
    server = Server(cellcube, store, tmp_path)
    try:
        for path in _files("http"):
            status, _, body, _ = raw_request(server.port, _http_request(path.read_bytes()))
            assert status is None or 200 <= status < 500, (path.name, status, body[:200])
            assert server.proc.poll() is None, f"{path.name} killed the server\n{server.output()}"
            status, _, _, _ = raw_request(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert status == 200, path.name
    finally:
        server.stop()
