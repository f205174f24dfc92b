"""Distributions from the store's histograms (docs/QUERY.md "Distribution metrics",
docs/DE.md "The Wilcoxon test", docs/API.md /api/v1/distribution).

Every expected number is computed here from the input files with anndata and numpy:
the cells' transformed values binned by numpy's search of the 65 edges, the quantiles of
the histogram definition, numpy.quantile(method="inverted_cdf") on the cells, and
scipy.stats.mannwhitneyu on the cells' bin indices.

- `cellcube distribution` (CSV and JSON), GET /api/v1/distribution and
  Store.distribution() give each (split, gene)'s zeros and 64 bin counts exactly, for
  tiny groups, all-zero genes, values at bin edges and above H.
- Every quantile metric is exact to the histogram definition and within one bin width
  of numpy's inverted-CDF quantile on the cells (for values <= H).
- de/markers --test wilcoxon match scipy's Mann-Whitney U on the binned values; a gene
  whose cells all tie has empty t, pvalue, padj and effect.
- A store without histograms answers distribution metrics with one clear error saying
  how to rebuild; a dataset with negative values has no distribution and no Wilcoxon.
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats

import helpers
import query_reference as qr
from helpers import run, run_ok
from test_server import Server, get

pytestmark = pytest.mark.filterwarnings("ignore")

GENES = ["G000", "G003", "G005", "G012", "G020", "G081", "G085"]
BINS = [f"bin_{b:02d}" for b in range(64)]
QUANTILES = {"median": 0.5, "q05": 0.05, "q25": 0.25, "q75": 0.75, "q95": 0.95}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("distributions")
    cellcube = qr.cellcube_binary()
    inputs = qr.write_inputs(d / "inputs")
    store = qr.build_store(cellcube, inputs, d / "store.h5ad")
    ref = qr.Reference(inputs, store)
    return cellcube, store, ref, d


def pooled(ref, genes, by=(), where=None, datasets=None):
    """[(split labels, gene id, values)] over the selected cells, in output order."""
    return ref.pooled(genes, by, where, datasets)


def expected_rows(ref, genes, by=(), where=None, datasets=None):
    rows = []
    for key, g, v in pooled(ref, genes, by, where, datasets):
        row = {c: ("NA" if l is None else l) for c, l in zip(by, key)}
        row.update({"gene": g, "n_cells": len(v), "zeros": int((v <= 0).sum()),
                    "bins": qr.histogram(v).tolist()})
        rows.append(row)
    return rows


def csv_rows(text, by):
    frame = pd.read_csv(io.StringIO(text), keep_default_na=False, dtype=str)
    assert list(frame.columns) == list(by) + ["gene", "n_cells", "zeros"] + BINS
    return [{**{c: r[c] for c in by}, "gene": r["gene"], "n_cells": int(r["n_cells"]),
             "zeros": int(r["zeros"]), "bins": [int(r[b]) for b in BINS]}
            for _i, r in frame.iterrows()]


CASES = [
    dict(by=("cell_type",)),
    dict(by=("cell_type", "stage", "sex")),  # tiny groups
    dict(by=("dataset",), where={"stage": ["II", "NA"]}),
    dict(by=(), datasets=["gut"]),
    dict(by=("sex",), where={"cell_type": ["T cell"], "dataset": ["lung,a", "blood"]}),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_distribution_cli_csv_and_json_match_numpy(setup, case):
    cellcube, store, ref, _d = setup
    c = CASES[case]
    by = c.get("by", ())
    args = qr.query_args(GENES, by, c.get("where"), c.get("datasets"))
    want = expected_rows(ref, GENES, by, c.get("where"), c.get("datasets"))
    assert want, "test bug: an empty case"
    got = csv_rows(run_ok([cellcube, "distribution", store, *args, "--format", "csv"]).stdout, by)
    assert got == want
    doc = json.loads(run_ok([cellcube, "distribution", store, *args, "--format", "json"]).stdout)
    assert doc["columns"] == list(by) + ["gene", "n_cells", "zeros"]
    assert doc["edges"] == qr.hist_edges().tolist()
    assert doc["rows"] == want
    table = run_ok([cellcube, "distribution", store, *args]).stdout
    assert "median_expr" in table.splitlines()[0] and len(table.splitlines()) == len(want) + 2


def test_all_zero_genes_and_empty_metrics(setup):
    cellcube, store, ref, _d = setup
    # G005 is zero in every lung cell: its rows are all zeros, median 0, median_expr empty.
    p = run_ok([cellcube, "query", store, "--genes", "G005", "--by", "cell_type", "--where",
                "dataset=lung,a", "--metrics", "n_cells,nnz,median,q95,median_expr,max", "--format", "csv"])
    frame = pd.read_csv(io.StringIO(p.stdout), keep_default_na=False, dtype=str)
    assert len(frame) > 0
    assert set(frame["nnz"]) == {"0"}
    assert set(frame["median"]) == {"0"} and set(frame["q95"]) == {"0"}
    assert set(frame["median_expr"]) == {""} and set(frame["max"]) == {"0"}


@pytest.mark.parametrize("by", [("cell_type",), ("cell_type", "stage", "sex"), ("dataset",)])
def test_quantiles_exact_and_within_one_bin_of_numpy(setup, by):
    cellcube, store, ref, _d = setup
    metrics = list(QUANTILES) + ["median_expr", "max"]
    p = run_ok([cellcube, "query", store, *qr.query_args(GENES, by, metrics=metrics),
                "--format", "csv"])
    header, rows = qr.parse_csv(p.stdout)
    want = pooled(ref, GENES, by)
    assert len(rows) == len(want)
    w = qr.HIST_MAX / 64
    checked = 0
    for row, (_key, g, v) in zip(rows, want):
        assert row["gene"] == g
        for m in metrics:
            problem = qr.value_problems(m, row[m], qr.metric(m, v))
            assert not problem, (g, problem)
        assert (v <= qr.HIST_MAX).all(), "test bug: values above H in this store"
        for m, q in QUANTILES.items():
            truth = np.quantile(v, q, method="inverted_cdf")
            assert abs(float(row[m]) - truth) <= w + 1e-12, (g, m, row[m], truth)
            checked += 1
        expressing = v[v > 0]
        if len(expressing):
            truth = np.quantile(expressing, 0.5, method="inverted_cdf")
            assert abs(float(row["median_expr"]) - truth) <= w + 1e-12
            assert 0 <= float(row["max"]) - expressing.max() <= w + 1e-12
    assert checked > 50


def test_edges_and_values_above_the_upper_edge(tmp_path):
    """Values exactly at bin edges go to the bin below; above H to the last bin, counted per
    dataset; quantiles follow (a layout of --hist-max 6.4 under --transform none)."""
    import anndata as ad

    cellcube = qr.cellcube_binary()
    h = 6.4
    edges = qr.hist_edges(h)
    rng = np.random.default_rng(3)
    n = 400
    X = np.zeros((n, 3))
    X[:65, 0] = edges  # every edge, 0 included
    X[65:130, 0] = [np.nextafter(e, 10) for e in edges]  # just above each edge
    X[130:140, 0] = h + rng.uniform(0.1, 3, 10)  # above H
    X[:, 1] = rng.choice([0.0, 0.3, 1.7, 6.4, 7.5], n)
    obs = pd.DataFrame({"cell_type": pd.Categorical(rng.choice(["a", "b"], n))},
                       index=[f"c{i}" for i in range(n)])
    var = pd.DataFrame(index=["E0", "E1", "Z"])
    # float64 kept (anndata 0.8 would narrow X to float32, moving values off the edges).
    ad.AnnData(X=X, obs=obs, var=var, dtype=np.float64).write_h5ad(tmp_path / "edges.h5ad")
    store = tmp_path / "edges_store.h5ad"
    p = run_ok([cellcube, "build", tmp_path / "edges.h5ad", "-o", store, "--transform", "none",
                "--hist-max", str(h)])
    above = int((X > h).sum())
    assert "above" in p.stderr and str(above) in p.stderr, p.stderr
    doc = json.loads(run_ok([cellcube, "distribution", store, "--genes", "E0,E1,Z", "--by",
                             "cell_type", "--format", "json"]).stdout)
    assert doc["edges"] == edges.tolist()
    labels = obs["cell_type"].to_numpy()
    want = []
    for label in ["a", "b"]:
        for j, gene in enumerate(["E0", "E1", "Z"]):
            v = X[labels == label, j]
            want.append({"cell_type": label, "gene": gene, "n_cells": len(v),
                         "zeros": int((v <= 0).sum()), "bins": qr.histogram(v, h).tolist()})
    assert doc["rows"] == want
    info = json.loads(run_ok([cellcube, "info", store, "--json"]).stdout)
    assert info["histograms"] == {"bins": 64, "max": h}
    assert [d["values_above_hist_max"] for d in info["datasets"]] == [above]


def test_http_and_python_give_the_same_distribution(setup, tmp_path):
    cellcube, store, ref, _d = setup
    by = ("cell_type", "sex")
    want = expected_rows(ref, GENES, by)
    server = Server(cellcube, store, tmp_path)
    try:
        params = [("genes", ",".join(GENES)), ("by", ",".join(by))]
        r = get(server.port, "/api/v1/distribution", params)
        assert r.status == 200, r
        doc = r.json()
        assert doc["rows"] == want and doc["edges"] == qr.hist_edges().tolist()
        assert [g["id"] for g in doc["genes"]] == ref.resolve(GENES)
        csv_text = get(server.port, "/api/v1/distribution", params + [("format", "csv")]).body
        assert csv_rows(csv_text.decode(), by) == want
        bad = get(server.port, "/api/v1/distribution", params + [("metrics", "mean")])
        assert bad.status == 400 and "error" in bad.json()
        meta = get(server.port, "/api/v1/meta").json()
        assert meta["histograms"] == {"bins": 64, "max": qr.HIST_MAX}
        assert "median" in meta["metrics"]
    finally:
        server.stop()
    code = f"""
        import json, cellcube
        s = cellcube.open({str(store)!r})
        df = s.distribution({GENES!r}, by={list(by)!r})
        print(json.dumps({{"columns": list(df.columns), "edges": df.attrs["edges"],
                          "dtypes": [str(t) for t in df.dtypes],
                          "rows": [[*(str(x) for x in r[:3]), *(int(x) for x in r[3:])]
                                   for r in df.itertuples(index=False)]}}))
    """
    from test_python_module import run_python

    proc = run_python(qr.build_dir(), code)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["columns"] == list(by) + ["gene", "n_cells", "zeros"] + BINS
    assert got["edges"] == qr.hist_edges().tolist()
    assert got["dtypes"][3] == "int64" and got["dtypes"][4] == "Int64"
    assert got["rows"] == [[r["cell_type"], r["sex"], r["gene"], r["n_cells"], r["zeros"],
                            *r["bins"]] for r in want]


def wilcoxon_reference(x, y):
    """z, pvalue and AUC of the cells' bin indices (zero -> -1) by scipy; None when every
    cell ties."""
    bx = np.where(x > 0, np.clip(np.searchsorted(qr.hist_edges(), x, "left") - 1, 0, 63), -1)
    by = np.where(y > 0, np.clip(np.searchsorted(qr.hist_edges(), y, "left") - 1, 0, 63), -1)
    if len(np.unique(np.concatenate([bx, by]))) == 1:
        return None
    res = scipy.stats.mannwhitneyu(bx, by, alternative="two-sided", use_continuity=True,
                                   method="asymptotic")
    n1, n2 = len(bx), len(by)
    u1 = float(res.statistic)
    _, counts = np.unique(np.concatenate([bx, by]), return_counts=True)
    n = n1 + n2
    ties = sum(int(t) ** 3 - int(t) for t in counts)
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))))
    mu = n1 * n2 / 2
    z = math.copysign(max(0.0, abs(u1 - mu) - 0.5), u1 - mu) / sigma
    return z, float(res.pvalue), u1 / (n1 * n2)


@pytest.mark.parametrize("datasets", [None, ["lung,a"]])
def test_wilcoxon_matches_scipy(setup, datasets):
    cellcube, store, ref, _d = setup
    args = ["--compare", "cell_type", "--group1", "T cell", "--test", "wilcoxon",
            "--format", "csv"]
    for name in datasets or []:
        args += ["--where", f"dataset={name}"]  # "lung,a" holds a comma
    p = run_ok([cellcube, "de", store, *args])
    assert "test: wilcoxon" in p.stderr
    frame = pd.read_csv(io.StringIO(p.stdout), keep_default_na=False, na_values=[""],
                        dtype={"gene": str})
    assert len(frame) > 10
    tied = 0
    for _i, row in frame.iterrows():
        x, y = [], []
        for ds in ref.datasets:
            if (datasets and ds.name not in datasets) or row["gene"] not in ds.gene_col:
                continue
            v = ds.V[:, ds.gene_col[row["gene"]]]
            side1 = ds.column("cell_type") == "T cell"
            x.append(v[side1])
            y.append(v[~side1])
        x, y = np.concatenate(x), np.concatenate(y)
        assert row["n_cells1"] == len(x) and row["n_cells2"] == len(y)
        assert math.isnan(row["df"]) and math.isnan(row["n_donors1"])
        assert abs(row["mean1"] - x.mean()) <= 1e-9 * max(1, abs(x.mean()))
        want = wilcoxon_reference(x, y)
        if want is None:
            tied += 1
            assert all(math.isnan(row[c]) for c in ("t", "pvalue", "padj", "effect")), row
            continue
        z, pvalue, auc = want
        assert abs(row["t"] - z) <= 1e-9 * max(1, abs(z)), (row["gene"], row["t"], z)
        assert abs(row["pvalue"] - pvalue) <= max(1e-6 * pvalue, 1e-12), (row["gene"], pvalue)
        assert abs(row["effect"] - auc) <= 1e-12
    if datasets == ["lung,a"]:
        assert tied >= 1, "G005 is zero in every lung cell: all tied"


def test_markers_wilcoxon(setup):
    cellcube, store, _ref, _d = setup
    p = run_ok([cellcube, "markers", store, "--test", "wilcoxon", "--format", "json",
                "--max-padj", "1"])
    doc = json.loads(p.stdout)
    assert doc["test"] == "wilcoxon" and len(doc["rows"]) > 0
    assert all(r["df"] is None and 0 <= r["effect"] <= 1 for r in doc["rows"])


def test_stores_without_histograms_say_how_to_rebuild(setup, tmp_path):
    cellcube, _store, _ref, d = setup
    plain = tmp_path / "plain.h5ad"
    run_ok([cellcube, "build", d / "inputs", "-o", plain, "--no-histograms"])
    for argv in (["query", plain, "--genes", "G000", "--metrics", "median"],
                 ["distribution", plain, "--genes", "G000"],
                 ["de", plain, "--compare", "cell_type", "--group1", "T cell", "--test",
                  "wilcoxon"]):
        proc = run([cellcube, *argv])
        helpers.assert_error(proc, mentions=("no histograms", "rebuild"))
    # Means still answer.
    run_ok([cellcube, "query", plain, "--genes", "G000", "--metrics", "mean"])
    info = json.loads(run_ok([cellcube, "info", plain, "--json"]).stdout)
    assert info["histograms"] is None


def test_negative_values_have_no_distribution_and_no_wilcoxon(tmp_path):
    import anndata as ad

    cellcube = qr.cellcube_binary()
    rng = np.random.default_rng(5)
    n = 120
    obs = pd.DataFrame({"cell_type": pd.Categorical(rng.choice(["a", "b"], n))},
                       index=[f"c{i}" for i in range(n)])
    var = pd.DataFrame(index=["G1", "G2"])
    ad.AnnData(X=rng.normal(size=(n, 2)), obs=obs, var=var).write_h5ad(tmp_path / "z.h5ad")
    counts = rng.poisson(1.0, size=(n, 2)).astype(np.float32)
    ad.AnnData(X=counts, obs=obs, var=var).write_h5ad(tmp_path / "c.h5ad")
    store = tmp_path / "s.h5ad"
    run_ok([cellcube, "build", f"z={tmp_path / 'z.h5ad'}", f"c={tmp_path / 'c.h5ad'}", "-o",
            store, "--transform", "none"])
    doc = json.loads(run_ok([cellcube, "distribution", store, "--genes", "G1", "--by",
                             "dataset", "--format", "json"]).stdout)
    rows = {r["dataset"]: r for r in doc["rows"]}
    assert rows["z"]["zeros"] is None and rows["z"]["bins"] is None
    assert rows["c"]["bins"] == qr.histogram(counts[:, 0]).tolist()
    assert any("below 0" in note for note in doc["notes"])
    q = run_ok([cellcube, "query", store, "--genes", "G1", "--by", "dataset", "--metrics",
                "median", "--format", "csv"])
    assert dict(line.split(",")[::2] for line in q.stdout.splitlines()[1:])["z"] == ""
    proc = run([cellcube, "de", store, "--compare", "cell_type", "--group1", "a", "--test",
                "wilcoxon"])
    helpers.assert_error(proc, mentions=("wilcoxon", "'z'", "below 0"))
    run_ok([cellcube, "de", store, "--compare", "cell_type", "--group1", "a", "--test",
            "wilcoxon", "--datasets", "c"])
