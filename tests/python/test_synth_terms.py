"""The synthetic catalogue's ontology terms (docs/SYNTH.md, docs/ONTOLOGY.md): every id
`cellcube synth --term-ids` writes is a live term of the real map whose label (or, for
the two pneumocytes, an unambiguous synonym) is the value beside it; the demo's embedded
subsets (data/ontology) hold exactly those terms and all their ancestors, as the real
maps give them; and a demo-like build binds the three columns by id."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys

import anndata
import pytest
import zstandard

import helpers
from helpers import run_ok

ONTOLOGY = (helpers.REPO / ".." / "shared" / "ontology").resolve()
MAPS = {"CL": "CL-ontology-v2026-03-26", "UBERON": "UBERON-ontology-v2026-04-01",
        "MONDO": "MONDO-ontology-v2026-05-05"}
PAIRS = {"cell_type": "CL", "tissue": "UBERON", "disease": "MONDO"}


@pytest.fixture(scope="module")
def maps():
    out = {}
    for prefix, stem in MAPS.items():
        path = ONTOLOGY / (stem + ".json.zst")
        if not path.is_file():
            pytest.fail(f"missing term map {path}", pytrace=False)
        with open(path, "rb") as f:
            out[prefix] = json.load(io.TextIOWrapper(
                zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8"))
    return out


@pytest.fixture(scope="module")
def synth_obs(tmp_path_factory):
    d = tmp_path_factory.mktemp("terms")
    run_ok([str(helpers.cellcube_path()), "synth", "-o", str(d), "--datasets", "5", "--cells",
            "3000", "--genes", "400", "--term-ids", "--quiet"])
    return d, [anndata.read_h5ad(p).obs for p in sorted(d.glob("*.h5ad"))]


def names_term(term, value):
    """The value is the term's label, or one of its synonyms that no other term has."""
    return value == term["label"] or value in term.get("synonyms", [])


def test_every_written_id_is_a_live_term_named_by_its_value(maps, synth_obs):
    _, frames = synth_obs
    seen = 0
    for obs in frames:
        for column, prefix in PAIRS.items():
            pairs = obs[[column, column + "_ontology_term_id"]].drop_duplicates()
            for value, tid in pairs.itertuples(index=False):
                if value == "normal":
                    assert tid == "PATO:0000461"  # CELLxGENE's healthy donors
                    continue
                assert tid.startswith(prefix + ":"), (column, value, tid)
                term = maps[prefix].get(tid)
                assert term is not None and not term.get("deprecated"), (value, tid)
                assert names_term(term, value), (value, tid, term["label"])
                seen += 1
    assert seen > 40


def test_the_embedded_subsets_are_the_catalogue_terms_and_their_ancestors(maps, synth_obs):
    _, frames = synth_obs
    used = {tid for obs in frames for c in PAIRS for tid in obs[c + "_ontology_term_id"]}
    for prefix, stem in MAPS.items():
        with gzip.open(helpers.REPO / "data" / "ontology" / (stem + ".subset.json.gz")) as f:
            subset = json.load(f)
        full = maps[prefix]
        mine = {t for t in used if t.startswith(prefix + ":")}
        closure = set(mine)
        for t in mine:
            closure.update(full[t]["ancestors"])
        # The catalogue holds more than five datasets draw: the subset covers them all.
        assert closure <= set(subset), sorted(closure - set(subset))[:5]
        for t, entry in subset.items():
            assert entry["label"] == full[t]["label"]
            assert entry["ancestors"] == full[t]["ancestors"]
            closed = set(entry["ancestors"]) <= set(subset)
            assert closed, (t, sorted(set(entry["ancestors"]) - set(subset))[:3])


def test_a_build_with_the_subsets_binds_the_pairs_by_id(synth_obs):
    d, _ = synth_obs
    store = d / "store.h5ad"
    args = [str(helpers.cellcube_path()), "build", "-o", str(store)]
    for stem in MAPS.values():
        args += ["--ontology", str(helpers.REPO / "data" / "ontology" / (stem + ".subset.json.gz"))]
    proc = run_ok(args + [str(p) for p in sorted(d.glob("synth_*.h5ad"))])
    for column, prefix in PAIRS.items():
        line = next(ln for ln in proc.stderr.splitlines() if ln.startswith(f"column '{column}'"))
        assert f"{prefix} v20" in line and "by id" in line, line
    info = json.loads(run_ok([str(helpers.cellcube_path()), "info", str(store), "--json"]).stdout)
    bound = {c["column"]: c["ontology"] for c in info["ontology"]["columns"]}
    assert bound == PAIRS
