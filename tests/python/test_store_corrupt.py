"""Damaged and re-saved stores (issues 4 and 11): a truncated store, flipped bytes in
the metadata, indptr, offsets pointing outside the file are refused at open with one
clear error line (exit 1). Entries are checked where they are read (docs/SCALING.md): a query
that reads a damaged entry refuses, one that does not may answer, and nothing ever
crashes or reads out of bounds (this suite also runs under ASan + UBSan). A store
another tool re-saved compressed or with other types, and a format-1 store, still open
and answer the same.
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
import store_format

QUERIES = [
    # Stores re-saved by other tools, or of older formats, have no histograms: the metrics
    # every store answers.
    ["--genes", "G001,G020,G065,G081", "--by", "dataset,cell_type", "--metrics",
     ",".join(qr.BASE_METRICS)],
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
    """Exit 0, or exit 1 with exactly one error line; never a signal or a sanitizer report.
    An answer's stderr holds only its notes (the store pools datasets of different
    transforms; a flip may also change a dataset's negative-values flag)."""
    info = helpers.describe(proc)
    assert proc.returncode in (0, 1), "expected success or a clean error\n" + info
    if proc.returncode == 1:
        helpers.assert_error(proc, code=1)
    else:
        for line in proc.stderr.splitlines():
            assert line.startswith("cellcube: ") and not line.startswith(helpers.ERROR_PREFIX), info


def offsets(store):
    """{dataset path: (file offset, bytes, itemsize)} of the contiguous arrays."""
    out = {}
    with h5py.File(store, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and obj.id.get_offset() is not None and obj.size:
                out[name] = (obj.id.get_offset(), obj.id.get_storage_size(), obj.dtype.itemsize)
        f.visititems(visit)
        # Hard-linked objects are visited once, under one of their names: add the
        # names the reader uses.
        for name in ("layers/nnz/indices", "layers/nnz/indptr"):
            visit(name, f[name])
    return out


PAGE = 4096


def _numeric_datasets(f):
    """{path: dataset} of every numeric array in the file, every hard link's name
    included (visititems visits a hard-linked object once, under one of its names)."""
    out = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "iuf":
            out[name] = obj
    f.visititems(visit)
    for layer in ("nnz", "sum", "m2"):
        for k in ("data", "indices", "indptr"):
            out[f"layers/{layer}/{k}"] = f[f"layers/{layer}/{k}"]
    return out


def layout_problems(store):
    """What docs/FORMAT.md promises of a store's arrays, read back with h5py: every
    numeric array contiguous, unfiltered, little-endian, allocated in place with
    elements × width bytes, and 4 KiB-aligned (HDF5's alignment applies to objects of
    at least 4 KiB, H5Pset_alignment(4096, 4096); the caller checks that the arrays it
    cares about are that large); the three layers CSC matrices of shape (groups, genes)
    with the documented dtypes; sum's and m2's indices/indptr hard links to nnz's."""
    problems = []
    with h5py.File(store, "r") as f:
        n_cells = f["obs/n_cells"][()]
        n_groups, n_genes = len(n_cells), len(f["var/_index"])
        for name, ds in sorted(_numeric_datasets(f).items()):
            plist = ds.id.get_create_plist()
            if plist.get_layout() != h5py.h5d.CONTIGUOUS or ds.chunks is not None:
                problems.append(f"{name}: not contiguous (chunks {ds.chunks})")
            if plist.get_nfilters() or ds.compression is not None:
                problems.append(f"{name}: filtered ({ds.compression}, {plist.get_nfilters()} filters)")
            if ds.id.get_type().get_order() != h5py.h5t.ORDER_LE:
                problems.append(f"{name}: not little-endian ({ds.dtype.str})")
            off, nbytes = ds.id.get_offset(), ds.id.get_storage_size()
            if ds.size and off is None:
                problems.append(f"{name}: no file offset (not allocated in place)")
            if nbytes != ds.size * ds.dtype.itemsize:
                problems.append(f"{name}: {nbytes} bytes for {ds.size} × {ds.dtype.itemsize}")
            if off is not None and nbytes >= PAGE and off % PAGE:
                problems.append(f"{name}: {nbytes} bytes at offset {off}, not a multiple of {PAGE}")
        indptr = f["layers/nnz/indptr"][()]
        n_entries = int(indptr[-1]) if len(indptr) else -1
        index_type = np.int32 if max(n_entries, n_groups) < 2**31 else np.int64
        want = {"nnz": np.uint16 if n_cells.max() < 65536 else np.uint32,
                "sum": np.float64, "m2": np.float32}
        for layer, data_type in want.items():
            g = f[f"layers/{layer}"]
            attrs = {k: g.attrs.get(k) for k in ("encoding-type", "encoding-version")}
            if attrs != {"encoding-type": "csc_matrix", "encoding-version": "0.1.0"}:
                problems.append(f"layers/{layer}: attrs {attrs}")
            if [int(x) for x in g.attrs.get("shape", [])] != [n_groups, n_genes]:
                problems.append(f"layers/{layer}: shape {g.attrs.get('shape')}, want {[n_groups, n_genes]}")
            for k, t, n in (("data", data_type, n_entries), ("indices", index_type, n_entries),
                            ("indptr", index_type, n_genes + 1)):
                ds = g[k]
                if ds.dtype != np.dtype(t) or ds.shape != (n,):
                    problems.append(f"layers/{layer}/{k}: {ds.dtype}{ds.shape}, want "
                                    f"{np.dtype(t)}({n},)")
        # One sparsity pattern: three hard links to each of two objects, three data arrays.
        addr = {name: h5py.h5o.get_info(f[name].id).addr
                for name in (f"layers/{layer}/{k}" for layer in ("nnz", "sum", "m2")
                             for k in ("data", "indices", "indptr"))}
        for k in ("indices", "indptr"):
            for layer in ("sum", "m2"):
                link = f[f"layers/{layer}"].get(k, getlink=True)
                if not isinstance(link, h5py.HardLink):
                    problems.append(f"layers/{layer}/{k}: a {type(link).__name__}, not a hard link")
                if addr[f"layers/{layer}/{k}"] != addr[f"layers/nnz/{k}"]:
                    problems.append(f"layers/{layer}/{k} is not the object layers/nnz/{k}")
            rc = h5py.h5o.get_info(f[f"layers/nnz/{k}"].id).rc
            if rc != 3:
                problems.append(f"layers/nnz/{k}: {rc} links to it, want 3 (nnz, sum, m2)")
        distinct = {addr[f"layers/{layer}/data"] for layer in ("nnz", "sum", "m2")}
        distinct |= {addr["layers/nnz/indices"], addr["layers/nnz/indptr"]}
        if len(distinct) != 5:
            problems.append(f"the five arrays are {len(distinct)} objects")
    return problems


def _layer_bytes(store):
    with h5py.File(store, "r") as f:
        return {name: f[name].id.get_storage_size() for name in
                ("layers/nnz/data", "layers/nnz/indices", "layers/nnz/indptr",
                 "layers/sum/data", "layers/m2/data")}


@pytest.fixture(scope="module")
def big_group(tmp_path_factory):
    """A store with one group of 70,000 cells: its nnz must be uint32."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    d = tmp_path_factory.mktemp("big_group")
    n, genes = 70_000, 4
    rng = np.random.default_rng(3)
    rows = np.arange(0, n, 3)
    X = sp.csr_matrix((rng.integers(1, 4, len(rows)).astype(np.float32),
                       (rows, rows % genes)), shape=(n, genes))
    obs = pd.DataFrame({"cell_type": pd.Categorical(["T"] * (n - 10) + ["B"] * 10)},
                       index=[f"c{i}" for i in range(n)])
    path = d / "big.h5ad"
    ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=[f"G{i}" for i in range(genes)]),
               dtype=X.dtype).write_h5ad(path)
    store = d / "store.h5ad"
    helpers.run_ok([qr.cellcube_binary(), "build", "-o", store, "--cell-type", "cell_type",
                    "--groupby", "", "--transform", "none", "--quiet", path])
    return store


def test_layout_as_the_reader_expects(setup, nine, big_group):
    """docs/FORMAT.md's layout, read back with h5py, on three stores: the query store
    (build + add of three datasets), nine datasets of 1,200 genes (every one of the five
    arrays, indptr included, at least 4 KiB, so all five must lie on 4 KiB pages) and a
    store with a 70,000-cell group (nnz must be uint32)."""
    _c, store, _a, _d = setup
    _c, nine_store, _alone, _d = nine
    sizes = _layer_bytes(nine_store)
    assert min(sizes.values()) >= PAGE, f"test bug: an array of the nine-dataset store is small: {sizes}"
    # The query store's entry arrays are large too; only its indptr (90 genes) is not.
    sizes = _layer_bytes(store)
    assert all(v >= PAGE for k, v in sizes.items() if k != "layers/nnz/indptr"), sizes
    for path in (store, nine_store, big_group):
        problems = layout_problems(path)
        assert not problems, f"{path}:\n  " + "\n  ".join(problems)
    with h5py.File(big_group, "r") as f:
        assert f["obs/n_cells"][()].max() >= 65536
        assert f["layers/nnz/data"].dtype == np.uint32
    with h5py.File(store, "r") as f:
        assert f["layers/nnz/data"].dtype == np.uint16
    # The offsets the flip tests below aim at are these arrays'.
    o = offsets(store)
    for name in ["layers/nnz/indptr", "layers/nnz/indices", "layers/nnz/data",
                 "layers/sum/data", "layers/m2/data"]:
        assert name in o, name


def test_truncated(setup):
    cellcube, store, _answers, d = setup
    data = store.read_bytes()
    for keep in [0, 7, 512, len(data) // 3, len(data) // 2, len(data) - 4096, len(data) - 1]:
        bad = d / f"trunc{keep}.h5ad"
        bad.write_bytes(data[:keep])
        proc = query(cellcube, bad, QUERIES[0])
        helpers.assert_error(proc, code=1)


def entries_of(store, genes):
    """The entry positions of the named genes, and of every other gene."""
    with h5py.File(store, "r") as f:
        ids = [x.decode() if isinstance(x, bytes) else str(x) for x in f["var/_index"][:]]
        indptr = f["layers/nnz/indptr"][:]
    read, unread = [], []
    for j, gene in enumerate(ids):
        (read if gene in genes else unread).extend(range(indptr[j], indptr[j + 1]))
    assert read and unread
    return read, unread


def test_flipped_bytes_in_the_arrays(setup):
    """indptr is checked whole at open: a high byte flipped there is always refused.
    An impossible entry (group or nnz high byte flipped) is refused by a query that
    reads it. Any byte of any array: refused or answered, never a crash."""
    cellcube, store, _answers, d = setup
    data = store.read_bytes()
    o = offsets(store)
    rng = random.Random(4)
    read, _unread = entries_of(store, QUERIES[0][1].split(","))
    must_fail = {"layers/nnz/indices", "layers/nnz/indptr", "layers/nnz/data"}
    n = 0
    for name, (off, size, item) in o.items():
        if not name.startswith("layers/"):
            continue
        for _ in range(6):
            if name == "layers/nnz/indptr" or name not in must_fail:
                k = rng.randrange(size // item)
            else:
                k = rng.choice(read)
            b = bytearray(data)
            if name in must_fail:
                b[off + k * item + item - 1] ^= 0x40  # the high byte: an impossible value
            else:
                b[off + k * item + rng.randrange(item)] ^= 1 << rng.randrange(8)
            bad = d / f"flip{n}.h5ad"
            n += 1
            bad.write_bytes(bytes(b))
            proc = query(cellcube, bad, QUERIES[0])
            if name in must_fail:
                helpers.assert_error(proc, code=1, any_of=["indptr", "group", "nnz"])
            else:
                assert_clean(proc)


def test_damage_is_found_where_it_is_read(setup):
    """docs/SCALING.md: a damaged entry refuses the queries that read its gene, with one line
    naming the store, the entry and the gene; queries of other genes answer exactly as
    before (nothing else read it); `info --check` finds it; the open costs no entry
    checks."""
    cellcube, store, answers, d = setup
    data = store.read_bytes()
    o = offsets(store)
    genes = QUERIES[0][1].split(",")
    read, unread = entries_of(store, genes)
    cases = [("layers/nnz/indices", 1 << 30, "group is out of range"),
             ("layers/nnz/data", 0xFFFF, "nnz"),
             ("layers/sum/data", float("nan"), "sum is not finite"),
             ("layers/m2/data", -1.0, "m2")]
    for i, (name, value, mention) in enumerate(cases):
        off, _size, item = o[name]
        fmt = {"layers/nnz/indices": "<i", "layers/sum/data": "<d", "layers/m2/data": "<f"}.get(
            name, "<H" if item == 2 else "<I")
        for where, k in (("read", read[len(read) // 2]), ("unread", unread[len(unread) // 3])):
            b = bytearray(data)
            b[off + k * item:off + (k + 1) * item] = struct.pack(fmt, value)
            bad = d / f"damaged{i}-{where}.h5ad"
            bad.write_bytes(bytes(b))
            proc = query(cellcube, bad, QUERIES[0])
            if where == "read":
                helpers.assert_error(proc, code=1, mentions=[mention, str(bad), f"entry {k}"])
            else:
                assert proc.returncode == 0, helpers.describe(proc)
                assert proc.stdout == answers[0]
            check = helpers.run([cellcube, "info", bad, "--check"])
            helpers.assert_error(check, code=1, mentions=[mention])
    helpers.run_ok([cellcube, "info", store, "--check"])


def test_flipped_bytes_in_the_metadata(setup):
    """Codes out of their categories, measured genes out of range: refused."""
    cellcube, store, _answers, d = setup
    data = store.read_bytes()
    o = offsets(store)
    cases = {"obs/cell_type/codes": 0x7F, "obs/dataset/codes": 0x7F,
             "uns/cellcube/measured": 0x7F, "obs/n_cells": 0xFF}
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
    # anndata drops raw.cellcube: the copy has no histograms, and says how to get them.
    helpers.assert_error(query(cellcube, resaved, ["--genes", "G001", "--metrics", "median"]),
                         mentions=("no histograms", "rebuild"))


def test_both_readers_locate_the_arrays_alike(setup):
    """One locator (src/store/store_arrays.h) serves the mapped reader (query) and the
    pread source of merge/add/remove: a re-saved gzip store is read whole by both and
    answers the same after a merge; a layer of a type no store has is refused by both
    with the same words."""
    import anndata as ad

    cellcube, store, answers, d = setup
    resaved = d / "both-gzip.h5ad"
    if not resaved.exists():
        ad.read_h5ad(store).write_h5ad(resaved, compression="gzip")
    merged = d / "both-merged.h5ad"
    helpers.run_ok([cellcube, "merge", "-o", merged, resaved])
    for q, want in zip(QUERIES, answers):
        proc = query(cellcube, merged, q)
        assert proc.returncode == 0, helpers.describe(proc)
        assert proc.stdout == want
    bad = d / "both-int-m2.h5ad"
    shutil.copy(store, bad)
    with h5py.File(bad, "r+") as f:
        values = f["layers/m2/data"][()]
        del f["layers/m2/data"]
        f["layers/m2"].create_dataset("data", data=values.astype(np.int32))
    by_query = helpers.assert_error(query(cellcube, bad, QUERIES[0]),
                                    mentions=["'layers/m2/data' holds int32 values"])
    by_merge = helpers.assert_error(helpers.run([cellcube, "merge", "-o", d / "x.h5ad", bad]),
                                    mentions=["'layers/m2/data' holds int32 values"])
    tail = "'layers/m2/data' holds int32 values"
    assert by_query[by_query.index(tail):] == by_merge[by_merge.index(tail):], (by_query, by_merge)
    assert not (d / "x.h5ad").exists()


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
    """int64 indices/indptr, uint32 nnz and float64 m2 (as a tool converting types
    writes them) give the same answers; float32 sums (a tool narrowing them) answer
    within float32's precision."""
    cellcube, store, answers, d = setup
    cases = (("wide", {"nnz": np.uint32, "m2": np.float64}), ("narrow", {"sum": np.float32}))
    for name, value_types in cases:
        path = d / f"{name}.h5ad"
        shutil.copy(store, path)
        with h5py.File(path, "r+") as f:
            pattern = {k: f[f"layers/nnz/{k}"][()] for k in ("indices", "indptr")}
            for layer in ("nnz", "sum", "m2"):
                g = f[f"layers/{layer}"]
                for k, v in pattern.items():
                    del g[k]
                    g.create_dataset(k, data=v.astype(np.int64))
                if layer in value_types:
                    v = g["data"][()]
                    del g["data"]
                    g.create_dataset("data", data=v.astype(value_types[layer]))
        for q, want in zip(QUERIES, answers):
            proc = query(cellcube, path, q)
            assert proc.returncode == 0, helpers.describe(proc)
            if name == "wide":
                assert proc.stdout == want
            else:
                _csv_close(proc.stdout, want, rtol=1e-4)


def test_format_1_stores_still_answer(setup):
    """Stores written by cellcube 0.2 (format 1: uint32 nnz, sumsq beside sum, float64
    or float32, measured genes as lists) open everywhere and answer as format 2 does,
    within the precision of their sums; add and merge turn them into format 3."""
    cellcube, store, answers, d = setup
    for sum_dtype, rtol in (("float64", 1e-9), ("float32", 1e-4)):
        old = d / f"format1-{sum_dtype}.h5ad"
        store_format.write_format1(str(store), str(old), sum_dtype)
        info = helpers.run_json([cellcube, "info", old, "--json"])
        assert str(info["format_version"]) == "1"
        helpers.run_ok([cellcube, "info", old, "--check"])
        for q, want in zip(QUERIES, answers):
            proc = query(cellcube, old, q)
            assert proc.returncode == 0, helpers.describe(proc)
            _csv_close(proc.stdout, want, rtol=rtol)
        merged = d / f"merged-{sum_dtype}.h5ad"
        helpers.run_ok([cellcube, "merge", "-o", merged, old, "--quiet"])
        assert str(helpers.run_json([cellcube, "info", merged, "--json"])["format_version"]) == "3"
        for q, want in zip(QUERIES, answers):
            proc = query(cellcube, merged, q)
            assert proc.returncode == 0, helpers.describe(proc)
            _csv_close(proc.stdout, want, rtol=rtol)


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


# --- Reads of one dataset among many (docs/SCALING.md) -------------------------------------
# A read of a few datasets checks only their entries in each gene (found by one search
# that the check and the scan share), and a first read of many genes copies them out of
# the file. Nine datasets of 1,200 genes: a one-dataset `de` is such a first read.

DATASET, BEFORE, AFTER = "synth_05", "synth_04", "synth_06"


@pytest.fixture(scope="module")
def nine(tmp_path_factory):
    d = tmp_path_factory.mktemp("nine")
    cellcube = qr.cellcube_binary()
    helpers.run_ok([cellcube, "synth", "-o", d / "in", "--datasets", "9", "--cells", "400",
                    "--genes", "1200", "--quiet"])
    store = d / "store.h5ad"
    helpers.run_ok([cellcube, "build", d / "in", "-o", store, "--donor", "donor"])
    alone = d / "alone.h5ad"
    helpers.run_ok([cellcube, "build", d / "in" / f"{DATASET}.h5ad", "-o", alone,
                    "--donor", "donor"])
    return cellcube, store, alone, d


def first_entry_after_another_dataset(store, dataset):
    """(gene id, entry k): k is the dataset's first entry in a gene where another
    dataset's entry comes just before it."""
    with h5py.File(store, "r") as f:
        names = [x.decode() for x in f["obs/dataset/categories"][:]]
        group_dataset = f["obs/dataset/codes"][:]
        ids = [x.decode() if isinstance(x, bytes) else str(x) for x in f["var/_index"][:]]
        indptr = f["layers/nnz/indptr"][:]
        groups = f["layers/nnz/indices"][:]
    code = names.index(dataset)
    for g, gene in enumerate(ids):
        for k in range(indptr[g] + 1, indptr[g + 1]):
            if group_dataset[groups[k]] == code and group_dataset[groups[k - 1]] != code:
                return gene, k
    raise AssertionError(f"no gene has {dataset}'s entries after another dataset's")


def de(cellcube, store, dataset=None):
    args = [cellcube, "de", store, "--compare", "cell_type", "--group1", "B cell",
            "--format", "csv"]
    return helpers.run(args + (["--datasets", dataset] if dataset else []))


def test_one_dataset_copied_read_answers_as_that_dataset_alone(nine):
    """The copied read (first `de` of one dataset, every gene) answers exactly as a store
    built from that dataset alone, read whole: the same rows, the same numbers."""
    cellcube, store, alone, _d = nine
    within = de(cellcube, store, DATASET)
    by_itself = de(cellcube, alone)
    assert within.returncode == 0 and by_itself.returncode == 0, helpers.describe(within)
    rows = within.stdout.splitlines()
    assert len(rows) > 1000
    # Rows with no test tie; they come in the order of each store's genes.
    assert sorted(rows) == sorted(by_itself.stdout.splitlines())


def test_damage_in_one_dataset_is_refused_by_its_reads_only(nine):
    cellcube, store, _alone, d = nine
    gene, k = first_entry_after_another_dataset(store, DATASET)
    o = offsets(store)
    def other_reads(path, other):
        return (query(cellcube, path, ["--genes", gene, "--datasets", other]),
                de(cellcube, path, other))
    good = {other: other_reads(store, other) for other in (BEFORE, AFTER)}
    for procs in good.values():
        for proc in procs:
            assert proc.returncode == 0 and proc.stdout, helpers.describe(proc)
    cases = [
        # A sum that is not a number, in the dataset's first entry of the gene.
        ("layers/sum/data", struct.pack("<d", float("nan")), k, "sum is not finite", [k],
         BEFORE),
        # The entry before it (an earlier dataset's) takes its group: the dataset's
        # entries no longer ascend where the search finds them (the copy sees the repeat
        # from outside, at k - 1; the check in place from within, at k). The earlier
        # dataset rightly loses that entry, so the untouched reads are a later dataset's.
        ("layers/nnz/indices", None, k - 1, "ascend", [k - 1, k], AFTER),
    ]
    data = store.read_bytes()
    for i, (name, value, at, mention, named, other) in enumerate(cases):
        off, _size, item = o[name]
        b = bytearray(data)
        if value is None:
            value = bytes(data[off + k * item:off + (k + 1) * item])
        b[off + at * item:off + (at + 1) * item] = value
        bad = d / f"one-dataset-{i}.h5ad"
        bad.write_bytes(bytes(b))
        # Reads of the dataset: a few genes (checked in the mapping), every gene (copied),
        # every dataset (the whole gene checked).
        for proc in (query(cellcube, bad, ["--genes", gene, "--datasets", DATASET]),
                     de(cellcube, bad, DATASET),
                     query(cellcube, bad, ["--genes", gene])):
            helpers.assert_error(proc, code=1, mentions=[mention, gene, str(bad)],
                                 any_of=[f"entry {e} " for e in named])
        # Reads of another dataset do not touch it, and answer as before.
        for got, want in zip(other_reads(bad, other), good[other]):
            assert got.returncode == 0 and got.stdout == want.stdout, helpers.describe(got)


def test_damaged_entry_offsets_are_refused_where_they_are_read(nine):
    """docs/FORMAT.md: a read in place finds a dataset's entries in a gene from
    raw.cellcube/entry_offsets, checked before use, so a wrong offset is refused, never
    an answer that silently leaves entries out or takes another dataset's: whether the
    read checks the whole gene (every dataset) or one dataset's range. A copied read
    (every gene of one dataset) finds the entries by their groups and answers exactly
    as from the intact store. Reads of other genes answer as before; `info --check`
    finds it."""
    cellcube, store, _alone, d = nine
    gene, _k = first_entry_after_another_dataset(store, DATASET)
    with h5py.File(store, "r") as f:
        ids = [x.decode() if isinstance(x, bytes) else str(x) for x in f["var/_index"][:]]
        names = [x.decode() for x in f["obs/dataset/categories"][:]]
        table = f["raw.cellcube/entry_offsets"]
        g, ds = ids.index(gene), names.index(DATASET)
        width, n_datasets = table.dtype.itemsize, table.shape[1]
        here, after = int(table[g, ds]), int(table[g, ds + 1])
    assert after > here + 1, "the dataset has two or more entries in the gene"
    other_gene = next(x for x in ids if x != gene)
    good_other = query(cellcube, store, ["--genes", other_gene, "--datasets", DATASET])
    assert good_other.returncode == 0 and good_other.stdout, helpers.describe(good_other)
    good_de = de(cellcube, store, DATASET)
    assert good_de.returncode == 0 and good_de.stdout, helpers.describe(good_de)
    off = offsets(store)["raw.cellcube/entry_offsets"][0] + (g * n_datasets + ds) * width
    data = store.read_bytes()
    # One entry too late (the dataset's first entry left out), one too early (the
    # dataset before it would lose its last entry to this one).
    for i, value in enumerate((here + 1, here - 1)):
        b = bytearray(data)
        b[off:off + width] = struct.pack("<I", value)
        bad = d / f"offsets-{i}.h5ad"
        bad.write_bytes(bytes(b))
        for proc in (query(cellcube, bad, ["--genes", gene]),                          # whole gene
                     query(cellcube, bad, ["--genes", gene, "--datasets", DATASET])):  # in place
            helpers.assert_error(proc, code=1, mentions=[str(bad)])
            assert gene in proc.stderr, helpers.describe(proc)
        copied = de(cellcube, bad, DATASET)
        assert copied.returncode == 0 and copied.stdout == good_de.stdout, helpers.describe(copied)
        again = query(cellcube, bad, ["--genes", other_gene, "--datasets", DATASET])
        assert again.returncode == 0 and again.stdout == good_other.stdout, helpers.describe(again)
        helpers.assert_error(helpers.run([cellcube, "info", bad, "--check"]), code=1, mentions=[gene])
