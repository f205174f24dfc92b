"""Damaged and re-saved stores (issue 4): a truncated store, flipped bytes in the
arrays and the metadata, offsets pointing outside the file are refused with one
clear error line (exit 1), never a crash or an out-of-bounds read (this suite also
runs under ASan + UBSan); a store another tool re-saved compressed or with wider
types still opens and answers the same.
"""

from __future__ import annotations

import random
import math
import shutil
import struct

import h5py
import numpy as np
import pytest

import helpers
import query_reference as qr

QUERIES = [
    ["--genes", "G001,G020,G065,G081", "--by", "dataset,cell_type", "--metrics",
     ",".join(qr.METRICS)],
    ["--genes", "G012,dup", "--by", "stage", "--where", "condition=x=y", "--where", "sex=F"],
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("corrupt")
    cellcube = qr.cellcube_binary()
    inputs = qr.write_inputs(d / "inputs")
    store = qr.build_store(cellcube, inputs, d / "store.h5ad")
    answers = [query(cellcube, store, q) for q in QUERIES]
    for a in answers:
        assert a.returncode == 0 and len(a.stdout.splitlines()) > 3, helpers.describe(a)
    return cellcube, store, [a.stdout for a in answers], d


def query(cellcube, store, args):
    return helpers.run([cellcube, "query", store, *args, "--format", "csv"])


def assert_clean(proc):
    """Exit 0, or exit 1 with exactly one error line; never a signal or a sanitizer report."""
    info = helpers.describe(proc)
    assert proc.returncode in (0, 1), "expected success or a clean error\n" + info
    if proc.returncode == 1:
        helpers.assert_error(proc, code=1)
    else:
        assert proc.stderr == "", info


def offsets(store):
    """{dataset path: (file offset, bytes, itemsize)} of the contiguous arrays."""
    out = {}
    with h5py.File(store, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and obj.id.get_offset() is not None and obj.size:
                out[name] = (obj.id.get_offset(), obj.id.get_storage_size(), obj.dtype.itemsize)
        f.visititems(visit)
    return out


def test_layout_as_the_reader_expects(setup):
    """The store's five arrays are contiguous (so the flips below hit them)."""
    _c, store, _a, _d = setup
    o = offsets(store)
    for name in ["layers/nnz/indptr", "layers/nnz/indices", "layers/nnz/data",
                 "layers/sum/data", "layers/sumsq/data"]:
        assert name in o, name


def test_truncated(setup):
    cellcube, store, _answers, d = setup
    data = store.read_bytes()
    for keep in [0, 7, 512, len(data) // 3, len(data) // 2, len(data) - 4096, len(data) - 1]:
        bad = d / f"trunc{keep}.h5ad"
        bad.write_bytes(data[:keep])
        proc = query(cellcube, bad, QUERIES[0])
        helpers.assert_error(proc, code=1)


def test_flipped_bytes_in_the_arrays(setup):
    """High bytes of indices/indptr/nnz make impossible values: always refused. Any byte
    of any array: refused or answered, never a crash."""
    cellcube, store, _answers, d = setup
    data = store.read_bytes()
    o = offsets(store)
    rng = random.Random(4)
    must_fail = {"layers/nnz/indices": 3, "layers/nnz/indptr": 3, "layers/nnz/data": 3}
    n = 0
    for name, (off, size, item) in o.items():
        if not name.startswith("layers/"):
            continue
        for _ in range(6):
            k = rng.randrange(size // item)
            byte = must_fail.get(name, rng.randrange(item))
            b = bytearray(data)
            b[off + k * item + byte] ^= 0x40 if name in must_fail else 1 << rng.randrange(8)
            bad = d / f"flip{n}.h5ad"
            n += 1
            bad.write_bytes(bytes(b))
            proc = query(cellcube, bad, QUERIES[0])
            if name in must_fail:
                helpers.assert_error(proc, code=1, any_of=["indices", "indptr", "nnz"])
            else:
                assert_clean(proc)


def test_flipped_bytes_in_the_metadata(setup):
    """Codes out of their categories, measured genes out of range: refused."""
    cellcube, store, _answers, d = setup
    data = store.read_bytes()
    o = offsets(store)
    cases = {"obs/cell_type/codes": 0x7F, "obs/dataset/codes": 0x7F,
             "uns/cellcube/measured_genes": 0x7F, "uns/cellcube/measured_indptr": 0x7F,
             "obs/n_cells": 0xFF}
    for name, value in cases.items():
        assert name in o, (name, sorted(o))
        off, size, item = o[name]
        b = bytearray(data)
        b[off + (size // item // 2) * item + item - 1] = value  # top byte of a middle value
        bad = d / (name.replace("/", "_") + ".h5ad")
        bad.write_bytes(bytes(b))
        helpers.assert_error(query(cellcube, bad, QUERIES[0]), code=1)


def test_offsets_outside_the_file(setup):
    """The address of layers/nnz/data rewritten in its HDF5 layout message."""
    cellcube, store, _answers, d = setup
    data = store.read_bytes()
    off = offsets(store)["layers/nnz/data"][0]
    needle = struct.pack("<Q", off)
    # The arrays are page-aligned, so the address may stand elsewhere too: the layout
    # message's copy is the one whose change moves the array (as h5py sees it).
    at = None
    pos = data.find(needle)
    while pos >= 0 and at is None:
        probe = bytearray(data)
        probe[pos:pos + 8] = struct.pack("<Q", off + 8)
        path = d / "probe.h5ad"
        path.write_bytes(bytes(probe))
        try:
            if offsets(path).get("layers/nnz/data", (None,))[0] == off + 8:
                at = pos
        except (OSError, KeyError, RuntimeError):  # h5py refusing the probe: not the one
            pass
        pos = data.find(needle, pos + 1)
    assert at is not None, "no copy of the address moves layers/nnz/data"
    for to in [len(data) + 100, len(data) - 8, 2**62]:
        b = bytearray(data)
        b[at:at + 8] = struct.pack("<Q", to)
        bad = d / f"addr{to}.h5ad"
        bad.write_bytes(bytes(b))
        helpers.assert_error(query(cellcube, bad, QUERIES[0]), code=1, mentions=["outside the file"])


def test_random_flips_in_numeric_arrays_never_crash(setup):
    """Random bit flips anywhere in the numeric arrays (layers, codes, n_cells, measured
    genes). Flips in HDF5's own structures are left out: libhdf5 1.10 itself crashes on
    some (a damaged global heap of variable-length strings makes H5Dread segfault, in
    h5py too), which no reader on top of it can prevent."""
    cellcube, store, _answers, d = setup
    data = store.read_bytes()
    with h5py.File(store, "r") as f:
        numeric = {n for n in offsets(store) if f[n].dtype.kind in "iuf"}
    regions = [offsets(store)[n] for n in sorted(numeric)]
    rng = random.Random(11)
    outcomes = {0: 0, 1: 0}
    for i in range(40):
        b = bytearray(data)
        for _ in range(rng.choice([1, 4, 16])):
            off, size, _item = rng.choice(regions)
            b[off + rng.randrange(size)] ^= 1 << rng.randrange(8)
        bad = d / f"random{i}.h5ad"
        bad.write_bytes(bytes(b))
        proc = query(cellcube, bad, QUERIES[0])
        assert_clean(proc)
        outcomes[proc.returncode] += 1
    assert outcomes[1] > 0


def test_resaved_compressed_by_anndata_answers_the_same(setup):
    import anndata as ad

    cellcube, store, answers, d = setup
    resaved = d / "resaved-gzip.h5ad"
    ad.read_h5ad(store).write_h5ad(resaved, compression="gzip")
    with h5py.File(resaved, "r") as f:
        assert f["layers/nnz/data"].compression == "gzip"
        assert f["layers/sum/indices"].id != f["layers/nnz/indices"].id
    for q, want in zip(QUERIES, answers):
        proc = query(cellcube, resaved, q)
        assert proc.returncode == 0, helpers.describe(proc)
        assert proc.stdout == want


def _csv_close(got, want, rtol):
    """Two CSV answers with the same rows and labels, numbers within rtol."""
    import csv
    import io

    g, w = list(csv.reader(io.StringIO(got))), list(csv.reader(io.StringIO(want)))
    assert len(g) == len(w) and g[0] == w[0], (g[:2], w[:2])
    for rg, rw in zip(g[1:], w[1:]):
        for a, b in zip(rg, rw):
            try:
                fa, fb = float(a), float(b)
            except ValueError:
                assert a == b, (rg, rw)
                continue
            assert math.isclose(fa, fb, rel_tol=rtol, abs_tol=1e-6), (rg, rw)


def test_resaved_with_other_types_answers_the_same(setup):
    """int64 indices/indptr (as a tool converting types writes them) give the same
    answers; float32 sums (the layout of stores before 0.2, or a tool narrowing them)
    answer within float32's precision."""
    cellcube, store, answers, d = setup
    for name, index_type, value_type in (("wide", np.int64, None), ("narrow", np.int64, np.float32)):
        path = d / f"{name}.h5ad"
        shutil.copy(store, path)
        with h5py.File(path, "r+") as f:
            pattern = {k: f[f"layers/nnz/{k}"][()] for k in ("indices", "indptr")}
            for layer in ("nnz", "sum", "sumsq"):
                g = f[f"layers/{layer}"]
                for k, v in pattern.items():
                    del g[k]
                    g.create_dataset(k, data=v.astype(index_type))
                if layer != "nnz" and value_type is not None:
                    v = g["data"][()]
                    del g["data"]
                    g.create_dataset("data", data=v.astype(value_type))
        for q, want in zip(QUERIES, answers):
            proc = query(cellcube, path, q)
            assert proc.returncode == 0, helpers.describe(proc)
            if value_type is None:
                assert proc.stdout == want
            else:
                _csv_close(proc.stdout, want, rtol=1e-4)


def test_resaved_with_layers_that_disagree_is_refused(setup):
    cellcube, store, _answers, d = setup
    bad = d / "disagree.h5ad"
    shutil.copy(store, bad)
    with h5py.File(bad, "r+") as f:
        g = f["layers/sum"]
        v = g["indices"][()]
        del g["indices"]
        v[[0, 1]] = v[[1, 0]]
        g.create_dataset("indices", data=v)
    helpers.assert_error(query(cellcube, bad, QUERIES[0]), code=1, mentions=["layers/sum/indices"])


def test_not_a_store(setup):
    cellcube, _store, _answers, d = setup
    helpers.assert_error(query(cellcube, d / "inputs" / "blood.h5ad", QUERIES[0]), code=1,
                         mentions=["not a cellcube store"])
    text = d / "text.h5ad"
    text.write_text("hello\n")
    helpers.assert_error(query(cellcube, text, QUERIES[0]), code=1)
    helpers.assert_error(query(cellcube, d, QUERIES[0]), code=1)
