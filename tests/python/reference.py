"""Independent reference for `cellcube inspect --json` and `cellcube-dump`.

Everything here is computed with anndata / h5py / numpy / scipy from the same
file the C++ tool reads; nothing is hard-coded.  The matrix values, obs and var
come from ``anndata.read_h5ad`` (anndata 0.8 reads every file in
../shared/data/h5ad, legacy layouts included); the storage facts that anndata
does not expose (encoding, chunking, filter, index dtype, the name of the index
column) come from h5py.  Where both can tell the same fact (shape, dtype, number
of stored values, which matrices exist) both are computed and must agree, so a
mistake in this module shows up as a failing self-check rather than as a wrong
expectation.

Conventions shared with the C++ side (see the test brief / docs/QUERY.md, docs/READER.md):

* nnz counts values != 0 (NaN counts, explicit stored zeros do not).
* row_wsum[i] = sum_j v[i, j] * (j + 1); all sums in float64.
* Labels: categorical -> the category rendered by the rules below; string ->
  itself; integer -> plain decimal; float -> Python repr of the value
  (shortest round-trip digits *in the column's own precision*, so a float32
  0.3 is "0.3", not "0.30000001192092896"); bool -> "True"/"False"; missing
  (categorical code -1, float NaN, masked nullable value) -> None.
"""

from __future__ import annotations

import functools
import math
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

warnings.filterwarnings("ignore", module="anndata")

KINDS = (
    "categorical",
    "string",
    "integer",
    "float",
    "boolean",
    "nullable-integer",
    "nullable-boolean",
)


# --------------------------------------------------------------------------
# anndata side
# --------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def read_adata(path):
    """anndata.read_h5ad, cached (the tests read each file several times)."""
    import anndata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return anndata.read_h5ad(str(path))


def matrix_from_adata(adata, matrix):
    """(values, var DataFrame) of a matrix path as cellcube names it."""
    if matrix == "X":
        return adata.X, adata.var
    if matrix in ("raw/X", "raw.X"):
        if adata.raw is None:
            raise KeyError(f"{matrix}: anndata sees no raw")
        return adata.raw.X, adata.raw.var
    if matrix.startswith("layers/"):
        return adata.layers[matrix[len("layers/"):]], adata.var
    raise KeyError(matrix)


def column_kind(series: pd.Series) -> str:
    """Kind of a dataframe column, from the pandas dtype anndata produced."""
    dt = series.dtype
    if isinstance(dt, pd.CategoricalDtype):
        return "categorical"
    if isinstance(dt, pd.BooleanDtype):
        return "nullable-boolean"
    if pd.api.types.is_extension_array_dtype(dt) and pd.api.types.is_integer_dtype(dt):
        return "nullable-integer"
    if pd.api.types.is_bool_dtype(dt):
        return "boolean"
    if pd.api.types.is_integer_dtype(dt):
        return "integer"
    if pd.api.types.is_float_dtype(dt):
        return "float"
    if dt == object or pd.api.types.is_string_dtype(dt):
        return "string"
    raise AssertionError(f"column {series.name!r}: unexpected pandas dtype {dt}")


def float_label(value, dtype) -> str | None:
    """Python repr of a float, with the shortest digits that round-trip in
    the value's own precision (float32 values are not widened first)."""
    v = float(value)
    if math.isnan(v):
        return None
    if np.dtype(dtype) == np.float32:
        # str(np.float32) gives the shortest digits that round-trip in float32
        # but uses numpy's own exponent style ("1e-04"); reparse and let
        # Python's repr choose the notation.
        return repr(float(str(np.float32(value))))
    if np.dtype(dtype) == np.float16:
        return repr(float(str(np.float16(value))))
    return repr(v)


def scalar_label(value, dtype) -> str | None:
    """Label of one non-categorical scalar of numpy dtype ``dtype``."""
    if value is None or value is pd.NA:
        return None
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return "True" if bool(value) else "False"
    if dt.kind in "iu":
        return str(int(value))
    if dt.kind == "f":
        return float_label(value, dt)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return float_label(value, np.asarray(value).dtype)
    return str(value)


def column_labels(series: pd.Series) -> list:
    """One label (or None for missing) per row."""
    kind = column_kind(series)
    if kind == "categorical":
        cats = series.cat.categories
        cat_dtype = cats.dtype
        if cat_dtype == object:
            cat_labels = [scalar_label(c, object) for c in cats]
        else:
            cat_labels = [scalar_label(c, cat_dtype) for c in cats.to_numpy()]
        codes = series.cat.codes.to_numpy()
        return [None if c < 0 else cat_labels[c] for c in codes]
    if kind == "nullable-integer":
        return [None if v is pd.NA else str(int(v)) for v in series.array]
    if kind == "nullable-boolean":
        return [None if v is pd.NA else ("True" if v else "False") for v in series.array]
    values = series.to_numpy()
    if kind == "string":
        out = []
        for v in values:
            if v is None or (isinstance(v, float) and math.isnan(v)):
                out.append(None)
            else:
                out.append(scalar_label(v, object))
        return out
    dt = values.dtype
    return [scalar_label(v, dt) for v in values]


def dataframe_columns(df: pd.DataFrame) -> list:
    """[{"name", "kind", "n_values", "n_missing"}] in column order."""
    out = []
    for name in df.columns:
        s = df[name]
        out.append(
            {
                "name": str(name),
                "kind": column_kind(s),
                "n_values": int(s.nunique()),
                "n_missing": int(s.isna().sum()),
            }
        )
    return out


def dataframe_dump(df: pd.DataFrame) -> dict:
    return {
        "index": [str(x) for x in df.index],
        "columns": {str(name): column_labels(df[name]) for name in df.columns},
    }


# --------------------------------------------------------------------------
# h5py side: what is stored
# --------------------------------------------------------------------------


def _attr_str(attrs, key, default=None):
    if key not in attrs:
        return default
    v = attrs[key]
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray) and v.shape == ():
        v = v[()]
        return v.decode() if isinstance(v, bytes) else str(v)
    return str(v)


def _filter_name(ds: h5py.Dataset) -> str:
    if ds.compression == "gzip":
        return f"gzip({ds.compression_opts})"
    if ds.compression == "lzf":
        return "lzf"
    if ds.compression is None:
        return "none"
    return str(ds.compression)


def _matrix_info(obj, path: str) -> dict:
    if isinstance(obj, h5py.Dataset):
        shape = [int(x) for x in obj.shape]
        return {
            "path": path,
            "encoding": "dense",
            "dtype": obj.dtype.name,
            "shape": shape,
            "stored": int(np.prod(shape)) if shape else 0,
            "chunks": list(obj.chunks) if obj.chunks is not None else None,
            "filter": _filter_name(obj),
            "index_dtype": None,
        }
    enc = _attr_str(obj.attrs, "encoding-type")
    if enc in ("csr_matrix", "csc_matrix"):
        encoding = enc[:3]
        shape = [int(x) for x in obj.attrs["shape"]]
    else:
        fmt = _attr_str(obj.attrs, "h5sparse_format")
        if fmt not in ("csr", "csc"):
            raise AssertionError(f"{path}: neither csr/csc encoding-type nor h5sparse_format")
        encoding = fmt
        shape = [int(x) for x in obj.attrs["h5sparse_shape"]]
    data = obj["data"]
    return {
        "path": path,
        "encoding": encoding,
        "dtype": data.dtype.name,
        "shape": shape,
        "stored": int(data.shape[0]),
        "chunks": list(data.chunks) if data.chunks is not None else None,
        "filter": _filter_name(data),
        "index_dtype": obj["indices"].dtype.name,
    }


def h5_matrix_infos(path) -> list:
    """Every matrix stored in the file, as cellcube names it."""
    out = []
    with h5py.File(path, "r") as f:
        if "X" in f:
            out.append(_matrix_info(f["X"], "X"))
        if "raw" in f and isinstance(f["raw"], h5py.Group) and "X" in f["raw"]:
            out.append(_matrix_info(f["raw"]["X"], "raw/X"))
        if "raw.X" in f:
            out.append(_matrix_info(f["raw.X"], "raw.X"))
        if "layers" in f:
            for name in f["layers"]:
                out.append(_matrix_info(f["layers"][name], f"layers/{name}"))
    return out


def matrix_paths(path) -> list:
    """Names of the matrices (cheap: h5py only; used at collection time)."""
    return [m["path"] for m in h5_matrix_infos(path)]


def h5_index_name(path, which: str) -> str:
    """Name of the index column of obs/var as stored on disk."""
    with h5py.File(path, "r") as f:
        elem = f[which]
        if isinstance(elem, h5py.Dataset):  # 0.6 compound: first field
            return elem.dtype.names[0]
        return _attr_str(elem.attrs, "_index")


def ondisk_column_kinds(path, which: str) -> dict:
    """Kind of each obs/var column read from the on-disk encoding alone (the
    way the C++ reader sees it).  Used to report and pin down where anndata's
    pandas dtype and the stored encoding disagree."""
    out = {}
    with h5py.File(path, "r") as f:
        elem = f[which]
        if isinstance(elem, h5py.Dataset):  # legacy 0.6 compound
            uns = f["uns"] if "uns" in f else {}
            names = elem.dtype.names[1:]
            for name in names:
                ft = elem.dtype.fields[name][0]
                cat_key = f"{name}_categories"
                if ft.kind in "iu" and cat_key in uns:
                    out[name] = "categorical"
                elif ft.kind == "b":
                    out[name] = "boolean"
                elif ft.kind in "iu":
                    out[name] = "integer"
                elif ft.kind == "f":
                    out[name] = "float"
                else:
                    out[name] = "string"
            return out
        order = elem.attrs.get("column-order", [])
        order = [x.decode() if isinstance(x, bytes) else str(x) for x in np.atleast_1d(order)]
        for name in order:
            col = elem[name]
            if isinstance(col, h5py.Group):
                enc = _attr_str(col.attrs, "encoding-type")
                if enc == "categorical":
                    out[name] = "categorical"
                elif enc == "nullable-integer":
                    out[name] = "nullable-integer"
                elif enc == "nullable-boolean":
                    out[name] = "nullable-boolean"
                else:
                    out[name] = f"?group:{enc}"
                continue
            if "categories" in col.attrs:  # 0.7 object reference
                out[name] = "categorical"
            elif col.dtype.kind == "b":
                out[name] = "boolean"
            elif col.dtype.kind in "iu":
                out[name] = "integer"
            elif col.dtype.kind == "f":
                out[name] = "float"
            else:
                out[name] = "string"
    return out


# --------------------------------------------------------------------------
# expected outputs
# --------------------------------------------------------------------------


def _anndata_matrix_encoding(m) -> str:
    if isinstance(m, np.ndarray):
        return "dense"
    if sp.isspmatrix_csr(m):
        return "csr"
    if sp.isspmatrix_csc(m):
        return "csc"
    raise AssertionError(f"unexpected matrix type {type(m)}")


def _stored(m) -> int:
    return int(m.size) if isinstance(m, np.ndarray) else int(m.nnz)


def expected_inspect(path) -> dict:
    """What `cellcube inspect FILE --json` must print (modulo "path")."""
    path = Path(path)
    adata = read_adata(path)
    matrices = h5_matrix_infos(path)

    # Self-check: anndata and h5py agree about which matrices exist and what
    # they are.  A failure here is a bug in this module or in the file.
    names = [m["path"] for m in matrices]
    assert ("X" in names) == (adata.X is not None), (path, names)
    assert (("raw/X" in names) or ("raw.X" in names)) == (adata.raw is not None), (path, names)
    assert sorted(n for n in names if n.startswith("layers/")) == sorted(
        f"layers/{k}" for k in adata.layers.keys()
    ), (path, names)
    for m in matrices:
        values, var = matrix_from_adata(adata, m["path"])
        assert _anndata_matrix_encoding(values) == m["encoding"], (path, m)
        assert values.dtype.name == m["dtype"], (path, m, values.dtype)
        assert list(values.shape) == m["shape"], (path, m, values.shape)
        assert _stored(values) == m["stored"], (path, m)
        assert values.shape[0] == adata.n_obs and values.shape[1] == len(var), (path, m)

    obs_index = h5_index_name(path, "obs")
    var_index = h5_index_name(path, "var")
    # anndata names the index after the stored column unless it is "_index"
    for name, df in ((obs_index, adata.obs), (var_index, adata.var)):
        assert df.index.name == (None if name == "_index" else name), (path, name, df.index.name)

    obs_cols = dataframe_columns(adata.obs)
    var_cols = dataframe_columns(adata.var)
    # The C++ reader classifies columns from the stored encoding; anndata's
    # pandas dtypes agree with it on every file seen so far.  If a new file
    # breaks that, say so instead of silently expecting one or the other.
    for which, cols in (("obs", obs_cols), ("var", var_cols)):
        disk = ondisk_column_kinds(path, which)
        pandas_kinds = {c["name"]: c["kind"] for c in cols}
        assert disk == pandas_kinds, (
            f"{path.name} {which}: anndata dtype kinds {pandas_kinds} differ from the on-disk "
            f"encodings {disk}; decide which one cellcube must report"
        )

    return {
        "n_obs": int(adata.n_obs),
        "n_vars": int(adata.n_vars),
        "obs_index": obs_index,
        "var_index": var_index,
        "matrices": matrices,
        "obs": obs_cols,
        "var": var_cols,
    }


def matrix_stats(m) -> dict:
    """Row/column statistics of a dense or sparse matrix, in float64."""
    n_rows, n_cols = m.shape
    w = np.arange(1, n_cols + 1, dtype=np.float64)
    if isinstance(m, np.ndarray):
        d = np.asarray(m, dtype=np.float64)
        nz = d != 0  # NaN != 0 is True: NaN counts
        return {
            "shape": [int(n_rows), int(n_cols)],
            "row_sum": d.sum(axis=1),
            "row_sumsq": (d * d).sum(axis=1),
            "row_nnz": nz.sum(axis=1).astype(np.int64),
            "row_wsum": (d * w[None, :]).sum(axis=1),
            "col_sum": d.sum(axis=0),
            "col_nnz": nz.sum(axis=0).astype(np.int64),
            "row_abs": np.abs(d).sum(axis=1),
            "row_wabs": (np.abs(d) * w[None, :]).sum(axis=1),
            "col_abs": np.abs(d).sum(axis=0),
        }
    # Sparse: work on the COO triplets so explicit zeros and duplicates are
    # handled by plain numpy, without scipy's canonicalisation.
    coo = m.tocoo()
    r = coo.row.astype(np.int64)
    c = coo.col.astype(np.int64)
    v = coo.data.astype(np.float64)
    nz = (v != 0).astype(np.int64)
    return {
        "shape": [int(n_rows), int(n_cols)],
        "row_sum": np.bincount(r, weights=v, minlength=n_rows),
        "row_sumsq": np.bincount(r, weights=v * v, minlength=n_rows),
        "row_nnz": np.bincount(r, weights=nz, minlength=n_rows).astype(np.int64),
        "row_wsum": np.bincount(r, weights=v * (c + 1), minlength=n_rows),
        "col_sum": np.bincount(c, weights=v, minlength=n_cols),
        "col_nnz": np.bincount(c, weights=nz, minlength=n_cols).astype(np.int64),
        "row_abs": np.bincount(r, weights=np.abs(v), minlength=n_rows),
        "row_wabs": np.bincount(r, weights=np.abs(v) * (c + 1), minlength=n_rows),
        "col_abs": np.bincount(c, weights=np.abs(v), minlength=n_cols),
    }


def expected_dump(path, matrix="X") -> dict:
    """What `cellcube-dump FILE --matrix MATRIX` must print.  The extra keys
    row_abs/row_wabs/col_abs (sums of |v|) scale the summation tolerance."""
    adata = read_adata(Path(path))
    values, var = matrix_from_adata(adata, matrix)
    stats = matrix_stats(values)
    stats["matrix"] = matrix
    stats["obs"] = dataframe_dump(adata.obs)
    stats["var"] = dataframe_dump(var)
    return stats


# --------------------------------------------------------------------------
# comparison helpers (used by the tests; they return lists of problems so a
# test can report every mismatch of a file at once)
# --------------------------------------------------------------------------


def _as_float_array(xs):
    return np.array([np.nan if x is None else float(x) for x in xs], dtype=np.float64)


def compare_sums(name, got, want, abs_sum, rtol=1e-6, problems=None):
    """|got - want| <= rtol*|want| + 1e-9*sum|v| (the second term covers
    cancellation in float64 summation order); NaN must match NaN."""
    problems = [] if problems is None else problems
    g = _as_float_array(got)
    if g.shape != want.shape:
        problems.append(f"{name}: length {g.shape[0]} != expected {want.shape[0]}")
        return problems
    gn, wn = np.isnan(g), np.isnan(want)
    bad_nan = np.nonzero(gn != wn)[0]
    if bad_nan.size:
        i = bad_nan[0]
        problems.append(
            f"{name}: NaN mismatch at {bad_nan.size} positions, first [{i}]: got {g[i]!r} want {want[i]!r}"
        )
    ok = gn | wn
    absn = np.where(np.isnan(abs_sum), 0.0, abs_sum)
    tol = rtol * np.abs(np.where(wn, 0, want)) + 1e-9 * absn
    diff = np.abs(np.where(ok, 0, g - np.where(wn, 0, want)))
    bad = np.nonzero(~ok & (diff > tol))[0]
    if bad.size:
        i = bad[0]
        problems.append(
            f"{name}: {bad.size} values differ, first [{i}]: got {g[i]!r} want {want[i]!r} (tol {tol[i]:.3g})"
        )
    return problems


def _is_json_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def compare_exact(name, got, want, problems):
    got = list(got) if got is not None else None
    want = list(want)
    if got is None:
        problems.append(f"{name}: missing")
        return
    if len(got) != len(want):
        problems.append(f"{name}: length {len(got)} != expected {len(want)}")
        return
    bad = [i for i, (a, b) in enumerate(zip(got, want)) if a != b]
    if bad:
        i = bad[0]
        problems.append(
            f"{name}: {len(bad)} entries differ, first [{i}]: got {got[i]!r} want {want[i]!r}"
        )


def compare_dump(got: dict, want: dict) -> list:
    problems = []
    if got.get("matrix") != want["matrix"]:
        problems.append(f"matrix: got {got.get('matrix')!r} want {want['matrix']!r}")
    if not all(_is_json_int(x) for x in got.get("shape", [])):
        problems.append(f"shape: must be JSON integers, got {got.get('shape')!r}")
    if list(got.get("shape", [])) != want["shape"]:
        problems.append(f"shape: got {got.get('shape')!r} want {want['shape']!r}")
        return problems
    for key in ("row_nnz", "col_nnz"):
        compare_exact(key, got.get(key), [int(x) for x in want[key]], problems)
        non_int = [x for x in got.get(key) or [] if not _is_json_int(x)]
        if non_int:
            problems.append(f"{key}: counts must be JSON integers, got e.g. {non_int[0]!r}")
    for key, absk in (
        ("row_sum", "row_abs"),
        ("row_sumsq", "row_sumsq"),
        ("row_wsum", "row_wabs"),
        ("col_sum", "col_abs"),
    ):
        if key not in got:
            problems.append(f"{key}: missing")
            continue
        compare_sums(key, got[key], want[key], want[absk], problems=problems)
    for frame in ("obs", "var"):
        g = got.get(frame)
        if not isinstance(g, dict):
            problems.append(f"{frame}: missing")
            continue
        w = want[frame]
        compare_exact(f"{frame}.index", g.get("index"), w["index"], problems)
        gcols = g.get("columns", {})
        if sorted(gcols) != sorted(w["columns"]):
            problems.append(
                f"{frame}.columns: names {sorted(gcols)!r} != expected {sorted(w['columns'])!r}"
            )
        for name, labels in w["columns"].items():
            if name in gcols:
                compare_exact(f"{frame}.columns[{name!r}]", gcols[name], labels, problems)
    return problems


def _json_types(v):
    """Type structure of a JSON value (so 3.0 is not accepted for 3)."""
    if isinstance(v, list):
        return [_json_types(x) for x in v]
    return type(v).__name__


def compare_inspect(got: dict, want: dict) -> list:
    problems = []
    for key in ("n_obs", "n_vars", "obs_index", "var_index"):
        if got.get(key) != want[key] or type(got.get(key)) is not type(want[key]):
            problems.append(f"{key}: got {got.get(key)!r} want {want[key]!r}")
    gm = {m.get("path"): m for m in got.get("matrices", [])}
    wm = {m["path"]: m for m in want["matrices"]}
    if len(gm) != len(got.get("matrices", [])):
        problems.append(f"matrices: duplicate paths in {[m.get('path') for m in got.get('matrices', [])]}")
    if sorted(gm) != sorted(wm):
        problems.append(f"matrices: got {sorted(gm)!r} want {sorted(wm)!r}")
    for p, w in wm.items():
        g = gm.get(p)
        if g is None:
            continue
        for key in ("encoding", "dtype", "shape", "stored", "chunks", "filter", "index_dtype"):
            gv = g.get(key, "<absent>")
            if isinstance(gv, tuple):
                gv = list(gv)
            if gv != w[key] or _json_types(gv) != _json_types(w[key]):
                problems.append(f"matrices[{p}].{key}: got {gv!r} want {w[key]!r}")
    for frame in ("obs", "var"):
        gcols = got.get(frame)
        if gcols is None:
            problems.append(f"{frame}: missing")
            continue
        gnames = [c.get("name") for c in gcols]
        wnames = [c["name"] for c in want[frame]]
        if gnames != wnames:
            problems.append(f"{frame}: column names/order got {gnames!r} want {wnames!r}")
        gby = {c.get("name"): c for c in gcols}
        for w in want[frame]:
            g = gby.get(w["name"])
            if g is None:
                continue
            for key in ("kind", "n_values", "n_missing"):
                if g.get(key) != w[key] or type(g.get(key)) is not type(w[key]):
                    problems.append(
                        f"{frame}[{w['name']!r}].{key}: got {g.get(key)!r} want {w[key]!r}"
                    )
    return problems


if __name__ == "__main__":  # python3 reference.py FILE [MATRIX] -> JSON like the tools
    import json
    import sys

    def _js(x):
        if isinstance(x, np.ndarray):
            return [None if (isinstance(v, float) and math.isnan(v)) else v for v in x.tolist()]
        raise TypeError(type(x))

    f = sys.argv[1]
    if len(sys.argv) > 2:
        d = expected_dump(f, sys.argv[2])
        for k in ("row_abs", "row_wabs", "col_abs"):
            d.pop(k)
        print(json.dumps(d, default=_js))
    else:
        print(json.dumps(expected_inspect(f), default=_js, indent=1))
