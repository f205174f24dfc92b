#!/usr/bin/python3
"""Write small (and a few large-ish) .h5ad files with anndata.AnnData.write_h5ad.

Importable (``generate(outdir)``) and runnable (``gen_anndata.py OUTDIR``).
Every file is produced from a seeded RNG, so the set is reproducible; the tests
never hard-code anything about these files: their expectations come from
reading the written files back with anndata/h5py (reference.py).

Coverage:
  * X dense / CSR / CSC; data dtypes int8 int16 int32 int64 uint8 uint16 uint32
    float32 float64 (values that would be misread with the wrong signedness or
    width: negative int8/int16, 250 in uint8, 65000 in uint16, 4e9 in uint32,
    2**40 in int64);
  * compression gzip, lzf and none;
  * explicit stored zeros in every sparse matrix, including in an otherwise
    empty row; an all-zero cell and an all-zero gene in every matrix;
  * raw (raw/X with a different var, sparse and dense) and layers in every
    encoding; a CSR with int64 indices/indptr; NaN in a dense float matrix;
    a matrix with no stored values; a file without X;
  * obs: categoricals with missing values (code -1), unused categories,
    ordered=True, integer and float categories, non-ASCII labels; string
    columns; integer, float (with NaN), float32, bool, nullable Int64 and
    nullable boolean with pd.NA;
  * var: gene-id index, a `symbol` string column, categorical/bool/float columns;
  * large-ish files (20,000 cells x 500 genes) as gzip CSR, gzip CSC and lzf
    dense, chunked, so a streaming reader crosses many blocks and chunks.
"""

from __future__ import annotations

import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

warnings.filterwarnings("ignore")

CELL_TYPES = ["T cell", "B cell", "NK cell", "monocyte", "γδ T cell", "dendritic, plasmacytoid"]
UNUSED_TYPES = ["unused type", "never seen"]


# --------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------


def make_obs(rng, n, big=False):
    """Per-cell metadata exercising every column kind."""
    idx = [f"cell_{i:05d}-{rng.integers(1000, 9999)}" for i in range(n)]
    # categorical with missing values (code -1) and unused categories
    ct = rng.choice(CELL_TYPES, size=n).astype(object)
    ct[rng.random(n) < 0.07] = None
    cell_type = pd.Categorical(ct, categories=CELL_TYPES + UNUSED_TYPES)
    stage = pd.Categorical(
        rng.choice(["I", "II", "III", "IV"], size=n), categories=["I", "II", "III", "IV"], ordered=True
    )
    donor_int = pd.Categorical(rng.choice([3, 7, 11, 42], size=n))  # integer categories
    dose = rng.choice([0.5, 1.0, 2.25, 10.0], size=n).astype(float)
    dose[rng.random(n) < 0.05] = np.nan  # float categories with a missing value
    dose_cat = pd.Categorical(dose)
    float_col = rng.normal(2.0, 1.0, size=n)
    float_col[rng.random(n) < 0.1] = np.nan
    float_col[0] = 11.0
    float_col[1] = 0.5
    nullable_int = pd.array(rng.integers(0, 5, size=n), dtype="Int64")
    nullable_int[rng.random(n) < 0.15] = pd.NA
    nullable_bool = pd.array(rng.random(n) < 0.5, dtype="boolean")
    nullable_bool[rng.random(n) < 0.15] = pd.NA
    obs = pd.DataFrame(
        {
            "cell_type": cell_type,
            "stage": stage,
            "donor": donor_int,
            "dose": dose_cat,
            # unique strings stay a string column (anndata turns repeated
            # strings into categoricals when writing)
            "barcode": [f"ACGT{i:06d}é" for i in range(n)],
            "n_genes": rng.integers(100, 5000, size=n).astype(np.int64),
            "batch_int32": rng.integers(-3, 3, size=n).astype(np.int32),
            "qc_uint8": rng.integers(0, 255, size=n).astype(np.uint8),
            "score": float_col,
            "score_f32": rng.normal(0.0, 1.0, size=n).astype(np.float32),
            "is_doublet": rng.random(n) < 0.1,
            "n_guides": nullable_int,
            "treated": nullable_bool,
        },
        index=pd.Index(idx),
    )
    if big:  # keep the big files lighter (the string column is the slow one)
        obs = obs.drop(columns=["barcode"])
    return obs


def make_var(rng, n, prefix="ENSG"):
    ids = [f"{prefix}{i:011d}" for i in range(n)]
    var = pd.DataFrame(
        {
            "symbol": [f"GENE{i}" if i % 17 else f"MT-CO{i}" for i in range(n)],
            "feature_type": pd.Categorical(
                rng.choice(["Gene Expression", "Antibody Capture"], size=n, p=[0.9, 0.1])
            ),
            "highly_variable": rng.random(n) < 0.3,
            "mean": rng.gamma(2.0, 1.0, size=n),
        },
        index=pd.Index(ids),
    )
    return var


def make_counts(rng, n_obs, n_vars, zero_frac=0.7, lam=2.0):
    """Dense float64 counts: ~zero_frac zeros, Poisson-ish otherwise, with one
    all-zero cell and one all-zero gene."""
    mask = rng.random((n_obs, n_vars)) >= zero_frac
    vals = rng.poisson(lam, size=(n_obs, n_vars)) + 1
    d = np.where(mask, vals, 0).astype(np.float64)
    d[rng.integers(0, n_obs), :] = 0
    d[:, rng.integers(0, n_vars)] = 0
    return d


def cast_values(d, dtype, rng):
    """Cast counts to ``dtype``, planting values that only read back right
    with the correct width and signedness."""
    dt = np.dtype(dtype)
    d = d.copy()
    nz = np.argwhere(d != 0)
    special = {
        "int8": [-5, -128, 127],
        "int16": [-30000, 32767],
        "int32": [-2_000_000_000, 2_000_000_000],
        "int64": [2**40, -(2**41)],
        "uint8": [250, 255],
        "uint16": [65000, 65535],
        "uint32": [4_000_000_000, 3_000_000_000],
        "float32": [0.1, 1e-3, 12345.678],
        "float64": [0.1, 1e-7, 123456.789012345],
    }[dt.name]
    if dt.kind == "f":
        d = d * rng.uniform(0.5, 1.5, size=d.shape)
    for k, v in enumerate(special):
        i, j = nz[(k * 7919) % len(nz)]
        d[i, j] = v
    if dt.kind in "iu":
        info = np.iinfo(dt)
        assert d.min() >= info.min and d.max() <= info.max
    return d.astype(dt)


def to_sparse(d, fmt, rng, n_explicit_zeros=5):
    """CSR/CSC of a dense array, with explicit stored zeros (one of them in an
    otherwise empty row, if there is one)."""
    rows, cols = np.nonzero(d)
    zr, zc = np.nonzero(d == 0)
    pick = rng.choice(len(zr), size=min(n_explicit_zeros, len(zr)), replace=False)
    empty_rows = np.nonzero(~(d != 0).any(axis=1))[0]
    extra_r = list(zr[pick])
    extra_c = list(zc[pick])
    if len(empty_rows):
        extra_r.append(empty_rows[0])
        extra_c.append(0)
    r = np.concatenate([rows, np.array(extra_r, dtype=rows.dtype)])
    c = np.concatenate([cols, np.array(extra_c, dtype=cols.dtype)])
    # drop an accidental duplicate of the same (r, c)
    key = r.astype(np.int64) * d.shape[1] + c
    _, first = np.unique(key, return_index=True)
    r, c = r[np.sort(first)], c[np.sort(first)]
    m = sp.coo_matrix((d[r, c], (r, c)), shape=d.shape)
    m = m.tocsr() if fmt == "csr" else m.tocsc()
    assert m.nnz == len(r), "explicit zeros lost"
    return m


def encode(d, encoding, rng, n_explicit_zeros=5):
    if encoding == "dense":
        return np.ascontiguousarray(d)
    return to_sparse(d, encoding, rng, n_explicit_zeros=n_explicit_zeros)


# --------------------------------------------------------------------------
# the files
# --------------------------------------------------------------------------

DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "float32", "float64"]
ENCODINGS = ["dense", "csr", "csc"]
COMPRESSIONS = ["gzip", "lzf", None]


def _shape(rng):
    return int(rng.integers(60, 301)), int(rng.integers(40, 121))


def _dtype_file(i, dtype):
    def build(rng):
        enc = ENCODINGS[i % 3]
        comp = COMPRESSIONS[(i // 3 + i) % 3]
        n_obs, n_vars = _shape(rng)
        X = encode(cast_values(make_counts(rng, n_obs, n_vars), dtype, rng), enc, rng)
        return anndata_obj(X, make_obs(rng, n_obs), make_var(rng, n_vars)), comp

    return build


def anndata_obj(X, obs, var, **kw):
    import anndata

    # anndata 0.8 casts X to float32 unless told the dtype
    return anndata.AnnData(X=X, obs=obs, var=var, dtype=X.dtype, **kw)


def build_dense_f32_gzip(rng):
    n_obs, n_vars = _shape(rng)
    X = make_counts(rng, n_obs, n_vars).astype(np.float32)
    return anndata_obj(X, make_obs(rng, n_obs), make_var(rng, n_vars)), "gzip"


def build_csr_f32_lzf(rng):
    n_obs, n_vars = _shape(rng)
    X = encode(make_counts(rng, n_obs, n_vars).astype(np.float32), "csr", rng, 12)
    return anndata_obj(X, make_obs(rng, n_obs), make_var(rng, n_vars)), "lzf"


def build_csc_f64_none(rng):
    n_obs, n_vars = _shape(rng)
    d = np.log1p(make_counts(rng, n_obs, n_vars))
    X = encode(d, "csc", rng, 12)
    return anndata_obj(X, make_obs(rng, n_obs), make_var(rng, n_vars)), None


def build_dense_f64_nan(rng):
    n_obs, n_vars = _shape(rng)
    d = make_counts(rng, n_obs, n_vars) * rng.normal(1.0, 0.3, size=(n_obs, n_vars))
    d[rng.integers(0, n_obs, 6), rng.integers(0, n_vars, 6)] = np.nan
    d[:3, :3] = -d[:3, :3]  # some negative values too
    return anndata_obj(d, make_obs(rng, n_obs), make_var(rng, n_vars)), "gzip"


def build_csr_int64_indices(rng):
    n_obs, n_vars = _shape(rng)
    X = encode(make_counts(rng, n_obs, n_vars).astype(np.float32), "csr", rng)
    X.indices = X.indices.astype(np.int64)
    X.indptr = X.indptr.astype(np.int64)
    return anndata_obj(X, make_obs(rng, n_obs), make_var(rng, n_vars)), "gzip"


def build_csc_int64_indices(rng):
    n_obs, n_vars = _shape(rng)
    X = encode(make_counts(rng, n_obs, n_vars).astype(np.int32), "csc", rng)
    X.indices = X.indices.astype(np.int64)
    X.indptr = X.indptr.astype(np.int64)
    return anndata_obj(X, make_obs(rng, n_obs), make_var(rng, n_vars)), None


def _raw_file(x_enc, raw_enc, comp):
    def build(rng):
        n_obs, n_full = _shape(rng)
        counts = make_counts(rng, n_obs, n_full)
        var_full = make_var(rng, n_full)
        var_full["raw_only"] = rng.integers(0, 100, size=n_full)
        a = anndata_obj(encode(counts.astype(np.float32), raw_enc, rng), make_obs(rng, n_obs), var_full)
        a.raw = a
        keep = np.sort(rng.choice(n_full, size=max(10, n_full // 2), replace=False))
        a = a[:, keep].copy()
        sub = counts[:, keep]
        tot = counts.sum(axis=1, keepdims=True)
        norm = np.log1p(np.divide(sub * 1e4, tot, out=np.zeros_like(sub), where=tot > 0))
        a.X = encode(norm.astype(np.float32), x_enc, rng)
        a.var = a.var.drop(columns=["raw_only"])
        a.var["hvg_rank"] = np.arange(a.n_vars, dtype=np.int64)
        return a, comp

    return build


def build_layers(rng):
    n_obs, n_vars = _shape(rng)
    counts = make_counts(rng, n_obs, n_vars)
    X = encode(np.log1p(counts).astype(np.float32), "csr", rng)
    a = anndata_obj(X, make_obs(rng, n_obs), make_var(rng, n_vars))
    a.layers["counts"] = encode(counts.astype(np.int32), "csr", rng)
    a.layers["counts_csc"] = encode(counts.astype(np.uint16), "csc", rng)
    a.layers["dense_counts"] = encode(counts.astype(np.int64), "dense", rng)
    a.layers["spliced"] = encode(make_counts(rng, n_obs, n_vars).astype(np.float64), "dense", rng)
    a.layers["unspliced"] = encode(make_counts(rng, n_obs, n_vars).astype(np.uint8), "csc", rng)
    return a, "gzip"


def build_layers_mixed_dtypes(rng):
    n_obs, n_vars = _shape(rng)
    base = make_counts(rng, n_obs, n_vars)
    a = anndata_obj(encode(cast_values(base, "int16", rng), "dense", rng), make_obs(rng, n_obs), make_var(rng, n_vars))
    for k, dt in enumerate(DTYPES):
        enc = ENCODINGS[(k + 1) % 3]
        a.layers[f"{dt}_{enc}"] = encode(cast_values(make_counts(rng, n_obs, n_vars), dt, rng), enc, rng)
    return a, "lzf"


def build_empty_csr(rng):
    n_obs, n_vars = _shape(rng)
    X = sp.csr_matrix((n_obs, n_vars), dtype=np.float32)
    return anndata_obj(X, make_obs(rng, n_obs), make_var(rng, n_vars)), None


def build_only_explicit_zeros(rng):
    """A CSR whose stored values are all zero: stored > 0, nnz == 0."""
    n_obs, n_vars = _shape(rng)
    r = rng.integers(0, n_obs, size=20)
    c = rng.integers(0, n_vars, size=20)
    key = np.unique(r * n_vars + c)
    X = sp.csr_matrix(
        (np.zeros(len(key), dtype=np.float32), (key // n_vars, key % n_vars)), shape=(n_obs, n_vars)
    )
    assert X.nnz == len(key)
    return anndata_obj(X, make_obs(rng, n_obs), make_var(rng, n_vars)), "gzip"


def build_no_x(rng):
    import anndata

    n_obs, n_vars = _shape(rng)
    return anndata.AnnData(obs=make_obs(rng, n_obs), var=make_var(rng, n_vars)), None


def _big(encoding, comp, dtype=np.float32, density=0.1):
    def build(rng):
        n_obs, n_vars = 20000, 500
        obs = make_obs(rng, n_obs, big=True)
        var = make_var(rng, n_vars)
        if encoding == "dense":
            d = make_counts(rng, n_obs, n_vars, zero_frac=1 - density).astype(dtype)
            return anndata_obj(d, obs, var), comp
        # build the sparse matrix directly (a dense intermediate is 80 MB)
        nnz_per_row = rng.binomial(n_vars, density, size=n_obs)
        nnz_per_row[rng.integers(0, n_obs)] = 0  # an empty cell
        indptr = np.concatenate([[0], np.cumsum(nnz_per_row)]).astype(np.int32)
        dead_gene = int(rng.integers(0, n_vars))
        cols = np.empty(indptr[-1], dtype=np.int32)
        genes = np.delete(np.arange(n_vars), dead_gene)  # an all-zero gene
        for i in range(n_obs):
            cols[indptr[i]:indptr[i + 1]] = np.sort(rng.choice(genes, size=nnz_per_row[i], replace=False))
        data = (rng.poisson(2.0, size=indptr[-1]) + 1).astype(dtype)
        data[rng.integers(0, len(data), size=50)] = 0  # explicit zeros
        X = sp.csr_matrix((data, cols, indptr), shape=(n_obs, n_vars))
        if encoding == "csc":
            X = X.tocsc()
        return anndata_obj(X, obs, var), comp

    return build


def _specs():
    specs = {
        "dense_f32_gzip": build_dense_f32_gzip,
        "csr_f32_lzf": build_csr_f32_lzf,
        "csc_f64_none": build_csc_f64_none,
        "dense_f64_nan_gzip": build_dense_f64_nan,
        "csr_int64_indices_gzip": build_csr_int64_indices,
        "csc_int64_indices_int32data": build_csc_int64_indices,
        "raw_csr_X_dense_gzip": _raw_file("dense", "csr", "gzip"),
        "raw_dense_X_csc_lzf": _raw_file("csc", "dense", "lzf"),
        "raw_csc_X_csr_none": _raw_file("csr", "csc", None),
        "layers_all_encodings_gzip": build_layers,
        "layers_all_dtypes_lzf": build_layers_mixed_dtypes,
        "empty_csr_nnz0": build_empty_csr,
        "only_explicit_zeros_csr": build_only_explicit_zeros,
        "no_X": build_no_x,
        "big_csr_gzip": _big("csr", "gzip"),
        "big_csc_gzip": _big("csc", "gzip"),
        "big_dense_lzf": _big("dense", "lzf", dtype=np.float32, density=0.3),
    }
    for i, dt in enumerate(DTYPES):
        enc = ENCODINGS[i % 3]
        comp = COMPRESSIONS[(i // 3 + i) % 3]
        specs[f"dtype_{dt}_{enc}_{comp or 'none'}"] = _dtype_file(i, dt)
    return specs


SPECS = _specs()
NAMES = list(SPECS)
BIG = [n for n in NAMES if n.startswith("big_")]


def generate(outdir, names=None, seed=20240601) -> dict:
    """Write the files into outdir; returns {name: path}."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in names or NAMES:
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        adata, compression = SPECS[name](rng)
        path = outdir / f"{name}.h5ad"
        adata.write_h5ad(path, compression=compression)
        out[name] = path
    return out


def main(argv):
    if len(argv) != 2:
        print(f"usage: {argv[0]} OUTDIR", file=sys.stderr)
        return 2
    for name, path in generate(argv[1]).items():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
