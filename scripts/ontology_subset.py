#!/usr/bin/python3
"""Writes the demo's term maps: the catalogue's terms and all their ancestors, cut from
the Cell Ontology, UBERON and MONDO term maps that cellxgene-ontology-guide publishes.

usage: /usr/bin/python3 scripts/ontology_subset.py [SOURCE_DIR] [OUT_DIR]
  SOURCE_DIR  the full maps (default ../shared/ontology beside the project)
  OUT_DIR     where the subsets go (default data/ontology)

The terms are those of `synth::TermIds()` in src/synth/catalog.cc (the one list of the
catalogue's ids), read from that file, plus every ancestor each one's map lists. Each
subset keeps the format (label, ancestors with distances, synonyms, deprecated) without
descriptions, so `cellcube build --ontology` reads it like the full map; its name keeps
the release (CL-ontology-v2026-03-26.subset.json.gz gives v2026-03-26). The bytes are
deterministic: sorted keys, gzip without a timestamp.
"""

import gzip
import io
import json
import os
import re
import sys

import zstandard

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = {"CL": "CL-ontology-v2026-03-26", "UBERON": "UBERON-ontology-v2026-04-01",
           "MONDO": "MONDO-ontology-v2026-05-05"}
KEPT = ("label", "ancestors", "synonyms", "deprecated", "replaced_by")


def catalogue_ids():
    text = open(os.path.join(ROOT, "src", "synth", "catalog.cc"), encoding="utf-8").read()
    table = text[text.index("TermIds() {"):text.index("return kIds;")]
    return [tid for _, tid in re.findall(r'\{"([^"]+)", "([A-Z]+:[0-9]+)"\}', table)]


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared", "ontology")
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "data", "ontology")
    ids = catalogue_ids()
    os.makedirs(out, exist_ok=True)
    for prefix, stem in SOURCES.items():
        with open(os.path.join(src, stem + ".json.zst"), "rb") as f:
            terms = json.load(io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f),
                                               encoding="utf-8"))
        wanted = set()
        for tid in ids:
            if tid.split(":")[0] != prefix:
                continue
            if tid not in terms or terms[tid].get("deprecated"):
                sys.exit(f"{tid} is not a live term of {stem}")
            wanted.add(tid)
            wanted.update(terms[tid]["ancestors"])
        subset = {t: {k: terms[t][k] for k in KEPT if k in terms[t]} for t in sorted(wanted)}
        data = json.dumps(subset, sort_keys=True, separators=(",", ":")).encode()
        path = os.path.join(out, stem + ".subset.json.gz")
        with open(path, "wb") as f:
            with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=9) as g:
                g.write(data)
        print(f"{path}: {len(subset)} terms, {os.path.getsize(path):,} bytes")


if __name__ == "__main__":
    main()
