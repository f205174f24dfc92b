"""The default --groupby of `cellcube build` (docs/SCALING.md) on a real file, against pandas.

The default leaves out identifier-like columns (more distinct values than 200, or than
half the dataset's cells), then, while the groups of cell type + the remaining columns
average fewer than 5 cells, drops the column with the most distinct values (the later
one in obs order on a tie), and names what it left out and dropped in a note. An
explicit --groupby is honoured, with a warning when its groups average fewer than 5
cells.

The reference is store_reference.default_groupby_choice (pandas, on the obs anndata
reads); the store is read with h5py.  scirpy's wu2020 sample (200 T cells, 44 obs
columns: clonotypes, CDR3 sequences, V/J genes, ...) used to be grouped by 34 columns
into 200 groups of one cell each.
"""

from __future__ import annotations

import warnings
from collections import Counter

import h5py
import numpy as np
import pandas as pd
import pytest

import gen_anndata
import gen_studies
import helpers
import reference
import store_reference as sr
from helpers import describe, run, run_ok

warnings.filterwarnings("ignore")

SCIRPY = helpers.DATA_DIR / "anndata-0.7_scirpy-wu2020-200_csr-gzip_int16-codes.h5ad"
CELL_TYPE = "cluster_orig"
NAME = "wu2020"


def _s(x):
    return x.decode() if isinstance(x, bytes) else str(x)


def mean_text(n_cells, n_groups):
    """The note's average: rounded down to tenths ("1.3")."""
    tenths = n_cells * 10 // n_groups
    return f"{tenths // 10}.{tenths % 10}"


def store_groups(path):
    """(obs column names without n_cells, {label tuple: n_cells}) read with h5py."""
    with h5py.File(path, "r") as f:
        obs = f["obs"]
        order = [_s(c) for c in np.atleast_1d(obs.attrs["column-order"])]
        cols = [c for c in order if c != "n_cells"]
        labels = []
        for c in cols:
            cats = [_s(x) for x in obs[c]["categories"][:]]
            labels.append([None if k < 0 else cats[k] for k in obs[c]["codes"][:]])
        n_cells = obs["n_cells"][:]
    groups = {}
    for row, key in enumerate(zip(*labels)):
        assert key not in groups, f"group {key} appears twice in the store"
        groups[key] = int(n_cells[row])
    return cols, groups


def reference_groups(obs, columns):
    """{label tuple: cells} of the cells grouped by `columns` (pandas labels, NA = None)."""
    return dict(Counter(zip(*(reference.column_labels(obs[c]) for c in columns))))


def note_lines(proc, start):
    return [ln for ln in proc.stderr.splitlines() if ln.startswith(start)]


@pytest.fixture(scope="module")
def scirpy():
    if not SCIRPY.is_file():
        pytest.fail(f"missing real file {SCIRPY} (expected in <repo>/../shared/data/h5ad)", pytrace=False)
    return SCIRPY


@pytest.fixture(scope="module")
def obs(scirpy):
    return sr._read(scirpy).obs


@pytest.fixture(scope="module")
def want(obs):
    return sr.default_groupby_choice(obs, CELL_TYPE)


@pytest.fixture(scope="module")
def default_build(cellcube, scirpy, tmp_path_factory):
    out = tmp_path_factory.mktemp("default") / "store.h5ad"
    # (a relative output: the summary line names it, and a user's paths are theirs to size)
    proc = run_ok([cellcube, "build", "-o", out.name, "--cell-type", CELL_TYPE, f"{NAME}={scirpy}"],
                  cwd=out.parent)
    return out, proc


def _codes(s):
    """Per cell, a code of the column's value (-1 = missing, a value of its own)."""
    return pd.factorize(s)[0]


def documented_choice(obs, cell_type, *, max_values=200, half_cells=True, min_values=2,
                      drop=True, later_first=True, numeric=False, design_last=True):
    """docs/BUILD.md's "Default --groupby", computed here with pandas/numpy from the obs
    anndata reads (the keyword arguments give the plausible wrong variants of the rule):
    candidates are the categorical and boolean columns other than the cell-type column
    with at least 2 distinct present values; identifier-like ones (more than 200 values,
    or 2 × values > cells) are left out; while cells < 5 × groups of cell type + the rest
    (distinct combinations of codes, missing a value of its own), a column is dropped:
    those naming the study's design (patient, sample, source, ...) last, otherwise the
    one with the most values, the later in obs order on a tie. The rest keep obs order."""
    n = len(obs)
    left_out, dropped, rank = [], [], {}
    for pos, c in enumerate(obs.columns):
        s = obs[c]
        kind_ok = (isinstance(s.dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(s.dtype)
                   or (numeric and pd.api.types.is_numeric_dtype(s.dtype)))
        if c in (cell_type, "dataset", "cell_type") or not kind_ok:
            continue
        k = int(s.nunique(dropna=True))
        if k < min_values:
            continue
        if k > max_values or (half_cells and 2 * k > n):
            left_out.append(c)
            continue
        rank[c] = (k, pos if later_first else -pos)
    codes = {c: _codes(obs[c]) for c in [cell_type, *rank]}

    def groups(cols):
        return len(np.unique(np.stack([codes[c] for c in [cell_type, *cols]], axis=1), axis=0))

    chosen = [c for c in obs.columns if c in rank]
    while drop and chosen and n < 5 * groups(chosen):
        pool = [c for c in chosen if not (design_last and sr.is_design_column(c))] or chosen
        widest = max(pool, key=lambda c: rank[c])
        chosen.remove(widest)
        dropped.append(widest)
    return {"chosen": chosen, "left_out": left_out, "dropped": dropped, "n_groups": groups(chosen)}


NOTE_WIDTH = 100  # docs/BUILD.md: the note's lines are at most this wide


def default_note(proc, name=NAME):
    """The build's default --groupby note of dataset `name` (docs/BUILD.md), parsed: a head
    line "dataset 'N': --groupby default: grouping by 'a', 'b' (G groups, M cells on
    average)", then indented wrapped lists "  left out as identifier-like (distinct values
    in C cells): 'x' (k), ..." and "  dropped, in this order (cells per group with it
    still in): 'y' (m), ...". Returns {"lines", "chosen", "groups" (text in the
    parentheses), "n_cells", "identifier_like" [(name, k text)], "dropped" [(name, m
    text)]}; asserts there is exactly one such note."""
    import re

    lines = proc.stderr.splitlines()
    head = f"dataset '{name}': --groupby default: grouping by "
    starts = [i for i, ln in enumerate(lines) if ln.startswith(head)]
    assert len(starts) == 1, describe(proc)
    i = starts[0] + 1
    while i < len(lines) and lines[i].startswith("  "):
        i += 1
    note = lines[starts[0]:i]
    sections, current = [], [note[0][len(head):]]
    for ln in note[1:]:
        if ln.startswith("    "):  # a wrapped list goes on
            current.append(ln.strip())
        else:
            sections.append(" ".join(current))
            current = [ln.strip()]
    sections.append(" ".join(current))
    chosen_text, groups = sections[0].rsplit(" (", 1)
    out = {"lines": note, "groups": groups.rstrip(")"), "identifier_like": [], "dropped": [],
           "n_cells": None,
           "chosen": [] if chosen_text == "cell type only" else re.findall(r"'([^']*)'", chosen_text)}
    item = re.compile(r"'([^']*)' \(([^)]*)\)")
    for text in sections[1:]:
        title, items = text.split(": ", 1)
        if title.startswith("left out as identifier-like (distinct values in "):
            out["n_cells"] = int(re.search(r"in (\d+) cells", title).group(1))
            out["identifier_like"] = item.findall(items)
        else:
            assert title == "dropped, in this order (cells per group with it still in)", text
            out["dropped"] = item.findall(items)
    return out


def noted_choice(proc):
    """(left out, dropped, chosen) as the build's default --groupby note names them."""
    n = default_note(proc)
    return ([c for c, _ in n["identifier_like"]], [c for c, _ in n["dropped"]], n["chosen"])


def test_the_file_needs_the_rule(cellcube, default_build, obs, want):
    """What `cellcube build` chose by default for wu2020 (the store's obs columns, `info
    --json`'s groupby and n_groups, the note's left-out and dropped columns) is what
    docs/BUILD.md's rule gives, computed here from the file's obs; and the file tells
    that rule from each plausible wrong variant of it, so a build following a variant
    fails here."""
    out, proc = default_build
    assert len(obs) == 200
    rule = documented_choice(obs, CELL_TYPE)
    assert rule["left_out"] and len(rule["dropped"]) >= 2 and rule["chosen"], rule
    assert rule["chosen"] == want["chosen"]  # the other tests' reference agrees
    # what the build chose
    cols, groups = store_groups(out)
    assert cols == ["dataset", "cell_type"] + rule["chosen"], describe(proc)
    assert len(groups) == rule["n_groups"]
    info = helpers.run_json([cellcube, "info", out, "--json"])
    [record] = info["datasets"]
    assert record["groupby"] == rule["chosen"] and record["n_groups"] == rule["n_groups"], record
    built = noted_choice(proc)
    assert built == (rule["left_out"], rule["dropped"], rule["chosen"]), built
    # each variant of the rule decides this file differently
    variants = {
        "no identifier rule": dict(max_values=10**9, half_cells=False),
        "only the 200-values identifier rule": dict(half_cells=False),
        "no drop loop": dict(drop=False),
        "tie: earlier column dropped first": dict(later_first=False),
        "one-value columns kept": dict(min_values=1),
        "numeric columns as candidates": dict(numeric=True),
        "old default (2..200 values, no drop)": dict(half_cells=False, drop=False),
        "design columns dropped like the others": dict(design_last=False),
    }
    for what, kw in variants.items():
        v = documented_choice(obs, CELL_TYPE, **kw)
        assert (v["left_out"], v["dropped"], v["chosen"]) != built, f"the file does not tell {what}"
    old = documented_choice(obs, CELL_TYPE, half_cells=False, drop=False)
    assert len(old["chosen"]) == 34 and old["n_groups"] == 200  # one cell per group


def test_default_groups_average_at_least_five_cells(default_build, obs, want):
    out, proc = default_build
    cols, groups = store_groups(out)
    assert sum(groups.values()) == len(obs)
    assert len(groups) * 5 <= len(obs), (f"{len(groups)} groups of {len(obs) / len(groups):.2f} cells "
                                         "on average\n" + describe(proc))
    assert len(groups) == want["n_groups"]


def test_default_columns_match_the_pandas_reference(default_build, obs, want):
    out, proc = default_build
    cols, groups = store_groups(out)
    assert cols == ["dataset", "cell_type"] + want["chosen"], describe(proc)
    record = sr.StoreView(out).record(NAME)
    assert record["groupby"].split(",") == want["chosen"]
    assert record["cell_type_column"] == CELL_TYPE
    # the groups themselves: every combination with its cells
    expected = {(NAME,) + k: v for k, v in reference_groups(obs, [CELL_TYPE] + want["chosen"]).items()}
    assert groups == expected


def test_default_note_names_what_was_left_out_and_dropped(default_build, obs, want):
    out, proc = default_build
    n = len(obs)
    note = default_note(proc)
    assert note["n_cells"] == n, note
    assert note["identifier_like"] == [(name, str(k)) for name, k in want["identifier_like"]], note
    # in the order they were dropped, each with its groups' average while it was still in
    assert note["dropped"] == [(name, mean_text(n, g)) for name, g in want["dropped"]], note
    g = want["n_groups"]
    assert note["chosen"] == want["chosen"]
    assert note["groups"] == f"{g} groups, {mean_text(n, g)} cells on average", note
    assert not note_lines(proc, "warning:"), describe(proc)


def test_build_notes_are_no_wider_than_the_note_width(default_build, want):
    """Issue 23: the note used to be one line of 1,900 characters on wu2020. Every line of
    the build's stderr now fits, and the note keeps every fact (checked above) in a few
    lines: a head line and a wrapped list per reason."""
    _, proc = default_build
    lines = proc.stderr.splitlines()
    assert lines and all(len(ln) <= NOTE_WIDTH for ln in lines), \
        "\n".join(f"{len(ln)}: {ln}" for ln in lines if len(ln) > NOTE_WIDTH)
    note = default_note(proc)["lines"]
    assert 3 <= len(note) <= 12, note
    assert note[1].startswith("  left out as identifier-like ") and any(
        ln.startswith("  dropped, in this order ") for ln in note), note
    # every left-out and dropped column is named once in the note
    text = "\n".join(note)
    for name, _ in want["identifier_like"] + want["dropped"]:
        assert text.count(f"'{name}' (") == 1, name


def test_no_cell_type_column_is_one_error_over_narrow_lines(cellcube, scirpy, obs, tmp_path):
    """The error names every default candidate and every obs column (wrapped, not cut at
    8), as one error: the first line 'cellcube: error: ...', the rest indented under it."""
    proc = run([cellcube, "build", "-o", tmp_path / "x.h5ad", "--quiet", scirpy])
    assert proc.returncode == 1 and not (tmp_path / "x.h5ad").exists(), describe(proc)
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("cellcube: error: ") and "no cell-type column" in lines[0], lines
    assert "--cell-type" in lines[0] and str(scirpy) in lines[0]
    assert all(ln.startswith("  ") and len(ln) <= NOTE_WIDTH for ln in lines[1:]), lines
    assert sum(ln.startswith("cellcube: error:") for ln in lines) == 1
    text = " ".join(ln.strip() for ln in lines[1:])
    defaults = ["cell_type", "celltype", "cell_ontology_class", "CellType",
                "cell_type_ontology_term_id", "leiden", "louvain"]
    assert "obs has none of the defaults: " + ", ".join(f"'{c}'" for c in defaults) in text, text
    columns = ", ".join(f"'{c}'" for c in obs.columns)
    assert f"obs has {len(obs.columns)} columns: {columns}" in text, text


def test_quiet_prints_no_note(cellcube, scirpy, tmp_path):
    proc = run_ok([cellcube, "build", "-o", tmp_path / "q.h5ad", "--quiet", "--cell-type", CELL_TYPE, scirpy])
    assert proc.stderr == "", describe(proc)


def test_explicit_groupby_with_tiny_groups_is_honoured_with_a_warning(cellcube, scirpy, obs, tmp_path):
    out = tmp_path / "explicit.h5ad"
    given = ["clonotype_orig", "sample"]
    proc = run_ok([cellcube, "build", "-o", out, "--cell-type", CELL_TYPE, "--groupby", ",".join(given),
                   f"{NAME}={scirpy}"])
    cols, groups = store_groups(out)
    assert cols == ["dataset", "cell_type"] + given  # honoured, identifier-like or not
    expected = reference_groups(obs, [CELL_TYPE] + given)
    assert groups == {(NAME,) + k: v for k, v in expected.items()}
    g, n = len(expected), len(obs)
    assert n < 5 * g
    lines = note_lines(proc, "warning: ")
    want_start = (f"warning: dataset '{NAME}': --groupby 'clonotype_orig', 'sample' gives {g} groups of "
                  f"{mean_text(n, g)} cells on average")
    assert len(lines) == 1 and lines[0].startswith(want_start), describe(proc)
    assert "'clonotype_orig' has 197" in lines[0], lines[0]  # the widest column, named
    assert not note_lines(proc, f"dataset '{NAME}': --groupby default"), describe(proc)


def test_explicit_groupby_with_big_groups_gives_no_warning(cellcube, scirpy, obs, tmp_path):
    out = tmp_path / "source.h5ad"
    proc = run_ok([cellcube, "build", "-o", out, "--cell-type", CELL_TYPE, "--groupby", "source", scirpy])
    cols, groups = store_groups(out)
    assert cols == ["dataset", "cell_type", "source"]
    assert len(groups) == sr.count_groups(obs, [CELL_TYPE, "source"]) and 5 * len(groups) <= len(obs)
    assert not note_lines(proc, "warning:"), describe(proc)


def test_explicit_empty_groupby_warns_when_cell_types_alone_are_tiny(cellcube, tmp_path):
    """--groupby '' (cell type alone) is explicit too: 60 cells in 20 cell types."""
    import anndata

    rng = np.random.default_rng(4)
    n = 60
    obs = pd.DataFrame({"cell_type": pd.Categorical([f"t{i % 20}" for i in range(n)])},
                       index=[f"c{i}" for i in range(n)])
    X = gen_anndata.encode(gen_anndata.make_counts(rng, n, 10).astype(np.float32), "csr", rng)
    p = tmp_path / "types.h5ad"
    anndata.AnnData(X=X, obs=obs, var=pd.DataFrame(index=gen_studies.gene_ids(range(10))),
                    dtype=X.dtype).write_h5ad(p)
    proc = run_ok([cellcube, "build", "-o", tmp_path / "t.h5ad", "--groupby", "", p])
    lines = note_lines(proc, "warning: ")
    assert len(lines) == 1 and lines[0].startswith(
        "warning: dataset 'types': --groupby '' gives 20 groups of 3.0 cells on average"), describe(proc)


def test_default_on_a_generated_file_against_the_reference(cellcube, tmp_path):
    """The "more than 200 values" rule and the drop loop on 1000 cells: `clone` (300
    values, fewer than half the cells) is left out, `cdr3` (150 values) is dropped,
    numbers, unique strings and one-value columns are never candidates."""
    import anndata

    rng = np.random.default_rng(11)
    n = 1000
    obs = pd.DataFrame({
        "cell_type": pd.Categorical(rng.choice(["T", "B", "NK", "mono"], n)),
        "clone": pd.Categorical([f"clone{int(x)}" for x in rng.integers(0, 300, n)]),
        "donor": pd.Categorical(rng.choice([f"d{k}" for k in range(8)], n)),
        "cdr3": pd.Categorical([f"CASS{int(x)}F" for x in rng.integers(0, 150, n)]),
        "score": rng.normal(size=n),
        "flag": rng.random(n) < 0.3,
        "constant": pd.Categorical(["same"] * n),
        "barcode": [f"AC{i:06d}" for i in range(n)],
    }, index=[f"c{i}" for i in range(n)])
    assert obs["clone"].nunique() > 200 and 2 * obs["clone"].nunique() < n
    X = gen_anndata.encode(gen_anndata.make_counts(rng, n, 12).astype(np.float32), "csr", rng)
    p = tmp_path / "gen.h5ad"
    anndata.AnnData(X=X, obs=obs, var=pd.DataFrame(index=gen_studies.gene_ids(range(12))),
                    dtype=X.dtype).write_h5ad(p)
    read_obs = sr._read(p).obs
    want = sr.default_groupby_choice(read_obs, "cell_type")
    assert want["identifier_like"] == [("clone", read_obs["clone"].nunique())]
    assert [d for d, _ in want["dropped"]] == ["cdr3"] and want["chosen"] == ["donor", "flag"], want
    out = tmp_path / "gen_store.h5ad"
    proc = run_ok([cellcube, "build", "-o", out, p])
    cols, groups = store_groups(out)
    assert cols == ["dataset", "cell_type"] + want["chosen"], describe(proc)
    expected = reference_groups(read_obs, ["cell_type"] + want["chosen"])
    assert groups == {("gen",) + k: v for k, v in expected.items()}
    g = want["n_groups"]
    lines = proc.stderr.splitlines()
    head = lines.index(f"dataset 'gen': --groupby default: grouping by 'donor', 'flag' ({g} groups, "
                       f"{mean_text(n, g)} cells on average)")
    assert lines[head + 1:head + 3] == [
        f"  left out as identifier-like (distinct values in {n} cells): 'clone' "
        f"({want['identifier_like'][0][1]})",
        f"  dropped, in this order (cells per group with it still in): 'cdr3' "
        f"({mean_text(n, want['dropped'][0][1])})"], describe(proc)


def test_no_note_when_the_default_leaves_nothing_out(cellcube, tmp_path):
    studies = gen_studies.generate(tmp_path, names=["delta"])
    want = sr.default_groupby_choice(sr._read(studies["delta"]).obs, "leiden")
    assert not want["identifier_like"] and not want["dropped"] and want["chosen"]
    proc = run_ok([cellcube, "build", "-o", tmp_path / "d.h5ad", studies["delta"]])
    assert not [ln for ln in proc.stderr.splitlines() if "--groupby" in ln], describe(proc)
    record = sr.StoreView(tmp_path / "d.h5ad").record("delta")
    assert record["groupby"].split(",") == want["chosen"]
