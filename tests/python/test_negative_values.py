"""Datasets with values below 0 (scaled data) and answers that pool datasets on different
scales (docs/QUERY.md, "Values on different scales"; docs/FORMAT.md, "Negative values").

- Build flags a dataset whose transformed values go below 0, warns naming it, and names
  the file's counts matrix to build from instead (or says there is none).
- A query row holding such a dataset's cells (for that gene) has an empty mean_expr on
  every surface (CLI table/CSV/JSON, HTTP objects/compact/CSV, Python), with one note
  naming the datasets; the other metrics are unchanged and match numpy on the cells.
- Rows of unflagged datasets keep their mean_expr, also in a store that holds both.
- Answers pooling datasets with different transforms say so (CLI stderr, JSON notes,
  Python attrs), queries and DE alike.
- Stores built before the flag answer as before, with a note to rebuild; add, merge and
  remove carry each dataset's flag.

Every expected number is computed here from the input files with anndata and numpy.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

import helpers
import query_reference as qr
from helpers import run, run_ok

PBMC = "anndata-0.8plus_pbmc68k-reduced-rewritten_dense-gzip_raw-csr.h5ad"
KRUMSIEK = "anndata-0.7_krumsiek11_dense-f32.h5ad"
METRICS = ["n_cells", "nnz", "frac", "sum", "mean", "mean_expr"]
pytestmark = pytest.mark.filterwarnings("ignore")  # anndata's about the old real files

NOTE_NEGATIVE = "values below 0"
NOTE_TRANSFORMS = "different transforms"
NOTE_REBUILD = "aggregated before cellcube recorded"


def dense(X):
    return np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float64)


def expected(X, labels, genes, gene_names):
    """n_cells, nnz (v > 0), frac, sum, mean and sum/nnz per (label, gene) from the cells."""
    rows = []
    col = {g: i for i, g in enumerate(gene_names)}
    for label in pd.unique(labels):
        cells = X[np.asarray(labels == label)]
        for g in genes:
            v = cells[:, col[g]]
            nnz = int((v > 0).sum())
            rows.append({"label": str(label), "gene": g, "n_cells": len(v), "nnz": nnz,
                         "frac": nnz / len(v), "sum": v.sum(), "mean": v.mean(),
                         "sum_over_nnz": v.sum() / nnz if nnz else np.nan})
    return pd.DataFrame(rows)


def query_csv(cellcube, store, *args):
    p = run_ok([cellcube, "query", store, *args, "--metrics", ",".join(METRICS), "--format", "csv"])
    frame = pd.read_csv(io.StringIO(p.stdout), keep_default_na=False, na_values=[""],
                        dtype={"gene": str})
    return frame, p.stderr


def stderr_notes(err):
    """The answer's notes as the CLI prints them (without its lines on genes a selected
    dataset did not measure, which JSON gives as genes[].not_measured_in)."""
    return [line[len("cellcube: "):] for line in err.splitlines()
            if line.startswith("cellcube: ") and " was not measured in " not in line]


def check_against_cells(got, want, by):
    """The additive metrics equal numpy's on the cells (docs/QUERY.md accuracy: 1e-5 relative)."""
    merged = want.merge(got.rename(columns={by: "label"}), on=["label", "gene"],
                        suffixes=("_want", ""))
    assert len(merged) == len(want) == len(got), (len(merged), len(want), len(got))
    assert (merged.n_cells_want == merged.n_cells).all()
    assert (merged.nnz_want == merged.nnz).all()
    for m in ("frac", "sum", "mean"):
        np.testing.assert_allclose(merged[m], merged[m + "_want"], rtol=1e-5, atol=1e-9)
    return merged


def info_json(cellcube, store):
    return json.loads(run_ok([cellcube, "info", store, "--json"]).stdout)


# --------------------------------------------------------------------------
# the real files
# --------------------------------------------------------------------------


def test_pbmc68k_scaled_x_is_flagged_and_its_mean_expr_empty(cellcube, data_dir, tmp_path):
    import anndata

    path = data_dir / PBMC
    adata = anndata.read_h5ad(path)
    store = tmp_path / "x.h5ad"
    p = run_ok([cellcube, "build", "-o", store, "--matrix", "X", "--cell-type", "bulk_labels",
                f"pbmc68k={path}"])
    warning = [line for line in p.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warning) == 1, p.stderr
    assert "dataset 'pbmc68k'" in warning[0] and "below 0" in warning[0], warning
    assert "--matrix raw" in warning[0], warning  # the file's raw/X has no negative values
    assert info_json(cellcube, store)["datasets"][0]["negative_values"] is True
    text = run_ok([cellcube, "info", store]).stdout
    header = next(line for line in text.splitlines() if "values < 0" in line)
    row = next(line for line in text.splitlines() if line.strip().startswith("pbmc68k"))
    assert row.split()[header.split().index("transform") + 1] == "yes", text

    genes = ["MS4A1", "CD79A", "NKG7"]
    got, err = query_csv(cellcube, store, "--genes", ",".join(genes), "--by", "cell_type")
    want = expected(dense(adata.X), adata.obs["bulk_labels"].astype(str), genes,
                    list(adata.var_names))
    merged = check_against_cells(got, want, "cell_type")
    assert got.mean_expr.isna().all(), got
    # The number it used to show: sum / nnz, which is no mean of any cells.
    assert (merged.sum_over_nnz < 0).any()
    notes = stderr_notes(err)
    assert len(notes) == 1 and "'pbmc68k'" in notes[0] and NOTE_NEGATIVE in notes[0], err
    assert "frac and mean_expr mean little" in notes[0]

    # The table and JSON forms leave it empty too.
    table = run_ok([cellcube, "query", store, "--genes", "MS4A1", "--by", "cell_type",
                    "--metrics", "mean_expr"]).stdout.splitlines()
    assert len(table) > 3 and all(line.split()[-1] == "-" for line in table[2:]), table
    rows = json.loads(run_ok([cellcube, "query", store, "--genes", "MS4A1", "--by", "cell_type",
                              "--metrics", "nnz,mean_expr", "--format", "json"]).stdout)
    assert rows and all(r["mean_expr"] is None for r in rows)
    assert any(r["nnz"] > 0 for r in rows)


def test_pbmc68k_raw_keeps_mean_expr(cellcube, data_dir, tmp_path):
    """The same file built from raw/X (no negative values): mean_expr = sum / nnz."""
    import anndata

    path = data_dir / PBMC
    adata = anndata.read_h5ad(path)
    store = tmp_path / "raw.h5ad"
    p = run_ok([cellcube, "build", "-o", store, "--matrix", "raw", "--cell-type", "bulk_labels",
                f"pbmc68k={path}"])
    assert "warning" not in p.stderr, p.stderr
    assert info_json(cellcube, store)["datasets"][0]["negative_values"] is False
    genes = ["MS4A1", "CD79A"]
    got, err = query_csv(cellcube, store, "--genes", ",".join(genes), "--by", "cell_type")
    assert stderr_notes(err) == [], err
    want = expected(dense(adata.raw.X), adata.obs["bulk_labels"].astype(str), genes,
                    list(adata.raw.var_names))
    merged = check_against_cells(got, want, "cell_type")
    np.testing.assert_allclose(merged.mean_expr, merged.sum_over_nnz, rtol=1e-5)
    assert merged.mean_expr.notna().any()


def test_krumsiek11_is_flagged_without_a_counts_matrix(cellcube, data_dir, tmp_path):
    import anndata

    path = data_dir / KRUMSIEK
    adata = anndata.read_h5ad(path)
    assert dense(adata.X).min() < 0
    store = tmp_path / "k.h5ad"
    p = run_ok([cellcube, "build", "-o", store, "--quiet", f"krumsiek11={path}"])
    # --quiet silences notes, not this warning.
    assert p.stderr.count("warning: dataset 'krumsiek11'") == 1, p.stderr
    assert "no matrix without negative values" in p.stderr, p.stderr
    assert info_json(cellcube, store)["datasets"][0]["negative_values"] is True
    genes = list(adata.var_names)
    got, err = query_csv(cellcube, store, "--genes", ",".join(genes), "--by", "cell_type")
    want = expected(dense(adata.X), adata.obs["cell_type"].astype(str), genes, genes)
    check_against_cells(got, want, "cell_type")
    assert got.mean_expr.isna().all()
    assert any(NOTE_NEGATIVE in n and "'krumsiek11'" in n for n in stderr_notes(err)), err


# --------------------------------------------------------------------------
# generated data: a store of flagged and unflagged datasets
# --------------------------------------------------------------------------

GENES = [f"G{i}" for i in range(6)]
ZSCORE_GENES = GENES[:4]  # the scaled dataset did not measure G4, G5


def cp10k_log1p(X):
    totals = X.sum(axis=1, keepdims=True)
    scale = np.divide(1e4, totals, out=np.zeros_like(totals), where=totals > 0)
    return np.log1p(X * scale)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, cellcube):
    """Three datasets: raw counts (cp10k_log1p), log-normalised values (none, non-negative)
    and z-scores (none, negative); each file's transformed matrix kept for reference."""
    import anndata

    d = tmp_path_factory.mktemp("mixed")
    rng = np.random.default_rng(19)
    values, obs = {}, {}
    paths = []
    for name in ("counts", "lognorm", "zscore"):
        n = 120
        genes = ZSCORE_GENES if name == "zscore" else GENES
        frame = pd.DataFrame({"cell_type": pd.Categorical(rng.choice(["T", "B", "NK"], n))},
                             index=[f"{name}{i}" for i in range(n)])
        counts = rng.poisson(rng.uniform(0.2, 3.0, len(genes)), (n, len(genes))).astype(np.float64)
        if name == "counts":
            X = counts
        elif name == "lognorm":
            X = np.where(counts > 0, np.log1p(counts) + 0.125, 0)  # not integers: auto picks none
        else:
            X = (counts - counts.mean(axis=0)) / counts.std(axis=0)
        X = X.astype(np.float32)
        p = d / f"{name}.h5ad"
        anndata.AnnData(X=X, obs=frame, var=pd.DataFrame(index=genes)).write_h5ad(p)
        # What cellcube aggregates: the stored float32 values, transformed in float64.
        X = X.astype(np.float64)
        values[name] = cp10k_log1p(X) if name == "counts" else X
        obs[name] = frame
        paths.append(p)
    store = d / "store.h5ad"
    p = run_ok([cellcube, "build", "-o", store, "--groupby", "", *paths])
    return {"dir": d, "store": store, "values": values, "obs": obs, "paths": paths,
            "build_stderr": p.stderr}


def cells_of(mixed, datasets):
    """The pooled cells (rows) of these datasets per gene: {gene: (values, cell types)}."""
    out = {}
    for g in GENES:
        vals, types = [], []
        for name in datasets:
            genes = ZSCORE_GENES if name == "zscore" else GENES
            if g not in genes:
                continue
            vals.append(mixed["values"][name][:, genes.index(g)])
            types.append(mixed["obs"][name]["cell_type"].astype(str).to_numpy())
        if vals:
            out[g] = (np.concatenate(vals), np.concatenate(types))
    return out


def test_build_flags_only_the_scaled_dataset(cellcube, mixed):
    warnings = [line for line in mixed["build_stderr"].splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "dataset 'zscore'" in warnings[0], mixed["build_stderr"]
    flags = {d["name"]: d["negative_values"] for d in info_json(cellcube, mixed["store"])["datasets"]}
    assert flags == {"counts": False, "lognorm": False, "zscore": True}


def test_unflagged_rows_keep_mean_expr(cellcube, mixed):
    """Split by dataset: the counts and lognorm rows' mean_expr is the mean over their
    expressing cells; the zscore rows' is empty."""
    got, err = query_csv(cellcube, mixed["store"], "--genes", ",".join(GENES), "--by", "dataset")
    for name, vals in mixed["values"].items():
        genes = ZSCORE_GENES if name == "zscore" else GENES
        for j, g in enumerate(genes):
            row = got[(got.dataset == name) & (got.gene == g)]
            assert len(row) == 1, (name, g)
            v = vals[:, j]
            assert row.nnz.iloc[0] == (v > 0).sum()
            np.testing.assert_allclose(row["sum"].iloc[0], v.sum(), rtol=1e-5, atol=1e-6)
            if name == "zscore":
                assert np.isnan(row.mean_expr.iloc[0])
            else:
                np.testing.assert_allclose(row.mean_expr.iloc[0], v[v > 0].mean(), rtol=1e-5)
    notes = stderr_notes(err)
    assert sum(NOTE_NEGATIVE in n for n in notes) == 1, notes
    assert any(NOTE_TRANSFORMS in n and "cp10k_log1p" in n and "none" in n for n in notes), notes


def test_pooled_rows_are_empty_only_where_the_scaled_dataset_measured_the_gene(cellcube, mixed):
    got, _ = query_csv(cellcube, mixed["store"], "--genes", ",".join(GENES), "--by", "cell_type")
    pooled = cells_of(mixed, ["counts", "lognorm", "zscore"])
    for _, row in got.iterrows():
        v, types = pooled[row.gene]
        v = v[types == row.cell_type]
        assert row.n_cells == len(v) and row.nnz == (v > 0).sum()
        np.testing.assert_allclose(row["mean"], v.mean(), rtol=1e-5, atol=1e-9)
        if row.gene in ZSCORE_GENES:
            assert np.isnan(row.mean_expr), row
        else:  # zscore did not measure it: its cells are not in the row
            np.testing.assert_allclose(row.mean_expr, v[v > 0].mean(), rtol=1e-5)


def test_notes_follow_the_selection(cellcube, mixed):
    store = mixed["store"]
    # One dataset: nothing to say.
    _, err = query_csv(cellcube, store, "--genes", "G0", "--by", "cell_type", "--datasets", "counts")
    assert stderr_notes(err) == [], err
    # Two transforms, no negative values.
    got, err = query_csv(cellcube, store, "--genes", "G0", "--where", "dataset=counts",
                         "--where", "dataset=lognorm")
    notes = stderr_notes(err)
    assert len(notes) == 1 and NOTE_TRANSFORMS in notes[0], notes
    assert "'counts'" in notes[0] and "'lognorm'" in notes[0]
    assert got.mean_expr.notna().all()
    # The scaled dataset selected, but only genes it did not measure: no row holds its
    # cells, so no negative-values note.
    got, err = query_csv(cellcube, store, "--genes", "G4,G5", "--by", "cell_type")
    assert got.mean_expr.notna().all()
    assert not any(NOTE_NEGATIVE in n for n in stderr_notes(err)), err


def test_de_notes_scales_and_its_t_test_is_unaffected(cellcube, mixed):
    from scipy import stats

    store = mixed["store"]
    p = run_ok([cellcube, "de", store, "--compare", "cell_type", "--group1", "T", "--test",
                "cells", "--datasets", "zscore", "--format", "json"])
    answer = json.loads(p.stdout)
    assert any(NOTE_NEGATIVE in n and "'zscore'" in n for n in answer["notes"]), answer["notes"]
    cells = cells_of(mixed, ["zscore"])
    for r in answer["rows"]:
        v, types = cells[r["gene"]]
        want = stats.ttest_ind(v[types == "T"], v[types != "T"], equal_var=False)
        np.testing.assert_allclose(r["t"], want.statistic, rtol=1e-6)
        np.testing.assert_allclose(r["pvalue"], want.pvalue, rtol=1e-6, atol=1e-12)
    # Pooled over all three: the transforms note too, on stderr from the CLI.
    p = run_ok([cellcube, "de", store, "--compare", "cell_type", "--group1", "T", "--test", "cells"])
    assert NOTE_TRANSFORMS in p.stderr and NOTE_NEGATIVE in p.stderr, p.stderr
    # Markers say it once, not once per cell type.
    p = run_ok([cellcube, "markers", store, "--test", "cells", "--max-padj", "1"])
    assert p.stderr.count(NOTE_TRANSFORMS) == 1 and p.stderr.count(NOTE_NEGATIVE) == 1, p.stderr


def test_http_answers_match_the_cli(cellcube, mixed, tmp_path):
    from test_server import Server, get

    store = mixed["store"]
    want, err = query_csv(cellcube, store, "--genes", ",".join(GENES), "--by", "cell_type")
    srv = Server(cellcube, store, tmp_path)
    try:
        params = [("genes", ",".join(GENES)), ("by", "cell_type"), ("metrics", ",".join(METRICS))]
        objects = json.loads(get(srv.port, "/api/v1/query", params).body)
        compact = json.loads(get(srv.port, "/api/v1/query", params + [("layout", "compact")]).body)
        csv = get(srv.port, "/api/v1/query", params + [("format", "csv")]).body.decode()
        meta = json.loads(get(srv.port, "/api/v1/meta").body)
    finally:
        srv.stop()
    assert objects["notes"] == compact["notes"] == stderr_notes(err)
    assert objects["notes"], objects
    # The CLI's line per gene some selected dataset did not measure is JSON's not_measured_in.
    lines = {ln.split(" was not measured in ")[0][len("cellcube: "):]: ln
             for ln in err.splitlines() if " was not measured in " in ln}
    for g in objects["genes"]:
        name = g["symbol"] or g["id"]
        if g["not_measured_in"]:
            assert all(f"'{d}'" in lines[name] for d in g["not_measured_in"]), (name, lines)
        else:
            assert name not in lines, (name, lines)
    got = pd.DataFrame(objects["rows"])
    assert list(got.mean_expr.isna()) == list(want.mean_expr.isna())
    mean_expr = compact["columns"].index("mean_expr") - compact["columns"].index("gene") - 1
    assert [r[2 + mean_expr] is None for r in compact["rows"]] == list(want.mean_expr.isna())
    from_csv = pd.read_csv(io.StringIO(csv), keep_default_na=False, na_values=[""])
    assert list(from_csv.mean_expr.isna()) == list(want.mean_expr.isna())
    flags = {d["name"]: d["negative_values"] for d in meta["datasets"]}
    assert flags == {"counts": False, "lognorm": False, "zscore": True}


def test_python_answers_carry_the_notes(cellcube, mixed):
    store = mixed["store"]
    want, err = query_csv(cellcube, store, "--genes", ",".join(GENES), "--by", "cell_type")
    build = qr.build_dir()
    code = f"""
        import json, warnings, cellcube
        s = cellcube.open({str(store)!r})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            df = s.query({GENES!r}, by="cell_type", metrics={METRICS!r})
            de = s.de("cell_type", "T", test="cells")
        print(json.dumps({{"notes": df.attrs["notes"], "empty": df.mean_expr.isna().tolist(),
                          "de_notes": de.attrs["notes"],
                          "warned": [str(w.message) for w in caught
                                     if issubclass(w.category, cellcube.CellcubeWarning)]}}))
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=qr.python_env(build), timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["notes"] == stderr_notes(err)
    assert out["empty"] == list(want.mean_expr.isna())
    assert any(NOTE_TRANSFORMS in n for n in out["de_notes"]), out["de_notes"]
    assert out["warned"] == out["notes"] + out["de_notes"]


# --------------------------------------------------------------------------
# stores built before the flag; add, merge and remove
# --------------------------------------------------------------------------


def drop_flag(store):
    """Makes `store` look as if built before the flag existed: a format-2 store (no
    histograms, which came later) without the negative_values column."""
    import h5py

    import store_format

    with h5py.File(store, "r+") as f:
        store_format.strip_format3(f)
        table = f["uns/cellcube/datasets"]
        del table["negative_values"]
        order = [c.decode() if isinstance(c, bytes) else c for c in table.attrs["column-order"]]
        table.attrs.create("column-order", [c for c in order if c != "negative_values"],
                           dtype=h5py.string_dtype())


def test_a_store_built_before_the_flag_answers_as_before_with_a_note(cellcube, mixed, tmp_path):
    old = tmp_path / "old.h5ad"
    run_ok([cellcube, "build", "-o", old, "--quiet", "--groupby", "", mixed["paths"][2]])
    drop_flag(old)
    assert info_json(cellcube, old)["datasets"][0]["negative_values"] is None
    assert "not recorded" in run_ok([cellcube, "info", old]).stdout
    got, err = query_csv(cellcube, old, "--genes", ",".join(ZSCORE_GENES), "--by", "cell_type")
    # As before the flag: mean_expr = sum / nnz, whatever it means.
    with_nnz = got[got.nnz > 0]
    assert len(with_nnz) > 0
    np.testing.assert_allclose(with_nnz.mean_expr, with_nnz["sum"] / with_nnz.nnz, rtol=1e-12)
    notes = stderr_notes(err)
    assert len(notes) == 1 and NOTE_REBUILD in notes[0] and "'zscore'" in notes[0], notes
    assert "rebuild" in notes[0]

    # add keeps the old dataset's unknown flag and records the new one's.
    run_ok([cellcube, "add", old, "--quiet", mixed["paths"][0]])
    flags = {d["name"]: d["negative_values"] for d in info_json(cellcube, old)["datasets"]}
    assert flags == {"zscore": None, "counts": False}


def test_merge_and_remove_carry_the_flags(cellcube, mixed, tmp_path):
    a, b = tmp_path / "a.h5ad", tmp_path / "b.h5ad"
    run_ok([cellcube, "build", "-o", a, "--quiet", "--groupby", "", mixed["paths"][2]])
    run_ok([cellcube, "build", "-o", b, "--quiet", "--groupby", "", mixed["paths"][0]])
    merged = tmp_path / "m.h5ad"
    run_ok([cellcube, "merge", "-o", merged, a, b])
    flags = {d["name"]: d["negative_values"] for d in info_json(cellcube, merged)["datasets"]}
    assert flags == {"zscore": True, "counts": False}
    got, _ = query_csv(cellcube, merged, "--genes", "G0", "--by", "dataset")
    assert got.set_index("dataset").mean_expr.isna().to_dict() == {"zscore": True, "counts": False}
    run_ok([cellcube, "remove", merged, "counts"])
    flags = {d["name"]: d["negative_values"] for d in info_json(cellcube, merged)["datasets"]}
    assert flags == {"zscore": True}


def test_a_bad_flag_is_refused(cellcube, mixed, tmp_path):
    import h5py

    store = tmp_path / "bad.h5ad"
    run_ok([cellcube, "build", "-o", store, "--quiet", "--groupby", "", mixed["paths"][0]])
    with h5py.File(store, "r+") as f:
        f["uns/cellcube/datasets/negative_values"][0] = 7
    p = run([cellcube, "query", store, "--genes", "G0"])
    helpers.assert_error(p, mentions=["negative_values"])
