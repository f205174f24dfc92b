"""cellcube reads files written by anndata 0.8's write_h5ad (gen_anndata.py)
the way anndata and h5py read them back.

* test_generator_coverage: the generated set really contains what it claims
  (checked with h5py), and the product tests below meet every variant: every
  file is inspected and built, every matrix dumped and built into a store (not
  only refused), so a change to the generator or to the tests' lists cannot
  silently drop coverage.
* test_inspect_json / test_dump: the same agreement checks as for the real
  files, over every generated file and every matrix in it (X, raw/X, layers/*).
* test_build_matches_anndata: `cellcube build` of every matrix of every file
  (streamed by build's own readers, in parallel) holds the per-group nnz, sum
  and sum of squares numpy computes from what anndata reads; matrices with
  nothing stored or with NaN are refused in one line.
* test_dump_matrix_x_explicit: `--matrix X` is the default.
* test_dump_without_x: dumping X of a file without X is a clean error.
* test_inspect_column: `cellcube inspect FILE --column NAME` prints each value
  present with its cell count (missing values as NA).
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import gen_anndata
import helpers
import reference

NAMES = gen_anndata.NAMES


# The product tests below run over every generated file; test_generator_coverage checks
# that together they meet every variant the generator writes.
INSPECT_NAMES = NAMES
DUMP_NAMES = [n for n in NAMES if n != "no_X"]  # no_X has no matrix to dump
BUILD_NAMES = NAMES
BUILD_GROUPBY = ["donor", "dose"]  # integer categories; float categories with missing values


def build_outcome(path, matrix) -> str:
    """What `cellcube build --matrix MATRIX --transform none` must do with a matrix, read
    with h5py: "store", or refuse it ("no-values": nothing stored; "non-finite": a NaN or
    an infinity among its values)."""
    with h5py.File(path, "r") as f:
        obj = f[matrix]
        values = obj["data"][()] if isinstance(obj, h5py.Group) else obj[()]
    if values.size == 0:
        return "no-values"
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        return "non-finite"
    return "store"


def test_generator_coverage(generated):
    """Every variant the generator promises (gen_anndata's docstring) is in the files, and
    each is exercised by the product tests of this module: every file by test_inspect_json
    and test_build_matches_anndata, every matrix by test_dump and (as a store built from
    it, not only as an error) by test_build_matches_anndata."""
    assert sorted(generated) == sorted(NAMES)
    assert INSPECT_NAMES == NAMES and BUILD_NAMES == NAMES
    matrices = {name: reference.matrix_paths(path) for name, path in generated.items()}
    assert sorted(DUMP_NAMES) == sorted(n for n, m in matrices.items() if m)
    built = {(name, m) for name, ms in matrices.items() for m in ms
             if build_outcome(generated[name], m) == "store"}
    refused = {(name, m): build_outcome(generated[name], m) for name, ms in matrices.items()
               for m in ms if (name, m) not in built}
    assert sorted(refused.values()) == ["no-values", "non-finite"], refused
    encodings, dtypes, filters, index_dtypes = set(), set(), set(), set()
    explicit_zeros = int64_both = raw_files = layer_files = all_zero = no_x = big = 0
    obs_encodings = set()
    for name, path in generated.items():
        infos = reference.h5_matrix_infos(path)
        paths = [m["path"] for m in infos]
        no_x += "X" not in paths
        raw_files += any((name, p) in built for p in paths if p.startswith("raw"))
        layer_files += any((name, p) in built for p in paths if p.startswith("layers/"))
        with h5py.File(path, "r") as f:
            for m in infos:
                if (name, m["path"]) not in built:
                    continue
                encodings.add(m["encoding"])
                dtypes.add(m["dtype"])
                filters.add(m["filter"].split("(")[0])
                if m["encoding"] != "dense":
                    g = f[m["path"]]
                    index_dtypes.add(m["index_dtype"])
                    data = g["data"][:]
                    explicit_zeros += int((data == 0).sum() > 0)
                    all_zero += int(data.size > 0 and not data.any())
                    int64_both += g["indices"].dtype == np.int64 and g["indptr"].dtype == np.int64
                    if m["shape"][0] >= 20000:
                        big += 1
                        ch = g["data"].chunks
                        assert ch is not None and data.size > 20 * ch[0], name
                elif m["shape"][0] >= 20000:
                    big += 1
                    assert f[m["path"]].chunks is not None, name
            for col in f["obs"].attrs["column-order"]:
                el = f["obs"][col]
                enc = el.attrs.get("encoding-type", "")
                obs_encodings.add(enc if isinstance(el, h5py.Group) else f"{enc}:{el.dtype.kind}")
                if enc == "categorical":
                    codes = el["codes"][:]
                    if (codes < 0).any():
                        obs_encodings.add("categorical-with-missing")
                    if len(set(codes[codes >= 0])) < el["categories"].shape[0]:
                        obs_encodings.add("categorical-unused")
                    if el.attrs.get("ordered"):
                        obs_encodings.add("categorical-ordered")
                    obs_encodings.add(f"categories:{el['categories'].dtype.kind}")
    # Counted over the matrices the build test turns into stores (all are dumped).
    assert encodings == {"dense", "csr", "csc"}
    assert set(gen_anndata.DTYPES) <= dtypes
    assert filters == {"gzip", "lzf", "none"}
    assert index_dtypes == {"int32", "int64"}
    assert int64_both >= 2 and explicit_zeros >= 10 and all_zero >= 1 and no_x == 1
    assert raw_files >= 3 and layer_files >= 2 and big == 3
    for want in (
        "categorical",
        "categorical-with-missing",
        "categorical-unused",
        "categorical-ordered",
        "categories:i",
        "categories:f",
        "categories:O",
        "nullable-integer",
        "nullable-boolean",
        "string-array:O",
        "array:i",
        "array:u",
        "array:f",
        "array:b",
    ):
        assert want in obs_encodings, (want, obs_encodings)
    # The build test's grouping columns: integer categories, and float ones with NA.
    obs = reference.read_adata(generated["dense_f32_gzip"]).obs
    assert [reference.column_kind(obs[c]) for c in BUILD_GROUPBY] == ["categorical"] * 2
    assert obs["donor"].cat.categories.dtype.kind == "i"
    assert obs["dose"].cat.categories.dtype.kind == "f" and obs["dose"].isna().any()


@pytest.mark.parametrize("name", BUILD_NAMES)
def test_build_matches_anndata(cellcube, generated, name, tmp_path):
    """`cellcube build --matrix M --transform none` of every matrix of every generated
    file, grouped by cell type (missing values and unused categories), integer and float
    categories: the store holds, per group, the cell count and per gene nnz, sum and Σv²
    of the values anndata reads (store_reference.py, numpy in float64), the entries
    exactly where some value is nonzero, and the file's genes and provenance. A matrix
    with nothing stored, or with a NaN, is refused in one line (the cell and gene it names
    do hold a NaN); a file without any matrix too."""
    import re

    import store_reference as sr

    path = generated[name]
    matrices = reference.matrix_paths(path)
    failures = []
    if not matrices:
        proc = helpers.run([cellcube, "build", "-o", tmp_path / "none.h5ad", "--quiet", path])
        helpers.assert_error(proc, code=1, mentions=[path.name, "no matrix"])
    for k, matrix in enumerate(matrices):
        out = tmp_path / f"store{k}.h5ad"
        proc = helpers.run([cellcube, "build", "-o", out, "--quiet", "--matrix", matrix,
                            "--transform", "none", "--cell-type", "cell_type",
                            "--groupby", ",".join(BUILD_GROUPBY), path])
        outcome = build_outcome(path, matrix)
        if outcome == "no-values":
            helpers.assert_error(proc, code=1, mentions=[path.name, f"'{matrix}'", "no stored values"])
        elif outcome == "non-finite":
            line = helpers.assert_error(proc, code=1, mentions=[name, "nan"])
            m = re.search(r"cell '([^']*)' \(row (\d+)\), gene '([^']*)'", line)
            assert m, line
            adata = reference.read_adata(path)
            values, var = reference.matrix_from_adata(adata, matrix)
            row, col = int(m.group(2)), list(var.index).index(m.group(3))
            assert adata.obs_names[row] == m.group(1), line
            assert np.isnan(np.asarray(values[row, col]).item()), (line, values[row, col])
        else:
            assert proc.returncode == 0, helpers.describe(proc)
            exp = sr.expected_dataset(path, cell_type="cell_type", groupby=BUILD_GROUPBY,
                                      matrix=matrix, transform="none")
            assert exp.n_cells.sum() == exp.record["n_cells"] > 0
            view = sr.StoreView(out)
            problems = view.h5_problems + sr.compare_dataset(view, exp)
            if view.columns != ["dataset", "cell_type"] + BUILD_GROUPBY:
                problems.append(f"store obs columns {view.columns}")
            if problems:
                failures.append(f"[{matrix}]\n  " + "\n  ".join(problems))
        if outcome != "store":
            assert not out.exists(), f"a refused build left {out}"
    assert not failures, f"the store built from {name} disagrees with anndata:\n" + "\n".join(failures)


@pytest.mark.parametrize("name", INSPECT_NAMES)
def test_inspect_json(cellcube, generated, name):
    got = helpers.check_inspect(cellcube, generated[name])
    if name == "no_X":
        assert all(m.get("path") != "X" for m in got["matrices"])


@pytest.mark.parametrize("name", DUMP_NAMES)
def test_dump(cellcube_dump, generated, name):
    path = generated[name]
    failures = []
    for matrix in reference.matrix_paths(path):
        try:
            helpers.check_dump(cellcube_dump, path, matrix)
        except AssertionError as e:
            failures.append(str(e))
    assert not failures, "\n\n".join(failures)


def test_dump_matrix_x_explicit(cellcube_dump, generated):
    path = generated["layers_all_encodings_gzip"]
    default = helpers.run_json([cellcube_dump, path])
    explicit = helpers.run_json([cellcube_dump, path, "--matrix", "X"])
    assert default == explicit


def test_dump_without_x(cellcube_dump, generated):
    proc = helpers.run([cellcube_dump, generated["no_X"]])
    helpers.assert_error(proc, code=1, patterns=[r"\bX\b"])


@pytest.mark.parametrize("column", ["cell_type", "donor", "treated", "stage"])
def test_inspect_column(cellcube, generated, column):
    path = generated["dense_f32_gzip"]
    labels = reference.column_labels(reference.read_adata(path).obs[column])
    proc = helpers.run([cellcube, "inspect", path, "--column", column])
    assert proc.returncode == 0, helpers.describe(proc)
    problems = helpers.column_listing_problems(proc.stdout, labels)
    assert not problems, "\n".join(problems) + "\n" + helpers.describe(proc)
