"""docs/QUERY.md's accuracy where floating point is hardest (issue 11): var and std of
roll-ups over thousands of groups whose values share one large mean and differ by
tiny amounts, and values of mixed sign under `--transform none`. Every number is
compared against numpy in float64 on the same cells: relative error <= 1e-5 for sum
and means, <= 1e-4 (or absolute <= 1e-6) for var and std; n_cells and nnz exact.

The spreads are chosen so that var is far above the absolute tolerance, and Σv² is
10^14 times m2: a store of Σv² (even in float64) keeps too few digits to pass.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from helpers import run_ok

warnings.filterwarnings("ignore")

REL_MEAN, REL_VAR, ABS_VAR = 1e-5, 1e-4, 1e-6


def write_h5ad(path, X, obs, genes):
    import anndata

    anndata.AnnData(X=X, obs=obs, var=pd.DataFrame(index=genes), dtype=X.dtype).write_h5ad(path)


def query(cellcube, store, genes, by=(), where=()):
    args = [cellcube, "query", store, "--genes", ",".join(genes), "--metrics",
            "n_cells,nnz,sum,mean,mean_expr,var,std", "--format", "json"]
    if by:
        args += ["--by", ",".join(by)]
    for w in where:
        args += ["--where", w]
    return json.loads(run_ok(args).stdout)


def check_rows(rows, obs, X, genes, by):
    """Every row against numpy on the cells of its split. X is one dataset's: with any
    value below 0 it is flagged as scaled data, and mean_expr is empty in every row."""
    assert rows, "no rows"
    scaled = bool((X < 0).any())
    seen = 0
    for r in rows:
        mask = np.ones(len(obs), dtype=bool)
        for c in by:
            mask &= (obs[c].astype(str) == r[c]).to_numpy()
        v = X[mask, genes.index(r["gene"])].astype(np.float64)
        assert r["n_cells"] == len(v), r
        assert r["nnz"] == int((v > 0).sum()), r
        assert math.isclose(r["sum"], v.sum(), rel_tol=REL_MEAN, abs_tol=1e-9), (r, v.sum())
        assert math.isclose(r["mean"], v.mean(), rel_tol=REL_MEAN, abs_tol=1e-9), (r, v.mean())
        if (v > 0).any() and not scaled:  # the mean of the expressing cells
            assert math.isclose(r["mean_expr"], v[v > 0].mean(), rel_tol=REL_MEAN,
                                abs_tol=1e-9), r
        else:
            assert r["mean_expr"] is None, r
        if len(v) >= 2:
            for metric, want in (("var", v.var(ddof=1)), ("std", v.std(ddof=1))):
                assert math.isclose(r[metric], want, rel_tol=REL_VAR, abs_tol=ABS_VAR), \
                    (metric, r, want)
        seen += 1
    return seen


@pytest.fixture(scope="module")
def flat_store(tmp_path_factory, cellcube):
    """3,000 groups (1,000 cell types x 3 tissues) of 4 cells. FLAT: every cell at
    1e6 + N(0, 0.1); STEP: 1e6 + 100 * (cell type mod 5) + N(0, 0.1); SPARSE: half the
    cells 0, the rest at 3e4 + N(0, 0.1)."""
    d = tmp_path_factory.mktemp("accuracy")
    rng = np.random.default_rng(11)
    types = np.repeat(np.arange(1000), 12)
    tissues = np.tile(np.repeat(np.arange(3), 4), 1000)
    n = len(types)
    X = np.empty((n, 3), dtype=np.float64)
    X[:, 0] = 1e6 + rng.normal(0, 0.1, n)
    X[:, 1] = 1e6 + 100 * (types % 5) + rng.normal(0, 0.1, n)
    X[:, 2] = np.where(rng.random(n) < 0.5, 0.0, 3e4 + rng.normal(0, 0.1, n))
    obs = pd.DataFrame({"cell_type": pd.Categorical([f"t{t:04d}" for t in types]),
                        "tissue": pd.Categorical([f"tissue{t}" for t in tissues])},
                       index=[f"c{i}" for i in range(n)])
    genes = ["FLAT", "STEP", "SPARSE"]
    src = d / "flat.h5ad"
    write_h5ad(src, X, obs, genes)
    store = d / "flat_store.h5ad"
    run_ok([cellcube, "build", "-o", store, "--quiet", "--transform", "none", "--cell-type",
            "cell_type", "--groupby", "tissue", src])
    return store, obs, X, genes


def test_rollup_of_thousands_of_groups_with_equal_large_means(cellcube, flat_store):
    store, obs, X, genes = flat_store
    info = json.loads(run_ok([cellcube, "info", store, "--json"]).stdout)
    assert info["n_groups"] == 3000
    # Everything pooled, by tissue (1,000 groups each), and per group for a few types.
    assert check_rows(query(cellcube, store, genes), obs, X, genes, ()) == 3
    assert check_rows(query(cellcube, store, genes, by=["tissue"]), obs, X, genes, ["tissue"]) == 9
    rows = query(cellcube, store, genes, by=["cell_type", "tissue"],
                 where=["cell_type=t0000", "cell_type=t0001", "cell_type=t0999"])
    assert check_rows(rows, obs, X, genes, ["cell_type", "tissue"]) == 27


def test_sumsq_would_not_have_kept_the_digits(flat_store):
    """The premise of the test above: with Σv² in float64, var of the pooled FLAT cells
    is off by far more than docs/QUERY.md allows."""
    _store, _obs, X, _genes = flat_store
    v = X[:, 0]
    n = len(v)
    naive = (np.sum(v * v) - v.sum() ** 2 / n) / (n - 1)
    want = v.var(ddof=1)
    assert abs(naive - want) > REL_VAR * want + ABS_VAR, (naive, want)


def test_mixed_sign_values_under_transform_none(cellcube, tmp_path):
    """Values of both signs (log fold changes, scaled data): sums that cancel, a
    group whose values cancel exactly (sum 0, nnz > 0), a group of negative values only
    (nnz 0), explicit zeros; per group and rolled up. The dataset is flagged as scaled
    data, so mean_expr is empty in every row (docs/QUERY.md)."""
    rng = np.random.default_rng(5)
    n_per, n_groups = 7, 40
    n = n_per * n_groups
    X = rng.normal(0, 1, (n, 4))
    X[rng.random((n, 4)) < 0.3] = 0.0
    X[0:n_per, 1] = [1.5, -1.5, 2.25, -2.25, 0.0, 3.0, -3.0]  # cancels exactly
    X[n_per:2 * n_per, 2] = -np.abs(X[n_per:2 * n_per, 2]) - 0.1  # negative only
    X[:, 3] = np.where(X[:, 3] > 0, 1e3 + X[:, 3] * 1e-2, -1e3 - X[:, 3] * 1e-2)  # large, both signs
    obs = pd.DataFrame({"cell_type": pd.Categorical([f"g{i // n_per:02d}" for i in range(n)]),
                        "sex": pd.Categorical(np.where(np.arange(n) % 2, "F", "M"))},
                       index=[f"c{i}" for i in range(n)])
    genes = ["A", "B", "C", "D"]
    src = tmp_path / "signed.h5ad"
    write_h5ad(src, X, obs, genes)
    store = tmp_path / "signed_store.h5ad"
    run_ok([cellcube, "build", "-o", store, "--quiet", "--transform", "none", "--cell-type",
            "cell_type", "--groupby", "sex", src])
    assert check_rows(query(cellcube, store, genes), obs, X, genes, ()) == 4
    assert check_rows(query(cellcube, store, genes, by=["sex"]), obs, X, genes, ["sex"]) == 8
    rows = query(cellcube, store, genes, by=["cell_type"])
    assert check_rows(rows, obs, X, genes, ["cell_type"]) == 4 * n_groups
    cancel = next(r for r in rows if r["cell_type"] == "g00" and r["gene"] == "B")
    assert cancel["sum"] == 0 and cancel["nnz"] == 3
    negative = next(r for r in rows if r["cell_type"] == "g01" and r["gene"] == "C")
    assert negative["nnz"] == 0 and negative["sum"] < 0 and negative["mean_expr"] is None
