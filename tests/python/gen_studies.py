#!/usr/bin/python3
"""Seeded multi-dataset inputs for the build/add/remove/merge/info tests
(test_build.py).  Written with anndata 0.8's write_h5ad, like gen_anndata.py.

Four small "studies" whose gene sets overlap partially, so every dataset lacks
some genes the others measured:

  alpha  X CSR int32 counts (gzip); cell types in `cell_type`; obs with a
         categorical with missing values, strings containing ',' and '=',
         a bool and a nullable boolean column, a 250-value categorical and a
         one-value categorical (both too wide/narrow for the default group-by),
         numeric and unique-string columns (never grouped by default);
         var symbols in `feature_name`.
  beta   raw/X CSC float32 integer counts over 100 genes (lzf) and X dense
         float32 normalised values over 60 of them (so `--matrix auto` must take
         raw/X, with raw/var); cell types in `celltype` with categories in
         another order than alpha's; `stage` categories in another order too;
         integer-category `donor`; raw/var symbols in `gene_symbols`, X's var
         has decoy symbols in `gene_name`.
  gamma  layers/counts CSC uint16 counts (no compression), X CSR float32 log1p;
         cell types in `cell_ontology_class`; one duplicated gene id (made
         unique as GENE-1); symbols in `symbol`.
  delta  X dense float64 non-integer values (gzip), so auto picks `none`;
         cell types in `leiden`; no symbol column.

Every file has an all-zero cell and an all-zero gene in its aggregated matrix
(gen_anndata.make_counts) and the sparse ones carry explicit stored zeros.

Also: ``write_big`` for the atomicity test (20,000 cells x 1,000 genes gzip CSR).
"""

from __future__ import annotations

import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

import gen_anndata

warnings.filterwarnings("ignore")

GENE_POOL = 160
CELL_TYPES = ["T cell", "B cell", "NK cell", "monocyte", "dendritic, plasmacytoid"]


def gene_ids(idx):
    return [f"ENSG{i:011d}" for i in idx]


def gene_symbols(idx, prefix="SYM"):
    return [f"{prefix}{i}" if i % 13 else f"MT-{prefix}{i}" for i in idx]


def with_missing(rng, values, frac):
    v = np.asarray(values, dtype=object).copy()
    v[rng.random(len(v)) < frac] = None
    return v


def _adata(X, obs, var, **kw):
    import anndata

    return anndata.AnnData(X=X, obs=obs, var=var, dtype=X.dtype, **kw)


def build_alpha(rng):
    n = 1200
    genes = rng.permutation(np.arange(0, 100))
    counts = gen_anndata.make_counts(rng, n, len(genes)).astype(np.int32)
    X = gen_anndata.encode(counts, "csr", rng, n_explicit_zeros=8)
    treated = pd.array(rng.random(n) < 0.5, dtype="boolean")
    treated[rng.random(n) < 0.1] = pd.NA
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical(
                with_missing(rng, rng.choice(CELL_TYPES, n), 0.05), categories=CELL_TYPES + ["unused type"]
            ),
            "stage": pd.Categorical(with_missing(rng, rng.choice(["I", "II", "III"], n), 0.1),
                                    categories=["I", "II", "III"]),
            # repeated strings: anndata writes them as a categorical
            "site": rng.choice(["lung, left", "lung, right", "a=b", "x=1,y=2"], n),
            "is_doublet": rng.random(n) < 0.1,
            "treated": treated,
            "n_counts": counts.sum(axis=1).astype(np.int64),
            "score": rng.normal(size=n),
            "barcode": [f"BC{i:06d}" for i in range(n)],
            "many": pd.Categorical([f"m{i % 250:03d}" for i in range(n)]),
            "constant": pd.Categorical(["only"] * n),
        },
        index=[f"alpha_{i:05d}" for i in range(n)],
    )
    var = pd.DataFrame(
        {"feature_name": gene_symbols(genes), "highly_variable": rng.random(len(genes)) < 0.3},
        index=gene_ids(genes),
    )
    return _adata(X, obs, var), "gzip"


def build_beta(rng):
    n = 900
    genes = rng.permutation(np.arange(50, 150))
    counts = gen_anndata.make_counts(rng, n, len(genes)).astype(np.float32)
    obs = pd.DataFrame(
        {
            "celltype": pd.Categorical(
                with_missing(rng, rng.choice(["monocyte", "NK cell", "B cell", "T cell", "plasma cell"], n), 0.05),
                categories=["plasma cell", "monocyte", "NK cell", "B cell", "T cell"],
            ),
            "stage": pd.Categorical(with_missing(rng, rng.choice(["III", "II", "I", "IV"], n), 0.1),
                                    categories=["IV", "III", "II", "I"]),
            "donor": pd.Categorical(rng.choice([3, 7, 11], n)),
            "sex": rng.choice(["female", "male"], n),
        },
        index=[f"beta_{i:05d}-1" for i in range(n)],
    )
    var_full = pd.DataFrame({"gene_symbols": gene_symbols(genes)}, index=gene_ids(genes))
    a = _adata(gen_anndata.encode(counts, "csc", rng, n_explicit_zeros=8), obs, var_full)
    a.raw = a
    keep = np.sort(rng.choice(len(genes), size=60, replace=False))
    a = a[:, keep].copy()
    tot = counts.sum(axis=1, keepdims=True)
    sub = counts[:, keep].astype(np.float64)
    norm = np.log1p(np.divide(sub * 1e4, tot, out=np.zeros_like(sub), where=tot > 0))
    a.X = norm.astype(np.float32)
    a.var = a.var.drop(columns=["gene_symbols"])
    a.var["gene_name"] = gene_symbols(genes[keep], prefix="DECOY")
    return a, "lzf"


def build_gamma(rng):
    n = 700
    genes = rng.permutation(np.concatenate([np.arange(0, 30), np.arange(120, 160)]))
    ids = gene_ids(genes) + [gene_ids(genes[:1])[0]]  # a duplicated gene id
    syms = gene_symbols(genes) + gene_symbols(genes[:1])
    counts = gen_anndata.make_counts(rng, n, len(ids))
    X = gen_anndata.encode(np.log1p(counts).astype(np.float32), "csr", rng)
    obs = pd.DataFrame(
        {
            "cell_ontology_class": pd.Categorical(
                with_missing(rng, rng.choice(["T cell", "B cell", "fibroblast", "epithelial cell"], n), 0.03)
            ),
            "stage": pd.Categorical(rng.choice(["I", "II", "III", "IV"], n), categories=["I", "II", "III", "IV"]),
            "batch": rng.choice(["b1", "b2", "b3"], n),
            "is_doublet": rng.random(n) < 0.2,
        },
        index=[f"gamma_{i:05d}" for i in range(n)],
    )
    var = pd.DataFrame({"symbol": syms}, index=ids)
    a = _adata(X, obs, var)
    a.layers["counts"] = gen_anndata.encode(counts.astype(np.uint16), "csc", rng, n_explicit_zeros=8)
    return a, None


def build_delta(rng):
    n = 500
    genes = rng.permutation(rng.choice(GENE_POOL, size=80, replace=False))
    d = gen_anndata.make_counts(rng, n, len(genes)) * rng.gamma(2.0, 0.7, size=(n, len(genes)))
    obs = pd.DataFrame(
        {
            "leiden": pd.Categorical(rng.choice([str(k) for k in range(6)], n)),
            "stage": pd.Categorical(rng.choice(["II", "I"], n), categories=["II", "I"]),
            "tissue": rng.choice(["lung", "liver"], n),
        },
        index=[f"delta_{i:05d}" for i in range(n)],
    )
    var = pd.DataFrame({"highly_variable": rng.random(len(genes)) < 0.5}, index=gene_ids(genes))
    return _adata(d, obs, var), "gzip"


SPECS = {"alpha": build_alpha, "beta": build_beta, "gamma": build_gamma, "delta": build_delta}
NAMES = list(SPECS)


def generate(outdir, names=None, seed=20240777) -> dict:
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


# --------------------------------------------------------------------------
# big files for the atomicity test
# --------------------------------------------------------------------------


def write_big(path, seed, n_obs=20000, n_vars=1000, density=0.1, gene_offset=0):
    """A gzip CSR int32 count matrix of n_obs x n_vars with a few obs columns."""
    import anndata

    rng = np.random.default_rng(seed)
    rows, cols = [], []
    step = 2000
    for lo in range(0, n_obs, step):
        m = rng.random((min(step, n_obs - lo), n_vars), dtype=np.float32) < density
        r, c = np.nonzero(m)
        rows.append(r + lo)
        cols.append(c)
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    data = (rng.poisson(2.0, size=len(r)) + 1).astype(np.int32)
    X = sp.csr_matrix((data, (r, c)), shape=(n_obs, n_vars))
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical(rng.choice([f"type {k}" for k in range(8)], n_obs)),
            "stage": pd.Categorical(rng.choice(["I", "II", "III", "IV"], n_obs)),
            "sex": pd.Categorical(rng.choice(["female", "male"], n_obs)),
            "donor": pd.Categorical(rng.choice([f"D{k}" for k in range(10)], n_obs)),
        },
        index=[f"c{i}" for i in range(n_obs)],
    )
    var = pd.DataFrame(index=gene_ids(range(gene_offset, gene_offset + n_vars)))
    anndata.AnnData(X=X, obs=obs, var=var, dtype=np.int32).write_h5ad(path, compression="gzip")
    return Path(path)


if __name__ == "__main__":
    import sys

    for name, p in generate(sys.argv[1]).items():
        print(p)
