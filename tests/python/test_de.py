"""Differential expression (docs/DE.md, issue 12) against scipy on the same cells.

Two studies whose donor labels repeat (D1..D6 in both), each donor with cells of every
cell type; half the donors of each study are diseased. Values are written as they are
aggregated (`--transform none`), so the reference tests the very values:

- cell-level: scipy.stats.ttest_ind(equal_var=False) on the side's cells;
- donor-level: each (study, donor)'s mean over its cells on a side, kept with at least
  --min-cells cells there; ttest_rel on the differences when donors sit on both sides
  (paired), ttest_ind(equal_var=False) on the means otherwise;
- Benjamini-Hochberg written out here, independently of cellcube's.

Planted genes: MARK (high in cell type T), DON (a donor-level effect: every cell of a
diseased donor shifted by the donor's own random offset, so cells look significant and
donors do not), LOST (not measured in study 2), ZERO (no value anywhere), and noise genes.
"""
from __future__ import annotations

import io
import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st

import query_reference as qr
from helpers import run, run_ok, assert_error

warnings.filterwarnings("ignore")

N_NOISE = 40
MIN_CELLS = 10


def bh(p):
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    order = idx[np.argsort(p[idx], kind="stable")]
    m = len(order)
    running = 1.0
    for rank in range(m, 0, -1):
        i = order[rank - 1]
        running = min(running, p[i] * m / rank)
        out[i] = running
    return out


def write_study(path, study, rng, with_lost):
    import anndata

    cell_types = ["T", "B", "M"]
    rows, obs = [], []
    genes = ["MARK", "DON", "ZERO"] + (["LOST"] if with_lost else []) + [f"N{i:02d}" for i in range(N_NOISE)]
    for d in range(6):
        donor = f"D{d + 1}"
        diseased = d % 2 == 1
        offset = rng.normal(0, 1.5) if diseased else 0.0
        for ct in cell_types:
            n = int(rng.integers(12, 40)) if not (d == 5 and ct == "M") else 4  # one small side
            x = rng.gamma(2.0, 0.5, size=(n, len(genes)))
            x[rng.random(x.shape) < 0.3] = 0.0
            col = {g: i for i, g in enumerate(genes)}
            x[:, col["MARK"]] += 3.0 if ct == "T" else 0.0
            x[:, col["DON"]] += offset + (0.8 if diseased else 0.0) * 0  # donor noise only
            x[:, col["DON"]] = np.abs(x[:, col["DON"]])
            x[:, col["ZERO"]] = 0.0
            rows.append(x)
            for _ in range(n):
                obs.append((ct, donor, "disease" if diseased else "normal"))
    X = np.vstack(rows)
    df = pd.DataFrame(obs, columns=["cell_type", "donor", "condition"])
    for c in df:
        df[c] = pd.Categorical(df[c])
    df.index = [f"{study}_c{i}" for i in range(len(df))]
    anndata.AnnData(X=X, obs=df, var=pd.DataFrame(index=genes), dtype=X.dtype).write_h5ad(path)
    return X, df, genes


@pytest.fixture(scope="module")
def de_store(tmp_path_factory, cellcube):
    d = tmp_path_factory.mktemp("de")
    rng = np.random.default_rng(7)
    cells = {}
    for study, lost in (("s1", True), ("s2", False)):
        X, obs, genes = write_study(d / f"{study}.h5ad", study, rng, lost)
        cells[study] = (X, obs, genes)
    store = d / "store.h5ad"
    run_ok([cellcube, "build", "-o", store, "--quiet", "--transform", "none", "--cell-type",
            "cell_type", "--groupby", "donor,condition", d / "s1.h5ad", d / "s2.h5ad"])
    return store, cells


def gene_values(cells, gene, mask_of):
    """Per study: the gene's values on the cells mask_of(obs) selects; None when the study
    did not measure the gene."""
    out = {}
    for study, (X, obs, genes) in cells.items():
        if gene not in genes:
            continue
        m = mask_of(obs)
        out[study] = (X[m, genes.index(gene)], obs[m])
    return out


def de(cellcube, store, *args):
    p = run_ok([cellcube, "de", store, *args, "--format", "csv"])
    return pd.read_csv(io.StringIO(p.stdout), keep_default_na=False, na_values=[""]), p.stderr


def close(a, b, rel, abs_=0.0):
    if b is None or (isinstance(b, float) and math.isnan(b)):
        return a is None or (isinstance(a, float) and math.isnan(a))
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def all_genes(cells):
    g = []
    for _, (_, _, genes) in cells.items():
        g += [x for x in genes if x not in g]
    return g


def check_against(got, want_rows, test):
    got = got.set_index("gene")
    assert set(got.index) == set(want_rows), (sorted(set(got.index) ^ set(want_rows)))
    p = [want_rows[g]["pvalue"] for g in want_rows]
    padj = dict(zip(want_rows, bh(p)))
    for g, w in want_rows.items():
        r = got.loc[g]
        assert int(r.n_cells1) == w["n1"] and int(r.n_cells2) == w["n2"], (g, r, w)
        for k in ("frac1", "frac2"):
            assert close(float(r[k]), w[k], 1e-12), (g, k)
        for k in ("mean1", "mean2", "effect"):
            assert close(float(r[k]), w[k], 1e-5, 1e-12), (g, k, r[k], w[k])
        assert close(float(r.t), w["t"], 1e-6, 1e-9), (g, r.t, w["t"])
        assert close(float(r.df), w["df"], 1e-6), (g, r.df, w["df"])
        assert close(float(r.pvalue), w["pvalue"], 1e-6, 1e-12), (g, r.pvalue, w["pvalue"])
        assert close(float(r.padj), padj[g], 1e-6, 1e-12), (g, r.padj, padj[g])
        if test != "cells":
            assert int(r.n_donors1) == w["k1"] and int(r.n_donors2) == w["k2"], (g, r, w)


def welch(a, b):
    out = {"t": float("nan"), "df": float("nan"), "pvalue": float("nan"), "effect": float("nan")}
    if len(a) < 2 or len(b) < 2:
        return out
    va, vb = np.var(a, ddof=1), np.var(b, ddof=1)
    pooled = ((len(a) - 1) * va + (len(b) - 1) * vb) / (len(a) + len(b) - 2)
    if pooled > 0:
        out["effect"] = (np.mean(a) - np.mean(b)) / math.sqrt(pooled)
    se2 = va / len(a) + vb / len(b)
    if se2 > 0:
        r = st.ttest_ind(a, b, equal_var=False)
        out["t"], out["pvalue"] = float(r.statistic), float(r.pvalue)
        out["df"] = se2 ** 2 / ((va / len(a)) ** 2 / (len(a) - 1) + (vb / len(b)) ** 2 / (len(b) - 1))
    return out


def test_cells_test_matches_scipy(cellcube, de_store):
    store, cells = de_store
    got, err = de(cellcube, store, "--compare", "cell_type", "--group1", "T", "--test", "cells")
    assert "test: cells" in err
    want = {}
    for g in all_genes(cells):
        s1 = gene_values(cells, g, lambda o: (o.cell_type == "T").to_numpy())
        s2 = gene_values(cells, g, lambda o: (o.cell_type != "T").to_numpy())
        a = np.concatenate([v for v, _ in s1.values()])
        b = np.concatenate([v for v, _ in s2.values()])
        w = {"n1": len(a), "n2": len(b), "mean1": a.mean(), "mean2": b.mean(),
             "frac1": (a > 0).mean(), "frac2": (b > 0).mean(), **welch(a, b)}
        want[g] = w
    check_against(got, want, "cells")
    zero = got.set_index("gene").loc["ZERO"]
    assert math.isnan(zero.t) and math.isnan(zero.pvalue) and math.isnan(zero.effect)
    assert int(got.set_index("gene").loc["LOST"].n_cells1) < int(got.set_index("gene").loc["MARK"].n_cells1)


def donor_means(per_study, min_cells, side_mask, kept_keys=None):
    """{(study, donor): mean} over the donors with >= min_cells cells on the side (their
    cell count taken over every gene: the population's cells)."""
    out = {}
    for study, (v, obs) in per_study.items():
        for donor, idx in obs.groupby("donor", observed=True).indices.items():
            key = (study, donor)
            if kept_keys is not None and key not in kept_keys:
                continue
            out[key] = v[idx].mean()
    return out


def kept_donors(cells, mask_of, min_cells):
    keys = set()
    for study, (X, obs, genes) in cells.items():
        counts = obs[mask_of(obs)].groupby("donor", observed=True).size()
        keys |= {(study, d) for d, n in counts.items() if n >= min_cells}
    return keys


def test_paired_donor_test_matches_ttest_rel(cellcube, de_store):
    store, cells = de_store
    side1 = lambda o: (o.cell_type == "T").to_numpy()
    side2 = lambda o: (o.cell_type != "T").to_numpy()
    got, err = de(cellcube, store, "--compare", "cell_type", "--group1", "T")
    assert "paired" in err
    pairs = kept_donors(cells, side1, MIN_CELLS) & kept_donors(cells, side2, MIN_CELLS)
    want = {}
    for g in all_genes(cells):
        s1, s2 = gene_values(cells, g, side1), gene_values(cells, g, side2)
        m1, m2 = donor_means(s1, MIN_CELLS, side1, pairs), donor_means(s2, MIN_CELLS, side2, pairs)
        keys = sorted(set(m1) & set(m2))
        x1 = np.array([m1[k] for k in keys])
        x2 = np.array([m2[k] for k in keys])
        d = x1 - x2
        w = {"n1": sum(len(v) for v, _ in s1.values()), "n2": sum(len(v) for v, _ in s2.values()),
             "k1": len(keys), "k2": len(keys), "mean1": x1.mean(), "mean2": x2.mean(),
             "frac1": np.mean(np.concatenate([v for v, _ in s1.values()]) > 0),
             "frac2": np.mean(np.concatenate([v for v, _ in s2.values()]) > 0),
             "t": float("nan"), "df": float("nan"), "pvalue": float("nan"), "effect": float("nan")}
        if len(d) >= 2 and np.std(d, ddof=1) > 0:
            r = st.ttest_rel(x1, x2)
            w.update(t=float(r.statistic), pvalue=float(r.pvalue), df=len(d) - 1,
                     effect=d.mean() / np.std(d, ddof=1))
        want[g] = w
    check_against(got, want, "donors")
    # Donor labels repeat across studies: 12 pairs, not 6.
    assert int(got.set_index("gene").loc["MARK"].n_donors1) == 12


def test_unpaired_donor_test_and_the_contrast_with_cells(cellcube, de_store):
    store, cells = de_store
    side1 = lambda o: (o.condition == "disease").to_numpy()
    side2 = lambda o: (o.condition == "normal").to_numpy()
    got, err = de(cellcube, store, "--compare", "condition", "--group1", "disease", "--group2", "normal")
    assert "unpaired" in err
    k1, k2 = kept_donors(cells, side1, MIN_CELLS), kept_donors(cells, side2, MIN_CELLS)
    want = {}
    for g in all_genes(cells):
        s1, s2 = gene_values(cells, g, side1), gene_values(cells, g, side2)
        x1 = np.array(list(donor_means(s1, MIN_CELLS, side1, k1).values()))
        x2 = np.array(list(donor_means(s2, MIN_CELLS, side2, k2).values()))
        w = {"n1": sum(len(v) for v, _ in s1.values()), "n2": sum(len(v) for v, _ in s2.values()),
             "k1": len(x1), "k2": len(x2), "mean1": x1.mean(), "mean2": x2.mean(),
             "frac1": np.mean(np.concatenate([v for v, _ in s1.values()]) > 0),
             "frac2": np.mean(np.concatenate([v for v, _ in s2.values()]) > 0), **welch(x1, x2)}
        want[g] = w
    check_against(got, want, "donors")
    # DON differs only by donor: cells call it, donors do not.
    cells_run, _ = de(cellcube, store, "--compare", "condition", "--group1", "disease", "--test", "cells")
    assert float(cells_run.set_index("gene").loc["DON"].padj) < 1e-6
    assert float(got.set_index("gene").loc["DON"].padj) > 0.05


def test_order_filters_and_json(cellcube, de_store):
    store, _ = de_store
    got, _ = de(cellcube, store, "--compare", "cell_type", "--group1", "T")
    # docs/DE.md's order, rebuilt here: padj ascending, then |logfc| descending (empty last),
    # then the store's gene order. ZERO has no padj, so "empty last" is exercised too.
    import h5py

    with h5py.File(store, "r") as f:
        order = {g.decode() if isinstance(g, bytes) else str(g): i for i, g in enumerate(f["var/_index"][:])}
    assert got.padj.isna().sum() >= 1 and got.padj.notna().sum() >= 10
    want = sorted(got.itertuples(index=False), key=lambda r: (
        math.isnan(r.padj), 0.0 if math.isnan(r.padj) else r.padj,
        math.isnan(r.logfc), 0.0 if math.isnan(r.logfc) else -abs(r.logfc), order[r.gene]))
    assert list(got.gene) == [r.gene for r in want]
    up, _ = de(cellcube, store, "--compare", "cell_type", "--group1", "T", "--direction", "up", "--top", "3")
    assert len(up) == 3 and (up.logfc > 0).all() and up.gene.iloc[0] == "MARK"
    p = run_ok([cellcube, "de", store, "--compare", "cell_type", "--group1", "T", "--format", "json"])
    j = json.loads(p.stdout)
    assert j["test"] == "donors-paired" and j["columns"][0] == "gene" and len(j["rows"]) == len(got)
    assert any("paired" in n for n in j["notes"]) and isinstance(j["took_us"], int)


def test_markers(cellcube, de_store):
    store, _ = de_store
    p = run_ok([cellcube, "markers", store, "--format", "csv"])
    m = pd.read_csv(io.StringIO(p.stdout), keep_default_na=False, na_values=[""])
    assert list(m.columns[:3]) == ["cell_type", "gene", "symbol"]
    t = m[m.cell_type == "T"]
    assert t.gene.iloc[0] == "MARK" and (t.logfc > 0).all() and (t.padj <= 0.05).all()
    assert (m.groupby("cell_type").size() <= 10).all()


def test_bad_input(cellcube, de_store):
    store, _ = de_store
    base = [cellcube, "de", store]
    assert_error(run(base + ["--compare", "nope", "--group1", "T"]), mentions=["nope"])
    assert_error(run(base + ["--compare", "cell_type", "--group1", "X"]), mentions=["'X'"])
    assert_error(run(base + ["--compare", "cell_type", "--group1", "T", "--group2", "T"]),
                 mentions=["both sides"])
    assert_error(run(base + ["--compare", "cell_type", "--group1", "T", "--where", "cell_type=B"]),
                 mentions=["side 1"])
    assert_error(run(base + ["--compare", "cell_type", "--group1", "T", "--test", "donors",
                             "--min-cells", "1000"]), mentions=["--test donors", "--donor"])
    assert_error(run(base + ["--compare", "cell_type", "--group1", "T", "--group2", "rest",
                             "--group2", "B"]), mentions=["rest"])
    assert_error(run(base + ["--group1", "T"]), code=2)


def test_http_de_and_markers(cellcube, de_store, tmp_path):
    """GET /api/v1/de and /api/v1/markers: CSV byte for byte the CLI's, JSON in docs/DE.md's
    shape, bad input a 4xx with a JSON error."""
    from test_server import Server, get

    store, _ = de_store
    srv = Server(cellcube, store, tmp_path)
    try:
        params = [("compare", "cell_type"), ("group1", "T"), ("where", "condition:normal")]
        cli = run_ok([cellcube, "de", store, "--compare", "cell_type", "--group1", "T",
                      "--where", "condition=normal", "--format", "csv"]).stdout
        r = get(srv.port, "/api/v1/de", params + [("format", "csv")])
        assert r.status == 200 and r.body.decode() == cli
        r = get(srv.port, "/api/v1/de", params)
        j = json.loads(r.body)
        assert r.status == 200 and j["test"] in ("donors-paired", "donors-unpaired", "cells")
        assert j["columns"] == list(pd.read_csv(io.StringIO(cli)).columns)
        assert len(j["rows"]) == len(cli.splitlines()) - 1 and j["notes"]
        cli_m = run_ok([cellcube, "markers", store, "--top", "2", "--format", "csv"]).stdout
        r = get(srv.port, "/api/v1/markers", [("top", "2"), ("format", "csv")])
        assert r.status == 200 and r.body.decode() == cli_m
        for bad in ([("compare", "cell_type")], [("compare", "nope"), ("group1", "T")],
                    [("compare", "cell_type"), ("group1", "T"), ("group2", "T")],
                    [("compare", "cell_type"), ("group1", "T"), ("min_cells", "x")]):
            r = get(srv.port, "/api/v1/de", bad)
            assert 400 <= r.status < 500 and "error" in json.loads(r.body), (bad, r.status)
        # Over HTTP the errors name the parameters, never the command line's flags; a
        # fraction outside [0, 1] is refused (it used to answer 200 with no rows).
        t = [("compare", "cell_type"), ("group1", "T")]
        for path, bad, words in (
                ("/api/v1/de", t + [("min_frac", "2")], "min_frac must be a number from 0 to 1"),
                ("/api/v1/de", t + [("min_frac", "-0.1")], "min_frac must be a number from 0 to 1"),
                ("/api/v1/de", t + [("test", "wilcoxonn")], "test must be auto, donors, cells or wilcoxon"),
                ("/api/v1/de", t + [("direction", "sideways")], "direction must be up, down"),
                ("/api/v1/de", t + [("test", "donors"), ("min_cells", "1000")],
                 "test=donors needs at least 2 donors"),
                ("/api/v1/de", [("compare", "cell_type"), ("group1", "X")], "(group1)"),
                ("/api/v1/markers", [("max_padj", "2")], "max_padj must be a number from 0 to 1")):
            r = get(srv.port, path, bad)
            error = json.loads(r.body)["error"]
            # (The advice to rebuild quotes a command, which has its flags.)
            own_words = error.replace("'cellcube build --donor COL'", "")
            assert r.status == 400 and words in error and "--" not in own_words, (bad, error)
    finally:
        srv.stop()


def test_option_errors_name_the_option_as_each_surface_spells_it(cellcube, de_store):
    """The command line names its flags; Python names its arguments (as HTTP does)."""
    store, _ = de_store
    base = [cellcube, "de", store, "--compare", "cell_type", "--group1", "T"]
    assert_error(run(base + ["--min-frac", "2"]), mentions=["--min-frac must be a number from 0 to 1"])
    assert_error(run(base + ["--test", "x"]), mentions=["--test must be auto, donors, cells or wilcoxon"])
    assert_error(run([cellcube, "markers", store, "--max-padj", "1.5"]),
                 mentions=["--max-padj must be a number from 0 to 1"])
    code = f"""
        import cellcube
        s = cellcube.open({str(store)!r})
        for kwargs in ({{"min_frac": 2}}, {{"test": "x"}}, {{"group1": "X"}}):
            try:
                s.de("cell_type", **{{"group1": "T", **kwargs}})
                print("no error for", kwargs)
            except ValueError as e:
                print(e)
    """
    import subprocess
    import sys
    import textwrap

    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=qr.python_env(qr.build_dir()), timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3, lines
    assert "min_frac must be a number from 0 to 1" in lines[0]
    assert "test must be auto, donors, cells or wilcoxon" in lines[1]
    assert "(group1)" in lines[2] and "'X'" in lines[2]
    assert not any("--" in line for line in lines), lines


def test_build_donor_candidates(cellcube, tmp_path):
    """build --donor patient,subject: each file groups by the first candidate it has,
    stored as one 'donor' column (recorded per dataset); a file with none gets NA donors
    and a note; de then finds the donors itself."""
    import anndata

    rng = np.random.default_rng(3)
    paths = []
    for name, column in (("a", "patient"), ("b", "subject"), ("c", None)):
        n = 120
        obs = pd.DataFrame({"cell_type": pd.Categorical(np.repeat(["T", "B"], n // 2)),
                            "batch": pd.Categorical(rng.choice(["x", "y"], n))},
                           index=[f"{name}{i}" for i in range(n)])
        if column:
            obs[column] = pd.Categorical(np.tile([f"P{i}" for i in range(4)], n // 4))
            obs["donor"] = pd.Categorical(["ignored"] * n)  # a column of that name loses
        X = rng.poisson(2.0, (n, 5)).astype(np.float32)
        p = tmp_path / f"{name}.h5ad"
        anndata.AnnData(X=X, obs=obs, var=pd.DataFrame(index=[f"G{i}" for i in range(5)])).write_h5ad(p)
        paths.append(p)
    store = tmp_path / "donors.h5ad"
    proc = run_ok([cellcube, "build", "-o", store, "--donor", "patient,subject", "--groupby", "batch",
                   *paths])
    assert "none of the --donor columns" in proc.stderr and "'c'" in proc.stderr
    info = json.loads(run_ok([cellcube, "info", store, "--json"]).stdout)
    cols = {c["name"]: [v["value"] for v in c["values"]] for c in info["columns"]}
    assert cols["donor"] == ["P0", "P1", "P2", "P3", "NA"], cols
    assert [d["donor_column"] for d in info["datasets"]] == ["patient", "subject", ""]
    got, err = de(cellcube, store, "--compare", "cell_type", "--group1", "T")
    assert "paired" in err and "8 donors" in err  # (a, P0..P3) and (b, P0..P3)
    assert (got.n_donors1 == 8).all()
    bad = run([cellcube, "build", "-o", tmp_path / "bad.h5ad", "--donor", "cell_type", paths[0]])
    assert_error(bad, mentions=["cell-type column"])


def test_one_selection_for_counts_queries_and_de(cellcube, tmp_path):
    """Facet counts, queries, not_measured_in and DE sides come from one selection: a
    literal 'NA' label and missing values alike for where=NA, the same error for an
    unknown value, and where=dataset:X honoured by not_measured_in (issue 12)."""
    import anndata
    from test_server import Server, get

    rng = np.random.default_rng(11)
    paths = []
    for name, genes in (("a", ["G0", "G1"]), ("b", ["G0"])):
        n = 60
        stage = pd.Categorical(rng.choice(["I", "NA", None], n), categories=["I", "NA"])
        obs = pd.DataFrame({"cell_type": pd.Categorical(np.repeat(["T", "B"], n // 2)),
                            "stage": stage}, index=[f"{name}{i}" for i in range(n)])
        X = rng.poisson(2.0, (n, len(genes))).astype(np.float32)
        p = tmp_path / f"{name}.h5ad"
        anndata.AnnData(X=X, obs=obs, var=pd.DataFrame(index=genes)).write_h5ad(p)
        paths.append(p)
    store = tmp_path / "sel.h5ad"
    run_ok([cellcube, "build", "-o", store, "--quiet", "--groupby", "stage", *paths])
    srv = Server(cellcube, store, tmp_path)
    try:
        q = json.loads(get(srv.port, "/api/v1/query", [("genes", "G0"), ("where", "stage:NA")]).body)
        query_cells = sum(r["n_cells"] for r in q["rows"])
        counts = json.loads(get(srv.port, "/api/v1/counts", [("where", "stage:NA")]).body)
        assert counts["n_cells"] == query_cells > 0
        d = json.loads(get(srv.port, "/api/v1/de", [("compare", "cell_type"), ("group1", "T"),
                                                     ("where", "stage:NA")]).body)
        g0 = next(r for r in d["rows"] if r["gene"] == "G0")
        assert g0["n_cells1"] + g0["n_cells2"] == query_cells
        errors = [json.loads(get(srv.port, path, params).body)["error"]
                  for path, params in (("/api/v1/query", [("genes", "G0"), ("where", "stage:II")]),
                                       ("/api/v1/counts", [("where", "stage:II")]))]
        assert errors[0] == errors[1], errors
        q = json.loads(get(srv.port, "/api/v1/query", [("genes", "G1"), ("where", "dataset:a")]).body)
        assert q["genes"][0]["not_measured_in"] == []
        # datasets=a and where=dataset:a are one population: the same counts (faceted on
        # the dataset column alike) and the same answers.
        for path, params in (("/api/v1/counts", [("where", "stage:I")]),
                             ("/api/v1/query", [("genes", "G0,G1"), ("by", "cell_type")]),
                             ("/api/v1/de", [("compare", "cell_type"), ("group1", "T")])):
            spelt = [json.loads(get(srv.port, path, params + [extra]).body)
                     for extra in (("datasets", "a"), ("where", "dataset:a"))]
            for answer in spelt:
                answer.pop("took_us", None)
            assert spelt[0] == spelt[1], (path, spelt)
            assert spelt[0].get("rows", spelt[0].get("columns"))
        q = json.loads(get(srv.port, "/api/v1/query", [("genes", "G1")]).body)
        assert q["genes"][0]["not_measured_in"] == ["b"]
    finally:
        srv.stop()


def test_mixed_transforms_are_compared_with_a_note(cellcube, tmp_path):
    """Datasets aggregated with different transforms are compared anyway, with a note
    (docs/DE.md); the numbers are still those of the stored values."""
    import anndata

    rng = np.random.default_rng(5)
    paths = []
    for name in ("counts", "scaled"):
        n = 80
        obs = pd.DataFrame({"cell_type": pd.Categorical(np.repeat(["T", "B"], n // 2)),
                            "donor": pd.Categorical(np.tile(["D1", "D2", "D3", "D4"], n // 4))},
                           index=[f"{name}{i}" for i in range(n)])
        X = rng.poisson(3.0, (n, 4)).astype(np.float32)
        if name == "scaled":
            X = X * 0.5 + 0.25  # not integers: auto picks none
        p = tmp_path / f"{name}.h5ad"
        anndata.AnnData(X=X, obs=obs, var=pd.DataFrame(index=[f"G{i}" for i in range(4)])).write_h5ad(p)
        paths.append(p)
    store = tmp_path / "mixed.h5ad"
    run_ok([cellcube, "build", "-o", store, "--quiet", "--groupby", "donor", *paths])
    got, err = de(cellcube, store, "--compare", "cell_type", "--group1", "T", "--test", "cells")
    assert "different transforms" in err and "cp10k_log1p" in err and "none" in err, err
    assert len(got) == 4 and got.pvalue.notna().all()
    p = run_ok([cellcube, "de", store, "--compare", "cell_type", "--group1", "T", "--format", "json"])
    assert any("different transforms" in n for n in json.loads(p.stdout)["notes"])


def test_markers_say_each_note_once(cellcube, de_store):
    """markers: one note per distinct test, led by the values it holds for (every value,
    or a list), instead of one note per value; every value is named exactly once."""
    store, _ = de_store
    p = run_ok([cellcube, "markers", store, "--format", "json"])
    answer = json.loads(p.stdout)
    tests = [n for n in answer["notes"] if ": test: " in n]
    info = json.loads(run_ok([cellcube, "info", store, "--json"]).stdout)
    column = next(c for c in info["columns"] if c["name"] == "cell_type")
    values = sorted(v["value"] for v in column["values"] if v["n_cells"] > 0 and v["value"] != "NA")
    assert len(values) >= 2 and tests and len(tests) < len(values), answer["notes"]
    named = []
    for note in tests:
        who = note.split(": test: ")[0]
        named += values if who == "every cell_type" else who.split(", ")
    assert sorted(named) == values, (named, values)  # every value named exactly once
    # The CLI prints the same notes on stderr.
    err = run_ok([cellcube, "markers", store]).stderr
    assert sum(": test: " in line for line in err.splitlines()) == len(tests), err
