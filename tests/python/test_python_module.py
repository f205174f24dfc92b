"""The Python module (docs/QUERY.md): `import cellcube` from <build>/python, whose
Store.query DataFrame equals the CLI's CSV for the same query.

The module runs in a subprocess with PYTHONPATH=<build>/python (exactly how a user
imports it; for an ASan build the sanitizer runtime is preloaded there), which
pickles its DataFrames for this process to compare.
"""

from __future__ import annotations

import json
import math
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import helpers
import query_reference as qr

ALL = qr.METRICS

QUERIES = [
    (["G000", "G012", "G005", "G065", "G081"], ["cell_type"], None, None, ALL),
    (["G011", "G000"], [], None, None, None),
    (["G020", "G001"], ["dataset", "cell_type", "stage"], None, None, ALL),
    (["G012", "G040"], ["cell_type"], {"condition": ["x=y", "a,b"], "sex": ["F"]}, None, ALL),
    (["G014"], ["cell_type"], {"stage": ["NA"]}, None, ["std", "n_cells", "mean_expr"]),
    (["G020", "G005"], ["cell_type", "sex"], None, ["blood", "gut"], ALL),
    (["sym12", "DUP"], ["dataset"], {"dataset": ["lung,a", "gut"]}, None, ALL),
    (["G024"], ["cell_type"], {"dataset": ["blood"], "condition": ["plain"]}, None, ALL),
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("pymodule")
    cellcube = qr.cellcube_binary()
    inputs = qr.write_inputs(d / "inputs")
    store = qr.build_store(cellcube, inputs, d / "store.h5ad")
    build = qr.build_dir()
    module_dir = build / "python" / "cellcube"
    if not (module_dir / "__init__.py").is_file() or not list(module_dir.glob("_cellcube*.so")):
        pytest.fail(f"the Python module is not built in {module_dir} (build the project)",
                    pytrace=False)
    return cellcube, store, build, d


def run_python(build, code, timeout=120, env=None):
    """Runs `code` with the module importable (and `env` added to its environment);
    returns the completed process."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env={**qr.python_env(build), **(env or {})}, timeout=timeout)
    return proc


def module_frames(build, store, queries, out):
    code = f"""
        import pickle, cellcube
        s = cellcube.open({str(store)!r})
        frames = []
        for genes, by, where, datasets, metrics in {queries!r}:
            frames.append(s.query(genes, by=by, where=where, datasets=datasets, metrics=metrics))
        with open({str(out)!r}, "wb") as f:
            pickle.dump(frames, f)
    """
    proc = run_python(build, code)
    assert proc.returncode == 0, f"module failed:\n{proc.stderr}"
    with open(out, "rb") as f:
        return pickle.load(f)


def compare_frame_with_csv(df, csv_text):
    header, rows = qr.parse_csv(csv_text)
    assert list(df.columns) == header
    assert len(df) == len(rows)
    for name in header:
        col = df[name]
        if name in ("n_cells", "nnz"):
            assert col.dtype == np.int64, (name, col.dtype)
            assert [str(v) for v in col] == [r[name] for r in rows], name
        elif name in ALL:
            assert col.dtype == np.float64, (name, col.dtype)
            for v, r in zip(col, rows):
                if r[name] == "":
                    assert math.isnan(v), (name, v)
                else:
                    assert v == float(r[name]), (name, v, r[name])
        else:
            assert col.dtype == object
            assert list(col) == [r[name] for r in rows], name


def test_dataframe_equals_cli_csv(setup):
    cellcube, store, build, d = setup
    frames = module_frames(build, store, QUERIES, d / "frames.pkl")
    nonempty = 0
    for q, df in zip(QUERIES, frames):
        proc = helpers.run([cellcube, "query", store, *qr.query_args(*q), "--format", "csv"])
        assert proc.returncode == 0, helpers.describe(proc)
        compare_frame_with_csv(df, proc.stdout)
        nonempty += len(df) > 0
    assert nonempty >= len(QUERIES) - 1


# The matrix of test_query_csv_and_json_text_equal_cli: every combination of a split, a
# filter, a dataset selection and a metric list, over genes measured everywhere (G012),
# zero in one dataset (G005: lung), in one dataset only (G065: blood) and nowhere
# nonzero (G081: gut).
MATRIX_GENES = ["G012", "G005", "G065", "G081"]
MATRIX_BY = [[], ["cell_type"], ["dataset", "stage"]]
MATRIX_WHERE = [None, {"sex": ["F"]}, {"condition": ["x=y", "a,b"]},
                {"sex": ["M"], "stage": ["II"]}, {"stage": ["NA"]}]
MATRIX_DATASETS = [None, ["gut"], ["gut", "blood"]]  # two: not in the store's order
MATRIX_METRICS = [None, ALL, ["std", "n_cells", "mean_expr", "frac"]]
MATRIX = [(MATRIX_GENES, by, where, datasets, metrics)
          for by in MATRIX_BY for where in MATRIX_WHERE for datasets in MATRIX_DATASETS
          for metrics in MATRIX_METRICS]


def _cli_text(cellcube, store, q, fmt):
    return helpers.run([cellcube, "query", store, *qr.query_args(*q), "--format", fmt])


def _json_problems(objs, want, by, metrics):
    """The parsed JSON answer against the reference rows (as qr.compare_rows does for CSV):
    one object per row, keys in CSV order, n_cells/nnz ints, null where missing."""
    header = list(by) + ["gene"] + list(metrics)
    if not isinstance(objs, list):
        return [f"JSON answer is a {type(objs).__name__}, not a list"]
    problems = [f"object {i} keys {list(o)} != {header}" for i, o in enumerate(objs)
                if list(o) != header]
    if problems:
        return problems[:5]
    for o in objs:
        for m in ("n_cells", "nnz"):
            if m in o and not (isinstance(o[m], int) and not isinstance(o[m], bool)):
                problems.append(f"{m} {o[m]!r} is not a JSON integer")
    rows = [{k: ("" if v is None else str(v)) for k, v in o.items()} for o in objs]
    return problems + qr.compare_rows(header, rows, want, by, metrics)


def test_query_csv_and_json_text_equal_cli(setup):
    """query_csv / query_json return, byte for byte, what `cellcube query --format
    csv/json` prints, and df.attrs["notes"] what it prints on stderr, for every query of
    MATRIX (by none / one / two columns, where none / one value / two values OR-ed / two
    columns AND-ed / NA, datasets none / one / two, default / all / reordered metrics);
    both answers also equal the numpy reference computed from the source files."""
    from concurrent.futures import ThreadPoolExecutor

    from test_query import NO_CELLS, NOT_MEASURED

    cellcube, store, build, d = setup
    assert len(MATRIX) == 135
    code = f"""
        import json, warnings, cellcube
        warnings.simplefilter("ignore")
        s = cellcube.open({str(store)!r})
        out = []
        for g, by, where, ds, m in {MATRIX!r}:
            out.append([s.query_csv(g, by, where, ds, m), s.query_json(g, by, where, ds, m),
                        s.query(g, by=by, where=where, datasets=ds, metrics=m).attrs["notes"]])
        print(json.dumps(out))
    """
    proc = run_python(build, code)
    assert proc.returncode == 0, proc.stderr
    module = json.loads(proc.stdout)
    assert len(module) == len(MATRIX)
    with ThreadPoolExecutor(max_workers=8) as pool:
        cli = list(pool.map(lambda q: (_cli_text(cellcube, store, q, "csv"),
                                       _cli_text(cellcube, store, q, "json")), MATRIX))
    ref = qr.Reference({name: d / "inputs" / f for name, f in qr.FILES.items()}, store)
    answered = []
    for q, (csv_text, json_text, notes), (cli_csv, cli_json) in zip(MATRIX, module, cli):
        genes, by, where, datasets, metrics = q
        label = f"query {qr.query_args(*q)}"
        for fmt, text, c in (("csv", csv_text, cli_csv), ("json", json_text, cli_json)):
            assert c.returncode == 0, helpers.describe(c)
            assert text == c.stdout, f"{label}: query_{fmt} differs from the CLI's --format {fmt}"
        want = ref.expected(genes, by, where, datasets, metrics)
        why = (ref.scale_note(where, datasets) if want
               else NOT_MEASURED if ref.selects_cells(where, datasets) else NO_CELLS)
        # The CLI also names the genes a selected dataset did not measure (the module's
        # answers carry that in their rows' datasets, not in the notes).
        cli_why = (ref.not_measured_note(genes, where, datasets) if want else "") + why
        assert cli_csv.stderr == cli_why and cli_json.stderr == cli_why, f"{label}\n" + helpers.describe(cli_csv)
        assert "".join(f"cellcube: {n}\n" for n in notes) == why, (label, notes)
        m = metrics or qr.DEFAULT_METRICS
        header, rows = qr.parse_csv(csv_text)
        problems = qr.compare_rows(header, rows, want, by, m)
        problems += ["json: " + p for p in _json_problems(json.loads(json_text), want, by, m)]
        assert not problems, f"{label} disagrees with numpy:\n  " + "\n  ".join(problems)
        answered.append(bool(want))
    # No level of any factor is covered by empty answers only.
    for k, levels in ((1, MATRIX_BY), (2, MATRIX_WHERE), (3, MATRIX_DATASETS), (4, MATRIX_METRICS)):
        for level in levels:
            assert any(a for q, a in zip(MATRIX, answered) if q[k] == level), (k, level)
    # Empty exactly where the inputs hold no such cells: only lung has condition, and
    # gut's stages are I, III and IV with none missing.
    empty = [q for q, a in zip(MATRIX, answered) if not a]
    assert empty == [q for q in MATRIX if (q[2] and "condition" in q[2] and q[3])
                     or (q[3] == ["gut"] and q[2] and "stage" in q[2])], empty


def test_where_values_of_other_types(setup):
    """None / NaN select missing values; bools and numbers match their labels."""
    cellcube, store, build, d = setup
    code = f"""
        import json, math, cellcube
        s = cellcube.open({str(store)!r})
        out = [
            s.query_csv("G015", by="dataset", where={{"treated": True}}),
            s.query_csv("G015", by="dataset", where={{"treated": [None, False]}}),
            s.query_csv("G015", by="cell_type", where={{"stage": math.nan}}),
        ]
        print(json.dumps(out))
    """
    proc = run_python(build, code)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    wants = [["--where", "treated=True"], ["--where", "treated=NA", "--where", "treated=False"],
             ["--where", "stage=NA"]]
    bys = ["dataset", "dataset", "cell_type"]
    for text, where, by in zip(got, wants, bys):
        cli = helpers.run([cellcube, "query", store, "--genes", "G015", "--by", by, *where,
                           "--format", "csv"])
        assert cli.returncode == 0, helpers.describe(cli)
        assert text == cli.stdout
        assert len(text.splitlines()) > 1


def test_properties(setup):
    import anndata as ad

    cellcube, store, build, d = setup
    code = f"""
        import json, cellcube
        s = cellcube.open({str(store)!r})
        g = s.genes
        print(json.dumps({{
            "datasets": s.datasets, "columns": s.columns, "path": s.path,
            "values": {{c: s.values(c) for c in s.columns}},
            "genes": list(g["gene"]), "symbols": list(g["symbol"]),
            "gene_columns": list(g.columns), "repr": repr(s), "metrics": cellcube.METRICS,
        }}))
    """
    proc = run_python(build, code)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    a = ad.read_h5ad(store)
    assert got["datasets"] == ["lung,a", "blood", "gut"]
    assert got["columns"] == [c for c in a.obs.columns if c != "n_cells"]
    assert got["columns"][:2] == ["dataset", "cell_type"]
    for c in got["columns"]:
        col = a.obs[c]
        present = [v for v in col.cat.categories if (col == v).any()]
        want = present + (["NA"] if col.isna().any() else [])
        assert got["values"][c] == want, c
    assert "NA" in got["values"]["condition"] and "x=y" in got["values"]["condition"]
    assert got["genes"] == list(a.var_names)
    assert got["symbols"] == list(a.var["symbol"])
    assert got["gene_columns"] == ["gene", "symbol"]
    assert got["metrics"] == ALL
    assert "3 datasets" in got["repr"]


def cli_error(cellcube, store, *args):
    proc = helpers.run([cellcube, "query", store, *args])
    line = helpers.assert_error(proc, code=1)
    return line[len(helpers.ERROR_PREFIX):]


def test_errors_raise_with_the_cli_message(setup):
    cellcube, store, build, d = setup
    cases = [
        ('s.query("Sym1O")', ["--genes", "Sym1O"]),
        ('s.query("G000", by="celltype")', ["--genes", "G000", "--by", "celltype"]),
        ('s.query("G000", where={"stage": "V"})', ["--genes", "G000", "--where", "stage=V"]),
        ('s.query("G000", datasets=["blod"])', ["--genes", "G000", "--datasets", "blod"]),
        ('s.query("G000", metrics=["mea"])', ["--genes", "G000", "--metrics", "mea"]),
    ]
    extra = ['s.values("nope")', 's.query([])', 's.query("G000", where=["stage"])',
             f'cellcube.open({str(d / "missing.h5ad")!r})',
             f'cellcube.open({str(d / "inputs" / "blood.h5ad")!r})']
    code = f"""
        import json, cellcube
        s = cellcube.open({str(store)!r})
        out = []
        for expr in {[c[0] for c in cases]!r}:
            try:
                eval(expr)
                out.append(["no exception", ""])
            except Exception as e:
                out.append([type(e).__name__, str(e)])
        for expr in {extra!r}:
            try:
                eval(expr)
                out.append(["no exception", ""])
            except Exception as e:
                out.append([type(e).__name__, str(e)])
        print(json.dumps(out))
    """
    proc = run_python(build, code)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    for (expr, args), (kind, message) in zip(cases, got):
        assert kind == "ValueError", (expr, kind, message)
        assert message == cli_error(cellcube, store, *args), expr
    extra = got[len(cases):]
    assert extra[0][0] == "ValueError" and "nope" in extra[0][1]
    assert extra[1][0] == "ValueError"
    assert extra[2][0] == "ValueError"
    assert extra[3][0] == "FileNotFoundError" and "missing.h5ad" in extra[3][1]
    assert extra[4][0] == "ValueError" and "not a cellcube store" in extra[4][1], extra[4]


def test_store_is_shared_between_threads(setup):
    cellcube, store, build, d = setup
    code = f"""
        import json, threading, cellcube
        s = cellcube.open({str(store)!r})
        queries = [("G0{{:02d}}".format(10 + i % 20), ["cell_type", "stage"]) for i in range(40)]
        want = [s.query_csv(g, by) for g, by in queries]
        bad = []
        def work(k):
            for j in range(20):
                i = (k * 7 + j) % len(queries)
                if s.query_csv(*queries[i]) != want[i]:
                    bad.append(i)
        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
        print(json.dumps(bad))
    """
    proc = run_python(build, code)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_damaged_files_raise_instead_of_crashing(setup):
    """Files on which libhdf5 itself crashes or allocates without end
    (fuzz/libhdf5-findings): cellcube.open reads them in a child process first, so each
    raises an exception and the interpreter goes on to query a good store."""
    cellcube, store, build, d = setup
    findings = sorted((helpers.REPO / "fuzz" / "libhdf5-findings").glob("*.h5ad"))
    assert len(findings) >= 5
    code = f"""
        import json, cellcube
        out = []
        for path in {[str(p) for p in findings]!r}:
            try:
                cellcube.open(path)
                out.append([path, "no exception", ""])
            except Exception as e:
                out.append([path, type(e).__name__, str(e)])
        s = cellcube.open({str(store)!r})
        out.append(["good", str(len(s.query("G000", by="cell_type"))), ""])
        print(json.dumps(out))
    """
    proc = run_python(build, code, env=helpers.libhdf5_bug_env())
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    for path, kind, message in got[:-1]:
        assert kind in ("ValueError", "MemoryError", "OSError"), (path, kind, message)
        if "segv" in path.lower():
            assert "crashed (SIGSEGV" in message, message
        if "unbounded" in path:
            assert kind == "MemoryError", (kind, message)
    assert int(got[-1][1]) > 0


def test_de_and_markers_equal_the_cli(setup, tmp_path):
    """s.de(...) / s.markers(...) (docs/DE.md): their CSV text is byte for byte the CLI's, and
    their DataFrames hold the same numbers (NaN where the CSV is empty)."""
    import pandas as pd

    import test_de

    cellcube, _store, build, _d = setup
    rng = np.random.default_rng(7)
    for study, lost in (("s1", True), ("s2", False)):
        test_de.write_study(tmp_path / f"{study}.h5ad", study, rng, lost)
    store = tmp_path / "de.h5ad"
    helpers.run_ok([cellcube, "build", "-o", store, "--quiet", "--transform", "none",
                    "--cell-type", "cell_type", "--groupby", "donor,condition",
                    tmp_path / "s1.h5ad", tmp_path / "s2.h5ad"])
    cli = {
        "de": helpers.run_ok([cellcube, "de", store, "--compare", "condition", "--group1", "disease",
                              "--top", "20", "--format", "csv"]).stdout,
        "cells": helpers.run_ok([cellcube, "de", store, "--compare", "cell_type", "--group1", "T",
                                 "--test", "cells", "--where", "donor=D1", "--where", "donor=D2",
                                 "--format", "csv"]).stdout,
        "markers": helpers.run_ok([cellcube, "markers", store, "--top", "3", "--format", "csv"]).stdout,
    }
    cli_json = {key: json.loads(helpers.run_ok(args).stdout) for key, args in (
        ("de", [cellcube, "de", store, "--compare", "condition", "--group1", "disease", "--top",
                "20", "--format", "json"]),
        ("cells", [cellcube, "de", store, "--compare", "cell_type", "--group1", "T", "--test",
                   "cells", "--where", "donor=D1", "--where", "donor=D2", "--format", "json"]),
        ("markers", [cellcube, "markers", store, "--top", "3", "--format", "json"]))}
    out = tmp_path / "de.pkl"
    code = f"""
        import pickle, cellcube
        s = cellcube.open({str(store)!r})
        def with_attrs(text, frame):
            return text, frame, dict(frame.attrs)
        got = {{
            "de": with_attrs(s.de_csv("condition", "disease", top=20),
                             s.de("condition", "disease", top=20)),
            "cells": with_attrs(s.de_csv("cell_type", ["T"], test="cells",
                                         where={{"donor": ["D1", "D2"]}}),
                                s.de("cell_type", ["T"], test="cells", where={{"donor": ["D1", "D2"]}})),
            "markers": with_attrs(None, s.markers(top=3)),
        }}
        errors = []
        for kwargs in ({{"compare": "nope", "group1": "T"}}, {{"compare": "cell_type", "group1": "T", "group2": "T"}}):
            try:
                s.de(**kwargs)
            except ValueError as e:
                errors.append(str(e))
        with open({str(out)!r}, "wb") as f:
            pickle.dump((got, errors), f)
    """
    proc = run_python(build, code)
    assert proc.returncode == 0, f"module failed:\n{proc.stderr}"
    with open(out, "rb") as f:
        got, errors = pickle.load(f)
    for key, text in cli.items():
        csv_text, frame, attrs = got[key]
        if csv_text is not None:
            assert csv_text == text, key
        want = pd.read_csv(__import__("io").StringIO(text), keep_default_na=False, na_values=[""])
        assert list(frame.columns) == list(want.columns), key
        assert len(frame) == len(want) > 0, key
        # A gene without a symbol is "" (as in s.genes), the counts nullable integers.
        assert frame["symbol"].notna().all(), key
        want["symbol"] = want["symbol"].fillna("")
        for column in ("n_cells1", "n_cells2", "n_donors1", "n_donors2"):
            assert str(frame[column].dtype) == "Int64", (key, column, frame[column].dtype)
            assert list(frame[column].isna()) == list(want[column].isna()), (key, column)
            want[column] = want[column].astype("Int64")
        pd.testing.assert_frame_equal(frame.reset_index(drop=True), want, check_dtype=False)
        # The test that ran and the notes, as the CLI's JSON answer gives them.
        assert attrs["test"] == cli_json[key]["test"], (key, attrs, cli_json[key]["test"])
        assert attrs["notes"] == cli_json[key]["notes"], key
    assert len(errors) == 2 and "nope" in errors[0] and "both sides" in errors[1], errors


def test_de_frames_come_from_columns_with_labels_as_str(setup, tmp_path):
    """s.markers()/s.de() build their DataFrames from columns, not from parsed text: a
    value that reads as a number (pbmc68k's louvain clusters "0", "1", ...) stays the
    str the store holds, as in s.query(); every number equals the CLI's CSV."""
    import io

    import pandas as pd

    cellcube, _store, build, _d = setup
    pbmc = helpers.DATA_DIR / "anndata-0.6_pbmc68k-reduced_dense-gzip_legacy-raw.h5ad"
    assert pbmc.is_file(), pbmc
    store = tmp_path / "pbmc.h5ad"
    helpers.run_ok([cellcube, "build", "-o", store, "--quiet", "--matrix", "X", "--cell-type", "louvain", pbmc])
    cli = helpers.run_ok([cellcube, "markers", store, "--top", "4", "--test", "cells", "--format", "csv"]).stdout
    want = pd.read_csv(io.StringIO(cli), keep_default_na=False, na_values=[""],
                       dtype={"cell_type": str, "gene": str, "symbol": str})
    out = tmp_path / "m.pkl"
    proc = run_python(build, f"""
        import pickle, cellcube
        s = cellcube.open({str(store)!r})
        frame = s.markers(top=4, test="cells")
        labels = s.query(frame["gene"].iloc[0], by="cell_type")["cell_type"].tolist()
        with open({str(out)!r}, "wb") as f:
            pickle.dump((frame, labels), f)
    """)
    assert proc.returncode == 0, proc.stderr
    with open(out, "rb") as f:
        frame, labels = pickle.load(f)
    assert len(frame) == len(want) > 4
    assert frame["cell_type"].dtype == object and all(isinstance(v, str) for v in frame["cell_type"])
    assert set(frame["cell_type"]) <= set(labels), "the same labels as s.query() gives"
    for column in ("gene", "symbol"):
        assert frame[column].dtype == object
    for column in ("n_cells1", "n_cells2", "n_donors1", "n_donors2"):
        assert str(frame[column].dtype) == "Int64", column
        assert list(frame[column].isna()) == list(want[column].isna()), column
        want[column] = want[column].astype("Int64")
    want["symbol"] = want["symbol"].fillna("")
    for column in ("mean1", "logfc", "t", "pvalue", "padj"):
        assert frame[column].dtype == np.float64, column
    pd.testing.assert_frame_equal(frame, want)
