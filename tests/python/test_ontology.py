"""Ontologies (docs/ONTOLOGY.md) against an independent oracle (ontology_oracle.py).

Inputs written here with anndata (log1p of seeded Poisson counts, `--transform log1p`):

  alpha  cell_type spelt every way one CL term can be ("T cell", "t cell", "T-lymphocyte",
         "CL:0000084", the deprecated "CL:0000804" replaced by it), CD4/CD8 alpha-beta T
         cells, regulatory T cells, a term with two parents among the shown terms
         ("CD4-positive, CD25-positive, alpha-beta regulatory T cell" under "CD4-positive,
         alpha-beta T cell" and "regulatory T cell"), cells labelled only "lymphocyte",
         B, NK ("NK cell", a synonym), classical monocytes, "doublet" (no term) and NA;
         tissue (UBERON labels: lung, left lung, upper lobe of left lung, blood),
         disease (MONDO: COVID-19, influenza, and "normal", which stays plain), sex, donor.
  beta   another set of terms (naive/memory B cells, plasma cells, non-classical
         monocytes by id, "natural killer cell"), tissue with bone marrow (two parents in
         UBERON) and right lung, disease with MONDO's ambiguous synonym "cad"; it lacks
         genes G25-G29.
  cxg    a CELLxGENE pair file (cell_type + cell_type_ontology_term_id, tissue + its id).
  gamma  spellings to `add` to a store without --ontology (matched against the embedded
         terms only).

Stores: alpha+beta built at once, alpha built then beta added, alpha and beta built
separately then merged: every one answers as the oracle says, with every number computed
here with numpy from the cells the oracle pools.
"""

from __future__ import annotations

import io
import json
import math
import re
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pandas as pd
import pytest

import helpers
import ontology_oracle as oo
import query_reference as qr
from helpers import assert_error, run, run_ok

warnings.filterwarnings("ignore")
pytestmark = pytest.mark.filterwarnings("ignore")

ONTOLOGY_DIR = (helpers.REPO / ".." / "shared" / "ontology").resolve()
MAP_FILES = ["CL-ontology-v2026-03-26.json.zst", "UBERON-ontology-v2026-04-01.json.zst",
             "MONDO-ontology-v2026-05-05.json.zst"]

N_GENES = 30
GENES = [f"G{i:02d}" for i in range(N_GENES)]
SYMBOLS = [f"Sym{i}" for i in range(N_GENES)]
BETA_GENES = GENES[:25]
QUERY_GENES = ["G00", "G07", "G26"]  # G26: alpha only
GROUPBY = "tissue,disease,sex,donor"

# (value, cells); None = NA
ALPHA_CELL_TYPES = [
    ("CD4-positive, alpha-beta T cell", 30), ("CD8-positive, alpha-beta T cell", 25),
    ("regulatory T cell", 12), ("CD4-positive, CD25-positive, alpha-beta regulatory T cell", 10),
    ("T cell", 10), ("t cell", 6), ("T-lymphocyte", 6), ("CL:0000084", 5), ("CL:0000804", 4),
    ("lymphocyte", 12), ("B cell", 25), ("NK cell", 20), ("classical monocyte", 25),
    ("doublet", 8), (None, 8)]
BETA_CELL_TYPES = [
    ("naive B cell", 25), ("memory B cell", 20), ("B cell", 10),
    ("CD8-positive, alpha-beta T cell", 20), ("CL:0000875", 15), ("natural killer cell", 15),
    ("plasma cell", 10), ("doublet", 5), (None, 6)]
ALPHA_TISSUES = ["lung", "left lung", "upper lobe of left lung", "blood", None]
BETA_TISSUES = ["blood", "bone marrow", "lung", "right lung"]
ALPHA_DISEASES = ["normal", "COVID-19", "influenza"]
BETA_DISEASES = ["normal", "influenza", "COVID-19", "cad"]
# a CELLxGENE pair file: (label, id, cells); the ids decide ("Tregs" is CL:0000815's)
CXG_CELL_TYPES = [("CD4-positive, alpha-beta T cell", "CL:0000624", 60),
                  ("Tregs", "CL:0000815", 40), ("B cell", "CL:0000236", 50),
                  ("T cell", "CL:0000084", 20), ("unknown", "unknown", 16),
                  ("regulatory T cell", "CL:0000815", 10)]
CXG_TISSUES = [("lung", "UBERON:0002048"), ("blood", "UBERON:0000178")]
# added without --ontology: matched against the embedded terms only
GAMMA_CELL_TYPES = [("T cell", 10), ("CL:0000542", 8), ("T-lymphocyte", 8), ("plasma cell", 8),
                    ("mature alpha-beta T cell", 6), ("b CELL", 6)]


# --------------------------------------------------------------------------
# inputs and the cells' model
# --------------------------------------------------------------------------


def _column(rng, spec, n):
    return [spec[i] for i in rng.integers(0, len(spec), size=n)]


def _counts(rng, n, n_genes):
    lam = rng.uniform(0.3, 4.0, size=n_genes)
    d = rng.poisson(lam, size=(n, n_genes)).astype(np.float64)
    d[rng.random((n, n_genes)) < 0.3] = 0
    return d


def write_dataset(path, name, rng, cell_types, tissues, diseases, donors, genes):
    import anndata as ad

    ct = [v for v, k in cell_types for _ in range(k)]
    n = len(ct)
    perm = rng.permutation(n)
    ct = [ct[i] for i in perm]
    obs = {"cell_type": ct, "tissue": _column(rng, tissues, n), "disease": _column(rng, diseases, n),
           "sex": _column(rng, ["F", "M"], n), "donor": _column(rng, donors, n)}
    counts = _counts(rng, n, len(genes))
    frame = pd.DataFrame({k: pd.Categorical(v) for k, v in obs.items()},
                         index=pd.Index([f"{name}-{i}" for i in range(n)]))
    var = pd.DataFrame({"symbol": [SYMBOLS[GENES.index(g)] for g in genes]}, index=pd.Index(genes))
    ad.AnnData(X=counts.astype(np.float32), obs=frame, var=var).write_h5ad(path)
    return {"name": name, "obs": obs, "counts": counts, "genes": genes, "n": n}


def write_pair_dataset(path, rng, pairs, tissues, name="cxg"):
    import anndata as ad

    rows = [(label, tid) for label, tid, k in pairs for _ in range(k)]
    rows = [rows[i] for i in rng.permutation(len(rows))]
    n = len(rows)
    tis = _column(rng, tissues, n)
    obs = {"cell_type": [r[0] for r in rows], "cell_type_ontology_term_id": [r[1] for r in rows],
           "tissue": [t[0] for t in tis], "tissue_ontology_term_id": [t[1] for t in tis],
           "sex": _column(rng, ["F", "M"], n)}
    counts = _counts(rng, n, N_GENES)
    frame = pd.DataFrame({k: pd.Categorical(v) for k, v in obs.items()},
                         index=pd.Index([f"{name}-{i}" for i in range(n)]))
    var = pd.DataFrame({"symbol": SYMBOLS}, index=pd.Index(GENES))
    ad.AnnData(X=counts.astype(np.float32), obs=frame, var=var).write_h5ad(path)
    return {"name": name, "obs": obs, "counts": counts, "genes": GENES, "n": n}


class Cells:
    """Every cell of some datasets: its transformed values (NaN for a gene its dataset did
    not measure), its raw column values, and per column its key in the oracle's model."""

    def __init__(self, datasets, term_maps, pair_columns=()):
        self.term_maps = term_maps
        self.n = sum(d["n"] for d in datasets)
        self.V = np.full((self.n, N_GENES), np.nan)
        self.raw = {"dataset": []}
        row = 0
        for d in datasets:
            for j, g in enumerate(d["genes"]):
                self.V[row:row + d["n"], GENES.index(g)] = np.log1p(d["counts"][:, j])
            row += d["n"]
            self.raw["dataset"] += [d["name"]] * d["n"]
        columns = [c for c in datasets[0]["obs"] if not c.endswith("_ontology_term_id")]
        for c in columns:
            self.raw[c] = [v for d in datasets for v in d["obs"].get(c, [None] * d["n"])]
        self.term_map = {}
        self.keys = {}
        for c, vals in self.raw.items():
            tm = None
            if c != "dataset":
                per_ds = [d["obs"].get(c, [None] * d["n"]) for d in datasets]
                ids = None
                if c in pair_columns:
                    ids = [d["obs"].get(c + "_ontology_term_id") for d in datasets]
                tm = oo.bind_column(term_maps, per_ds, ids)
                pair_ids = None
                if c in pair_columns:
                    pair_ids = [v for d in datasets
                                for v in d["obs"].get(c + "_ontology_term_id", [None] * d["n"])]
                self.keys[c] = oo.keys_of(tm, vals, pair_ids)
            else:
                self.keys[c] = oo.keys_of(None, vals)
            self.term_map[c] = tm
        self.dataset = np.array(self.raw["dataset"], dtype=object)

    def resolve(self, col, value):
        """A where value as the oracle's key: a term id (an id or label of an embedded
        term, any case), ("plain", v), or None for NA."""
        if value == "NA":
            return None
        tm = self.term_map.get(col)
        if tm is not None:
            emb = self.embedded(col)
            for tid in emb:
                if oo.fold(tid) == oo.fold(value) or oo.fold(tm.label(tid)) == oo.fold(value):
                    return tid
        return ("plain", value)

    def embedded(self, col):
        tm = self.term_map[col]
        used = {k[1] for k in self.keys[col] if k is not None and k[0] == "term"}
        return oo.embedded_terms(tm, used)

    def population(self, where=None, rollup=(), datasets=None):
        mask = np.ones(self.n, dtype=bool)
        if datasets:
            mask &= np.isin(self.dataset, list(datasets))
        for col, values in (where or {}).items():
            m = np.zeros(self.n, dtype=bool)
            for v in values:
                m |= oo.select(self.term_map[col], self.keys[col], self.resolve(col, v),
                               col in rollup)
            mask &= m
        return mask

    def label(self, col, key):
        if key is None:
            return "NA"
        return self.term_map[col].label(key[1]) if key[0] == "term" else key[1]

    def term_id(self, key):
        return key[1] if key is not None and key[0] == "term" else None

    def values(self, mask, gene):
        v = self.V[mask, GENES.index(gene)]
        return v[~np.isnan(v)]


def store_categories(store):
    import anndata as ad

    s = ad.read_h5ad(store, backed="r")
    out = {c: [str(x) for x in s.obs[c].cat.categories] for c in s.obs.columns
           if hasattr(s.obs[c], "cat")}
    s.file.close()
    return out


def splits(cells, by, rollup, sel, categories):
    """[(labels, depths, ids, mask)] of an answer's splits, in output order: a rolled-up
    column's rows by the oracle, another column's values in the store's category order
    (NA last); the first by-column varies slowest."""
    per_col = []
    for c in by:
        if c in rollup:
            rows = oo.rollup_rows(cells.term_map[c], cells.keys[c], sel, categories.get(c))
            per_col.append([(r.label, r.depth, r.value if r.kind == "term" else None, r.mask)
                            for r in rows])
        else:
            keys = cells.keys[c]
            present = {k for k, s in zip(keys, sel) if s}
            ordered = []
            for lab in categories[c]:
                for k in present:
                    if k is not None and cells.label(c, k) == lab:
                        ordered.append(k)
            if None in present:
                ordered.append(None)
            assert len(ordered) == len(present), f"test bug: {c} values outside the store's {present}"
            per_col.append([(cells.label(c, k), None, cells.term_id(k),
                             sel & np.array([x == k for x in keys])) for k in ordered])
    out = [((), (), (), sel)]
    for col_rows in per_col:
        out = [(labs + (lab,), deps + (dep,), ids + (tid,), m & mm)
               for labs, deps, ids, m in out for lab, dep, tid, mm in col_rows]
    return out


def depth_column(c, rollup, by):
    """The depth column after rolled-up by-column c: "depth", or "c_depth" when several
    by-columns are rolled up (docs/ONTOLOGY.md; rolled-up columns not split by do not
    count)."""
    return "depth" if sum(1 for b in by if b in rollup) == 1 else f"{c}_depth"


def expected_query(cells, categories, genes, by=(), rollup=(), where=None, datasets=None,
                   metrics=qr.DEFAULT_METRICS):
    """Rows {col: label, depth col: int, col+'_ontology_term_id': id, gene, metrics}."""
    sel = cells.population(where, rollup, datasets)
    rows = []
    for labs, deps, ids, mask in splits(cells, by, rollup, sel, categories):
        for g in genes:
            v = cells.values(mask, g)
            if not len(v):
                continue
            row = {}
            for c, lab, dep, tid in zip(by, labs, deps, ids):
                row[c] = lab
                if c in rollup:
                    row[depth_column(c, rollup, by)] = dep
                if cells.term_map.get(c) is not None:
                    row[c + "_ontology_term_id"] = tid
            row["gene"] = g
            row.update({m: qr.metric(m, v) for m in metrics})
            row["_values"] = v
            rows.append(row)
    return rows


def csv_header(by, rollup, tail):
    h = []
    for c in by:
        h.append(c)
        if c in rollup:
            h.append(depth_column(c, rollup, by))
    return h + list(tail)


def compare_query_rows(got, want, by, rollup, metrics=qr.DEFAULT_METRICS, ids=False):
    """got: [{col: str|int|float}] (from CSV, JSON or a DataFrame, values as given).
    Compares labels, depths, (ids), genes and metrics; returns problems."""
    problems = []
    if len(got) != len(want):
        problems.append(f"{len(got)} rows, want {len(want)}: got "
                        f"{[tuple(g.get(c) for c in by) for g in got][:40]} want "
                        f"{[tuple(w[c] for c in by) for w in want][:40]}")
    for i, (g, w) in enumerate(zip(got, want)):
        key_w = [w[c] for c in by] + [w["gene"]]
        key_g = [g.get(c) for c in by] + [g.get("gene")]
        if key_g != key_w:
            problems.append(f"row {i}: {key_g} != {key_w}")
            continue
        for c in by:
            if c in rollup:
                d = depth_column(c, rollup, by)
                if str(g.get(d)) != str(w[d]):
                    problems.append(f"row {i} {key_w}: {d} {g.get(d)!r}, want {w[d]}")
            if ids:
                k = c + "_ontology_term_id"
                want_id = w.get(k, "<absent>")
                if g.get(k, "<absent>") != want_id:
                    problems.append(f"row {i} {key_w}: {k} {g.get(k, '<absent>')!r}, want {want_id!r}")
        for m in metrics:
            got_m = g.get(m)
            text = "" if got_m is None or (isinstance(got_m, float) and math.isnan(got_m)) else str(got_m)
            p = qr.value_problems(m, text, w[m])
            if p:
                problems.append(f"row {i} {key_w}: {p}")
    return problems[:25]


def csv_dicts(text):
    if not text.strip():
        return [], []
    frame = pd.read_csv(io.StringIO(text), keep_default_na=False, dtype=str)
    return list(frame.columns), frame.to_dict("records")


def query_cli(cellcube, store, genes, by=(), rollup=(), where=None, fmt="csv", extra=()):
    args = [cellcube, "query", store, *qr.query_args(genes, by, where), "--format", fmt, *extra]
    for c in rollup:
        args += ["--rollup", c]
    return run(args)


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def term_maps():
    paths = [ONTOLOGY_DIR / f for f in MAP_FILES]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        pytest.fail(f"term maps missing (expected <repo>/../shared/ontology): {missing}", pytrace=False)
    return [oo.TermMap(p) for p in paths]


def ontology_args(extra=()):
    out = []
    for f in MAP_FILES:
        out += ["--ontology", ONTOLOGY_DIR / f]
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory, term_maps):
    """The inputs, the oracle's cells and the three stores of alpha + beta."""
    d = tmp_path_factory.mktemp("ontology")
    cellcube = qr.cellcube_binary()
    rng = np.random.default_rng(20260326)
    alpha = write_dataset(d / "alpha.h5ad", "alpha", rng, ALPHA_CELL_TYPES, ALPHA_TISSUES,
                          ALPHA_DISEASES, ["D1", "D2"], GENES)
    beta = write_dataset(d / "beta.h5ad", "beta", rng, BETA_CELL_TYPES, BETA_TISSUES,
                         BETA_DISEASES, ["D3", "D4"], BETA_GENES)
    common = ["--cell-type", "cell_type", "--groupby", GROUPBY, "--transform", "log1p"]
    single = d / "single.h5ad"
    build = run_ok([cellcube, "build", "-o", single, *common, *ontology_args(),
                    f"alpha={d / 'alpha.h5ad'}", f"beta={d / 'beta.h5ad'}"])
    added = d / "added.h5ad"
    run_ok([cellcube, "build", "-o", added, *common, *ontology_args(), "--quiet",
            f"alpha={d / 'alpha.h5ad'}"])
    run_ok([cellcube, "add", added, *common, *ontology_args(), "--quiet", f"beta={d / 'beta.h5ad'}"])
    only_a, only_b, merged = d / "only_alpha.h5ad", d / "only_beta.h5ad", d / "merged.h5ad"
    run_ok([cellcube, "build", "-o", only_a, *common, *ontology_args(), "--quiet",
            f"alpha={d / 'alpha.h5ad'}"])
    run_ok([cellcube, "build", "-o", only_b, *common, *ontology_args(), "--quiet",
            f"beta={d / 'beta.h5ad'}"])
    run_ok([cellcube, "merge", "-o", merged, only_a, only_b])
    cells = Cells([alpha, beta], term_maps)
    # the fixture is what the docstring says (checked on the oracle's side)
    assert [cells.term_map[c] and cells.term_map[c].name for c in
            ("cell_type", "tissue", "disease", "sex", "donor")] == ["CL", "UBERON", "MONDO", None, None]
    for one in (alpha, beta):
        alone = Cells([one], term_maps)
        assert [alone.term_map[c] and alone.term_map[c].name for c in ("cell_type", "tissue", "disease")] \
            == ["CL", "UBERON", "MONDO"], "each dataset alone binds the same columns"
    return {"dir": d, "cellcube": cellcube, "single": single, "added": added, "merged": merged,
            "only_alpha": only_a, "build": build, "cells": cells, "alpha": alpha, "beta": beta,
            "categories": store_categories(single)}


@pytest.fixture(scope="module")
def server(world):
    from test_server import Server

    s = Server(world["cellcube"], world["single"], world["dir"])
    yield s
    s.stop()


def cl(cells):
    return cells.term_map["cell_type"]


# --------------------------------------------------------------------------
# build: matching, notes, labels
# --------------------------------------------------------------------------


def test_build_notes_name_the_ontologies_and_the_unmatched_values(world):
    out = world["build"].stdout + world["build"].stderr
    cells = world["cells"]
    for col in ("cell_type", "tissue", "disease"):
        tm = cells.term_map[col]
        lines = [ln for ln in out.splitlines() if col in ln and tm.name in ln and tm.version in ln]
        assert lines, f"no build note names {col} with {tm.name} {tm.version}:\n{out}"
    unmatched = {c: sorted({k[1] for k in cells.keys[c] if k is not None and k[0] == "plain"})
                 for c in ("cell_type", "tissue", "disease")}
    assert unmatched == {"cell_type": ["doublet"], "tissue": [], "disease": ["cad", "normal"]}
    for col, values in unmatched.items():
        for v in values:
            assert any(col in ln and re.search(rf"(?<![\w-]){re.escape(v)}(?![\w-])", ln)
                       for ln in out.splitlines()) or any(
                re.search(rf"['\"]{re.escape(v)}['\"]", ln) for ln in out.splitlines()), \
                f"the build notes do not name {col}'s unmatched value {v!r}:\n{out}"
    # the deprecated id's note names it and its replacement
    assert any("CL:0000804" in ln and "CL:0000084" in ln for ln in out.splitlines()), \
        f"no note names the deprecated CL:0000804 and its replacement CL:0000084:\n{out}"


def test_labels_replace_spellings(world):
    """One value per term, shown by its label; plain values exactly as written."""
    cells, cats = world["cells"], world["categories"]
    for col in ("cell_type", "tissue", "disease"):
        want = {cells.label(col, k) for k in cells.keys[col] if k is not None}
        assert set(cats[col]) == want, (col, sorted(set(cats[col]) ^ want))
    spelled = {"t cell", "T-lymphocyte", "CL:0000084", "CL:0000804", "NK cell", "CL:0000875"}
    assert not spelled & set(cats["cell_type"])
    t_cell = [k for k in cells.keys["cell_type"] if k == ("term", "CL:0000084")]
    assert len(t_cell) == 10 + 6 + 6 + 5 + 4  # the five spellings of T cell
    # a plain --by cell_type answer: one row per label, numbers of the cells
    proc = query_cli(world["cellcube"], world["single"], QUERY_GENES, by=["cell_type"])
    assert proc.returncode == 0, helpers.describe(proc)
    header, got = csv_dicts(proc.stdout)
    want = expected_query(cells, cats, QUERY_GENES, by=["cell_type"])
    assert header == ["cell_type", "gene", *qr.DEFAULT_METRICS]
    assert not compare_query_rows(got, want, ["cell_type"], ()), \
        compare_query_rows(got, want, ["cell_type"], ())
    labels = [r["cell_type"] for r in got]
    assert labels.count("T cell") == len(QUERY_GENES) and "t cell" not in labels


def test_json_rows_carry_term_ids(world, server):
    from test_server import get

    cells, cats = world["cells"], world["categories"]
    by = ["cell_type", "tissue", "sex"]
    want = expected_query(cells, cats, ["G00"], by=by)
    proc = query_cli(world["cellcube"], world["single"], ["G00"], by=by, fmt="json")
    assert proc.returncode == 0, helpers.describe(proc)
    got = json.loads(proc.stdout)
    for r in got:
        assert "sex_ontology_term_id" not in r, r
        assert list(r)[:5] == ["cell_type", "cell_type_ontology_term_id", "tissue",
                               "tissue_ontology_term_id", "sex"], list(r)
    assert not compare_query_rows(got, want, by, (), ids=True), compare_query_rows(got, want, by, (), ids=True)
    assert any(r["cell_type_ontology_term_id"] is None and r["cell_type"] == "doublet" for r in got)
    assert any(r["cell_type_ontology_term_id"] is None and r["cell_type"] == "NA" for r in got)
    r = get(server.port, "/api/v1/query", [("genes", "G00"), ("by", ",".join(by))])
    assert r.status == 200, r
    j = r.json()
    # `columns` lists the keys in CSV order, which has no ids (docs/API.md)
    assert j["columns"] == [*by, "gene", *qr.DEFAULT_METRICS], j["columns"]
    assert not compare_query_rows(j["rows"], want, by, (), ids=True)
    # compact layout: split_terms beside splits
    r = get(server.port, "/api/v1/query", [("genes", "G00"), ("by", ",".join(by)), ("layout", "compact")])
    j = r.json()
    seen = {(tuple(s), tuple(t)) for s, t in zip(j["splits"], j["split_terms"])}
    want_pairs = {((w["cell_type"], w["tissue"], w["sex"]),
                   (w["cell_type_ontology_term_id"], w["tissue_ontology_term_id"], None)) for w in want}
    assert seen == want_pairs, sorted(seen ^ want_pairs)[:10]


# --------------------------------------------------------------------------
# where: ids, labels, parents
# --------------------------------------------------------------------------


def test_where_by_id_or_label(world):
    cc, store, cells, cats = world["cellcube"], world["single"], world["cells"], world["categories"]
    texts = []
    for value in ("CL:0000084", "T cell", "t CELL", "cl:0000084"):
        proc = query_cli(cc, store, QUERY_GENES, by=["tissue"], where={"cell_type": [value]})
        assert proc.returncode == 0, helpers.describe(proc)
        texts.append(proc.stdout)
    assert len(set(texts)) == 1, texts
    header, got = csv_dicts(texts[0])
    want = expected_query(cells, cats, QUERY_GENES, by=["tissue"], where={"cell_type": ["T cell"]})
    assert sum(1 for k in cells.keys["cell_type"] if k == ("term", "CL:0000084")) == 31
    assert not compare_query_rows(got, want, ["tissue"], ()), compare_query_rows(got, want, ["tissue"], ())
    # tissue by label and id
    a = query_cli(cc, store, ["G00"], where={"tissue": ["UBERON:0002048"]}).stdout
    b = query_cli(cc, store, ["G00"], where={"tissue": ["Lung"]}).stdout
    _, got = csv_dicts(a)
    want = expected_query(cells, cats, ["G00"], where={"tissue": ["lung"]})
    assert a == b and not compare_query_rows(got, want, [], ())
    # a term of another column's ontology is no value of cell_type; synonyms and deprecated
    # ids are not embedded; a plain value is matched literally (docs/QUERY.md)
    for bad in ("UBERON:0002048", "T-lymphocyte", "CL:0000804", "Doublet"):
        assert_error(query_cli(cc, store, ["G00"], where={"cell_type": [bad]}), mentions=[bad])
    _, got = csv_dicts(query_cli(cc, store, ["G00"], where={"cell_type": ["doublet"]}).stdout)
    want = expected_query(cells, cats, ["G00"], where={"cell_type": ["doublet"]})
    assert want and not compare_query_rows(got, want, [], ())


@pytest.mark.parametrize("parent", ["mature alpha-beta T cell", "alpha-beta T cell", "CL:0000542"])
def test_parent_without_cells_selects_its_subtree_only_with_rollup(world, parent):
    cc, store, cells, cats = world["cellcube"], world["single"], world["cells"], world["categories"]
    tid = cells.resolve("cell_type", parent)
    assert isinstance(tid, str) and tid in cells.embedded("cell_type")
    own = sum(1 for k in cells.keys["cell_type"] if k == ("term", tid))
    proc = query_cli(cc, store, ["G00"], where={"cell_type": [parent]})
    assert proc.returncode == 0, helpers.describe(proc)
    _, got = csv_dicts(proc.stdout)
    want = expected_query(cells, cats, ["G00"], where={"cell_type": [parent]})
    assert (own == 0) == (not want)
    assert not compare_query_rows(got, want, [], ()), (proc.stdout, want)
    proc = query_cli(cc, store, ["G00"], rollup=["cell_type"], where={"cell_type": [parent]})
    assert proc.returncode == 0, helpers.describe(proc)
    _, got = csv_dicts(proc.stdout)
    want = expected_query(cells, cats, ["G00"], rollup=["cell_type"], where={"cell_type": [parent]})
    assert want and want[0]["n_cells"] > own
    assert not compare_query_rows(got, want, [], ()), (proc.stdout, want)


# --------------------------------------------------------------------------
# roll-up rows: CLI, HTTP, Python
# --------------------------------------------------------------------------

ROLLUP_CASES = [
    dict(by=["cell_type"], rollup=["cell_type"]),
    dict(by=["cell_type"], rollup=["cell_type"], where={"cell_type": ["T cell"]}),
    dict(by=["cell_type"], rollup=["cell_type"], where={"tissue": ["blood"], "disease": ["normal"]}),
    dict(by=["cell_type"], rollup=["cell_type"], where={"dataset": ["beta"]}),
    dict(by=["cell_type", "tissue"], rollup=["cell_type"]),
    dict(by=["tissue", "cell_type"], rollup=["cell_type", "tissue"]),
    dict(by=["disease"], rollup=["disease"]),
    dict(by=["sex"], rollup=["cell_type"], where={"cell_type": ["lymphocyte", "monocyte"]}),
    dict(by=["cell_type"], rollup=["cell_type"], where={"cell_type": ["T cell", "CD4-positive, alpha-beta T cell"]}),
    dict(by=["cell_type", "disease"], rollup=["cell_type", "disease"],
         where={"cell_type": ["NA", "doublet", "B cell"], "tissue": ["lung", "blood"]}),
    dict(by=["disease", "cell_type"], rollup=["cell_type", "tissue"], where={"tissue": ["lung"]}),
]


def _case_id(c):
    return "-".join(c["by"]) + "+r=" + ",".join(c["rollup"]) + (
        "+w=" + ";".join(f"{k}={','.join(v)}" for k, v in c["where"].items()) if c.get("where") else "")


def oracle_tree(world, by, rollup, where=None):
    cells = world["cells"]
    sel = cells.population(where, rollup)
    return {c: oo.rollup_rows(cells.term_map[c], cells.keys[c], sel, world["categories"].get(c))
            for c in rollup}


def test_oracle_tree_is_the_documented_shape(world):
    """The fixture's tree, as the oracle reads docs/ONTOLOGY.md (so that a wrong oracle
    is seen here, not only as a disagreement): pruning above the first branching and of
    single-child parents holding all their cells, the two-parent term under the later
    parent at 1 + the deeper parent's depth."""
    rows = oracle_tree(world, ["cell_type"], ["cell_type"])["cell_type"]
    shown = [(r.label, r.depth) for r in rows]
    labels = [s[0] for s in shown]
    assert "cell" not in labels and "leukocyte" not in labels  # one child holds all their cells
    assert "alpha-beta T cell" not in labels  # its only child holds all its cells
    assert labels.index("CD4-positive, alpha-beta T cell") < labels.index("regulatory T cell") \
        < labels.index("CD4-positive, CD25-positive, alpha-beta regulatory T cell")
    d = dict(shown)
    assert d["CD4-positive, CD25-positive, alpha-beta regulatory T cell"] == \
        1 + max(d["CD4-positive, alpha-beta T cell"], d["regulatory T cell"])
    assert labels[-2:] == ["doublet", "NA"]
    t = next(r for r in rows if r.label == "T cell")
    assert int(t.mask.sum()) == 31 + 30 + 45 + 12 + 10  # own + CD4 + CD8 + Treg + CD4 Treg
    mature = next(r for r in rows if r.label == "mature T cell")
    assert int(mature.mask.sum()) == 30 + 45 + 12 + 10  # the two-parent term's cells once
    tissue = oracle_tree(world, ["tissue"], ["tissue"])["tissue"]
    tl = [r.label for r in tissue]
    assert tl.index("hematopoietic system") < tl.index("organ") < tl.index("bone marrow")


@pytest.mark.parametrize("case", ROLLUP_CASES, ids=_case_id)
def test_rollup_query_cli_csv(world, case):
    cells, cats = world["cells"], world["categories"]
    by, rollup, where = case["by"], case["rollup"], case.get("where")
    proc = query_cli(world["cellcube"], world["single"], QUERY_GENES, by, rollup, where)
    assert proc.returncode == 0, helpers.describe(proc)
    header, got = csv_dicts(proc.stdout)
    assert header == csv_header(by, rollup, ["gene", *qr.DEFAULT_METRICS])
    want = expected_query(cells, cats, QUERY_GENES, by, rollup, where)
    assert want
    problems = compare_query_rows(got, want, by, rollup)
    assert not problems, "\n".join(problems)
    proc = query_cli(world["cellcube"], world["single"], QUERY_GENES, by, rollup, where, fmt="json")
    assert proc.returncode == 0, helpers.describe(proc)
    problems = compare_query_rows(json.loads(proc.stdout), want, by, rollup, ids=True)
    assert not problems, "\n".join(problems)


def test_rollup_table_indents_by_depth(world):
    proc = query_cli(world["cellcube"], world["single"], ["G00"], ["cell_type"], ["cell_type"], fmt="table")
    assert proc.returncode == 0, helpers.describe(proc)
    want = expected_query(world["cells"], world["categories"], ["G00"], ["cell_type"], ["cell_type"])
    lines = [ln for ln in proc.stdout.splitlines() if " G00 " in ln]
    assert len(lines) == len(want), proc.stdout
    unit = set()
    for ln, w in zip(lines, want):
        assert ln.lstrip().startswith(w["cell_type"]), (ln, w["cell_type"])
        indent = len(ln) - len(ln.lstrip())
        if w["depth"] == 0:
            assert indent == 0, ln
        else:
            assert indent % w["depth"] == 0, ln
            unit.add(indent // w["depth"])
    assert len(unit) == 1 and unit.pop() > 0, unit


def test_rollup_pruning_is_the_same_across_splits(world):
    """by cell_type,tissue: the cell_type rows are the ones decided from every selected
    cell, not per tissue (a tissue holding only CD8 T cells still shows "T cell" rows,
    each holding only its own cells)."""
    by, rollup = ["cell_type", "tissue"], ["cell_type"]
    proc = query_cli(world["cellcube"], world["single"], ["G00"], by, rollup)
    assert proc.returncode == 0, helpers.describe(proc)
    _, got = csv_dicts(proc.stdout)
    tree = [r.label for r in oracle_tree(world, by, rollup)["cell_type"]]
    got_terms = list(dict.fromkeys(r["cell_type"] for r in got))
    assert got_terms == tree
    for tissue in {r["tissue"] for r in got}:
        per = list(dict.fromkeys(r["cell_type"] for r in got if r["tissue"] == tissue))
        assert per == [t for t in tree if t in per]
    # a tissue in which some term and its only child hold the same cells keeps both rows
    repeated = 0
    for tissue in {r["tissue"] for r in got}:
        rows = [r for r in got if r["tissue"] == tissue]
        ns = [(r["cell_type"], r["n_cells"]) for r in rows]
        repeated += len(ns) - len({n for _, n in ns})
    assert repeated > 0, "the fixture should give rows with equal cells within one tissue"


@pytest.mark.parametrize("case", ROLLUP_CASES[:6], ids=_case_id)
def test_rollup_query_http_json_and_csv(world, server, case):
    from test_server import get

    cells, cats = world["cells"], world["categories"]
    by, rollup, where = case["by"], case["rollup"], case.get("where")
    params = [("genes", ",".join(QUERY_GENES)), ("by", ",".join(by)), ("rollup", ",".join(rollup))]
    for col, values in (where or {}).items():
        params += [("where", f"{col}:{v}") for v in values]
    r = get(server.port, "/api/v1/query", params)
    if where == {"cell_type": ["T cell"]}:  # the id, split at the first ':'
        by_id = get(server.port, "/api/v1/query", [p for p in params if p[0] != "where"]
                    + [("where", "cell_type:CL:0000084")])
        assert by_id.status == 200 and by_id.json()["rows"] == r.json()["rows"], by_id
    assert r.status == 200, r
    j = r.json()
    want = expected_query(cells, cats, QUERY_GENES, by, rollup, where)
    assert j["columns"] == csv_header(by, rollup, ["gene", *qr.DEFAULT_METRICS]), j["columns"]
    problems = compare_query_rows(j["rows"], want, by, rollup, ids=True)
    assert not problems, "\n".join(problems)
    cli = query_cli(world["cellcube"], world["single"], QUERY_GENES, by, rollup, where).stdout
    rc = get(server.port, "/api/v1/query", params + [("format", "csv")])
    assert rc.status == 200 and rc.body.decode() == cli
    rp = get(server.port, "/api/v1/query", params + [("layout", "compact")]).json()
    depth_of = {}
    for w in want:
        depth_of[tuple(w[c] for c in by)] = [w[depth_column(c, rollup, by)] for c in by if c in rollup]
    got_depths = {tuple(s): d for s, d in zip(rp["splits"], rp["split_depth"])}
    assert got_depths == depth_of


def test_rollup_query_python(world):
    cells, cats = world["cells"], world["categories"]
    build = qr.build_dir()
    cases = ROLLUP_CASES[:6]
    out = world["dir"] / "py_frames.pkl"
    code = f"""
        import pickle, cellcube
        s = cellcube.open({str(world['single'])!r})
        frames = []
        for c in {cases!r}:
            frames.append(s.query({QUERY_GENES!r}, by=c["by"], where=c.get("where"),
                                  rollup=c["rollup"]))
        with open({str(out)!r}, "wb") as f:
            pickle.dump(frames, f)
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=qr.python_env(build), timeout=120)
    assert proc.returncode == 0, proc.stderr
    import pickle

    frames = pickle.load(open(out, "rb"))
    for case, df in zip(cases, frames):
        by, rollup, where = case["by"], case["rollup"], case.get("where")
        assert list(df.columns) == csv_header(by, rollup, ["gene", *qr.DEFAULT_METRICS]), (case, list(df.columns))
        want = expected_query(cells, cats, QUERY_GENES, by, rollup, where)
        got = df.to_dict("records")
        problems = compare_query_rows(got, want, by, rollup)
        assert not problems, (case, problems)


def test_rollup_on_a_column_without_ontology_is_an_error(world, server):
    from test_server import get

    cc, store = world["cellcube"], world["single"]
    for col in ("sex", "donor", "dataset"):
        assert_error(query_cli(cc, store, ["G00"], by=[col], rollup=[col]), mentions=[col])
        r = get(server.port, "/api/v1/query", [("genes", "G00"), ("by", col), ("rollup", col)])
        assert r.status == 400 and "error" in r.json() and col in r.json()["error"], r
    assert_error(run([cc, "distribution", store, "--genes", "G00", "--rollup", "sex"]), mentions=["sex"])
    assert_error(run([cc, "de", store, "--compare", "sex", "--group1", "F", "--rollup", "sex"]),
                 mentions=["sex"])
    assert_error(run([cc, "markers", store, "--column", "sex", "--rollup", "sex"]), mentions=["sex"])
    code = f"""
        import cellcube
        s = cellcube.open({str(store)!r})
        try:
            s.query(["G00"], by="sex", rollup=["sex"])
        except ValueError as e:
            print("ValueError:", e)
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=qr.python_env(qr.build_dir()), timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("ValueError:") and "sex" in proc.stdout, \
        (proc.stdout, proc.stderr)
    assert_error(query_cli(cc, store, ["G00"], rollup=["nope"]), mentions=["nope"])


# --------------------------------------------------------------------------
# distribution
# --------------------------------------------------------------------------


def test_rollup_distribution(world, server):
    from test_server import get

    cells, cats = world["cells"], world["categories"]
    by, rollup = ["cell_type"], ["cell_type"]
    proc = run([world["cellcube"], "distribution", world["single"], "--genes", ",".join(QUERY_GENES),
                "--by", "cell_type", "--rollup", "cell_type", "--format", "csv"])
    assert proc.returncode == 0, helpers.describe(proc)
    bins = [f"bin_{b:02d}" for b in range(64)]
    header, got = csv_dicts(proc.stdout)
    assert header == ["cell_type", "depth", "gene", "n_cells", "zeros", *bins]
    want = expected_query(cells, cats, QUERY_GENES, by, rollup, metrics=["n_cells"])
    assert [(r["cell_type"], r["depth"], r["gene"]) for r in got] == \
        [(w["cell_type"], str(w["depth"]), w["gene"]) for w in want]
    for g, w in zip(got, want):
        v = w["_values"]
        assert int(g["n_cells"]) == len(v) and int(g["zeros"]) == int((v <= 0).sum()), (g, len(v))
        assert [int(g[b]) for b in bins] == qr.histogram(v).tolist(), (w["cell_type"], w["gene"])
    r = get(server.port, "/api/v1/distribution",
            [("genes", ",".join(QUERY_GENES)), ("by", "cell_type"), ("rollup", "cell_type"), ("format", "csv")])
    assert r.status == 200 and r.body.decode() == proc.stdout
    r = get(server.port, "/api/v1/distribution",
            [("genes", ",".join(QUERY_GENES)), ("by", "cell_type"), ("rollup", "cell_type")])
    assert r.status == 200, r
    j = r.json()
    assert j["columns"] == ["cell_type", "depth", "gene", "n_cells", "zeros"], j["columns"]
    assert [(x["cell_type"], x["cell_type_ontology_term_id"], x["depth"], x["n_cells"]) for x in j["rows"]] == \
        [(w["cell_type"], w["cell_type_ontology_term_id"], w["depth"], w["n_cells"]) for w in want]


# --------------------------------------------------------------------------
# DE and markers
# --------------------------------------------------------------------------


def de_expected(cells, side1, side2):
    out = {}
    for g in GENES:
        a, b = cells.values(side1, g), cells.values(side2, g)
        if len(a) and len(b):
            out[g] = {"n_cells1": len(a), "n_cells2": len(b), "mean1": float(a.mean()),
                      "mean2": float(b.mean()), "frac1": float((a > 0).mean()),
                      "frac2": float((b > 0).mean())}
    return out


def de_problems(frame, want, where=""):
    problems = []
    got = {r["gene"]: r for r in frame.to_dict("records")}
    if set(got) != set(want):
        return [f"{where}genes {sorted(set(got) ^ set(want))} differ"]
    for g, w in want.items():
        r = got[g]
        for k in ("n_cells1", "n_cells2"):
            if int(r[k]) != w[k]:
                problems.append(f"{where}{g} {k}: got {r[k]}, want {w[k]}")
        for k in ("mean1", "mean2", "frac1", "frac2"):
            if not math.isclose(float(r[k]), w[k], rel_tol=1e-6, abs_tol=1e-12):
                problems.append(f"{where}{g} {k}: got {r[k]}, want {w[k]}")
    return problems[:20]


def de_cli(world, *args, store=None):
    p = run([world["cellcube"], "de", store or world["single"], *args, "--format", "csv"])
    assert p.returncode == 0, helpers.describe(p)
    return pd.read_csv(io.StringIO(p.stdout), keep_default_na=False, na_values=[""])


@pytest.mark.parametrize("group1,group2,where", [
    ("T cell", None, None),
    ("CL:0000084", None, {"tissue": ["lung"]}),
    ("CD4-positive, alpha-beta T cell", None, None),
    ("B cell", None, {"dataset": ["beta"]}),
    ("T cell", "B cell", None),
    ("mature alpha-beta T cell", "natural killer cell", None),
    (["CD4-positive, alpha-beta T cell", "B cell"], None, None),
    (["doublet"], None, None),
    (["regulatory T cell", "doublet"], ["NA", "monocyte"], None),
])
def test_de_rollup_sides(world, group1, group2, where):
    cells = world["cells"]
    tm = cl(cells)
    pop = cells.population(where, ["cell_type"])
    g1s = group1 if isinstance(group1, list) else [group1]
    g2s = None if group2 is None else group2 if isinstance(group2, list) else [group2]
    g1 = [cells.resolve("cell_type", g) for g in g1s]
    g2 = None if g2s is None else [cells.resolve("cell_type", g) for g in g2s]
    side1, side2 = oo.de_sides(tm, cells.keys["cell_type"], pop, g1, g2)
    args = ["--compare", "cell_type", "--rollup", "cell_type", "--test", "cells"]
    args += [a for g in g1s for a in ("--group1", g)]
    args += [a for g in (g2s or []) for a in ("--group2", g)]
    for col, values in (where or {}).items():
        args += [a for v in values for a in ("--where", f"{col}={v}")]
    got = de_cli(world, *args)
    want = de_expected(cells, side1, side2)
    assert not de_problems(got, want), de_problems(got, want)
    if group2 is None:
        # what the rest leaves out: the strict ancestors' own cells (lymphocyte)
        above = pop & ~side1 & ~side2
        if group1 in ("T cell", "CL:0000084", "CD4-positive, alpha-beta T cell"):
            assert above.any(), "the fixture should hold cells labelled with an ancestor"
        # Plain values and NA stay in rest: the CLI's n_cells2 counts them (a rest that
        # dropped them, as it drops the ancestors' cells, would count fewer).
        keys = cells.keys["cell_type"]
        plain_or_na = pop & ~side1 & np.array([k is None or k[0] == "plain" for k in keys])
        counted = 0
        for r in got.to_dict("records"):
            of_terms = len(cells.values(side2 & ~plain_or_na, r["gene"]))
            of_plain = len(cells.values(plain_or_na, r["gene"]))
            assert int(r["n_cells2"]) == of_terms + of_plain, (r["gene"], r["n_cells2"], of_terms, of_plain)
            counted += of_plain
        if where is None:
            assert counted > 0, "the fixture should hold plain values or NA in the rest"


def test_de_rollup_of_other_columns(world):
    """The roll-up of a column other than the compared one narrows the population; a
    rolled-up disease column compares a MONDO parent's subtree with the plain values."""
    cells = world["cells"]
    keys = cells.keys["disease"]
    pop = cells.population({"cell_type": ["T cell"]}, ["cell_type"])
    side1 = pop & np.array([k == ("term", "MONDO:0100096") for k in keys])
    got = de_cli(world, "--compare", "disease", "--group1", "COVID-19", "--where", "cell_type=T cell",
                 "--rollup", "cell_type", "--test", "cells")
    want = de_expected(cells, side1, pop & ~side1)
    assert not de_problems(got, want), de_problems(got, want)
    parent = "primary viral infectious disease"
    tid = cells.resolve("disease", parent)
    assert tid == "MONDO:0100329"
    all_cells = np.ones(cells.n, dtype=bool)
    side1, rest = oo.de_sides(cells.term_map["disease"], keys, all_cells, tid)
    assert {k for k in keys[rest]} == {("plain", "normal"), ("plain", "cad")}
    got = de_cli(world, "--compare", "disease", "--group1", parent, "--rollup", "disease", "--test", "cells")
    want = de_expected(cells, side1, rest)
    assert not de_problems(got, want), de_problems(got, want)


def test_de_without_rollup_takes_exact_terms(world):
    cells = world["cells"]
    side1 = np.array([k == ("term", "CL:0000084") for k in cells.keys["cell_type"]])
    got = de_cli(world, "--compare", "cell_type", "--group1", "T cell", "--test", "cells")
    want = de_expected(cells, side1, ~side1)
    assert not de_problems(got, want), de_problems(got, want)


@pytest.mark.parametrize("group2", ["lymphocyte", "regulatory T cell", "CL:0000792"])
def test_de_rollup_overlapping_group2_is_an_error(world, group2):
    proc = run([world["cellcube"], "de", world["single"], "--compare", "cell_type", "--group1", "T cell",
                "--group2", group2, "--rollup", "cell_type"])
    assert_error(proc)


def markers_expected(cells, pop, categories, column):
    """{value label: (side1, rest)} of `markers --rollup COL` over the population:
    every term shown (rest not empty), every plain value against all others."""
    tm = cells.term_map[column]
    keys = cells.keys[column]
    out = {}
    for r in oo.rollup_rows(tm, keys, pop, categories.get(column)):
        if r.kind == "term":
            s1, rest = oo.de_sides(tm, keys, pop, r.value)
            if rest.any():
                out[r.label] = (s1, rest)
        elif r.kind == "plain":
            out[r.label] = (r.mask, pop & ~r.mask)
    return out


@pytest.mark.parametrize("column,where", [("cell_type", None), ("cell_type", {"cell_type": ["lymphocyte"]}),
                                          ("tissue", None)])
def test_markers_rollup(world, column, where):
    cells = world["cells"]
    pop = cells.population(where, [column])
    args = [world["cellcube"], "markers", world["single"], "--column", column, "--rollup",
            column, "--test", "cells", "--max-padj", "1", "--top", "100", "--format", "csv"]
    for col, values in (where or {}).items():
        args += [a for v in values for a in ("--where", f"{col}={v}")]
    p = run(args)
    assert p.returncode == 0, helpers.describe(p)
    m = pd.read_csv(io.StringIO(p.stdout), keep_default_na=False, na_values=[""])
    assert m.columns[0] == column
    want = markers_expected(cells, pop, world["categories"], column)
    if where:
        assert "lymphocyte" not in want, "lymphocyte's rest is empty in its own population"
    tree = [r.label for r in oo.rollup_rows(cells.term_map[column], cells.keys[column], pop,
                                             world["categories"].get(column))]
    blocks = list(dict.fromkeys(m[column]))
    expected_blocks = [t for t in tree if t in want]
    assert blocks == expected_blocks, (blocks, expected_blocks)
    problems = []
    for label, (s1, rest) in want.items():
        sub = m[m[column] == label]
        full = de_expected(cells, s1, rest)
        up = {g: w for g, w in full.items() if w["mean1"] > w["mean2"]}
        assert set(sub.gene) <= set(up), (label, sorted(set(sub.gene) - set(up)))
        problems += de_problems(sub, {g: full[g] for g in sub.gene}, where=f"{label}: ")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------
# info, meta, the embedded terms
# --------------------------------------------------------------------------


def test_markers_json_rows_carry_term_ids(world):
    """docs/ONTOLOGY.md: "JSON answers add the term id beside it" (a markers row shows a
    value of the column)."""
    cells = world["cells"]
    ids = {cells.label("cell_type", k): cells.term_id(k) for k in cells.keys["cell_type"]}
    for rollup in ([], ["cell_type"]):
        args = [world["cellcube"], "markers", world["single"], "--test", "cells", "--max-padj", "1",
                "--top", "1", "--format", "json"] + [a for c in rollup for a in ("--rollup", c)]
        j = json.loads(run_ok(args).stdout)
        assert j["rows"]
        got = {(r["cell_type"], r.get("cell_type_ontology_term_id", "<absent>")) for r in j["rows"]}
        # A rolled-up row may be an ancestor no cell is labelled with: its id from the map.
        cl = cells.term_map["cell_type"]
        want = {(r["cell_type"], ids[r["cell_type"]] if r["cell_type"] in ids
                 else cl.id_of_label(r["cell_type"])) for r in j["rows"]}
        assert got == want, (rollup, sorted(got - want)[:5])


def test_info_lists_backed_columns(world):
    cells = world["cells"]
    out = run_ok([world["cellcube"], "info", world["single"]]).stdout
    for col in ("cell_type", "tissue", "disease"):
        tm = cells.term_map[col]
        assert re.search(rf"\b{col}\b\W+{tm.name}\W+{re.escape(tm.version)}", out), (col, out)
    for col in ("sex", "donor"):
        assert not re.search(rf"\b{col}: (CL|UBERON|MONDO)\b", out), out
    j = json.loads(run_ok([world["cellcube"], "info", world["single"], "--json"]).stdout)
    got = {c["column"]: (c["ontology"], c["version"]) for c in j["ontology"]["columns"]}
    assert got == {c: (cells.term_map[c].name, cells.term_map[c].version)
                   for c in ("cell_type", "tissue", "disease")}


def embedded_by_ontology(cells):
    out = {}
    for col in ("cell_type", "tissue", "disease"):
        tm = cells.term_map[col]
        out.setdefault(tm.name, (tm, set()))[1].update(cells.embedded(col))
    return out


def test_meta_ontologies_and_term_tree(world, server):
    from test_server import get

    cells = world["cells"]
    meta = get(server.port, "/api/v1/meta").json()
    onts = {o["name"]: (o["version"], o["columns"]) for o in meta["ontologies"]}
    assert onts == {"CL": ("v2026-03-26", ["cell_type"]), "UBERON": ("v2026-04-01", ["tissue"]),
                    "MONDO": ("v2026-05-05", ["disease"])}
    emb = embedded_by_ontology(cells)
    terms = {t["id"]: t for t in meta["terms"]}
    assert set(terms) == set().union(*(ids for _, ids in emb.values()))
    problems = []
    for name, (tm, ids) in emb.items():
        for tid in ids:
            t = terms[tid]
            if t["label"] != tm.label(tid) or t["ontology"] != name:
                problems.append(f"{tid}: {t['label']!r} {t['ontology']}")
            want = oo.nearest(tm, tid, ids)
            if sorted(t["parents"]) != want:
                problems.append(f"{tid} parents {sorted(t['parents'])} want {want}")
    assert not problems, problems[:20]
    by_name = {c["name"]: c for c in meta["columns"]}
    for col in ("cell_type", "tissue", "disease"):
        c = by_name[col]
        assert c["ontology"] == cells.term_map[col].name
        want = {}
        for k in cells.keys[col]:
            want.setdefault(cells.label(col, k), [cells.term_id(k), 0])[1] += 1
        got = {v["value"]: [v["term_id"], v["n_cells"]] for v in c["values"]}
        assert got == want, (col, got, want)
    assert by_name["sex"]["ontology"] is None


def read_embedded(store):
    import h5py

    with h5py.File(store, "r") as f:
        o = f["uns/cellcube/ontology"]
        s = lambda k: [x for x in o[k].asstr()[:]]  # noqa: E731
        return {"names": s("ontology_names"), "versions": s("ontology_versions"),
                "ids": s("term_ids"), "labels": s("term_labels"),
                "term_ontology": o["term_ontology"][:].tolist(),
                "begin": o["ancestor_begin"][:].tolist(), "anc": o["ancestors"][:].tolist(),
                "dist": o["ancestor_distance"][:].tolist(), "columns": s("columns"),
                "column_ontology": o["column_ontology"][:].tolist()}


def embedded_problems(store, cells):
    e = read_embedded(store)
    problems = []
    emb = embedded_by_ontology(cells)
    want_ids = sorted(set().union(*(ids for _, ids in emb.values())), key=lambda s: s.encode())
    if e["ids"] != want_ids:
        return [f"term ids: extra {sorted(set(e['ids']) - set(want_ids))[:10]}, "
                f"missing {sorted(set(want_ids) - set(e['ids']))[:10]}"]
    onts = dict(zip(e["names"], e["versions"]))
    if onts != {n: tm.version for n, (tm, _) in emb.items()}:
        problems.append(f"ontologies {onts}")
    cols = {c: e["names"][k] for c, k in zip(e["columns"], e["column_ontology"])}
    if cols != {c: cells.term_map[c].name for c in ("cell_type", "tissue", "disease")}:
        problems.append(f"columns {cols}")
    for t, tid in enumerate(e["ids"]):
        name = e["names"][e["term_ontology"][t]]
        tm = emb[name][0]
        if e["labels"][t] != tm.label(tid):
            problems.append(f"{tid} label {e['labels'][t]!r}")
        got = {e["ids"][a]: d for a, d in zip(e["anc"][e["begin"][t]:e["begin"][t + 1]],
                                              e["dist"][e["begin"][t]:e["begin"][t + 1]])}
        if got != tm.ancestors(tid):
            problems.append(f"{tid} ancestors differ: {sorted(set(got.items()) ^ set(tm.ancestors(tid).items()))[:5]}")
    return problems[:20]


@pytest.mark.parametrize("which", ["single", "added", "merged"])
def test_embedded_terms_are_the_used_terms_and_their_ancestors(world, which):
    problems = embedded_problems(world[which], world["cells"])
    assert not problems, problems


# --------------------------------------------------------------------------
# add and merge
# --------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["added", "merged"])
def test_add_and_merge_answer_as_one_build(world, which):
    cells, cats = world["cells"], world["categories"]
    for case in ROLLUP_CASES[:6]:
        by, rollup, where = case["by"], case["rollup"], case.get("where")
        single = query_cli(world["cellcube"], world["single"], QUERY_GENES, by, rollup, where)
        other = query_cli(world["cellcube"], world[which], QUERY_GENES, by, rollup, where)
        assert other.returncode == 0, helpers.describe(other)
        _, got = csv_dicts(other.stdout)
        _, got_single = csv_dicts(single.stdout)
        assert [tuple(r[c] for c in csv_header(by, rollup, ["gene", "n_cells"])) for r in got] == \
            [tuple(r[c] for c in csv_header(by, rollup, ["gene", "n_cells"])) for r in got_single], case
        want = expected_query(cells, cats, QUERY_GENES, by, rollup, where)
        problems = compare_query_rows(got, want, by, rollup)
        assert not problems, (case, problems)


def test_add_without_ontology_matches_the_embedded_terms(world, term_maps):
    """`add` without --ontology matches by the embedded terms' ids and labels only: a
    synonym ("T-lymphocyte") and a term not embedded ("plasma cell") stay plain."""
    import shutil

    d, cc = world["dir"], world["cellcube"]
    rng = np.random.default_rng(5)
    gamma = write_dataset(d / "gamma.h5ad", "gamma", rng, GAMMA_CELL_TYPES, ["lung"], ["normal"],
                          ["D9"], GENES)
    store = d / "alpha_gamma.h5ad"
    shutil.copy(world["only_alpha"], store)
    run_ok([cc, "add", store, "--cell-type", "cell_type", "--groupby", GROUPBY, "--transform", "log1p",
            "--quiet", f"gamma={d / 'gamma.h5ad'}"])
    alpha_cells = Cells([world["alpha"]], term_maps)
    emb = alpha_cells.embedded("cell_type")
    tm = cl(alpha_cells)
    keys = []
    for v in gamma["obs"]["cell_type"]:
        tid = next((t for t in emb if oo.fold(t) == oo.fold(v) or oo.fold(tm.label(t)) == oo.fold(v)), None)
        keys.append(("term", tid) if tid else ("plain", v))
    plain = sorted({k[1] for k in keys if k[0] == "plain"})
    assert plain == ["T-lymphocyte", "plasma cell"], plain
    assert tm.match("T-lymphocyte") and tm.match("plasma cell"), "both would match with the term map"
    # the oracle's cells: alpha's keys, then gamma's
    cells = Cells([world["alpha"], gamma], term_maps)
    gamma_keys = np.empty(len(keys), dtype=object)
    for i, k in enumerate(keys):
        gamma_keys[i] = k
    cells.keys["cell_type"] = np.concatenate([alpha_cells.keys["cell_type"], gamma_keys])
    cells.term_map["cell_type"] = tm
    cats = store_categories(store)
    assert "T-lymphocyte" in cats["cell_type"] and "plasma cell" in cats["cell_type"]
    for by, rollup in ((["cell_type"], ()), (["cell_type"], ["cell_type"])):
        proc = query_cli(cc, store, ["G00", "G27"], by, rollup)
        assert proc.returncode == 0, helpers.describe(proc)
        _, got = csv_dicts(proc.stdout)
        want = expected_query(cells, cats, ["G00", "G27"], by, rollup)
        problems = compare_query_rows(got, want, by, rollup)
        assert not problems, (rollup, problems)
    j = json.loads(query_cli(cc, store, ["G00"], ["cell_type"], fmt="json").stdout)
    ids = {r["cell_type"]: r["cell_type_ontology_term_id"] for r in j}
    assert ids["T-lymphocyte"] is None and ids["plasma cell"] is None
    assert ids["mature alpha-beta T cell"] == "CL:0000791" and ids["lymphocyte"] == "CL:0000542"


# --------------------------------------------------------------------------
# CELLxGENE pairs, and a store without ontologies
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pair_world(world, term_maps):
    d, cc = world["dir"], world["cellcube"]
    rng = np.random.default_rng(11)
    cxg = write_pair_dataset(d / "cxg.h5ad", rng, CXG_CELL_TYPES, CXG_TISSUES)
    store = d / "cxg_store.h5ad"
    run_ok([cc, "build", "-o", store, *ontology_args(), "--transform", "log1p", "--quiet",
            f"cxg={d / 'cxg.h5ad'}"])
    cells = Cells([cxg], term_maps, pair_columns=("cell_type", "tissue"))
    return store, cells


def test_pair_file_ids_decide(world, pair_world):
    store, cells = pair_world
    cc = world["cellcube"]
    assert cells.term_map["cell_type"].name == "CL" and cells.term_map["tissue"].name == "UBERON"
    cats = store_categories(store)
    assert "regulatory T cell" in cats["cell_type"] and "Tregs" not in cats["cell_type"]
    assert "unknown" in cats["cell_type"]
    import anndata as ad

    obs_columns = list(ad.read_h5ad(store, backed="r").obs.columns)
    assert "cell_type_ontology_term_id" not in obs_columns and "tissue_ontology_term_id" not in obs_columns, \
        obs_columns
    assert "tissue" in cats and "sex" in cats
    for by, rollup in ((["cell_type"], ()), (["cell_type"], ["cell_type"]),
                       (["cell_type", "tissue"], ["cell_type", "tissue"])):
        proc = query_cli(cc, store, ["G00", "G05"], by, rollup)
        assert proc.returncode == 0, helpers.describe(proc)
        _, got = csv_dicts(proc.stdout)
        want = expected_query(cells, cats, ["G00", "G05"], by, rollup)
        problems = compare_query_rows(got, want, by, rollup)
        assert not problems, (by, rollup, problems)
    j = json.loads(query_cli(cc, store, ["G00"], ["cell_type"], fmt="json").stdout)
    assert {r["cell_type"]: r["cell_type_ontology_term_id"] for r in j}["regulatory T cell"] == "CL:0000815"


def test_pair_label_with_two_ids_is_an_error(world):
    d, cc = world["dir"], world["cellcube"]
    rng = np.random.default_rng(12)
    write_pair_dataset(d / "bad_pair.h5ad", rng,
                       [("T cell", "CL:0000084", 10), ("T cell", "CL:0000624", 10), ("B cell", "CL:0000236", 10)],
                       CXG_TISSUES, name="bad")
    proc = run([cc, "build", "-o", d / "bad_store.h5ad", *ontology_args(), "--quiet", d / "bad_pair.h5ad"])
    assert_error(proc, mentions=["CL:0000084", "CL:0000624"])


def test_store_without_ontology_is_as_before(world):
    import h5py

    d, cc = world["dir"], world["cellcube"]
    store = d / "plain.h5ad"
    run_ok([cc, "build", "-o", store, "--cell-type", "cell_type", "--groupby", GROUPBY,
            "--transform", "log1p", "--quiet", f"alpha={d / 'alpha.h5ad'}"])
    cats = store_categories(store)
    assert {"t cell", "T-lymphocyte", "CL:0000084"} <= set(cats["cell_type"])
    with h5py.File(store, "r") as f:
        assert "ontology" not in f["uns/cellcube"]
    j = json.loads(query_cli(cc, store, ["G00"], ["cell_type"], fmt="json").stdout)
    assert all("cell_type_ontology_term_id" not in r for r in j)
    assert_error(query_cli(cc, store, ["G00"], ["cell_type"], ["cell_type"]), mentions=["cell_type"])


# --------------------------------------------------------------------------
# the matching rules on small term maps written here
# --------------------------------------------------------------------------


def _term(label, anc=None, syn=None, deprecated=False, replaced_by=None):
    t = {"label": label, "ancestors": anc or {}, "deprecated": deprecated}
    if syn:
        t["synonyms"] = syn
    if replaced_by:
        t["replaced_by"] = replaced_by
    return t


X_MAP = {
    "XO:0000001": _term("root thing"),
    "XO:0000002": _term("alpha cell", {"XO:0000001": 1}, ["a-cell", "shared syn", "beta cell"]),
    "XO:0000003": _term("beta cell", {"XO:0000001": 1}, ["shared syn", "b-cell"]),
    "XO:0000004": _term("obsolete gamma cell", syn=["g-cell"], deprecated=True, replaced_by="XO:0000002"),
    "XO:0000005": _term("obsolete delta cell", deprecated=True, replaced_by="XO:0000004"),
    "XO:0000006": _term("Émigré cell", {"XO:0000001": 1}),
    "XO:0000007": _term("alpha sub cell", {"XO:0000002": 1, "XO:0000001": 2}),
    # a synonym equal to a (deprecated) term's label: no match ("obsolete gamma cell" stays)
    "XO:0000008": _term("zeta cell", {"XO:0000001": 1}, ["obsolete gamma cell"]),
    "XO:0000009": _term("eta cell", {"XO:0000001": 1}),
    # its map names alpha cell, which its distance-1 link (eta cell) does not reach
    "XO:0000010": _term("theta cell", {"XO:0000009": 1, "XO:0000002": 2, "XO:0000001": 2}),
    "XO:0000011": _term("tie one", {"XO:0000001": 1}),
    "XO:0000012": _term("tie two", {"XO:0000001": 1}),
}
Y_MAP = {
    "YO:0000001": _term("y root"),
    "YO:0000002": _term("tie one", {"YO:0000001": 1}),
    "YO:0000003": _term("tie two", {"YO:0000001": 1}),
    "YO:0000004": _term("y only", {"YO:0000001": 1}),
}
KIND_VALUES = ["alpha cell", "A-CELL", "shared syn", "beta cell", "b-cell", "XO:0000004", "XO:0000005",
               "obsolete gamma cell", "g-cell", "émigré cell", "Émigré cell", "xo:0000003",
               "theta cell", "eta cell", "alpha sub cell", "beta cell ", None]
SMALL_COLUMNS = {"half": ["zeta cell", "eta cell", "foo", "bar"],
                 "under": ["zeta cell", "eta cell", "foo", "bar", "baz"],
                 "one": ["zeta cell", "foo"],
                 "tie": ["tie one", "tie two", "foo"],
                 "ymore": ["tie one", "y only", "foo"]}


@pytest.fixture(scope="module")
def small_maps(world):
    """X as plain JSON under its published name; Y gzip-compressed under a name that says
    zstd and gives no version (the content decides)."""
    import gzip

    d = world["dir"]
    x = d / "XO-ontology-v2025-01-01.json"
    x.write_text(json.dumps(X_MAP, ensure_ascii=False), encoding="utf-8")
    y = d / "yo_terms.json.zst"
    y.write_bytes(gzip.compress(json.dumps(Y_MAP).encode()))
    rng = np.random.default_rng(3)
    import anndata as ad

    kinds = [v for v in KIND_VALUES for _ in range(8)]
    n = len(kinds)
    obs = {"cell_type": kinds, **{c: _column(rng, vals, n) for c, vals in SMALL_COLUMNS.items()}}
    counts = _counts(rng, n, N_GENES)
    frame = pd.DataFrame({k: pd.Categorical(v) for k, v in obs.items()},
                         index=pd.Index([f"s-{i}" for i in range(n)]))
    var = pd.DataFrame({"symbol": SYMBOLS}, index=pd.Index(GENES))
    ad.AnnData(X=counts.astype(np.float32), obs=frame, var=var).write_h5ad(d / "small.h5ad")
    data = {"name": "small", "obs": obs, "counts": counts, "genes": GENES, "n": n}
    return x, y, data


@pytest.mark.parametrize("order", ["xy", "yx"])
def test_matching_rules_on_small_maps(world, small_maps, order):
    x, y, data = small_maps
    cc, d = world["cellcube"], world["dir"]
    tx, ty = oo.TermMap(x), oo.TermMap(y)
    assert (tx.name, tx.version, ty.name, ty.version) == ("XO", "v2025-01-01", "YO", "")
    maps = [tx, ty] if order == "xy" else [ty, tx]
    store = d / f"small_{order}.h5ad"
    args = [a for m in maps for a in ("--ontology", m.path)]
    run_ok([cc, "build", "-o", store, *args, "--groupby", ",".join(SMALL_COLUMNS),
            "--transform", "log1p", "--quiet", f"small={d / 'small.h5ad'}"])
    cells = Cells([data], maps)
    # what the oracle says the rules give (so that a wrong oracle shows here)
    kind = {v: (k[1] if k and k[0] == "term" else None)
            for v, k in zip(data["obs"]["cell_type"], cells.keys["cell_type"])}
    assert kind == {"alpha cell": "XO:0000002", "A-CELL": "XO:0000002", "shared syn": None,
                    "beta cell": "XO:0000003", "b-cell": "XO:0000003", "XO:0000004": "XO:0000002",
                    "XO:0000005": None, "obsolete gamma cell": None, "g-cell": None,
                    "émigré cell": None, "Émigré cell": "XO:0000006", "xo:0000003": "XO:0000003",
                    "theta cell": "XO:0000010", "eta cell": "XO:0000009",
                    "alpha sub cell": "XO:0000007", "beta cell ": None, None: None}
    bound = {c: cells.term_map[c] and cells.term_map[c].name for c in ["cell_type", *SMALL_COLUMNS]}
    assert bound == {"cell_type": "XO", "half": "XO", "under": None, "one": None,
                     "tie": "XO" if order == "xy" else "YO", "ymore": "YO"}
    cats = store_categories(store)
    for c in ["cell_type", *SMALL_COLUMNS]:
        want = {cells.label(c, k) for k in cells.keys[c] if k is not None}
        assert set(cats[c]) == want, (c, sorted(set(cats[c]) ^ want))
    e = read_embedded(store)
    assert dict(zip(e["names"], e["versions"])) == {"XO": "v2025-01-01", "YO": ""}
    assert {c: e["names"][k] for c, k in zip(e["columns"], e["column_ontology"])} == \
        {c: n for c, n in bound.items() if n}
    want_ids = set()
    for c, n in bound.items():
        if n:
            want_ids |= cells.embedded(c)
    assert e["ids"] == sorted(want_ids, key=lambda s: s.encode())
    for by, rollup, where in ((["cell_type"], (), None), (["cell_type"], ["cell_type"], None),
                              (["tie", "cell_type"], ["tie", "cell_type"], None),
                              (["half"], ["cell_type"], {"cell_type": ["alpha cell"]})):
        proc = query_cli(cc, store, ["G00", "G01"], by, rollup, where)
        assert proc.returncode == 0, helpers.describe(proc)
        header, got = csv_dicts(proc.stdout)
        assert header == csv_header(by, rollup, ["gene", *qr.DEFAULT_METRICS])
        want = expected_query(cells, cats, ["G00", "G01"], by, rollup, where)
        problems = compare_query_rows(got, want, by, rollup)
        assert not problems, (by, rollup, where, problems)
    # theta cell is in alpha cell's subtree by its ancestor map alone
    sel = cells.population({"cell_type": ["alpha cell"]}, ["cell_type"])
    assert any(k == ("term", "XO:0000010") for k in cells.keys["cell_type"][sel])
    for col in ("under", "one"):
        assert_error(query_cli(cc, store, ["G00"], [col], [col]), mentions=[col])


# --------------------------------------------------------------------------
# remove, counts, HTTP DE, Python DE / markers / distribution
# --------------------------------------------------------------------------


def test_remove_keeps_the_embedded_terms(world):
    import shutil

    store = world["dir"] / "removed.h5ad"
    shutil.copy(world["single"], store)
    run_ok([world["cellcube"], "remove", store, "beta"])
    assert read_embedded(store) == read_embedded(world["single"])


def test_counts_with_rollup(world, server):
    from test_server import get

    cells = world["cells"]
    for where, rollup in (({"cell_type": ["T cell"]}, ["cell_type"]), ({"cell_type": ["T cell"]}, []),
                          ({"tissue": ["lung"]}, ["tissue"])):
        params = [("where", f"{c}:{v}") for c, vs in where.items() for v in vs]
        params += [("rollup", c) for c in rollup]
        r = get(server.port, "/api/v1/counts", params)
        assert r.status == 200, r
        assert r.json()["n_cells"] == int(cells.population(where, rollup).sum()), (where, rollup)


def test_http_de_and_markers_with_rollup(world, server):
    from test_server import get

    cc, store = world["cellcube"], world["single"]
    cli = run_ok([cc, "de", store, "--compare", "cell_type", "--group1", "T cell", "--rollup", "cell_type",
                  "--test", "cells", "--format", "csv"]).stdout
    r = get(server.port, "/api/v1/de", [("compare", "cell_type"), ("group1", "T cell"), ("rollup", "cell_type"),
                                        ("test", "cells"), ("format", "csv")])
    assert r.status == 200 and r.body.decode() == cli
    r = get(server.port, "/api/v1/de", [("compare", "cell_type"), ("group1", "T cell"), ("group2", "lymphocyte"),
                                        ("rollup", "cell_type")])
    assert r.status == 400 and "error" in r.json(), r
    cli = run_ok([cc, "markers", store, "--rollup", "cell_type", "--test", "cells", "--top", "3",
                  "--format", "csv"]).stdout
    r = get(server.port, "/api/v1/markers", [("rollup", "cell_type"), ("test", "cells"), ("top", "3"),
                                             ("format", "csv")])
    assert r.status == 200 and r.body.decode() == cli


def test_python_de_markers_distribution_with_rollup(world):
    cc, store = world["cellcube"], world["single"]
    code = f"""
        import json, cellcube
        s = cellcube.open({str(store)!r})
        out = {{
            "de": s.de_csv("cell_type", "T cell", rollup=["cell_type"], test="cells"),
            "markers": s.markers(rollup=["cell_type"], test="cells", top=3).to_csv(index=False),
            "dist": s.distribution(["G00"], by="cell_type", rollup=["cell_type"]).to_dict("records"),
        }}
        print(json.dumps(out, default=str))
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=qr.python_env(qr.build_dir()), timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["de"] == run_ok([cc, "de", store, "--compare", "cell_type", "--group1", "T cell", "--rollup",
                                "cell_type", "--test", "cells", "--format", "csv"]).stdout
    cli_m = pd.read_csv(io.StringIO(run_ok([cc, "markers", store, "--rollup", "cell_type", "--test", "cells",
                                            "--top", "3", "--format", "csv"]).stdout),
                        keep_default_na=False, na_values=[""])
    py_m = pd.read_csv(io.StringIO(got["markers"]), keep_default_na=False, na_values=[""])
    assert list(py_m.cell_type) == list(cli_m.cell_type) and list(py_m.gene) == list(cli_m.gene)
    _, cli_d = csv_dicts(run_ok([cc, "distribution", store, "--genes", "G00", "--by", "cell_type",
                                 "--rollup", "cell_type", "--format", "csv"]).stdout)
    assert [(r["cell_type"], str(r["depth"]), str(r["n_cells"]), str(r["bin_10"])) for r in got["dist"]] == \
        [(r["cell_type"], r["depth"], r["n_cells"], r["bin_10"]) for r in cli_d]
