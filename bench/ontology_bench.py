"""What ontologies cost (docs/ONTOLOGY.md; issue 22's speed goals), on the seed's shape.

usage: /usr/bin/python3 bench/ontology_bench.py [--out FILE.md] [--iterations N]

1. Seed-shaped inputs (bench/build_bench.py: 10 datasets, 8,100 groups, 400 genes) whose
   30 cell types are real Cell Ontology labels: the 30 live CL terms with the most
   ancestors under "leukocyte" (CL:0000738), so the tree is deep (ids ascending on ties).
2. `cellcube build` of them without and with `--ontology CL` (the real map, zstd JSON),
   alternating, 3 runs each: the build's extra time is the ontology's.
3. `cellcube-bench-query` on each store: the open (median of 5 processes) and the
   standard dot plot (20 genes by cell_type, one dataset, one where) plain and with
   `--rollup cell_type`, p50 of N runs; the ratio is the rolled-up plot's cost.
Prints a markdown report (also to --out).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import zstandard

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from build_bench import machine, write_seed_shape  # noqa: E402

BUILD = os.environ.get("CELLCUBE_BUILD", os.path.join(ROOT, "build"))
CELLCUBE = os.path.join(BUILD, "cellcube")
BENCH_QUERY = os.path.join(BUILD, "cellcube-bench-query")
CL = os.path.join(ROOT, "..", "shared", "ontology", "CL-ontology-v2026-03-26.json.zst")


def cl_terms():
    with open(CL, "rb") as f:
        return json.load(io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f),
                                          encoding="utf-8"))


def deep_leukocytes(terms, n=30):
    under = [(-len(t["ancestors"]), tid, t["label"]) for tid, t in terms.items()
             if not t.get("deprecated") and "CL:0000738" in t["ancestors"]]
    under.sort()
    return [label for _, _, label in under[:n]]


def timed(cmd):
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def bench_query(store, iterations, rollup):
    cmd = [BENCH_QUERY, store, "--iterations", str(iterations), "--no-csv"]
    if rollup:
        cmd += ["--rollup", "cell_type"]
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out")
    ap.add_argument("--iterations", type=int, default=5000)
    args = ap.parse_args()
    terms = cl_terms()
    names = deep_leukocytes(terms)
    lines = [f"Measured by `bench/ontology_bench.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
             f"{machine()}, load average {os.getloadavg()[0]:.1f}.", ""]
    with tempfile.TemporaryDirectory() as d:
        paths = write_seed_shape(d, type_names=names)
        plain, onto = os.path.join(d, "plain.h5ad"), os.path.join(d, "onto.h5ad")
        base = [CELLCUBE, "build", "--quiet", "--groupby", "stage,sex,condition"]
        builds = {"plain": [], "onto": []}
        for _ in range(3):
            builds["plain"].append(timed(base + ["-o", plain] + paths))
            builds["onto"].append(timed(base + ["-o", onto, "--ontology", CL] + paths))
        opens = {k: statistics.median(bench_query(s, 10, False)["open_s"] for _ in range(5))
                 for k, s in (("plain", plain), ("onto", onto))}
        flat = bench_query(onto, args.iterations, False)["queries"][0]
        rolled = bench_query(onto, args.iterations, True)["queries"][0]
    b_plain, b_onto = statistics.median(builds["plain"]), statistics.median(builds["onto"])
    lines += [
        "| figure | without `--ontology` | with `--ontology` (CL) | difference |",
        "| --- | ---: | ---: | ---: |",
        f"| build, 10 datasets (median of 3) | {b_plain:.2f} s | {b_onto:.2f} s | {b_onto - b_plain:+.2f} s |",
        f"| open, in process (median of 5) | {opens['plain'] * 1e3:.1f} ms | {opens['onto'] * 1e3:.1f} ms | "
        f"{(opens['onto'] - opens['plain']) * 1e3:+.1f} ms |",
        "",
        "| dot plot (20 genes by cell_type, one dataset, one where) | rows | p50 | p99 |",
        "| --- | ---: | ---: | ---: |",
        f"| plain | {flat['rows']} | {flat['run']['p50_us']:.1f} µs | {flat['run']['p99_us']:.1f} µs |",
        f"| `--rollup cell_type` | {rolled['rows']} | {rolled['run']['p50_us']:.1f} µs | {rolled['run']['p99_us']:.1f} µs |",
        "",
        f"Rolled-up / plain p50: **{rolled['run']['p50_us'] / flat['run']['p50_us']:.2f}×** "
        f"(goal ≤ 2×). Cell types: {', '.join(names[:5])}, … (30 CL labels).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
