"""cellcube reads files written by anndata 0.8's write_h5ad (gen_anndata.py)
the way anndata and h5py read them back.

* test_generator_coverage: the generated set really contains what it claims
  (checked with h5py; needs no cellcube binary), so a change to the generator
  cannot silently drop coverage.
* test_inspect_json / test_dump: the same agreement checks as for the real
  files, over every generated file and every matrix in it (X, raw/X, layers/*).
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


def test_generator_coverage(generated):
    assert sorted(generated) == sorted(NAMES)
    encodings, dtypes, filters, index_dtypes = set(), set(), set(), set()
    explicit_zeros = int64_both = raw_files = layer_files = nnz0 = no_x = big = 0
    obs_encodings = set()
    for name, path in generated.items():
        infos = reference.h5_matrix_infos(path)
        paths = [m["path"] for m in infos]
        no_x += "X" not in paths
        raw_files += "raw/X" in paths
        layer_files += any(p.startswith("layers/") for p in paths)
        with h5py.File(path, "r") as f:
            for m in infos:
                encodings.add(m["encoding"])
                dtypes.add(m["dtype"])
                filters.add(m["filter"].split("(")[0])
                if m["encoding"] != "dense":
                    g = f[m["path"]]
                    index_dtypes.add(m["index_dtype"])
                    data = g["data"][:]
                    explicit_zeros += int((data == 0).sum() > 0)
                    nnz0 += int(data.size == 0)
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
    assert encodings == {"dense", "csr", "csc"}
    assert set(gen_anndata.DTYPES) <= dtypes
    assert filters == {"gzip", "lzf", "none"}
    assert index_dtypes == {"int32", "int64"}
    assert int64_both >= 2 and explicit_zeros >= 10 and nnz0 >= 1 and no_x == 1
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


@pytest.mark.parametrize("name", NAMES)
def test_inspect_json(cellcube, generated, name):
    got = helpers.check_inspect(cellcube, generated[name])
    if name == "no_X":
        assert all(m.get("path") != "X" for m in got["matrices"])


@pytest.mark.parametrize("name", [n for n in NAMES if n != "no_X"])
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
