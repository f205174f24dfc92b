"""Files that differ (docs/BUILD.md "Inputs that differ", docs/DE.md): a --groupby column
some inputs lack is NA there with one note; one no input has is an error; every input's
problem is reported in one run; each dataset's cell-type column is printed; and `de
--compare COL` leaves the datasets that lack COL on neither side. On real files: scirpy's
wu2020 (source, patient) beside the cellxgene schema 3 example (neither), pbmc68k."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

import anndata
import helpers
from helpers import assert_error, run, run_ok

WU = helpers.DATA_DIR / "anndata-0.7_scirpy-wu2020-200_csr-gzip_int16-codes.h5ad"
SCHEMA3 = helpers.DATA_DIR / "anndata-0.8.0_cellxgene-schema3-example_csr_raw.h5ad"
PBMC = helpers.DATA_DIR / "anndata-0.6_pbmc68k-reduced_dense-gzip_legacy-raw.h5ad"
NO_X = [helpers.DATA_DIR / "anndata-0.8plus_soma-x-none_noX.h5ad",
        helpers.DATA_DIR / "anndata-0.11.4_archive_empty-noX.h5ad"]
CELL_TYPE = "cluster_orig,cell_type_ontology_term_id"


@pytest.fixture(scope="module")
def files():
    for f in [WU, SCHEMA3, PBMC, *NO_X]:
        if not f.is_file():
            pytest.fail(f"missing real file {f}", pytrace=False)


def _s(x):
    return x.decode() if isinstance(x, bytes) else str(x)


def obs_column(store, name):
    """Per group: its label of obs column `name` (None = NA), with the dataset's."""
    with h5py.File(store) as f:
        cats = [_s(c) for c in f[f"obs/{name}/categories"][:]]
        codes = f[f"obs/{name}/codes"][:]
        dcats = [_s(c) for c in f["obs/dataset/categories"][:]]
        dcodes = f["obs/dataset/codes"][:]
        n = f["obs/n_cells"][:]
    return [(dcats[d], None if k < 0 else cats[k], int(c)) for d, k, c in zip(dcodes, codes, n)]


@pytest.fixture(scope="module")
def mixed(files, tmp_path_factory):
    store = tmp_path_factory.mktemp("differ") / "mixed.h5ad"
    proc = run_ok([str(helpers.cellcube_path()), "build", "-o", str(store), "--cell-type", CELL_TYPE,
                   "--groupby", "source,patient", f"wu={WU}", f"s3={SCHEMA3}"])
    return store, proc


def test_a_groupby_column_one_input_lacks_is_na_there_with_one_note(mixed):
    store, proc = mixed
    for column in ("source", "patient"):
        notes = [ln for ln in proc.stderr.splitlines() if ln.startswith(f"--groupby column '{column}'")]
        assert notes == [f"--groupby column '{column}' is missing from 1 of 2 datasets ('s3'): "
                         "their cells are NA in it"], proc.stderr
    wu = anndata.read_h5ad(WU).obs
    s3_cells = anndata.read_h5ad(SCHEMA3, backed="r").n_obs
    rows = obs_column(store, "source")
    assert sum(c for d, v, c in rows if d == "s3" and v is None) == s3_cells
    assert not any(v is not None for d, v, _ in rows if d == "s3")
    got = {}
    for d, v, c in rows:
        if d == "wu":
            got[v] = got.get(v, 0) + c
    want = wu["source"].astype(str).value_counts().to_dict()
    assert got == want


def test_a_groupby_column_no_input_has_is_one_error_with_a_suggestion(files, tmp_path):
    out = tmp_path / "typo.h5ad"
    proc = run([str(helpers.cellcube_path()), "build", "-o", str(out), "--quiet", "--cell-type", CELL_TYPE,
                "--groupby", "sourse", f"wu={WU}", f"s3={SCHEMA3}"])
    assert_error(proc, mentions=["sourse", "did you mean 'source'"])
    assert not out.exists()


def test_every_bad_input_is_reported_in_one_run(files, tmp_path):
    out = tmp_path / "bad.h5ad"
    proc = run([str(helpers.cellcube_path()), "build", "-o", str(out), "--quiet",
                f"a={NO_X[0]}", f"b={NO_X[1]}", f"wu={WU}"])
    assert proc.returncode == 1, helpers.describe(proc)
    lines = proc.stderr.splitlines()
    assert lines[0] == "cellcube: error: 3 of 3 inputs cannot be built:", proc.stderr
    # One entry per input; the cell-type error's own lists are indented under its entry.
    entries = [ln for ln in lines[1:] if not ln.startswith("    ")]
    assert len(entries) == 3 and all(ln.startswith("  ") for ln in lines[1:]), proc.stderr
    assert "has no matrix" in entries[0] and str(NO_X[0]) in entries[0]
    assert "has no matrix" in entries[1] and str(NO_X[1]) in entries[1]
    assert "no cell-type column" in entries[2] and str(WU) in entries[2]
    assert lines[-1].startswith("    ") and "'cluster_orig'" in proc.stderr
    assert not out.exists()
    # One bad input of several: its own error line, as before.
    proc = run([str(helpers.cellcube_path()), "build", "-o", str(out), "--quiet",
                f"a={NO_X[0]}", f"s3={SCHEMA3}"])
    assert_error(proc, mentions=["has no matrix", str(NO_X[0])])


def test_build_prints_each_datasets_cell_type_column(files, tmp_path):
    proc = run_ok([str(helpers.cellcube_path()), "build", "-o", str(tmp_path / "p.h5ad"),
                   "--matrix", "X", f"pbmc={PBMC}"])
    obs = anndata.read_h5ad(PBMC).obs
    assert "louvain" in obs.columns and "bulk_labels" in obs.columns
    assert ("dataset 'pbmc': cell types from obs 'louvain' (the first default candidate it has; "
            "--cell-type COL picks another)") in proc.stderr.splitlines()


def test_de_leaves_datasets_without_the_compared_column_on_neither_side(mixed):
    store, _ = mixed
    proc = run_ok([str(helpers.cellcube_path()), "de", str(store), "--compare", "source", "--group1",
                   "Tumor", "--test", "cells", "--format", "csv"])
    assert ("note: 1 dataset has no column 'source' ('s3'): their cells are on neither side"
            in proc.stderr.splitlines()), proc.stderr
    wu = anndata.read_h5ad(WU).obs
    df = pd.read_csv(__import__("io").StringIO(proc.stdout))
    tumor = int((wu["source"] == "Tumor").sum())
    rest = int((wu["source"] != "Tumor").sum())
    assert len(df) > 0
    assert set(df["n_cells1"]) == {tumor}
    assert set(df["n_cells2"]) == {rest}


def test_query_says_which_selected_datasets_did_not_measure_a_gene(mixed):
    store, _ = mixed
    wu_genes = set(anndata.read_h5ad(WU, backed="r").var_names)
    s3_genes = set(anndata.read_h5ad(SCHEMA3, backed="r").var_names)
    only_wu = sorted(wu_genes - s3_genes)[0]
    both = sorted(wu_genes & s3_genes)
    proc = run_ok([str(helpers.cellcube_path()), "query", str(store), "--genes", only_wu,
                   "--by", "dataset", "--format", "csv"])
    assert (f"cellcube: {only_wu} was not measured in 1 selected dataset ('s3'): their cells are "
            "not counted for it") in proc.stderr.splitlines(), proc.stderr
    # Only the datasets selected count; a gene both measured gets no such line.
    proc = run_ok([str(helpers.cellcube_path()), "query", str(store), "--genes", only_wu,
                   "--datasets", "wu", "--format", "csv"])
    assert "not measured" not in proc.stderr, proc.stderr
    if both:
        proc = run_ok([str(helpers.cellcube_path()), "query", str(store), "--genes", both[0],
                       "--format", "csv"])
        assert "not measured" not in proc.stderr, proc.stderr
