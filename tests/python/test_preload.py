"""`cellcube serve --preload` and `cellcube.open(path, preload=True)` (docs/API.md,
docs/QUERY.md): the store's arrays copied into memory on 2 MB pages when they fit, the
mapping read otherwise, and the answers the same either way."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request

import h5py
import pytest

import helpers
import query_reference as qr
from test_python_module import run_python

# The arrays a reader maps: the nnz layer's pattern (the other layers share it), each
# layer's values, and format 3's arrays beside the layers.
ARRAYS = ["layers/nnz/indptr", "layers/nnz/indices", "layers/nnz/data", "layers/sum/data",
          "layers/m2/data", "raw.cellcube/entry_offsets", "raw.cellcube/hist_data",
          "raw.cellcube/hist_indptr", "raw.cellcube/hist_offsets"]


def mapped(dataset):
    """Whether a reader maps the array (docs/FORMAT.md): stored contiguous, uncompressed,
    at an offset that is a multiple of its element's width; others it reads into memory
    at open, so a preload has nothing to copy of them."""
    offset = dataset.id.get_offset()
    return offset is not None and dataset.chunks is None and offset % dataset.dtype.itemsize == 0


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    d = tmp_path_factory.mktemp("preload")
    cellcube = qr.cellcube_binary()
    helpers.run_ok([cellcube, "synth", "-o", d / "in", "--datasets", "3", "--cells", "4000",
                    "--genes", "600", "--seed", "9", "--quiet"])
    out = d / "store.h5ad"
    helpers.run_ok([cellcube, "build", "-o", out, "--quiet", *sorted((d / "in").glob("*.h5ad"))])
    with h5py.File(out, "r") as f:
        array_bytes = sum(f[name].nbytes for name in ARRAYS if mapped(f[name]))
    return cellcube, out, array_bytes


class Serving:
    """`cellcube serve STORE --port 0 ARGS`: its first lines, then answers until stop()."""

    def __init__(self, cellcube, store, *args):
        self.proc = subprocess.Popen([str(cellcube), "serve", str(store), "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        while True:
            line = self.proc.stdout.readline()
            assert line, "serve ended before it served:\n" + "".join(self.lines)
            self.lines.append(line)
            m = re.search(r"open http://[\d.]+:(\d+)/", line)
            if m:
                self.port = int(m.group(1))
                break
        if "--preload" in args:
            self.lines.append(self.proc.stdout.readline())  # the preload line follows

    def get(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as r:
            return r.read()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


QUERY = "/api/v1/query?genes=CD3E,MS4A1,LYZ&by=cell_type,dataset&metrics=n_cells,frac,mean,var,median"
DE = "/api/v1/de?compare=cell_type&group1=B%20cell&test=cells"


def answer(serving, path):
    body = json.loads(serving.get(path))
    body.pop("took_us", None)
    return body


def test_serve_preload_copies_the_arrays_and_answers_the_same(store):
    cellcube, path, array_bytes = store
    plain = Serving(cellcube, path)
    try:
        want = [answer(plain, p) for p in (QUERY, DE)]
    finally:
        plain.stop()
    assert not any("preloaded" in ln for ln in plain.lines), plain.lines
    pre = Serving(cellcube, path, "--preload")
    try:
        line = pre.lines[-1]
        m = re.search(r"preloaded ([\d.]+) (kB|MB) of arrays into memory in [\d.]+ s \(([\d.]+) (kB|MB) of it on 2 MB pages\)", line)
        assert m, pre.lines
        scale = {"kB": 1e3, "MB": 1e6}
        assert abs(float(m.group(1)) * scale[m.group(2)] - array_bytes) <= 0.06e6, (line, array_bytes)
        assert [answer(pre, p) for p in (QUERY, DE)] == want
    finally:
        pre.stop()


def test_serve_preload_falls_back_to_the_mapping_when_it_does_not_fit(store):
    cellcube, path, array_bytes = store
    assert array_bytes > 1 << 20, "the test store's arrays exceed the smallest --preload-max"
    s = Serving(cellcube, path, "--preload", "--preload-max", "1M")
    try:
        assert re.search(r"not preloaded: its arrays take [\d.]+ MiB, more than the 1\.0 MiB allowed; "
                         r"reading the file's mapping", s.lines[-1]), s.lines
        assert json.loads(s.get(QUERY))["rows"], "it still answers"
    finally:
        s.stop()
    usage = helpers.run([cellcube, "serve", path, "--preload-max", "1G"])
    helpers.assert_error(usage, code=2, mentions=["--preload"])


def test_python_open_preload(store, tmp_path):
    cellcube, path, array_bytes = store
    build = qr.build_dir()
    out = tmp_path / "p.json"
    proc = run_python(build, f"""
        import json, cellcube
        plain = cellcube.open({str(path)!r})
        pre = cellcube.open({str(path)!r}, preload=True)
        q = dict(genes=["CD3E", "LYZ"], by=["cell_type"], metrics=["n_cells", "mean", "median"])
        same = plain.query(**q).equals(pre.query(**q)) and plain.de("cell_type", "B cell", test="cells").equals(
            pre.de("cell_type", "B cell", test="cells"))
        json.dump({{"plain": list(plain.preload), "pre": list(pre.preload), "same": same}}, open({str(out)!r}, "w"))
    """)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(out.read_text())
    assert got["same"] is True
    assert got["plain"] == [False, 0, 0, ""]
    done, nbytes, huge, why = got["pre"]
    assert done is True and nbytes == array_bytes and 0 <= huge <= nbytes and why == "", got
