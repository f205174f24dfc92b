"""Fixtures for the cellcube Python test suite.

Run from the repo root:  /usr/bin/python3 -m pytest tests/python -q

Nothing is skipped: a missing binary or a missing data directory is a test
failure with a message saying what to build or where the data should be.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gen_anndata  # noqa: E402
import helpers  # noqa: E402


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return helpers.REPO


@pytest.fixture(scope="session")
def cellcube() -> Path:
    """Path of the `cellcube` binary ($CELLCUBE_BIN or <repo>/build/cellcube)."""
    return helpers.require_binary(helpers.cellcube_path(), "cellcube")


@pytest.fixture(scope="session")
def cellcube_dump() -> Path:
    """Path of `cellcube-dump` ($CELLCUBE_DUMP_BIN, else beside $CELLCUBE_BIN,
    else <repo>/build/cellcube-dump)."""
    return helpers.require_binary(helpers.dump_path(), "cellcube-dump")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """<repo>/../shared/data/h5ad: real .h5ad files written by other software."""
    d = helpers.DATA_DIR
    if not d.is_dir() or not any(d.glob("*.h5ad")):
        pytest.fail(f"no real .h5ad files in {d} (expected <repo>/../shared/data/h5ad)", pytrace=False)
    return d


@pytest.fixture(scope="session")
def generated(tmp_path_factory) -> dict:
    """{name: path} of every file gen_anndata writes (anndata 0.8 writer)."""
    outdir = tmp_path_factory.mktemp("generated")
    return gen_anndata.generate(outdir)
