"""`markers --direction up|down|both --min-frac F` (docs/DE.md, issue 23) against scipy on
the cells, over the command line, HTTP and Python.

The store is test_de's (two studies, cell types T, B, M, values written as aggregated:
`--transform none`). The reference, written here from the cells: for each cell type v,
Welch's t-test (scipy) of v's cells against the rest's, gene by gene; Benjamini-Hochberg
over the genes with a p-value; then docs/DE.md's markers rule:

- direction up keeps logfc > 0 (mean1 - mean2), down logfc < 0, both every sign;
- min_frac F keeps genes expressed (value > 0) in at least F of v's cells (up), of the
  rest's (down), or of either (both) — what `de --min-frac` means;
- padj <= max_padj; ranked by logfc (up), -logfc (down) or |logfc| (both), then the
  effect (Cohen's d) in the same direction, then the store's gene order; the first N.

MARK is planted high in T, so it leads T's up markers and B's and M's down markers.
"""
from __future__ import annotations

import io
import json
import math
import pickle
import subprocess
import sys
import textwrap
import warnings

import h5py
import numpy as np
import pandas as pd
import pytest

import query_reference as qr
import test_de
from helpers import assert_error, run, run_ok
from test_de import de_store  # noqa: F401 (the store, a fixture of this module too)

warnings.filterwarnings("ignore")

CELL_TYPES = ["T", "B", "M"]
MIN_FRAC = 0.72  # near the noise genes' fraction of expressing cells (0.7): it splits them


@pytest.fixture(scope="module")
def tested(de_store):
    """{cell type: {gene: row}} of every tested gene, from scipy on the cells."""
    store, cells = de_store
    out = {}
    for v in CELL_TYPES:
        rows = {}
        for g in test_de.all_genes(cells):
            s1 = test_de.gene_values(cells, g, lambda o: (o.cell_type == v).to_numpy())
            s2 = test_de.gene_values(cells, g, lambda o: (o.cell_type != v).to_numpy())
            a = np.concatenate([x for x, _ in s1.values()])
            b = np.concatenate([x for x, _ in s2.values()])
            rows[g] = {"mean1": a.mean(), "mean2": b.mean(), "logfc": a.mean() - b.mean(),
                       "frac1": (a > 0).mean(), "frac2": (b > 0).mean(), **test_de.welch(a, b)}
        padj = test_de.bh([r["pvalue"] for r in rows.values()])
        for r, q in zip(rows.values(), padj):
            r["padj"] = q
        out[v] = rows
    return out


@pytest.fixture(scope="module")
def gene_order(de_store):
    store, _ = de_store
    with h5py.File(store, "r") as f:
        return {g.decode() if isinstance(g, bytes) else str(g): i
                for i, g in enumerate(f["var/_index"][:])}


def reference(tested, gene_order, direction="up", min_frac=0.0, max_padj=0.05, top=10,
              frac_side=None):
    """{cell type: [genes in order]} by the rule above. frac_side ("1", "2") forces the
    side min_frac looks at, to show the rule's side matters on this store."""
    out = {}
    for v, rows in tested.items():
        keep = []
        for g, r in rows.items():
            if direction == "up" and not r["logfc"] > 0:
                continue
            if direction == "down" and not r["logfc"] < 0:
                continue
            if min_frac > 0:
                side = frac_side or {"up": "1", "down": "2"}.get(direction)
                fracs = [r["frac" + side]] if side else [r["frac1"], r["frac2"]]
                if not any(f >= min_frac for f in fracs):
                    continue
            if not r["padj"] <= max_padj:
                continue
            keep.append(g)

        def key(g):
            r = rows[g]
            s = -1 if direction == "down" or (direction == "both" and r["logfc"] < 0) else 1
            effect = -math.inf if math.isnan(r["effect"]) else s * r["effect"]
            return (-s * r["logfc"], -effect, gene_order[g])

        out[v] = sorted(keep, key=key)[:top]
    return out


def check(frame, want, tested, where=""):
    """The markers answer `frame` (the CSV's columns) holds exactly `want`'s genes per cell
    type, in order, with the reference's numbers."""
    problems = []
    got = {v: list(frame[frame.cell_type == v].gene) for v in CELL_TYPES}
    for v in CELL_TYPES:
        if got[v] != want[v]:
            problems.append(f"{where}{v}: genes {got[v]}, want {want[v]}")
    for row in frame.itertuples(index=False):
        w = tested[row.cell_type][row.gene]
        for k in ("logfc", "frac1", "frac2", "effect", "pvalue", "padj"):
            if not math.isclose(float(getattr(row, k)), w[k], rel_tol=1e-6, abs_tol=1e-12):
                problems.append(f"{where}{row.cell_type} {row.gene} {k}: {getattr(row, k)} != {w[k]}")
    assert not problems, "\n".join(problems)


CASES = [  # (direction, min_frac, max_padj, top)
    ("up", 0.0, 0.05, 10),
    ("down", 0.0, 0.05, 10),
    ("both", 0.0, 0.05, 10),
    ("up", MIN_FRAC, 1.0, 100),
    ("down", MIN_FRAC, 1.0, 100),
    ("both", MIN_FRAC, 1.0, 100),
    ("down", 0.0, 1.0, 5),
]


def cli_args(direction, min_frac, max_padj, top):
    return ["--test", "cells", "--direction", direction, "--min-frac", str(min_frac),
            "--max-padj", str(max_padj), "--top", str(top)]


def read_csv(text):
    return pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[""])


def test_the_store_tells_the_rules_apart(tested, gene_order):
    """Each case's reference differs from the plausible wrong rules, so a markers that
    followed one of them would fail the tests below; MARK is where it was planted."""
    up = reference(tested, gene_order)
    down = reference(tested, gene_order, "down")
    both = reference(tested, gene_order, "both", max_padj=1, top=100)
    assert up["T"][0] == "MARK" and down["B"][0] == "MARK" and down["M"][0] == "MARK"
    assert "MARK" not in up["B"] and "MARK" not in down["T"]
    assert any(set(both[v]) - set(reference(tested, gene_order, "up", max_padj=1, top=100)[v])
               for v in CELL_TYPES)
    for direction, side in (("up", "2"), ("down", "1")):
        right = reference(tested, gene_order, direction, MIN_FRAC, 1.0, 100)
        assert right != reference(tested, gene_order, direction, 0.0, 1.0, 100), direction
        assert right != reference(tested, gene_order, direction, MIN_FRAC, 1.0, 100,
                                  frac_side=side), f"{direction}: min_frac's side is not tested"
    either = reference(tested, gene_order, "both", MIN_FRAC, 1.0, 100)
    assert either != reference(tested, gene_order, "both", MIN_FRAC, 1.0, 100, frac_side="1")
    assert either != reference(tested, gene_order, "both", MIN_FRAC, 1.0, 100, frac_side="2")
    # both ranks by |logfc|: down markers come before weaker up ones somewhere
    assert any(tested[v][both[v][0]]["logfc"] < 0 for v in CELL_TYPES)
    for case in CASES:  # an empty answer would test nothing
        answer = reference(tested, gene_order, *case)
        assert any(answer.values()), (case, answer)
        if case[2] == 1.0:  # without the padj cut, every cell type has several
            assert all(len(genes) >= 2 for genes in answer.values()), (case, answer)


@pytest.mark.parametrize("direction,min_frac,max_padj,top", CASES)
def test_cli_markers_match_the_reference(cellcube, de_store, tested, gene_order, direction,
                                         min_frac, max_padj, top):
    store, _ = de_store
    p = run_ok([cellcube, "markers", store, *cli_args(direction, min_frac, max_padj, top),
                "--format", "csv"])
    check(read_csv(p.stdout), reference(tested, gene_order, direction, min_frac, max_padj, top),
          tested)


def test_up_is_the_default(cellcube, de_store, tested, gene_order):
    """Without the new options markers answer as before: up, no min_frac."""
    store, _ = de_store
    plain = run_ok([cellcube, "markers", store, "--test", "cells", "--format", "csv"]).stdout
    up = run_ok([cellcube, "markers", store, "--test", "cells", "--direction", "up",
                 "--min-frac", "0", "--format", "csv"]).stdout
    assert plain == up
    check(read_csv(plain), reference(tested, gene_order), tested)


def test_http_markers_match_the_reference_and_the_cli(cellcube, de_store, tested, gene_order,
                                                      tmp_path):
    from test_server import Server, get

    store, _ = de_store
    srv = Server(cellcube, store, tmp_path)
    try:
        for direction, min_frac, max_padj, top in CASES:
            params = [("test", "cells"), ("direction", direction), ("min_frac", str(min_frac)),
                      ("max_padj", str(max_padj)), ("top", str(top))]
            r = get(srv.port, "/api/v1/markers", params + [("format", "csv")])
            assert r.status == 200, r.body
            check(read_csv(r.body.decode()),
                  reference(tested, gene_order, direction, min_frac, max_padj, top), tested,
                  where=f"HTTP {direction} {min_frac}: ")
            cli = run_ok([cellcube, "markers", store, *cli_args(direction, min_frac, max_padj, top),
                          "--format", "csv"]).stdout
            assert r.body.decode() == cli
        r = get(srv.port, "/api/v1/markers", [("test", "cells")])
        assert r.status == 200 and json.loads(r.body)["rows"]
        # The errors of /api/v1/de, naming the parameters.
        for bad, words in (([("direction", "sideways")], "direction must be up, down or both"),
                           ([("min_frac", "2")], "min_frac must be a number from 0 to 1"),
                           ([("min_frac", "-0.5")], "min_frac must be a number from 0 to 1"),
                           ([("min_frac", "x")], "min_frac")):
            r = get(srv.port, "/api/v1/markers", bad)
            error = json.loads(r.body)["error"]
            assert r.status == 400 and words in error and "--" not in error, (bad, error)
            de = get(srv.port, "/api/v1/de", [("compare", "cell_type"), ("group1", "T")] + bad)
            assert de.status == 400 and json.loads(de.body)["error"] == error, (bad, de.body)
    finally:
        srv.stop()


def test_python_markers_match_the_reference(de_store, tested, gene_order, tmp_path):
    store, _ = de_store
    out = tmp_path / "markers.pkl"
    code = f"""
        import pickle, cellcube
        s = cellcube.open({str(store)!r})
        got = {{}}
        for direction, min_frac, max_padj, top in {CASES!r}:
            frame = s.markers(test="cells", direction=direction, min_frac=min_frac,
                              max_padj=max_padj, top=top)
            got[(direction, min_frac, max_padj, top)] = frame
        errors = []
        for kwargs in ({{"direction": "sideways"}}, {{"min_frac": 2}}):
            try:
                s.markers(**kwargs)
                errors.append("no error")
            except ValueError as e:
                errors.append(str(e))
        with open({str(out)!r}, "wb") as f:
            pickle.dump((got, errors), f)
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=qr.python_env(qr.build_dir()), timeout=300)
    assert proc.returncode == 0, proc.stderr
    with open(out, "rb") as f:
        got, errors = pickle.load(f)
    for case, frame in got.items():
        check(frame, reference(tested, gene_order, *case), tested, where=f"Python {case}: ")
    assert "direction must be up, down or both" in errors[0], errors
    assert "min_frac must be a number from 0 to 1" in errors[1], errors
    assert not any("--" in e for e in errors), errors


def test_cli_errors_name_the_flags(cellcube, de_store):
    store, _ = de_store
    assert_error(run([cellcube, "markers", store, "--direction", "sideways"]),
                 mentions=["--direction must be up, down or both, not 'sideways'"])
    assert_error(run([cellcube, "markers", store, "--min-frac", "1.5"]),
                 mentions=["--min-frac must be a number from 0 to 1"])
    assert_error(run([cellcube, "markers", store, "--min-frac", "lots"]), code=2,
                 mentions=["--min-frac needs a number"])
