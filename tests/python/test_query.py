"""`cellcube query` against an independent float64 numpy computation (docs/QUERY.md, docs/BUILD.md).

The store is built from three anndata-written datasets (query_reference.py) with
missing values, genes absent from some datasets, all-zero genes and cells, and
values containing ',' and '='. Every expected number is computed from the SOURCE
.h5ad files by pooling the selected cells' transformed values per (split, gene);
only the presentation order of the split labels is taken from the store's
categories (read with anndata).
"""

from __future__ import annotations

import json

import pytest

import helpers
import query_reference as qr

ALL = qr.METRICS


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("query")
    cellcube = qr.cellcube_binary()
    inputs = qr.write_inputs(d / "inputs")
    store = qr.build_store(cellcube, inputs, d / "store.h5ad")
    return cellcube, store, qr.Reference(inputs, store)


NO_CELLS = "cellcube: no rows: the selection holds no cells (no cell group matches the datasets and where filters)\n"
NOT_MEASURED = "cellcube: no rows: none of the selected datasets measured these genes\n"


def run_csv(cellcube, store, *args, why):
    """The query's CSV rows; stderr must be `why`: why an answer is empty, or the note on
    the datasets' transforms (Reference.scale_note)."""
    proc = helpers.run([cellcube, "query", store, *args, "--format", "csv"])
    assert proc.returncode == 0, helpers.describe(proc)
    assert proc.stderr == why, helpers.describe(proc)
    return qr.parse_csv(proc.stdout)


# (id, genes, by, where, datasets, metrics)
QUERIES = [
    ("by-cell-type-all-metrics", ["G000", "G012", "G005", "G065", "G081", "G085"], ["cell_type"],
     None, None, ALL),
    ("default-metrics-no-split", ["G011", "G000", "G070"], [], None, None, None),
    ("by-dataset", ["G000", "G015", "G075", "G081"], ["dataset"], None, None, ALL),
    ("by-three-columns", ["G020", "G001"], ["dataset", "cell_type", "stage"], None, None, ALL),
    ("by-stage-then-cell-type", ["G025"], ["stage", "cell_type"], None, None,
     ["var", "n_cells", "std", "mean_expr"]),
    ("where-cell-type-with-comma", ["G010", "G002"], ["stage"],
     {"cell_type": ["mono, classical"]}, None, ALL),
    ("where-value-with-equals", ["G010", "G030"], ["cell_type"], {"cell_type": ["x=y"]}, None, ALL),
    ("cross-filter-or-and", ["G012", "G040"], ["cell_type"],
     {"condition": ["x=y", "a,b", "p=q,r"], "sex": ["F"]}, None, ALL),
    ("where-na", ["G014", "G001"], ["cell_type"], {"stage": ["NA"]}, None, ALL),
    ("split-by-column-some-datasets-lack", ["G015", "G050"], ["condition"], None, None, ALL),
    ("where-column-some-datasets-lack-na", ["G015"], ["dataset"], {"treated": ["NA", "True"]},
     None, ALL),
    ("where-dataset-with-comma", ["G020"], ["cell_type"], {"dataset": ["lung,a"]}, None, ALL),
    ("datasets-option", ["G020", "G005", "G065"], ["cell_type", "sex"], None, ["blood", "gut"],
     ALL),
    ("datasets-and-where", ["G021"], ["stage"], {"sex": ["M"], "cell_type": ["T cell", "NA"]},
     ["gut"], ALL),
    ("by-bool", ["G026", "G003"], ["treated", "dataset"], {"treated": ["True", "False"]}, None,
     ALL),
    ("symbols-and-case", ["sym12", "g013", "DUP", "Sym13"], ["dataset"], None, None,
     ["n_cells", "nnz", "sum"]),
    ("cell-type-na-split", ["G024"], ["cell_type"], {"dataset": ["blood"]}, None, ALL),
    ("nothing-selected", ["G024"], ["cell_type"], {"dataset": ["blood"], "condition": ["plain"]},
     None, ALL),
    ("gene-absent-from-selection", ["G065"], ["cell_type"], None, ["gut"], ALL),
]


@pytest.mark.parametrize("qid,genes,by,where,datasets,metrics", QUERIES,
                         ids=[q[0] for q in QUERIES])
def test_csv_matches_numpy(setup, qid, genes, by, where, datasets, metrics):
    cellcube, store, ref = setup
    want = ref.expected(genes, by, where, datasets, metrics)
    why = (ref.cli_note(genes, where, datasets) if want
           else NOT_MEASURED if ref.selects_cells(where, datasets) else NO_CELLS)
    header, rows = run_csv(cellcube, store, *qr.query_args(genes, by, where, datasets, metrics), why=why)
    problems = qr.compare_rows(header, rows, want, by, metrics or qr.DEFAULT_METRICS)
    assert not problems, f"query {qid} disagrees with numpy:\n  " + "\n  ".join(problems)


def test_queries_cover_what_they_claim(setup):
    """The reference answers have rows with every kind of missing value and edge case
    (so a test above cannot pass vacuously)."""
    _cellcube, _store, ref = setup
    rows = ref.expected(["G000", "G005", "G081", "G065"], ["dataset", "cell_type"],
                        metrics=ALL)
    assert any(r["mean_expr"] is None for r in rows)  # nnz = 0
    assert ref.scale_note()  # the store pools transforms: every answer notes it
    assert any(r["cell_type"] == "NA" for r in rows)
    assert {r["dataset"] for r in rows if r["gene"] == "G065"} == {"blood"}  # measured only there
    assert {r["dataset"] for r in rows if r["gene"] == "G000"} == {"lung,a", "gut"}
    small = ref.expected(["G001"], ["dataset", "cell_type", "stage", "sex"], metrics=ALL)
    assert any(r["n_cells"] == 1 and r["var"] is None for r in small)


def test_split_order_is_label_order_na_last(setup):
    cellcube, store, ref = setup
    _h, rows = run_csv(cellcube, store, "--genes", "G020", "--by", "stage", why=ref.cli_note(["G020"]))
    got = [r["stage"] for r in rows]
    assert got == ref.order["stage"] + ["NA"], got


def test_gene_order_is_request_order_and_deduplicated(setup):
    cellcube, store, ref = setup
    _h, rows = run_csv(cellcube, store, "--genes", "G020,g011,G020,sym20,G011", "--by", "dataset",
                       why=ref.cli_note(["G020", "g011", "G020", "sym20", "G011"]))
    for ds in ["lung,a", "blood", "gut"]:  # each measured both genes
        assert [r["gene"] for r in rows if r["dataset"] == ds] == ["G020", "G011"], rows


def test_symbol_of_several_ids_answers_each(setup):
    cellcube, store, ref = setup
    _h, rows = run_csv(cellcube, store, "--genes", "dup", why=ref.cli_note(["dup"]))
    assert [r["gene"] for r in rows] == ["G003", "G007"]


def test_where_splits_at_first_equals_and_inline_option(setup):
    cellcube, store, ref = setup
    want = ref.expected(["G010"], ["dataset"], {"condition": ["x=y"]}, None, ALL)
    header, rows = run_csv(cellcube, store, "--genes=G010", "--by=dataset", "--where=condition=x=y",
                           "--metrics", ",".join(ALL), why=ref.cli_note(["G010"], {"condition": ["x=y"]}))
    assert not qr.compare_rows(header, rows, want, ["dataset"], ALL)
    assert rows and all(r["dataset"] == "lung,a" for r in rows)


def test_csv_quoting_is_rfc4180(setup):
    cellcube, store, _ref = setup
    proc = helpers.run([cellcube, "query", store, "--genes", "G010", "--by", "dataset,condition",
                        "--format", "csv"])
    assert proc.returncode == 0, helpers.describe(proc)
    lines = proc.stdout.splitlines()
    assert lines[0] == "dataset,condition,gene,n_cells,frac,mean"
    assert any(line.startswith('"lung,a","a,b",G010,') for line in lines), proc.stdout
    assert any(line.startswith('"lung,a",x=y,G010,') for line in lines), proc.stdout
    assert any(line.startswith("blood,NA,G010,") for line in lines), proc.stdout


def test_json_matches_csv(setup):
    cellcube, store, ref = setup
    args = qr.query_args(["G000", "G005", "G081"], ["cell_type", "dataset"], None, None, ALL)
    header, rows = run_csv(cellcube, store, *args, why=ref.cli_note(["G000", "G005", "G081"]))
    got = helpers.run_json([cellcube, "query", store, *args, "--format", "json"])
    assert isinstance(got, list) and len(got) == len(rows)
    saw_null = False
    for obj, row in zip(got, rows):
        assert list(obj) == header
        for k in header:
            if row[k] == "":
                assert obj[k] is None
                saw_null = True
            elif k in ("n_cells", "nnz"):
                assert isinstance(obj[k], int) and obj[k] == int(row[k])
            elif k in ALL:
                assert isinstance(obj[k], float) or isinstance(obj[k], int)
                assert float(obj[k]) == float(row[k])
            else:
                assert obj[k] == row[k]
    assert saw_null


def test_json_empty_result_is_empty_list(setup):
    cellcube, store, _ref = setup
    got = helpers.run_json([cellcube, "query", store, "--genes", "G065", "--datasets", "gut",
                            "--format", "json"])
    assert got == []


def test_table_format(setup):
    cellcube, store, ref = setup
    proc = helpers.run([cellcube, "query", store, "--genes", "G000,G081", "--by", "cell_type",
                        "--metrics", ",".join(ALL)])
    assert proc.returncode == 0 and proc.stderr == ref.cli_note(["G000", "G081"]), helpers.describe(proc)
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["cell_type", "gene", "symbol"] + ALL
    want = ref.expected(["G000", "G081"], ["cell_type"], metrics=ALL)
    body = [ln for ln in lines[1:] if not set(ln.strip()) <= {"-"}]
    assert len(body) == len(want), proc.stdout
    for ln, w in zip(body, want):
        assert w["cell_type"] in ln and w["gene"] in ln, (ln, w)
        assert ref.store_symbols[ref.store_genes.index(w["gene"])] in ln, (ln, w)
        n = f"{w['n_cells']:,}"
        assert f" {n} " in f" {ln} ", (ln, w)


def test_default_format_is_table(setup):
    cellcube, store, _ref = setup
    proc = helpers.run([cellcube, "query", store, "--genes", "G000"])
    assert proc.returncode == 0, helpers.describe(proc)
    assert proc.stdout.splitlines()[0].split() == ["gene", "symbol", "n_cells", "frac", "mean"]


# --------------------------------------------------------------------------
# errors: one line, exit 1 (2 for a malformed command line)
# --------------------------------------------------------------------------


def test_unknown_gene_suggests_near_names(setup):
    cellcube, store, _ref = setup
    proc = helpers.run([cellcube, "query", store, "--genes", "G000,Sym1O"])
    helpers.assert_error(proc, code=1, mentions=["Sym1O", "Sym10"])


def test_unknown_column_suggests(setup):
    cellcube, store, _ref = setup
    proc = helpers.run([cellcube, "query", store, "--genes", "G000", "--by", "celltype"])
    helpers.assert_error(proc, code=1, mentions=["celltype", "cell_type"])
    proc = helpers.run([cellcube, "query", store, "--genes", "G000", "--where", "stagee=II"])
    helpers.assert_error(proc, code=1, mentions=["stagee", "stage"])


def test_unknown_value_suggests(setup):
    cellcube, store, _ref = setup
    proc = helpers.run([cellcube, "query", store, "--genes", "G000", "--where", "stage=II,"])
    helpers.assert_error(proc, code=1, mentions=["II,", "'II'"])
    proc = helpers.run([cellcube, "query", store, "--genes", "G000", "--where", "cell_type=T-cell"])
    helpers.assert_error(proc, code=1, mentions=["T-cell", "T cell"])


def test_unknown_dataset_suggests(setup):
    cellcube, store, _ref = setup
    proc = helpers.run([cellcube, "query", store, "--genes", "G000", "--datasets", "blod"])
    helpers.assert_error(proc, code=1, mentions=["blod", "blood"])


def test_bad_metric(setup):
    cellcube, store, _ref = setup
    proc = helpers.run([cellcube, "query", store, "--genes", "G000", "--metrics", "n_cells,mea"])
    helpers.assert_error(proc, code=1, mentions=["mea", "mean"])
    proc = helpers.run([cellcube, "query", store, "--genes", "G000", "--metrics", "frac,frac"])
    helpers.assert_error(proc, code=1, mentions=["frac"])


def test_command_line_errors(setup, tmp_path):
    cellcube, store, _ref = setup
    helpers.assert_error(helpers.run([cellcube, "query", store]), code=2, mentions=["--genes"])
    helpers.assert_error(helpers.run([cellcube, "query", store, "--genes", "G000", "--where",
                                      "stage"]), code=2, mentions=["COL=VALUE"])
    helpers.assert_error(helpers.run([cellcube, "query", store, "--genes", "G000", "--format",
                                      "xml"]), code=2, mentions=["xml"])
    helpers.assert_error(helpers.run([cellcube, "query", "--genes", "G000"]), code=2)
    helpers.assert_error(helpers.run([cellcube, "query", store, "--genes", "G000", "--bye", "x"]),
                         code=2, mentions=["--bye"])
    helpers.assert_error(helpers.run([cellcube, "query", store, "--genes", "G000", "--by",
                                      "stage,stage"]), code=1, mentions=["stage"])
    helpers.assert_error(helpers.run([cellcube, "query", tmp_path / "none.h5ad", "--genes", "G0"]),
                         code=1, mentions=["none.h5ad"])


def test_help_documents_the_formats(setup):
    cellcube, _store, _ref = setup
    proc = helpers.run([cellcube, "query", "--help"])
    assert proc.returncode == 0
    for word in ["--genes", "--by", "--where", "--datasets", "--metrics", "--format", "json",
                 "null", "RFC 4180", "NA"]:
        assert word in proc.stdout, word


def test_datasets_and_where_dataset_are_one_population(setup):
    """--datasets D and --where dataset=D select the same cells by one path: the same
    bytes on stdout and stderr, alone, with another filter, and both together (AND)."""
    cellcube, store, ref = setup
    args = [cellcube, "query", store, "--genes", "G000,G020", "--by", "cell_type,dataset",
            "--metrics", ",".join(ALL), "--format", "csv"]
    for extra in ([], ["--where", "sex=F"]):
        by_option = helpers.run(args + ["--datasets", "gut,blood"] + extra)
        by_where = helpers.run(args + ["--where", "dataset=gut", "--where", "dataset=blood"] + extra)
        assert by_option.returncode == by_where.returncode == 0, helpers.describe(by_where)
        assert by_option.stdout == by_where.stdout and by_option.stderr == by_where.stderr
        header, rows = qr.parse_csv(by_option.stdout)
        where = {"dataset": ["gut", "blood"], **({"sex": ["F"]} if extra else {})}
        want = ref.expected(["G000", "G020"], ["cell_type", "dataset"], where, None, ALL)
        assert rows and not qr.compare_rows(header, rows, want, ["cell_type", "dataset"], ALL)
    both = helpers.run(args + ["--datasets", "gut,blood", "--where", "dataset=gut"])
    alone = helpers.run(args + ["--datasets", "gut"])
    assert both.returncode == 0 and both.stdout == alone.stdout and both.stdout.count("\n") > 1


def test_list_options_ignore_spaces_around_items(setup):
    """--genes "G000, G012" as a user types it: the spaces are no part of the names (the
    same for --by, --datasets and --metrics)."""
    cellcube, store, ref = setup
    spaced = helpers.run([cellcube, "query", store, "--genes", "G000, G012 ", "--by",
                          " cell_type", "--datasets", "gut, blood", "--metrics", "n_cells, mean",
                          "--format", "csv"])
    plain = helpers.run([cellcube, "query", store, "--genes", "G000,G012", "--by", "cell_type",
                         "--datasets", "gut,blood", "--metrics", "n_cells,mean", "--format", "csv"])
    assert spaced.returncode == plain.returncode == 0, helpers.describe(spaced)
    assert spaced.stdout == plain.stdout and spaced.stdout.count("\n") > 2
