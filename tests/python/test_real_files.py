"""cellcube reads the real .h5ad files in <repo>/../shared/data/h5ad (written by
anndata 0.6 - 0.11, SeuratDisk, ...) the way anndata 0.8 and h5py do.

* test_inspect_json: n_obs/n_vars, index names, every matrix (X, raw/X or the
  legacy raw.X, layers/*) with encoding, dtype, shape, stored values, chunks,
  filter, index dtype; obs/var columns in order with kind, distinct values and
  missing count.
* test_dump: for every matrix of every file, per-row sum/sumsq/nnz/weighted
  sum and per-column sum/nnz, plus obs/var index and labels of every column.
* test_dump_without_x: a file without X: inspect lists no X (test_inspect_json)
  and dumping X is a clean one-line error.
"""

from __future__ import annotations

import pandas as pd
import pytest

import helpers
import reference

FILES = helpers.real_files()
IDS = [p.name for p in FILES]


def _file_matrix_pairs():
    pairs = []
    for p in FILES:
        for m in reference.matrix_paths(p):
            pairs.append(pytest.param(p, m, id=f"{p.name}::{m}"))
    return pairs


PAIRS = _file_matrix_pairs()
NO_X = [p for p in FILES if "X" not in reference.matrix_paths(p)]


def test_real_data_present(data_dir):
    """The shared data directory exists and holds .h5ad files (fails, never skips)."""
    assert FILES, f"no .h5ad files found in {helpers.DATA_DIR}"
    assert sorted(data_dir.glob("*.h5ad")) == FILES


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_inspect_json(cellcube, path):
    helpers.check_inspect(cellcube, path)


@pytest.mark.parametrize("path,matrix", PAIRS)
def test_dump(cellcube_dump, path, matrix):
    helpers.check_dump(cellcube_dump, path, matrix)


@pytest.mark.parametrize("path", NO_X, ids=[p.name for p in NO_X])
def test_dump_without_x(cellcube_dump, path):
    proc = helpers.run([cellcube_dump, path])
    helpers.assert_error(proc, code=1, patterns=[r"\bX\b"])


def _first_categorical_columns():
    out = []
    for p in FILES:
        adata = reference.read_adata(p)
        cats = [c for c in adata.obs.columns if reference.column_kind(adata.obs[c]) == "categorical"]
        if cats:
            out.append(pytest.param(p, cats[0], id=f"{p.name}::{cats[0]}"))
    reference.read_adata.cache_clear()
    return out


@pytest.mark.parametrize("path,column", _first_categorical_columns())
def test_inspect_column(cellcube, path, column):
    """`inspect --column` lists every value present with its cell count
    (missing values as NA)."""
    labels = reference.column_labels(reference.read_adata(path).obs[column])
    proc = helpers.run([cellcube, "inspect", path, "--column", column])
    assert proc.returncode == 0, helpers.describe(proc)
    problems = helpers.column_listing_problems(proc.stdout, labels)
    assert not problems, "\n".join(problems) + "\n" + helpers.describe(proc)


SYMBOL_DEFAULTS = ["feature_name", "gene_symbols", "gene_symbol", "gene_name", "symbol"]


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_inspect_shows_the_gene_names_build_reads(cellcube, path):
    """inspect names the genes as build --matrix auto will: the var index of raw/X,
    else layers/counts, else X, and the first default symbol column of that var."""
    got = helpers.run_json([cellcube, "inspect", path, "--json"])["genes"]
    adata = reference.read_adata(path)
    paths = reference.matrix_paths(path)
    if not paths:  # nothing to read: nothing named
        assert got == {"matrix": None, "first_ids": [], "symbol_column": None, "first_symbols": []}, got
    else:
        check_gene_names(cellcube, path, adata, paths, got)


def check_gene_names(cellcube, path, adata, paths, got):
    matrix = next(m for m in ("raw/X", "raw.X", "layers/counts", "X") if m in paths)
    var = adata.raw.var if matrix.startswith("raw") else adata.var
    assert got["matrix"] == matrix, got
    assert got["first_ids"] == [str(v) for v in var.index[:5]], got
    column = next((c for c in SYMBOL_DEFAULTS if c in var.columns), None)
    assert got["symbol_column"] == column, got
    if column is not None:
        want = ["" if pd.isna(v) else str(v) for v in var[column].iloc[:5]]
        assert got["first_symbols"] == want, (got, want)
    text = helpers.run_ok([cellcube, "inspect", path]).stdout
    genes = text[text.index(f"genes (the var names of {matrix},"):]
    ids_line, symbols_line = genes.splitlines()[1:3]
    assert ids_line.split(":", 1)[1].strip().startswith(", ".join(str(v) for v in var.index[:2])), ids_line
    # The symbols line names the column build would use, or says there is none.
    want_symbols = "symbols: none (no var column" if column is None else f"(var column '{column}', build's default)"
    assert want_symbols in symbols_line, symbols_line
