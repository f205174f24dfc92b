"""`cellcube synth` and the .h5ad writer, checked with Debian's anndata 0.8.

* The files `cellcube synth` writes open with anndata.read_h5ad; X is CSR,
  float32 holding integer counts, with a single-cell-like density; obs/var have
  the documented columns and categories; marker genes mark their cell types;
  the same seed gives the same bytes of X; `cellcube inspect --json` and
  `cellcube-dump` agree with anndata on them.
* Bad options are one clear error line.
* The writer's sample file (tests/tools/writer_sample.h, written by
  cellcube-write-sample) holds every writer feature: anndata must read each one
  back (categoricals with missing codes and ordered flags, int16 codes, bool,
  int64, float64 and string columns, an empty column-order, hard-linked
  indices, empty arrays, uns strings).
"""

from __future__ import annotations

import os
import re
import subprocess
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import helpers

N_CELLS = 1500
N_GENES = 400
SMALL = ["--cells", str(N_CELLS), "--genes", str(N_GENES), "--seed", "7"]
N_DATASETS = 3

OBS_CATEGORICAL = ["cell_type", "tissue", "disease", "cancer_stage", "sex", "donor"]
OBS_COLUMNS = OBS_CATEGORICAL + ["n_genes_by_counts", "total_counts"]
VAR_COLUMNS = ["feature_name", "gene_biotype", "mt", "n_cells_by_counts", "total_counts"]
TISSUES = {"lung", "liver", "blood", "kidney", "colon"}
CANCERS = {"lung adenocarcinoma", "hepatocellular carcinoma", "clear cell renal carcinoma",
           "colorectal cancer"}
DISEASES = CANCERS | {"COVID-19"}
# A marker gene per cell type, specific to that one type in the model.
MARKERS = {
    "CD4-positive, alpha-beta T cell": "CCR7",
    "CD8-positive, alpha-beta T cell": "CD8A",
    "B cell": "MS4A1",
    "classical monocyte": "CD14",
    "natural killer cell": "GNLY",
    "malignant cell": "EPCAM",
    "hepatocyte": "ALB",
    "type II pneumocyte": "SFTPC",
    "endothelial cell": "PECAM1",
    "fibroblast": "COL1A2",
}


def read(path):
    import anndata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return anndata.read_h5ad(path)


def run_synth(cellcube, out, *extra):
    return helpers.run([cellcube, "synth", "-o", out, *extra], timeout=300)


@pytest.fixture(scope="module")
def synth_run(cellcube, tmp_path_factory):
    """(directory, completed process) of one small synth run."""
    out = tmp_path_factory.mktemp("synth") / "out"
    proc = run_synth(cellcube, out, "--datasets", str(N_DATASETS), *SMALL)
    assert proc.returncode == 0, helpers.describe(proc)
    return out, proc


def synth_files(out):
    return [out / f"synth_{i:02d}.h5ad" for i in range(1, N_DATASETS + 1)]


def test_writes_the_files_and_one_summary_line_each(synth_run):
    out, proc = synth_run
    assert sorted(p.name for p in out.iterdir()) == [p.name for p in synth_files(out)], (
        "synth must leave exactly the .h5ad files (no partial files)"
    )
    lines = proc.stdout.splitlines()
    assert len(lines) == N_DATASETS, helpers.describe(proc)
    for path, line in zip(synth_files(out), lines):
        assert line.startswith(str(path)), line
        assert "1,500 cells" in line and "400 genes" in line, line
        nnz = read(path).X.nnz
        assert f"{nnz:,}" in line, f"summary line should give the {nnz:,} stored counts: {line}"
    # stderr is not a terminal here: no progress line.
    assert proc.stderr == "", helpers.describe(proc)


@pytest.mark.parametrize("index", range(N_DATASETS))
def test_file_is_realistic_anndata(synth_run, index):
    out, _ = synth_run
    path = synth_files(out)[index]
    a = read(path)
    assert a.shape == (N_CELLS, N_GENES)

    # X: CSR of integer counts in float32, 32-bit indices, canonical, 5-15% non-zero.
    X = a.X
    assert sp.isspmatrix_csr(X), type(X)
    assert X.dtype == np.float32
    assert X.indices.dtype == np.int32 and X.indptr.dtype == np.int32
    assert X.has_canonical_format, "indices must be sorted and unique within each row"
    assert np.all(X.data >= 1) and np.all(X.data == np.round(X.data))
    density = X.nnz / (N_CELLS * N_GENES)
    assert 0.05 <= density <= 0.15, f"density {density:.3f}"
    totals = np.asarray(X.sum(axis=1)).ravel()
    assert np.median(totals) > 50 and totals.min() > 0
    assert totals.max() / np.median(totals) > 2, "library sizes should vary between cells"
    with h5py.File(path, "r") as f:
        for name in ("data", "indices", "indptr"):
            ds = f["X"][name]
            assert ds.compression == "gzip" and ds.compression_opts == 4, name
            assert ds.chunks == (262144,), (name, ds.chunks)
            assert ds.maxshape == (None,), name

    # obs
    obs = a.obs
    assert list(obs.columns) == OBS_COLUMNS
    for col in OBS_CATEGORICAL:
        assert isinstance(obs[col].dtype, pd.CategoricalDtype), col
    assert obs.index.is_unique
    assert all(re.fullmatch(r"[ACGT]{16}-\d+", b) for b in obs.index), obs.index[:5].tolist()
    n_types = obs["cell_type"].nunique()
    assert 10 <= n_types <= 25, n_types
    shares = obs["cell_type"].value_counts(normalize=True)
    assert shares.max() > 3 * shares.min(), "cell type proportions should be unequal"
    tissues = set(obs["tissue"].cat.categories)
    assert tissues <= TISSUES and 1 <= len(tissues) <= 2, tissues
    diseases = list(obs["disease"].cat.categories)
    assert len(diseases) == 2 and "normal" in diseases, diseases
    disease = next(d for d in diseases if d != "normal")
    assert disease in DISEASES
    assert set(obs["disease"]) == set(diseases), "both normal and diseased donors"
    stage = obs["cancer_stage"]
    assert list(stage.cat.categories) == ["I", "II", "III", "IV"] and stage.cat.ordered
    normal = obs["disease"] == "normal"
    assert stage[normal].isna().all(), "normal cells have no cancer stage"
    if disease in CANCERS:
        assert stage[~normal].notna().all(), "cancer cells have a stage"
    else:
        assert stage.isna().all()
    assert list(obs["sex"].cat.categories) == ["female", "male"]
    assert set(obs["sex"]) == {"female", "male"}
    donors = obs["donor"].cat.categories
    assert 4 <= len(donors) <= 8 and all(d.startswith(f"S{index + 1:02d}-D") for d in donors)
    per_donor = obs.groupby("donor", observed=True)[["sex", "disease"]].nunique()
    assert (per_donor == 1).all().all(), "sex and disease are properties of the donor"
    np.testing.assert_array_equal(obs["n_genes_by_counts"].to_numpy(), np.diff(X.indptr))
    np.testing.assert_allclose(obs["total_counts"].to_numpy(), totals)

    # var
    var = a.var
    assert list(var.columns) == VAR_COLUMNS
    assert var.index.is_unique and all(re.fullmatch(r"ENSG\d{11}", g) for g in var.index)
    symbols = var["feature_name"].astype(str)
    assert symbols.is_unique
    for gene in ["CD3E", "MS4A1", "LYZ", "NKG7", "EPCAM", "ALB", "SFTPC", "MALAT1", "XIST"]:
        assert gene in set(symbols), gene
    assert symbols.str.fullmatch(r"GENE\d{4,}").sum() > N_GENES / 2
    assert var["mt"].dtype == bool and var["mt"].sum() == symbols.str.startswith("MT-").sum() > 0
    np.testing.assert_array_equal(var["n_cells_by_counts"].to_numpy(), np.diff(X.tocsc().indptr))
    np.testing.assert_allclose(var["total_counts"].to_numpy(), np.asarray(X.sum(axis=0)).ravel())
    assert isinstance(a.uns["title"], str) and "cellcube synth" in a.uns["title"]


def test_markers_mark_their_cell_types(synth_run):
    checked = 0
    for path in synth_files(synth_run[0]):
        a = read(path)
        symbols = list(a.var["feature_name"].astype(str))
        cell_type = a.obs["cell_type"].astype(str).to_numpy()
        for ct, gene in MARKERS.items():
            inside = cell_type == ct
            if inside.sum() < 30:
                continue
            expressed = a.X[:, symbols.index(gene)].toarray().ravel() > 0
            frac_in, frac_out = expressed[inside].mean(), expressed[~inside].mean()
            assert frac_in > 0.25 and frac_in > 5 * frac_out, (
                f"{path.name}: {gene} in {ct}: {frac_in:.2f} of its cells vs {frac_out:.3f} elsewhere"
            )
            checked += 1
    assert checked >= 5


def test_sex_genes_follow_the_donor(synth_run):
    a = read(synth_files(synth_run[0])[0])
    symbols = list(a.var["feature_name"].astype(str))
    female = (a.obs["sex"] == "female").to_numpy()
    xist = a.X[:, symbols.index("XIST")].toarray().ravel() > 0
    rps4y1 = a.X[:, symbols.index("RPS4Y1")].toarray().ravel() > 0
    assert not xist[~female].any() and xist[female].mean() > 0.2
    assert not rps4y1[female].any() and rps4y1[~female].mean() > 0.05


def test_same_seed_same_file_other_seed_other_data(cellcube, synth_run, tmp_path):
    first = synth_files(synth_run[0])[0]
    proc = run_synth(cellcube, tmp_path / "again", "--datasets", "1", *SMALL, "--quiet")
    assert proc.returncode == 0, helpers.describe(proc)
    again = tmp_path / "again" / "synth_01.h5ad"
    assert first.read_bytes() == again.read_bytes(), "the same seed must give the same bytes"
    with h5py.File(first, "r") as f, h5py.File(again, "r") as g:
        for name in ("X/data", "X/indices", "X/indptr", "obs/_index", "var/_index",
                     "obs/cell_type/codes", "obs/donor/codes", "var/feature_name/categories"):
            np.testing.assert_array_equal(f[name][()], g[name][()], err_msg=name)
    other = tmp_path / "other"
    proc = run_synth(cellcube, other, "--datasets", "1", "--cells", str(N_CELLS), "--genes",
                     str(N_GENES), "--seed", "8")
    assert proc.returncode == 0, helpers.describe(proc)
    b = read(other / "synth_01.h5ad")
    a = read(first)
    assert a.X.nnz != b.X.nnz or (a.X != b.X).nnz > 0


def test_datasets_share_their_known_genes(synth_run):
    frames = [read(p).var for p in synth_files(synth_run[0])]
    ids = [dict(zip(v["feature_name"].astype(str), v.index)) for v in frames]
    for gene in ["CD3E", "ALB", "MALAT1"]:
        assert len({m[gene] for m in ids}) == 1, f"{gene} must have one gene id in every dataset"


@pytest.mark.parametrize("index", range(N_DATASETS))
def test_inspect_agrees_with_anndata(cellcube, synth_run, index):
    path = synth_files(synth_run[0])[index]
    got = helpers.check_inspect(cellcube, path)
    assert got["n_obs"] == N_CELLS and got["n_vars"] == N_GENES
    (x,) = got["matrices"]
    assert (x["path"], x["encoding"], x["dtype"], x["filter"], x["index_dtype"]) == (
        "X", "csr", "float32", "gzip(4)", "int32")


def test_reader_streams_synth_matrix_like_anndata(cellcube_dump, synth_run):
    helpers.check_dump(cellcube_dump, synth_files(synth_run[0])[0], "X")


def test_overwrites_existing_files(cellcube, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "synth_01.h5ad").write_text("an old file")
    proc = run_synth(cellcube, out, "--datasets", "1", "--cells", "50", "--genes", "300")
    assert proc.returncode == 0, helpers.describe(proc)
    assert read(out / "synth_01.h5ad").shape == (50, 300)


def test_creates_nested_output_directory(cellcube, tmp_path):
    out = tmp_path / "a" / "b" / "c"
    proc = run_synth(cellcube, out, "--datasets", "1", "--cells", "1", "--genes", "300")
    assert proc.returncode == 0, helpers.describe(proc)
    assert read(out / "synth_01.h5ad").shape == (1, 300)


@pytest.mark.parametrize(
    "args, mentions",
    [
        (["--cells", "0"], ["--cells"]),
        (["--cells", "many"], ["--cells"]),
        (["--genes", "10"], ["--genes", "300"]),
        (["--genes", "1000001"], ["--genes"]),
        (["--datasets", "0"], ["--datasets"]),
        (["--datasets", "100"], ["--datasets"]),
        (["--seed", "-1"], ["--seed"]),
        (["--bogus"], ["--bogus"]),
        (["extra"], ["extra"]),
    ],
)
def test_bad_options_are_usage_errors(cellcube, tmp_path, args, mentions):
    proc = run_synth(cellcube, tmp_path / "out", *args)
    helpers.assert_error(proc, code=2, mentions=mentions)
    assert not (tmp_path / "out").exists(), "nothing is written on a usage error"


def test_missing_output_is_a_usage_error(cellcube):
    proc = helpers.run([cellcube, "synth", "--cells", "10"])
    helpers.assert_error(proc, code=2, mentions=["-o"])


def test_output_that_is_a_file(cellcube, tmp_path):
    target = tmp_path / "not_a_dir"
    target.write_text("x")
    helpers.assert_error(run_synth(cellcube, target), mentions=["not_a_dir", "not a directory"])
    helpers.assert_error(run_synth(cellcube, target / "sub"), mentions=["not_a_dir"])


def test_output_that_cannot_be_created(cellcube):
    # /proc refuses new directories, even to root.
    helpers.assert_error(run_synth(cellcube, "/proc/cellcube-synth-test/out"),
                         mentions=["/proc/cellcube-synth-test/out"])


# ---------------------------------------------------------------- the writer's sample file


@pytest.fixture(scope="module")
def write_sample() -> Path:
    """cellcube-write-sample ($CELLCUBE_WRITE_SAMPLE_BIN, else beside cellcube)."""
    if os.environ.get("CELLCUBE_WRITE_SAMPLE_BIN"):
        path = Path(os.environ["CELLCUBE_WRITE_SAMPLE_BIN"])
    else:
        path = helpers.cellcube_path().parent / "cellcube-write-sample"
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(f"cellcube-write-sample not found at {path}: build the project or set "
                    "CELLCUBE_WRITE_SAMPLE_BIN", pytrace=False)
    return path


@pytest.fixture(scope="module")
def sample(write_sample, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("writer") / "sample.h5ad"
    proc = subprocess.run([str(write_sample), str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return path


# Must match tests/tools/writer_sample.h.
SAMPLE_X = np.array([[1, 0, 0, 2], [0, 0, 0, 0], [0, 3, 0, 0], [4, 5, 6, 7], [0, 0, 8, 0]],
                    dtype=np.float32)


def test_writer_sample_reads_with_anndata(sample):
    a = read(sample)
    assert a.shape == (5, 4)
    assert list(a.obs_names) == [f"cell{i}" for i in range(5)]
    assert list(a.var_names) == [f"gene{i}" for i in range(4)]
    assert sp.isspmatrix_csr(a.X) and a.X.dtype == np.float32
    np.testing.assert_array_equal(a.X.toarray(), SAMPLE_X)
    counts = a.layers["counts"]
    assert sp.isspmatrix_csr(counts) and counts.dtype == np.int32
    np.testing.assert_array_equal(counts.toarray(), SAMPLE_X * 10)
    np.testing.assert_array_equal(a.layers["dense"], SAMPLE_X.astype(np.float64) + 0.5)
    empty = a.layers["empty"]
    assert sp.issparse(empty) and empty.nnz == 0 and empty.shape == (5, 4)
    np.testing.assert_array_equal(a.obsm["X_pca"], np.arange(10, dtype=np.float32).reshape(5, 2) * 0.25)

    obs = a.obs
    assert list(obs.columns) == ["cell_type", "stage", "donor", "n_genes", "score", "is_doublet", "many"]
    ct = obs["cell_type"]
    assert list(ct.cat.categories) == ["B cell", "CD4-positive, alpha-beta T cell", "NK cell"]
    assert not ct.cat.ordered
    assert list(ct.cat.codes) == [1, 0, -1, 2, 1]
    stage = obs["stage"]
    assert stage.cat.ordered and list(stage.cat.categories) == ["I", "II", "III", "IV"]
    assert list(stage.cat.codes) == [-1, 0, 3, 3, 1]
    assert list(obs["donor"]) == ["D1", "D1", "D2", "Dé", "D3"]
    assert obs["n_genes"].dtype == np.int64 and list(obs["n_genes"]) == [2, 0, 1, 4, -1]
    score = obs["score"].to_numpy()
    assert score.dtype == np.float64 and np.isnan(score[1])
    np.testing.assert_array_equal(np.delete(score, 1), [0.5, -1.25, 1e10, 0])
    assert obs["is_doublet"].dtype == bool and list(obs["is_doublet"]) == [False, True, False, False, True]
    many = obs["many"]
    assert len(many.cat.categories) == 200 and list(many.cat.codes) == [0, 199, 57, 128, -1]
    assert a.var.shape == (4, 0), "var has no columns: an empty column-order"

    assert a.uns["title"] == "cellcube writer sample ünicøde"
    assert list(a.uns["tags"]) == ["alpha", "beta"]
    assert len(a.uns["no_tags"]) == 0 and a.uns["nothing"].shape == (0,)


def test_writer_sample_layout_matches_h5py_conventions(sample):
    with h5py.File(sample, "r") as f:
        assert f.attrs["encoding-type"] == "anndata" and f.attrs["encoding-version"] == "0.1.0"
        # Strings as h5py writes str: variable-length UTF-8.
        t = f.attrs.get_id("encoding-type").dtype
        assert h5py.check_string_dtype(t).encoding == "utf-8" and h5py.check_string_dtype(t).length is None
        # An empty column-order is an empty float64 array, as h5py writes [].
        co = f["var"].attrs["column-order"]
        assert co.shape == (0,) and co.dtype == np.float64
        assert list(f["obs"].attrs["column-order"]) == ["cell_type", "stage", "donor", "n_genes",
                                                        "score", "is_doublet", "many"]
        # numpy bools: h5py's enum, read back as numpy.bool_.
        ordered = f["obs/stage"].attrs["ordered"]
        assert isinstance(ordered, np.bool_) and ordered
        assert not f["obs/cell_type"].attrs["ordered"]
        assert f["obs/is_doublet"].dtype == bool
        assert f["obs/many/codes"].dtype == np.int16 and f["obs/cell_type/codes"].dtype == np.int8
        assert list(f["X"].attrs["shape"]) == [5, 4] and f["X"].attrs["shape"].dtype == np.int64
        assert f["X"].attrs["encoding-type"] == "csr_matrix"
        # Hard links: one object under two names.
        assert f["layers/counts/indices"].id == f["X/indices"].id
        assert f["layers/counts/indptr"].id == f["X/indptr"].id
        # Appendable gzip dataset; contiguous uncompressed arrays; empty arrays.
        assert f["X/data"].chunks == (3,) and f["X/data"].compression == "gzip"
        assert f["X/data"].maxshape == (None,)
        assert f["X/indices"].chunks == (3,) and f["X/indices"].compression is None
        assert f["layers/counts/data"].chunks is None and f["layers/counts/data"].compression is None
        assert f["layers/dense"].chunks == (1, 4) and f["layers/dense"].compression == "gzip"
        assert f["layers/empty/data"].shape == (0,)
        assert f["X/data"].dtype == np.dtype("<f4") and f["X/indptr"].dtype == np.dtype("<i8")
        assert f["uns/title"].attrs["encoding-type"] == "string"
        assert f["uns/tags"].attrs["encoding-type"] == "string-array"
        assert f["layers/dense"].attrs["encoding-type"] == "array"
