"""A dataset whose accumulator is far larger than the caches is aggregated tile by tile
(docs/BUILD.md "How a build uses the caches"): its store must hold what numpy computes
from the cells, the same bytes with one thread or two, and the same bytes when the
memory limit makes the build take several passes over the matrix (one of them redone
with fewer genes because its values did not fit)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import helpers
import store_reference as sr
from helpers import run_ok
from test_histograms_build import histogram_problems

N_CELLS, N_GENES, DENSE_GENES = 3000, 4000, 800


def write_wide_file(path):
    """40 cell types × 25 donors (over 500 groups: 500 × 4,000 slots of 32 bytes are
    64 MB without the histograms), groups of 65-255 and of over 255 cells, so every
    histogram kind; the first 800 genes dense, the rest sparse."""
    rng = np.random.default_rng(2024)
    u = rng.random(N_CELLS)
    types = np.where(u < 0.5, 0, np.where(u < 0.65, 1, rng.integers(2, 40, N_CELLS)))
    donors = np.where(rng.random(N_CELLS) < 0.4, 0, rng.integers(1, 25, N_CELLS))
    density = np.where(np.arange(N_GENES) < DENSE_GENES, 0.6, 0.02)
    mask = rng.random((N_CELLS, N_GENES)) < density
    counts = np.where(mask, 1 + rng.geometric(0.4, (N_CELLS, N_GENES)), 0).astype(np.float32)
    obs = pd.DataFrame({"cell_type": pd.Categorical([f"T{t}" for t in types]),
                        "donor": pd.Categorical([f"d{d}" for d in donors])},
                       index=[f"c{i}" for i in range(N_CELLS)])
    var = pd.DataFrame(index=[f"G{j}" for j in range(N_GENES)])
    ad.AnnData(X=sp.csr_matrix(counts), obs=obs, var=var).write_h5ad(path)
    sizes = pd.Series(list(zip(types, donors))).value_counts()
    assert len(sizes) > 500 and sizes.max() > 255 and ((sizes > 64) & (sizes <= 255)).any() and (sizes <= 64).any()
    return path


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    return write_wide_file(tmp_path_factory.mktemp("wide") / "wide.h5ad")


def build(cellcube, out, src, *extra):
    proc = run_ok([cellcube, "build", "-o", out, "--groupby", "donor", *extra, f"wide={src}"])
    return out, proc


def digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_a_wide_dataset_matches_numpy(cellcube, wide, tmp_path):
    store, _ = build(cellcube, tmp_path / "s.h5ad", wide, "--quiet")
    exp = sr.expected_dataset(wide, name="wide", groupby=["donor"])
    assert len(exp.keys) > 500, "the accumulator must be far larger than the caches"
    problems = sr.compare_dataset(sr.StoreView(store), exp)
    assert not problems, "\n".join(problems)
    P = histogram_problems(store, {"wide": wide})
    assert not P, "\n".join(P)


# Under ASan the memory limit is watched as resident memory, which its shadow memory and
# quarantine inflate: a limit that sets how many passes a release build takes makes an
# instrumented one run out. Those tests run in the release suite (make test) only.
needs_release_memory = pytest.mark.skipif(
    helpers.sanitized_build(), reason="the pass counts depend on a memory limit that ASan's "
    "own memory overruns")


def test_one_and_two_threads_give_the_same_bytes(cellcube, wide, tmp_path):
    one, _ = build(cellcube, tmp_path / "t1.h5ad", wide, "--quiet", "--threads", "1")
    two, proc = build(cellcube, tmp_path / "t2.h5ad", wide, "--threads", "2")
    assert "passes over its matrix" not in proc.stderr, proc.stderr
    assert digest(one) == digest(two)


@needs_release_memory
def test_several_passes_give_the_same_bytes(cellcube, wide, tmp_path):
    one, _ = build(cellcube, tmp_path / "one.h5ad", wide, "--quiet")
    # 88 MB leaves room for about 1.3 million pending values of the matrix's 1.6
    # million: the pass planned from the average gene holds the dense genes and
    # overflows, and is redone with fewer (five passes in all).
    split, proc = build(cellcube, tmp_path / "m.h5ad", wide, "--threads", "2",
                        "--memory-limit", "88M")
    note = [ln for ln in proc.stderr.splitlines() if "passes over its matrix" in ln]
    assert note and "dataset 'wide'" in note[0], proc.stderr
    assert digest(split) == digest(one), "several passes must give the same store"


def write_many_cells_file(path):
    """20,000 cells in 200 groups of about 100 cells, 4,000 genes, 400 values a cell:
    an accumulator of 77 MB (statistics and 8-bit histogram counts) but 8 M stored
    values, 160 MB as pending values."""
    rng = np.random.default_rng(7)
    n_cells, n_genes, per_cell = 20_000, 4_000, 400
    cols = np.sort(np.argsort(rng.random((n_cells, n_genes)), axis=1)[:, :per_cell], axis=1)
    x = sp.csr_matrix((1 + rng.geometric(0.5, n_cells * per_cell).astype(np.float32),
                       cols.ravel(), np.arange(0, n_cells * per_cell + 1, per_cell)),
                      shape=(n_cells, n_genes))
    obs = pd.DataFrame({"cell_type": pd.Categorical([f"T{i % 20}" for i in range(n_cells)]),
                        "donor": pd.Categorical([f"d{(i // 20) % 10}" for i in range(n_cells)])},
                       index=[f"c{i}" for i in range(n_cells)])
    ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=[f"G{j}" for j in range(n_genes)])).write_h5ad(path)
    return path


@needs_release_memory
@pytest.mark.parametrize("limit, passes", [("192M", None), ("120M", 2)])
def test_many_cells_in_few_groups_take_the_way_with_fewer_passes(cellcube, tmp_path, limit, passes):
    """Under 192 MB the accumulator fits one pass and the pending values would need two;
    under 120 MB, two against four: the build takes the accumulator, and says so."""
    src = write_many_cells_file(tmp_path / "many.h5ad")
    proc = run_ok([cellcube, "build", "-o", tmp_path / "s.h5ad", "--groupby", "donor",
                   "--memory-limit", limit, f"many={src}"])
    note = [ln for ln in proc.stderr.splitlines() if "passes over its matrix" in ln]
    if passes is None:
        assert not note, proc.stderr
    else:
        assert len(note) == 1 and f"aggregated in {passes} passes" in note[0], proc.stderr
