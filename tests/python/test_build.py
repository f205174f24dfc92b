"""`cellcube build`, `add`, `remove`, `merge` and `info` against an independent
float64 reference (docs/QUERY.md, docs/FORMAT.md, docs/BUILD.md; docs/FORMAT.md).

Inputs come from gen_studies.py (four seeded anndata files whose gene sets
overlap partially: CSR/CSC/dense; int32, float32-integer, uint16 and
non-integer float data; gzip/lzf/none; raw/X with its own var, layers/counts,
awkward obs columns) plus small broken files made with h5py.  Expected values
are computed by store_reference.py from the same files with anndata/numpy; the
store is read back with anndata.read_h5ad and, for every array used, h5py.

 1. test_build_matches_reference[case]: per dataset, every group's key, n_cells,
    and per measured gene nnz (exact), sum, sumsq (rtol 1e-5) of the transformed
    values; entries stored exactly where some cell's value is nonzero and never
    in a gene the dataset did not measure; uns/cellcube/measured_*; the datasets
    record (source, size, mtime, matrix, transform chosen, columns); var = the
    union of genes in first-appearance order with symbols (first dataset with
    one wins).  Cases: defaults, --groupby stage, --groupby '', --transform
    log1p / none / cp10k_log1p, --matrix X, --cell-type, NAME=PATH.
    test_group_rows_sorted_by_codes: FORMAT.md's group order.
    test_max_groups_is_per_dataset: the limit applies to one dataset.
 2. test_store_layout: the on-disk layout (CSC layers, one hard-linked
    indices/indptr, same index dtypes, contiguous uncompressed little-endian
    numeric arrays readable in place at H5Dget_offset, obs/var/uns encodings).
 3. add / remove / merge equal direct builds; their failure modes; `add` does
    not re-read the other datasets' files.
 4. info --json agrees with the store; plain info prints.
 5. bad inputs for build: exit code, one error line, no store and no temp file.
 6. atomicity: SIGKILLed add/build leave the previous store byte-identical.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import random
import shutil
import signal
import subprocess
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import gen_anndata
import gen_studies
import helpers
import reference
import store_reference as sr

warnings.filterwarnings("ignore")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def run(args, cwd=None, timeout=180):
    return helpers.run(args, timeout=timeout, cwd=cwd)


def run_ok(args, **kw):
    kw.setdefault("timeout", 180)
    return helpers.run_ok(args, **kw)


def build(cellcube, out, inputs, opts=(), quiet=True):
    args = [cellcube, "build", "-o", out, *opts] + (["--quiet"] if quiet else []) + [str(i) for i in inputs]
    return run_ok(args)


tmp_leftovers = helpers.tmp_leftovers


def file_bytes(path):
    return Path(path).read_bytes()


def fail_with(problems, what, proc=None):
    if problems:
        msg = f"{what}:\n  " + "\n  ".join(problems)
        if proc is not None:
            msg += "\n" + helpers.describe(proc)
        pytest.fail(msg, pytrace=False)


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """{name: path} of gen_studies' four inputs (alpha, beta, gamma, delta)."""
    return gen_studies.generate(tmp_path_factory.mktemp("studies"))


@pytest.fixture(scope="module")
def full_store(cellcube, studies, tmp_path_factory):
    """All four inputs, default options (stderr kept: it must report the transforms)."""
    out = tmp_path_factory.mktemp("full") / "full.h5ad"
    proc = build(cellcube, out, [studies[n] for n in gen_studies.NAMES], quiet=False)
    return out, proc


@pytest.fixture(scope="module")
def trio(cellcube, studies, tmp_path_factory):
    """alpha, beta, gamma built directly in one store."""
    out = tmp_path_factory.mktemp("trio") / "trio.h5ad"
    build(cellcube, out, [studies["alpha"], studies["beta"], studies["gamma"]])
    return out


# --------------------------------------------------------------------------
# 1. correctness against the float64 reference
# --------------------------------------------------------------------------

# case id -> (inputs as [(NAME or None, study)], command-line options, reference options)
CASES = {
    "defaults": ([(None, n) for n in gen_studies.NAMES], [], {}),
    "groupby_stage": ([(None, n) for n in gen_studies.NAMES], ["--groupby", "stage"], {"groupby": ["stage"]}),
    "groupby_none": ([(None, "alpha"), (None, "gamma")], ["--groupby", ""], {"groupby": []}),
    "transform_log1p": ([(None, "alpha"), (None, "delta")], ["--transform", "log1p"], {"transform": "log1p"}),
    "transform_none": ([(None, "alpha"), (None, "beta")], ["--transform", "none"], {"transform": "none"}),
    "transform_cp10k": ([(None, "delta"), (None, "gamma")], ["--transform", "cp10k_log1p"],
                        {"transform": "cp10k_log1p"}),
    "matrix_X": ([(None, "beta"), (None, "gamma")], ["--matrix", "X"], {"matrix": "X"}),
    "matrix_raw": ([(None, "beta")], ["--matrix", "raw"], {"matrix": "raw"}),
    "cell_type_option": ([(None, "alpha")], ["--cell-type", "stage", "--groupby", "site,is_doublet"],
                         {"cell_type": "stage", "groupby": ["site", "is_doublet"]}),
    "named_inputs": ([("first", "gamma"), ("second", "alpha")], ["--groupby", "stage,is_doublet"], None),
}


def _expected_for_case(studies, case):
    inputs, _, ref_opts = CASES[case]
    exps = []
    for name, study in inputs:
        opts = dict(ref_opts or {})
        if ref_opts is None:  # named_inputs: alpha and gamma both have stage and is_doublet
            opts = {"groupby": ["stage", "is_doublet"]}
        exps.append(sr.expected_dataset(studies[study], name=name or study, **opts))
    return exps


def check_store_against(view, exps, rtol=1e-5):
    """Every problem of a store against the expected datasets (in input order)."""
    problems = list(view.h5_problems)
    names = [e.name for e in exps]
    if view.dataset_names != names:
        problems.append(f"uns/cellcube/datasets index {view.dataset_names}, want {names}")
    cats = list(view.adata.obs["dataset"].cat.categories) if "dataset" in view.adata.obs else None
    if cats != names:
        problems.append(f"obs dataset categories {cats}, want {names} (the datasets' order)")
    want_cols = ["dataset", "cell_type"]
    for e in exps:
        for c in e.columns[1:]:
            if c not in want_cols:
                want_cols.append(c)
    if sorted(view.columns) != sorted(want_cols):
        problems.append(f"grouping columns {view.columns}, want (in any order) {want_cols}")
    if view.columns[:2] != ["dataset", "cell_type"]:
        problems.append(f"obs columns must start with dataset, cell_type: {view.columns}")
    # genes: union in first-appearance order, symbols from the first dataset with one
    want_genes = list(dict.fromkeys(g for e in exps for g in e.gene_ids))
    if view.genes != want_genes:
        problems.append(f"var index: {len(view.genes)} genes, want {len(want_genes)} in first-appearance "
                        f"order; first difference at "
                        f"{next((i for i, (a, b) in enumerate(zip(view.genes, want_genes)) if a != b), min(len(view.genes), len(want_genes)))}")
    want_sym = sr.expected_symbols(exps)
    if view.symbols is None:
        problems.append("var has no 'symbol' column")
    else:
        bad = [(g, s, want_sym.get(g)) for g, s in zip(view.genes, view.symbols) if want_sym.get(g) != s]
        if bad:
            problems.append(f"var symbol differs for {len(bad)} genes, e.g. (gene, got, want) {bad[:3]}")
    for e in exps:
        problems += sr.compare_dataset(view, e, rtol=rtol)
    return problems


@pytest.mark.parametrize("case", list(CASES))
def test_build_matches_reference(cellcube, studies, full_store, tmp_path, case):
    inputs, opts, _ = CASES[case]
    if case == "defaults":
        out, proc = full_store
    else:
        out = tmp_path / "store.h5ad"
        args = [studies[s] if n is None else f"{n}={studies[s]}" for n, s in inputs]
        proc = build(cellcube, out, args, opts, quiet=False)
    exps = _expected_for_case(studies, case)
    view = sr.StoreView(out)
    fail_with(check_store_against(view, exps), f"store of case {case!r} disagrees with the reference", proc)
    # the transform auto chose is printed (docs/QUERY.md)
    if "--transform" not in opts:
        for e in exps:
            lines = [ln for ln in proc.stderr.splitlines() if e.name in ln and e.record["transform"] in ln]
            assert lines, (f"stderr should report the transform chosen for {e.name!r} "
                           f"({e.record['transform']})\n" + helpers.describe(proc))
    assert not tmp_leftovers(out.parent), tmp_leftovers(out.parent)


def test_reference_covers_the_contract(studies):
    """Self-check of the inputs: what test_build_matches_reference relies on is
    really in them (so a generator change cannot silently drop coverage)."""
    exps = {n: sr.expected_dataset(p) for n, p in studies.items()}
    assert {e.record["matrix"] for e in exps.values()} == {"X", "raw/X", "layers/counts"}
    assert {e.record["transform"] for e in exps.values()} == {"cp10k_log1p", "none"}
    assert exps["delta"].record["transform"] == "none"
    cols = [set(e.gene_ids) for e in exps.values()]
    union = set().union(*cols)
    assert all(c != union for c in cols), "every dataset should lack some gene"
    alpha = exps["alpha"]
    # docs/SCALING.md: the default leaves out the 250-value column and drops `site` (with it,
    # alpha's 1200 cells fall into 320 groups of 3.75 cells), so "defaults" checks both.
    assert alpha.record["groupby"].split(",") == ["stage", "is_doublet", "treated"]
    choice = sr.default_groupby_choice(sr._read(studies["alpha"]).obs, "cell_type")
    assert choice["identifier_like"] == [("many", 250)] and [d for d, _ in choice["dropped"]] == ["site"]
    assert any(None in k for k in alpha.keys), "an NA group"
    # `site` (grouped by explicitly in the cell_type_option case) has labels with ',' and '='
    site = reference.column_labels(sr._read(studies["alpha"]).obs["site"])
    assert any(l and "," in l for l in site) and any(l and "=" in l for l in site)
    for e in exps.values():
        assert (e.sum.sum(axis=0) == 0).any(), f"{e.name}: an all-zero gene"
    assert any(k.endswith("-1") for k in exps["gamma"].gene_ids), "a duplicated gene id"
    with h5py.File(studies["beta"], "r") as f:
        assert f["raw/var"]["_index"].shape[0] > f["var"]["_index"].shape[0]
    filters = set()
    for p in studies.values():
        for m in reference.h5_matrix_infos(p):
            filters.add(m["filter"].split("(")[0])
    assert filters == {"gzip", "lzf", "none"}


def test_build_negative_values(cellcube, tmp_path):
    """Scaled data (negative and positive floats): auto picks `none`, and an
    entry whose values are all negative is stored too (FORMAT.md), so sums stay
    exact; nnz counts only v > 0."""
    rng = np.random.default_rng(21)
    n, g = 300, 50
    d = np.where(rng.random((n, g)) < 0.4, rng.normal(0.0, 1.0, (n, g)), 0.0).astype(np.float32)
    d[:, 7] = 0
    p = _small_file(tmp_path / "scaled.h5ad", {"cell_type": _cat(["T", "B", "NK", "mono"]),
                                               "sample": _cat([f"s{k}" for k in range(8)])}, X=d)
    exp = sr.expected_dataset(p)
    assert exp.record["transform"] == "none"
    assert (exp.stored & (exp.nnz == 0)).any(), "the input should have all-negative (group, gene) entries"
    out = tmp_path / "s.h5ad"
    proc = build(cellcube, out, [p])
    fail_with(check_store_against(sr.StoreView(out), [exp]), "store of scaled data disagrees with the reference", proc)


def test_near_constant_group_var_and_std(cellcube, tmp_path):
    """var = (sumsq - sum^2/n)/(n-1) nearly cancels when a group's cells carry nearly
    the same value: the store's float64 sums keep var and std within docs/QUERY.md's
    tolerance of numpy's float64 (float32 sums gave var < 0 -> 0 and std 0 here)."""
    values = {"pair": [5.0, 5.001], "trio": [7.25, 7.2501, 7.2502], "same": [3.3] * 40,
              "wide": [0.0, 1.0, 8.0, 2.5]}
    labels = [k for k, v in values.items() for _ in v]
    X = np.zeros((len(labels), 3), dtype=np.float64)
    X[:, 0] = [x for v in values.values() for x in v]
    X[:, 1] = 1.0
    import anndata

    obs = pd.DataFrame({"cell_type": pd.Categorical(labels)}, index=[f"c{i}" for i in range(len(labels))])
    var = pd.DataFrame(index=["NEAR", "ONE", "ZERO"])
    p = tmp_path / "near.h5ad"
    anndata.AnnData(X=X, obs=obs, var=var, dtype=X.dtype).write_h5ad(p)  # float64 values
    out = tmp_path / "near_store.h5ad"
    run_ok([cellcube, "build", "-o", out, "--quiet", "--transform", "none", "--groupby", "", p])
    rows = json.loads(run_ok([cellcube, "query", out, "--genes", "NEAR", "--by", "cell_type",
                              "--metrics", "n_cells,mean,var,std", "--format", "json"]).stdout)
    assert sorted(r["cell_type"] for r in rows) == sorted(values)
    for r in rows:
        v = np.array(values[r["cell_type"]], dtype=np.float64)
        assert r["n_cells"] == len(v)
        assert math.isclose(r["mean"], v.mean(), rel_tol=1e-5), r
        for metric, want in (("var", v.var(ddof=1)), ("std", v.std(ddof=1))):
            assert math.isclose(r[metric], want, rel_tol=1e-4, abs_tol=1e-6), (metric, r, want)


def test_group_rows_sorted_by_codes(full_store):
    """FORMAT.md: a dataset's groups are consecutive rows sorted by its input's
    codes, missing values last; for the first dataset these are the store's codes."""
    out, _ = full_store
    view = sr.StoreView(out)
    fail_with(sr.ordering_problems(view), "group rows are not in the documented order")


def test_max_groups_is_per_dataset(cellcube, studies, tmp_path):
    """--max-groups bounds the groups of one dataset, not of the store."""
    exps = [sr.expected_dataset(studies[n]) for n in ("alpha", "gamma")]
    per = max(len(e.keys) for e in exps)
    assert sum(len(e.keys) for e in exps) > per
    out = tmp_path / "s.h5ad"
    build(cellcube, out, [studies["alpha"], studies["gamma"]], ["--max-groups", str(per)])
    view = sr.StoreView(out)
    assert len(view.n_cells) == sum(len(e.keys) for e in exps)
    proc = run([cellcube, "build", "-o", tmp_path / "t.h5ad", "--quiet", "--max-groups", str(per - 1),
                studies["alpha"], studies["gamma"]])
    helpers.assert_error(proc, code=1)
    assert not (tmp_path / "t.h5ad").exists()


# --------------------------------------------------------------------------
# 2. layout
# --------------------------------------------------------------------------


def _attr(obj, key):
    v = obj.attrs.get(key)
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray) and v.dtype.kind in "OSU":
        return [x.decode() if isinstance(x, bytes) else str(x) for x in v]
    return v


def _smallest_code_dtype(n_categories):
    for dt in (np.int8, np.int16, np.int32):
        if n_categories < np.iinfo(dt).max:
            return np.dtype(dt).name
    return "int64"


def layout_problems(path) -> list:
    """What in the store at `path` differs from docs/FORMAT.md, as one line each."""
    import anndata

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = anndata.read_h5ad(str(path))
    except Exception as e:  # noqa: BLE001
        return [f"anndata.read_h5ad fails: {type(e).__name__}: {e}"]
    P = _anndata_layer_problems(a)
    with h5py.File(path, "r") as f:
        P += _hdf5_layer_problems(a, f)
        P += _entry_problems(a, f)
        P += _in_place_problems(path, f)
        P += _obs_var_problems(a, f)
        P += _uns_problems(a, f)
    return P


def _anndata_layer_problems(a) -> list:
    P = []
    if a.X is not None:
        P.append("the store has an X (FORMAT.md: there is no X)")
    for k in ("nnz", "sum", "m2"):
        if k not in a.layers:
            P.append(f"layers/{k} missing")
            continue
        m = a.layers[k]
        if not sp.isspmatrix_csc(m):
            P.append(f"layers/{k} reads as {type(m).__name__}, not CSC")
        if m.shape != (a.n_obs, a.n_vars):
            P.append(f"layers/{k} shape {m.shape} != (groups, genes) {(a.n_obs, a.n_vars)}")
    return P


def _hdf5_layer_problems(a, f) -> list:
    """Root attributes, the layers' encodings and dtypes, and their shared indices."""
    P = []
    # FORMAT.md: nnz uint16 when every group has < 65,536 cells, sum float64, m2 float32.
    narrow = int(a.obs["n_cells"].max()) < 65536
    want_data = {"nnz": "uint16" if narrow else "uint32", "sum": "float64", "m2": "float32"}
    if _attr(f, "encoding-type") != "anndata" or _attr(f, "encoding-version") != "0.1.0":
        P.append(f"root attrs {dict(f.attrs)}")
    for g in ("obsm", "varm", "obsp", "varp"):
        if g not in f:
            P.append(f"/{g} missing")
    addrs = {}
    for k in ("nnz", "sum", "m2"):
        g = f["layers"][k]
        if _attr(g, "encoding-type") != "csc_matrix" or _attr(g, "encoding-version") != "0.1.0":
            P.append(f"layers/{k} encoding attrs {dict(g.attrs)}")
        if list(np.asarray(g.attrs.get("shape", []))) != [a.n_obs, a.n_vars]:
            P.append(f"layers/{k} shape attr {g.attrs.get('shape')}")
        if g["data"].dtype.name != want_data[k]:
            P.append(f"layers/{k}/data dtype {g['data'].dtype}, want {want_data[k]}")
        if g["indices"].dtype != g["indptr"].dtype:
            P.append(f"layers/{k}: indices {g['indices'].dtype} and indptr {g['indptr'].dtype} differ")
        if g["indices"].dtype.name != "int32":
            P.append(f"layers/{k}/indices dtype {g['indices'].dtype}: a small store uses int32")
        for part in ("indices", "indptr"):
            info = h5py.h5o.get_info(g[part].id)
            addrs.setdefault(part, set()).add(info.addr)
            if info.rc < 3:
                P.append(f"layers/{k}/{part}: link count {info.rc}, want >= 3 (one object, hard-linked)")
    for part, s in addrs.items():
        if len(s) != 1:
            P.append(f"layers/*/{part} are {len(s)} different objects, want one shared object")
    return P


def _entry_problems(a, f) -> list:
    """indptr, ascending groups in range, no zero nnz, nnz at most the group's cells."""
    P = []
    nnz = f["layers/nnz"]
    ind, ptr, dat = nnz["indices"][:], nnz["indptr"][:], nnz["data"][:]
    if len(ptr) != a.n_vars + 1 or ptr[0] != 0 or ptr[-1] != len(ind) or np.any(np.diff(ptr) < 0):
        P.append("layers/nnz/indptr is not a valid CSC indptr")
    else:
        for j in range(a.n_vars):
            seg = ind[ptr[j]:ptr[j + 1]]
            if len(seg) and (np.any(np.diff(seg) <= 0) or seg[0] < 0 or seg[-1] >= a.n_obs):
                P.append(f"gene {j}: group indices not ascending / in range")
                break
    if len(dat) and dat.min() == 0:
        P.append("an entry with nnz = 0 is stored (the inputs are non-negative: only nnz > 0)")
    ncell = a.obs["n_cells"].to_numpy()
    if len(dat) and np.any(dat > ncell[ind]):
        P.append("an entry's nnz exceeds its group's n_cells")
    return P


def _in_place_problems(path, f) -> list:
    """Every numeric dataset: contiguous, uncompressed, little-endian, mappable in place."""
    P = []
    numeric = []
    f.visititems(lambda name, obj: numeric.append(name)
                 if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "iuf" else None)
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        for name in numeric:
            ds = f[name]
            dcpl = ds.id.get_create_plist()
            if ds.chunks is not None or dcpl.get_layout() != h5py.h5d.CONTIGUOUS:
                P.append(f"{name}: not contiguous (chunks {ds.chunks})")
            if ds.compression is not None or dcpl.get_nfilters() != 0:
                P.append(f"{name}: has filters ({ds.compression})")
            if ds.id.get_type().get_order() != h5py.h5t.ORDER_LE:
                P.append(f"{name}: not little-endian")
            if ds.size == 0 or ds.shape == ():
                continue
            off = ds.id.get_offset()
            if off is None:
                P.append(f"{name}: no file offset (not allocated contiguously)")
                continue
            nbytes = ds.size * ds.dtype.itemsize
            inplace = np.frombuffer(mm[off:off + nbytes], dtype=ds.dtype.newbyteorder("<"))
            if not np.array_equal(inplace, ds[()].ravel()):
                P.append(f"{name}: bytes at H5Dget_offset {off} (+{nbytes}) are not its values")
    return P


def _obs_var_problems(a, f) -> list:
    P = []
    obs = f["obs"]
    if _attr(obs, "encoding-type") != "dataframe" or _attr(obs, "encoding-version") != "0.2.0":
        P.append(f"obs encoding attrs {dict(obs.attrs)}")
    if _attr(obs, "_index") != "_index":
        P.append(f"obs _index attr {_attr(obs, '_index')!r}")
    order = _attr(obs, "column-order") or []
    if order[:2] != ["dataset", "cell_type"] or order[-1:] != ["n_cells"]:
        P.append(f"obs column-order {order}: want dataset, cell_type, group-by columns..., n_cells")
    idx = [x.decode() if isinstance(x, bytes) else x for x in obs["_index"][:]]
    if idx != [str(i) for i in range(a.n_obs)]:
        P.append("obs _index is not '0', '1', ...")
    for c in order:
        if c == "n_cells":
            if obs[c].dtype.name != "int64":
                P.append(f"obs/n_cells dtype {obs[c].dtype}")
            continue
        g = obs[c]
        if not isinstance(g, h5py.Group) or _attr(g, "encoding-type") != "categorical":
            P.append(f"obs/{c} is not categorical")
            continue
        want = _smallest_code_dtype(g["categories"].shape[0])
        if g["codes"].dtype.name != want:
            P.append(f"obs/{c}/codes dtype {g['codes'].dtype}, want the smallest: {want}")
    # var
    var = f["var"]
    if _attr(var, "_index") != "_index" or "symbol" not in var:
        P.append(f"var: _index attr {_attr(var, '_index')!r}, columns {list(var)}")
    return P


def _uns_problems(a, f) -> list:
    """uns/cellcube: format, the datasets table, the measured bits; per dataset, cells
    and groups add up."""
    P = []
    u = f["uns/cellcube"]
    fmt = u["format"][()]
    fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
    ver = u["format_version"][()]
    ver = ver.decode() if isinstance(ver, bytes) else ver
    cb = u["created_by"][()]
    cb = cb.decode() if isinstance(cb, bytes) else cb
    if fmt != "cellcube store" or ver != "3" or not str(cb).startswith("cellcube "):
        P.append(f"uns/cellcube format {fmt!r}, format_version {ver!r}, created_by {cb!r}")
    if _attr(u["datasets"], "encoding-type") != "dataframe":
        P.append("uns/cellcube/datasets is not a dataframe")
    ds_df = a.uns["cellcube"]["datasets"]
    bits = u["measured"]
    want_shape = (len(ds_df), 8 * ((a.n_vars + 63) // 64))
    if bits.dtype.name != "uint8" or bits.shape != want_shape:
        P.append(f"uns/cellcube/measured {bits.dtype} {bits.shape}, want uint8 {want_shape}")
    else:
        flags = np.unpackbits(bits[:], axis=1, bitorder="little")
        if flags[:, a.n_vars:].any():
            P.append("uns/cellcube/measured marks genes beyond the last")
        for d in range(len(ds_df)):
            if int(ds_df["n_genes"].iloc[d]) != int(flags[d].sum()):
                P.append(f"datasets.n_genes of dataset {d} = {ds_df['n_genes'].iloc[d]}, "
                         f"measured {int(flags[d].sum())}")
    for c in sr.DATASET_COLUMNS:
        if c not in ds_df.columns:
            P.append(f"uns/cellcube/datasets lacks column {c!r}")
    cats = list(a.obs["dataset"].cat.categories)
    if cats != [str(x) for x in ds_df.index]:
        P.append(f"dataset categories {cats} != uns/cellcube/datasets index {list(ds_df.index)}")
    # per dataset: cells and groups add up
    for name in ds_df.index:
        rows = (a.obs["dataset"] == name).to_numpy()
        if int(a.obs["n_cells"][rows].sum()) != int(ds_df.loc[name, "n_cells"]):
            P.append(f"{name}: obs n_cells sum {a.obs['n_cells'][rows].sum()} != datasets.n_cells "
                     f"{ds_df.loc[name, 'n_cells']}")
        if int(rows.sum()) != int(ds_df.loc[name, "n_groups"]):
            P.append(f"{name}: {rows.sum()} group rows != datasets.n_groups {ds_df.loc[name, 'n_groups']}")
    return P


def test_store_layout(full_store, studies):
    out, _ = full_store
    fail_with(layout_problems(out), f"layout of {out.name} differs from FORMAT.md")
    # provenance matches the inputs (also checked per case; here explicitly)
    view = sr.StoreView(out)
    for name, path in studies.items():
        rec = view.record(name)
        st = os.stat(path)
        assert rec["source"] == str(path)
        assert rec["source_size"] == st.st_size and rec["source_mtime"] == int(st.st_mtime), rec


# --------------------------------------------------------------------------
# 3. add / remove / merge
# --------------------------------------------------------------------------


def test_add_equals_direct_build(cellcube, studies, trio, tmp_path):
    a = tmp_path / "a.h5ad"
    build(cellcube, a, [studies["alpha"], studies["beta"]])
    run_ok([cellcube, "add", a, "--quiet", studies["gamma"]])
    got, want = sr.StoreView(a), sr.StoreView(trio)
    fail_with(got.h5_problems + layout_problems(a), "store after add")
    fail_with(sr.compare_digests(sr.digest(got), sr.digest(want)), "add alpha+beta then gamma != build of all three")
    assert got.dataset_names == ["alpha", "beta", "gamma"]
    assert not tmp_leftovers(tmp_path)


def test_build_from_a_folder(cellcube, studies, tmp_path):
    """A folder stands for the .h5ad files directly in it, in name order: the same
    store as naming them (other files and subfolders are ignored)."""
    folder = tmp_path / "study"
    (folder / "nested").mkdir(parents=True)
    for n in ("gamma", "alpha", "beta"):
        shutil.copyfile(studies[n], folder / f"{n}.h5ad")
    shutil.copyfile(studies["delta"], folder / "nested" / "delta.h5ad")
    (folder / "README.txt").write_text("not a dataset")
    out = tmp_path / "from_folder.h5ad"
    run_ok([cellcube, "build", "-o", out, "--quiet", folder])
    files = tmp_path / "from_files.h5ad"
    run_ok([cellcube, "build", "-o", files, "--quiet", *(folder / f"{n}.h5ad" for n in ("alpha", "beta", "gamma"))])
    got = sr.StoreView(out)
    assert got.dataset_names == ["alpha", "beta", "gamma"]
    fail_with(sr.compare_digests(sr.digest(got), sr.digest(sr.StoreView(files))), "folder build != file build")
    # add takes folders too; an empty folder and NAME=FOLDER are refused
    more = tmp_path / "more"
    more.mkdir()
    shutil.copyfile(studies["delta"], more / "delta.h5ad")
    run_ok([cellcube, "add", out, "--quiet", more])
    assert sr.StoreView(out).dataset_names == ["alpha", "beta", "gamma", "delta"]
    empty = tmp_path / "empty"
    empty.mkdir()
    helpers.assert_error(run([cellcube, "build", "-o", tmp_path / "x.h5ad", empty]), mentions=["no .h5ad", "empty"])
    helpers.assert_error(run([cellcube, "build", "-o", tmp_path / "x.h5ad", f"name={folder}"]), code=2,
                         mentions=["folder"])
    assert not (tmp_path / "x.h5ad").exists()


def test_remove_equals_direct_build(cellcube, studies, trio, tmp_path):
    r = tmp_path / "r.h5ad"
    shutil.copyfile(trio, r)
    before = sr.StoreView(r)
    run_ok([cellcube, "remove", r, "beta"])
    direct = tmp_path / "direct.h5ad"
    build(cellcube, direct, [studies["alpha"], studies["gamma"]])
    got, want = sr.StoreView(r), sr.StoreView(direct)
    fail_with(got.h5_problems + layout_problems(r), "store after remove")
    fail_with(sr.compare_digests(sr.digest(got), sr.digest(want)), "remove beta from the trio != build of alpha+gamma")
    # spelled out: genes and columns only beta had are gone
    only_beta = set(before.measured["beta"]) - set(before.measured["alpha"]) - set(before.measured["gamma"])
    assert only_beta and not only_beta & set(got.genes), "genes only beta measured must disappear"
    beta_cols = set(sr.expected_dataset(studies["beta"]).columns)
    others = set(sr.expected_dataset(studies["alpha"]).columns) | set(sr.expected_dataset(studies["gamma"]).columns)
    gone = beta_cols - others
    assert gone and not gone & set(got.columns), f"columns only beta had ({gone}) must disappear: {got.columns}"
    assert not tmp_leftovers(tmp_path)


def test_merge_equals_direct_build(cellcube, studies, trio, tmp_path):
    shards = []
    for n in ("alpha", "beta", "gamma"):
        s = tmp_path / f"shard_{n}.h5ad"
        build(cellcube, s, [studies[n]])
        shards.append(s)
    m = tmp_path / "merged.h5ad"
    run_ok([cellcube, "merge", "-o", m, *shards])
    got, want = sr.StoreView(m), sr.StoreView(trio)
    fail_with(got.h5_problems + layout_problems(m), "merged store")
    fail_with(sr.compare_digests(sr.digest(got), sr.digest(want)), "merge of three shards != build of all three")
    assert not tmp_leftovers(tmp_path)


def test_merge_overlapping_datasets_fails(cellcube, studies, tmp_path):
    ab, b = tmp_path / "ab.h5ad", tmp_path / "b.h5ad"
    build(cellcube, ab, [studies["alpha"], studies["beta"]])
    build(cellcube, b, [studies["beta"]])
    m = tmp_path / "m.h5ad"
    proc = run([cellcube, "merge", "-o", m, ab, b])
    helpers.assert_error(proc, code=1, mentions=["beta"])
    assert not m.exists() and not tmp_leftovers(tmp_path)


def test_add_existing_name_fails(cellcube, studies, tmp_path):
    a = tmp_path / "a.h5ad"
    build(cellcube, a, [studies["alpha"], studies["beta"]])
    before = file_bytes(a)
    proc = run([cellcube, "add", a, studies["gamma"], studies["alpha"]])
    helpers.assert_error(proc, code=1, mentions=["alpha"])
    assert file_bytes(a) == before, "a failed add must leave the store untouched"
    assert not tmp_leftovers(tmp_path)


def test_remove_unknown_dataset_suggests(cellcube, studies, tmp_path):
    a = tmp_path / "a.h5ad"
    build(cellcube, a, [studies["alpha"], studies["beta"]])
    before = file_bytes(a)
    proc = run([cellcube, "remove", a, "alpah"])
    line = helpers.assert_error(proc, code=1, mentions=["alpah"])
    assert "alpha" in line.replace("alpah", ""), "the error should suggest 'alpha'\n" + helpers.describe(proc)
    proc = run([cellcube, "remove", a, "beta", "nosuchdataset"])
    helpers.assert_error(proc, code=1, mentions=["nosuchdataset"])
    assert file_bytes(a) == before, "a failed remove must leave the store untouched"
    assert not tmp_leftovers(tmp_path)


def test_add_does_not_reread_other_sources(cellcube, studies, trio, tmp_path):
    """After the build, alpha's source file is gone: add still works, and
    alpha's (and beta's) groups, stats and provenance are unchanged."""
    src = tmp_path / "src"
    src.mkdir()
    alpha = src / "alpha.h5ad"
    shutil.copyfile(studies["alpha"], alpha)
    os.utime(alpha, ns=(os.stat(studies["alpha"]).st_atime_ns, os.stat(studies["alpha"]).st_mtime_ns))
    a = tmp_path / "a.h5ad"
    build(cellcube, a, [alpha, studies["beta"]])
    before = sr.digest(sr.StoreView(a))
    alpha.unlink()
    run_ok([cellcube, "add", a, "--quiet", studies["gamma"]])
    after = sr.digest(sr.StoreView(a))
    fail_with(sr.compare_digests(sr.restrict(after, ["alpha", "beta"]), sr.restrict(before, ["alpha", "beta"]),
                                 rtol=0), "alpha/beta changed by add")
    # and the whole store equals the direct build, up to alpha's source path
    fail_with(sr.compare_digests(after, sr.digest(sr.StoreView(trio)), ignore_record_fields=("source",)),
              "add with alpha's source deleted != direct build")
    assert after["datasets"]["alpha"]["source"] == str(alpha)


# --------------------------------------------------------------------------
# 4. info
# --------------------------------------------------------------------------


def test_info_json(cellcube, full_store):
    out, _ = full_store
    got = helpers.run_json([cellcube, "info", out, "--json"])
    view = sr.StoreView(out)
    P = []
    if got.get("size_bytes") != os.path.getsize(out):
        P.append(f"size_bytes {got.get('size_bytes')} != {os.path.getsize(out)}")
    n_entries = int(view.layers["nnz"].nnz)
    for k, w in (("n_datasets", len(view.dataset_names)), ("n_cells", int(view.n_cells.sum())),
                 ("n_groups", len(view.n_cells)), ("n_genes", len(view.genes)), ("n_entries", n_entries)):
        if got.get(k) != w:
            P.append(f"{k}: got {got.get(k)!r} want {w!r}")
    if str(got.get("format_version")) != "3":
        P.append(f"format_version {got.get('format_version')!r}")
    bpe = got.get("bytes_per_entry")
    if not isinstance(bpe, (int, float)) or abs(bpe - os.path.getsize(out) / n_entries) > 1e-6 * bpe + 0.051:
        P.append(f"bytes_per_entry {bpe!r}, want size/entries = {os.path.getsize(out) / n_entries:.3f}")
    ds = got.get("datasets") or []
    if [d.get("name") for d in ds] != view.dataset_names:
        P.append(f"datasets {[d.get('name') for d in ds]} want {view.dataset_names}")
    for d in ds:
        if d.get("name") not in view.dataset_names:
            continue
        rec = view.record(d["name"])
        for k in ("n_cells", "n_groups", "n_genes", "transform", "source", "matrix", "source_size",
                  "source_mtime", "cell_type_column", "gene_symbols_column"):
            if d.get(k) != rec[k]:
                P.append(f"datasets[{d['name']}].{k}: got {d.get(k)!r}, store says {rec[k]!r}")
        gb = d.get("groupby")
        gb = ",".join(gb) if isinstance(gb, list) else gb
        if gb != rec["groupby"]:
            P.append(f"datasets[{d['name']}].groupby: got {d.get('groupby')!r}, store says {rec['groupby']!r}")
    total = int(view.n_cells.sum())
    cols = {c.get("name"): c for c in got.get("columns") or []}
    if sorted(cols) != sorted(view.columns):
        P.append(f"columns {sorted(cols)} want {sorted(view.columns)}")
    for c in view.columns:
        if c not in cols:
            continue
        want = {}
        for lab, n in zip(view.labels[c], view.n_cells):
            want["NA" if lab is None else lab] = want.get("NA" if lab is None else lab, 0) + int(n)
        values = {v.get("value"): v.get("n_cells") for v in cols[c].get("values") or []}
        cats = set(view.adata.obs[c].cat.categories)
        for lab, n in want.items():
            if values.get(lab) != n:
                P.append(f"column {c!r} value {lab!r}: got {values.get(lab)!r} cells want {n}")
        for lab, n in values.items():
            if lab not in want and (n != 0 or lab not in cats):
                P.append(f"column {c!r}: value {lab!r} with {n} cells is not in the store")
        if sum(int(n) for n in values.values() if isinstance(n, int)) != total:
            P.append(f"column {c!r}: cell counts sum to {sum(values.values())}, want {total}")
    fail_with(P, "info --json disagrees with the store")


def test_info_plain(cellcube, full_store):
    out, _ = full_store
    proc = run_ok([cellcube, "info", out])
    view = sr.StoreView(out)
    assert proc.stdout.strip() and not proc.stderr.strip(), helpers.describe(proc)
    for name in view.dataset_names:
        assert name in proc.stdout, f"plain info should list dataset {name!r}\n" + helpers.describe(proc)
    # Issue 23: the datasets' tables fit in 120 columns (one table with the source path
    # as its last column was 245 wide); the sources follow, one "dataset: path" a line,
    # as info --json records them.
    info = json.loads(run_ok([cellcube, "info", out, "--json"]).stdout)
    head, sizes, used, rest = proc.stdout.split("\n\n", 3)
    sources, _ = rest.split("\n\ncolumns\n", 1)
    for table in (sizes, used):
        lines = table.splitlines()
        assert len(lines) == 2 + len(info["datasets"]), table
        assert lines[0].split()[0] == "dataset" and "source" not in lines[0], table
        assert [ln.split()[0] for ln in lines[2:]] == [d["name"] for d in info["datasets"]]
        assert all(len(line) <= 120 for line in lines), table
    assert all(len(line) <= 100 for line in head.splitlines()[1:]), head
    for row, d in zip(used.splitlines()[2:], info["datasets"]):
        assert row.split() == [d["name"], d["cell_type_column"], d["gene_symbols_column"] or "-",
                               ",".join(d["groupby"]) or "-"], (row, d)
    assert sources.splitlines() == ["sources"] + [f"  {d['name']}: {d['source']}"
                                                  for d in info["datasets"]], sources
    # The columns section: wrapped at 100 characters, each value (the first 12 of a
    # column) with its cell count, as info --json counts them.
    listing = proc.stdout.split("\ncolumns\n", 1)[1]
    assert all(len(line) <= 100 for line in listing.splitlines()), listing
    flat = " ".join(listing.split())
    for column in json.loads(run_ok([cellcube, "info", out, "--json"]).stdout)["columns"]:
        assert f"{column['name']} (" in flat
        for v in [v for v in column["values"] if v["value"] != "NA"][:12]:
            assert f"{v['value']} [{v['n_cells']:,}]" in flat, (column["name"], v)


# --------------------------------------------------------------------------
# 5. bad inputs for build
# --------------------------------------------------------------------------


def assert_build_fails(cellcube, tmp_path, inputs, opts=(), code=1, quiet=True, **kw):
    outdir = tmp_path / "out"
    outdir.mkdir(exist_ok=True)
    out = outdir / "store.h5ad"
    args = [cellcube, "build", "-o", out, *opts] + (["--quiet"] if quiet else []) + [str(i) for i in inputs]
    proc = run(args)
    line = helpers.assert_error(proc, code=code, **kw)
    assert not out.exists(), "a failed build must not leave a store\n" + helpers.describe(proc)
    left = tmp_leftovers(outdir)
    assert not left, f"a failed build left temporary files {left}\n" + helpers.describe(proc)
    return line, proc


def _write_base(path, encoding="csr", **kw):
    from test_bad_input import write_base

    return write_base(path, encoding, **kw)


def _damage(kind, tmp_path):
    """(path, assert_error keyword arguments) of one broken input, made the
    way test_bad_input.py makes them."""
    if kind == "missing":
        p = tmp_path / "does_not_exist.h5ad"
        return p, {"mentions": [p.name]}
    if kind == "directory":
        p = tmp_path / "a_directory.h5ad"
        p.mkdir()
        return p, {"mentions": [p.name]}
    if kind == "not_hdf5":
        p = tmp_path / "text_file.h5ad"
        p.write_text("cell,gene,count\nAAAC,CD3E,4\n" * 100)
        return p, {"mentions": [p.name]}
    if kind == "not_anndata":
        p = tmp_path / "plain.h5"
        with h5py.File(p, "w") as f:
            f.create_dataset("matrix", data=np.arange(12.0).reshape(3, 4))
        return p, {"any_of": ["obs", "anndata"]}
    if kind == "truncated":
        from test_bad_input import _largest_real_gzip_file

        src = _largest_real_gzip_file()
        assert src is not None, "no real file with a gzip X in the shared data dir"
        p = tmp_path / ("truncated_" + src.name)
        shutil.copyfile(src, p)
        with open(p, "r+b") as fh:
            fh.truncate(src.stat().st_size // 2)
        return p, {"mentions": [p.name]}
    if kind == "x_rows":
        p = _write_base(tmp_path / "rows.h5ad", "dense")
        with h5py.File(p, "r+") as f:
            x = f["X"][:]
            attrs = dict(f["X"].attrs)
            del f["X"]
            ds = f.create_dataset("X", data=np.vstack([x, x[:1]]))
            for k, v in attrs.items():
                ds.attrs[k] = v
            n = ds.shape[0]
        return p, {"patterns": [r"\bX\b"], "any_of": [str(n), "shape"]}
    if kind == "x_cols":
        p = _write_base(tmp_path / "cols.h5ad", "csr")
        with h5py.File(p, "r+") as f:
            n_obs, n_vars = (int(x) for x in f["X"].attrs["shape"])
            f["X"].attrs["shape"] = np.array([n_obs, n_vars - 1], dtype=np.int64)
        return p, {"patterns": [r"\bX\b"], "any_of": [str(n_vars - 1), "shape"]}
    if kind == "indptr":
        p = _write_base(tmp_path / "indptr.h5ad", "csr")
        with h5py.File(p, "r+") as f:
            ip = f["X/indptr"][:]
            i = len(ip) // 2
            ip[i] = ip[i + 1] + 1
            f["X/indptr"][...] = ip
        return p, {"mentions": ["indptr"]}
    if kind in ("indices_too_large", "indices_negative"):
        p = _write_base(tmp_path / f"{kind}.h5ad", "csr")
        with h5py.File(p, "r+") as f:
            idx = f["X/indices"][:]
            n_vars = int(f["X"].attrs["shape"][1])
            idx[len(idx) // 3] = n_vars if kind == "indices_too_large" else -3
            f["X/indices"][...] = idx
        return p, {"any_of": ["indices", "index"]}
    if kind == "unknown_encoding":
        p = _write_base(tmp_path / "foo.h5ad", "csr")
        with h5py.File(p, "r+") as f:
            f["X"].attrs["encoding-type"] = "foo_matrix"
        return p, {"mentions": ["foo_matrix"]}
    if kind == "undecodable_filter":
        p = _write_base(tmp_path / "filter.h5ad", "csr")
        with h5py.File(p, "r+") as f:
            n = f["X/data"].shape[0]
            del f["X/data"]
            ds = f.create_dataset("X/data", shape=(n,), dtype="f4", chunks=(256,), compression=32001,
                                  allow_unknown_filter=True)
            for start in range(0, n, 256):
                ds.id.write_direct_chunk((start,), b"\x02\x01junk, not a blosc frame" * 4)
        return p, {"any_of": ["filter", "32001"]}
    raise KeyError(kind)


READER_DAMAGE = ["missing", "directory", "not_hdf5", "not_anndata", "truncated", "x_rows", "x_cols", "indptr",
                 "indices_too_large", "indices_negative", "unknown_encoding", "undecodable_filter"]


@pytest.mark.parametrize("kind", READER_DAMAGE)
def test_build_bad_reader_input(cellcube, studies, data_dir, tmp_path, kind):
    path, kw = _damage(kind, tmp_path)
    assert_build_fails(cellcube, tmp_path, [path], **kw)
    # also next to a good input, and over an existing store that must survive
    existing = tmp_path / "existing.h5ad"
    build(cellcube, existing, [studies["delta"]])
    before = file_bytes(existing)
    proc = run([cellcube, "build", "-o", existing, "--quiet", studies["alpha"], path])
    helpers.assert_error(proc, code=1, **kw)
    assert file_bytes(existing) == before, "a failed build must leave the previous store untouched"
    assert not tmp_leftovers(tmp_path), tmp_leftovers(tmp_path)


def _small_file(path, obs_columns, n_obs=80, n_vars=30, seed=3, X=None, encoding="csr"):
    """A small anndata file with counts and the given obs columns
    ({name: callable(rng, n) -> values})."""
    import anndata

    rng = np.random.default_rng(seed)
    if X is None:
        X = gen_anndata.encode(gen_anndata.make_counts(rng, n_obs, n_vars).astype(np.float32), encoding, rng)
    n_obs, n_vars = X.shape
    obs = pd.DataFrame({k: f(rng, n_obs) for k, f in obs_columns.items()},
                       index=[f"cell_{i:04d}-{rng.integers(100, 999)}" for i in range(n_obs)])
    var = pd.DataFrame(index=gen_studies.gene_ids(range(n_vars)))
    anndata.AnnData(X=X, obs=obs, var=var, dtype=X.dtype).write_h5ad(path)
    return Path(path)


def _cat(values):
    return lambda rng, n: pd.Categorical(rng.choice(values, n))


def test_build_max_groups_exceeded(cellcube, tmp_path):
    p = _small_file(tmp_path / "wide.h5ad", {
        "cell_type": _cat(["T", "B", "NK"]),
        "patient": _cat([f"P{k}" for k in range(9)]),
        "sex": _cat(["female", "male"]),
    })
    obs = sr._read(p).obs
    most = max(["cell_type", "patient", "sex"], key=lambda c: obs[c].nunique())
    assert most == "patient"
    # explicit: on these 80 cells the default (docs/SCALING.md) would drop patient itself
    assert_build_fails(cellcube, tmp_path, [p], ["--max-groups", "2", "--groupby", "patient,sex"],
                       mentions=[most])


def test_build_unknown_cell_type_column(cellcube, studies, tmp_path):
    line, proc = assert_build_fails(cellcube, tmp_path, [studies["alpha"]], ["--cell-type", "cell_typ"],
                                    mentions=["cell_typ"])
    assert "cell_type" in line.replace("cell_typ ", "").replace("'cell_typ'", ""), (
        "the error should suggest 'cell_type'\n" + helpers.describe(proc))
    assert_build_fails(cellcube, tmp_path, [studies["alpha"]], ["--cell-type", "nosuch"], mentions=["nosuch"])


def test_build_cell_type_and_symbol_candidates_per_file(cellcube, studies, trio, tmp_path):
    """docs/BUILD.md: a comma list to --cell-type / --gene-symbols is a list of candidates;
    each file uses the first it has, and info records each dataset's choice. alpha,
    beta and gamma name both columns differently, so one command builds them, with the
    same statistics as the default build (which finds the same columns)."""
    out = tmp_path / "cands.h5ad"
    build(cellcube, out, [studies["alpha"], studies["beta"], studies["gamma"]],
          ["--cell-type", "cell_ontology_class,celltype,cell_type",
           "--gene-symbols", "symbol,gene_symbols,feature_name"])
    info = helpers.run_json([cellcube, "info", out, "--json"])
    chosen = {d["name"]: (d["cell_type_column"], d["gene_symbols_column"]) for d in info["datasets"]}
    assert chosen == {"alpha": ("cell_type", "feature_name"), "beta": ("celltype", "gene_symbols"),
                      "gamma": ("cell_ontology_class", "symbol")}, chosen
    import h5py

    with h5py.File(trio, "r") as f:
        ids = [x.decode() for x in f["var"]["_index"][:]]
    q = ["--by", "dataset,cell_type", "--metrics", "n_cells,nnz,sum,var", "--format", "csv",
         "--genes", ",".join(ids[::9])]
    got = run_ok([cellcube, "query", out, *q]).stdout
    assert got.count("\n") > 20 and got == run_ok([cellcube, "query", trio, *q]).stdout
    # None of the candidates: one error naming them all.
    line, _ = assert_build_fails(cellcube, tmp_path, [studies["delta"]], ["--gene-symbols", "symbol,feature_name"],
                                 mentions=["'symbol'", "'feature_name'", "--gene-symbols"])
    line, _ = assert_build_fails(cellcube, tmp_path, [studies["alpha"]], ["--cell-type", "nope,nada"],
                                 mentions=["'nope'", "'nada'", "--cell-type"])


def test_build_unknown_groupby_column(cellcube, studies, tmp_path):
    assert_build_fails(cellcube, tmp_path, [studies["alpha"]], ["--groupby", "stage,nosuchcol"],
                       mentions=["nosuchcol"])


def test_build_no_cell_type_candidate(cellcube, tmp_path):
    p = _small_file(tmp_path / "nocelltype.h5ad", {"cluster": _cat(["a", "b"]), "sample": _cat(["s1", "s2"])})
    # one error, its lists of the defaults and the obs columns on indented lines
    assert_build_fails(cellcube, tmp_path, [p], any_of=["--cell-type", "cell type", "cell-type"],
                       mentions=["'cluster', 'sample'", "'leiden', 'louvain'"], continued=True)


def _file_with_bad_value(tmp_path, name, value, encoding, dtype=np.float32):
    """A file whose X holds `value` at a (cell, gene) that is not the first
    stored value of its row or column; returns (path, cell id, gene id)."""
    import anndata

    rng = np.random.default_rng(11)
    d = gen_anndata.make_counts(rng, 60, 40).astype(np.float64)
    nz_per_row = (d != 0).sum(axis=1)
    r = int(np.nonzero(nz_per_row >= 4)[0][5])
    c = int(np.nonzero(d[r])[0][-2])  # a later gene of that cell
    assert (d[:, c] != 0).sum() >= 3 and np.nonzero(d[:, c])[0][0] != r
    d[r, c] = value
    X = gen_anndata.encode(d.astype(dtype), encoding, rng)
    obs = pd.DataFrame({"cell_type": pd.Categorical(rng.choice(["T", "B"], 60))},
                       index=[f"cell_{i:04d}-x{rng.integers(100, 999)}" for i in range(60)])
    var = pd.DataFrame(index=gen_studies.gene_ids(range(1000, 1040)))
    path = tmp_path / f"{name}.h5ad"
    anndata.AnnData(X=X, obs=obs, var=var, dtype=X.dtype).write_h5ad(path)
    return path, obs.index[r], var.index[c]


@pytest.mark.parametrize(
    "value,encoding,transform",
    [
        (np.nan, "dense", "auto"),
        (np.nan, "csr", "cp10k_log1p"),
        (np.nan, "csc", "cp10k_log1p"),
        (np.inf, "dense", "auto"),
        (-np.inf, "csr", "none"),
    ],
    ids=["nan-dense-auto", "nan-csr-cp10k", "nan-csc-cp10k", "inf-dense-auto", "neginf-csr-none"],
)
def test_build_non_finite_value(cellcube, tmp_path, value, encoding, transform):
    path, cell, gene = _file_with_bad_value(tmp_path, "nonfinite_ds", value, encoding)
    assert_build_fails(cellcube, tmp_path, [path], ["--transform", transform],
                       mentions=["nonfinite_ds", cell, gene])


@pytest.mark.parametrize("value", [-3.0, -1.0])
def test_build_log1p_of_negative(cellcube, tmp_path, value):
    path, cell, gene = _file_with_bad_value(tmp_path, "negative_ds", value, "csr")
    assert_build_fails(cellcube, tmp_path, [path], ["--transform", "log1p"],
                       mentions=["negative_ds", cell, gene])


def test_failed_build_stderr_is_one_line_without_quiet(cellcube, tmp_path):
    """docs/BUILD.md: every error is one line on stderr -- also without --quiet,
    where a build prints the transform auto chose before failing."""
    path, cell, gene = _file_with_bad_value(tmp_path, "nan_noisy", np.nan, "dense")
    assert_build_fails(cellcube, tmp_path, [path], quiet=False, mentions=["nan_noisy", cell, gene])


@pytest.mark.parametrize("which", ["no_X", "empty_csr_nnz0"])
def test_build_nothing_to_aggregate(cellcube, tmp_path, which):
    spec = {"no_X": gen_anndata.build_no_x, "empty_csr_nnz0": gen_anndata.build_empty_csr}[which]
    adata, comp = spec(np.random.default_rng(5))
    path = tmp_path / f"{which}.h5ad"
    adata.write_h5ad(path, compression=comp)
    assert_build_fails(cellcube, tmp_path, [path], mentions=[which])


def test_build_duplicate_dataset_names(cellcube, studies, tmp_path):
    for d in ("d1", "d2"):
        (tmp_path / d).mkdir()
        shutil.copyfile(studies["delta"], tmp_path / d / "same.h5ad")
    assert_build_fails(cellcube, tmp_path, [tmp_path / "d1" / "same.h5ad", tmp_path / "d2" / "same.h5ad"],
                       mentions=["same"])
    assert_build_fails(cellcube, tmp_path, [f"x={studies['alpha']}", f"x={studies['delta']}"], mentions=["x"])


@pytest.mark.parametrize(
    "args,mention",
    [
        (["--quiet", "{alpha}"], None),  # no -o
        (["-o", "{out}", "--no-such-option", "{alpha}"], "--no-such-option"),
        (["-o", "{out}"], None),  # no inputs
        (["-o", "{out}", "--transform", "bogus", "{alpha}"], "bogus"),
        (["-o", "{out}", "--max-groups", "many", "{alpha}"], "max-groups"),
    ],
    ids=["no-output", "unknown-option", "no-inputs", "bad-transform", "bad-max-groups"],
)
def test_build_usage_errors(cellcube, studies, tmp_path, args, mention):
    work = tmp_path / "cwd"
    work.mkdir()
    out = work / "store.h5ad"
    argv = [a.format(alpha=studies["alpha"], out=out) for a in args]
    proc = run([cellcube, "build", *argv], cwd=work)
    helpers.assert_error(proc, code=2, mentions=[mention] if mention else [])
    assert list(work.iterdir()) == [], f"a usage error left files: {list(work.iterdir())}"


# --------------------------------------------------------------------------
# 6. atomicity under SIGKILL
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("big")
    base = [gen_studies.write_big(d / f"big{k}.h5ad", seed=100 + k, gene_offset=50 * k) for k in range(4)]
    new = gen_studies.write_big(d / "newcomer.h5ad", seed=200, gene_offset=500)
    return base, new


def test_killed_add_or_build_leaves_store_untouched(cellcube, big_inputs, tmp_path):
    """12 runs of `add S new` / `build -o S ...` killed with SIGKILL: half at a
    random moment of the run, half at a random moment after the temp file
    appeared (while the new store is being written).  S stays byte-identical
    and opens in anndata."""
    import anndata

    base, new = big_inputs
    store = tmp_path / "S.h5ad"
    build(cellcube, store, base, ["--threads", "1"])
    original = file_bytes(store)
    commands = {
        "add": [cellcube, "add", store, "--quiet", "--threads", "1", new],
        "build": [cellcube, "build", "-o", store, "--quiet", "--threads", "1", *base[:3], new],
    }
    timing = {}
    for what, argv in commands.items():  # normal duration, and how long the write phase lasts
        timing[what] = helpers.run_watching_tmp(argv, tmp_path)
        assert file_bytes(store) != original, f"a complete `{what}` should change the store"
        store.write_bytes(original)
        assert timing[what][1] is not None, f"`{what}` wrote no '{store.name}.tmp-*' file beside the store"

    rnd = random.Random(20240601)
    killed = killed_writing = finished = 0
    for it in range(12):
        what = ("add", "build")[it % 2]
        total, writing = timing[what]
        proc = subprocess.Popen([str(a) for a in commands[what]], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        t0 = time.monotonic()
        if it < 6:
            time.sleep(rnd.uniform(0, 0.95 * total))
        else:  # wait for the temp file, then kill somewhere in the write
            while proc.poll() is None and not tmp_leftovers(tmp_path) and time.monotonic() - t0 < 30:
                time.sleep(0.001)
            time.sleep(rnd.uniform(0, 0.9 * writing))
        writing_now = bool(tmp_leftovers(tmp_path))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        rc = proc.wait(timeout=60)
        delay = time.monotonic() - t0
        now = file_bytes(store)
        if rc == -signal.SIGKILL and now != original:
            # Killed after the rename (while syncing the directory): the new
            # store is then complete.  Anything else is a broken promise.
            view = sr.StoreView(store)
            want = ["big0", "big1", "big2", "big3", "newcomer"] if what == "add" else ["big0", "big1", "big2", "newcomer"]
            assert view.dataset_names == want and not view.h5_problems, (
                f"iteration {it}: `{what}` killed after {delay:.2f}s left a store that is neither the old "
                f"one nor the complete new one (datasets {view.dataset_names})")
            finished += 1
        elif rc == -signal.SIGKILL:
            killed += 1
            killed_writing += writing_now
        else:
            finished += 1
            assert rc == 0, f"iteration {it}: `{what}` exited {rc}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            anndata.read_h5ad(store)
        if now != original:  # the command completed: put the original back
            store.write_bytes(original)
        for name in tmp_leftovers(tmp_path):  # a killed process may leave its temp file
            (tmp_path / name).unlink()
    print(f"atomicity: timing {timing}, {killed} killed ({killed_writing} while writing), {finished} finished")
    assert killed >= 6 and killed_writing >= 3, (
        f"only {killed} of 12 runs were killed mid-way, {killed_writing} while writing (timing {timing})")
