#!/usr/bin/env python3
"""Differential expression latency (issue 12) on a store, and the user's alternative.

For each scenario, `cellcube-bench-query --de-compare ...` times RunDe in process
over every gene: the first run (which checks the entries of every gene it reads, docs/SCALING.md) and the p50 of the next runs. For the one-dataset scenario, the same answer
computed from the dataset's cells with numpy/scipy: anndata reads the file, the store's
transform (cp10k_log1p) is applied, each (donor, side)'s mean per gene is an indicator
-matrix product, and scipy.stats.ttest_rel runs over every gene at once.

usage: /usr/bin/python3 bench/de_bench.py STORE [--dataset NAME=PATH] [--runs N] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.environ.get("CELLCUBE_BUILD", os.path.join(os.path.dirname(HERE), "build"))
BENCH = os.path.join(BUILD, "cellcube-bench-query")

GOALS = {"one dataset": 30, "tissue": 150, "disease": 300}
MARKERS_GOAL_MS = 300


def scenarios(dataset):
    return [
        ("one dataset", f"B cell against the rest, dataset {dataset}",
         ["--datasets", dataset, "--de-compare", "cell_type", "--de-group1", "B cell"]),
        ("tissue", "B cell against the rest within tissue blood, atlas-wide",
         ["--where", "tissue=blood", "--de-compare", "cell_type", "--de-group1", "B cell"]),
        ("disease", "colorectal cancer against normal within B cells, atlas-wide",
         ["--where", "cell_type=B cell", "--de-compare", "disease", "--de-group1", "colorectal cancer",
          "--de-group2", "normal"]),
    ]


def markers_p50(store, dataset, runs):
    """Markers of every cell type of one dataset through the Python module, in process:
    the first call (entry checks included) and the p50 of the next."""
    sys.path.insert(0, os.path.join(BUILD, "python"))
    import cellcube

    s = cellcube.open(store)
    times, n = [], 0
    for _ in range(runs + 1):
        t0 = time.perf_counter()
        n = len(s.markers(datasets=[dataset]))
        times.append(time.perf_counter() - t0)
    rest = sorted(times[1:])
    return times[0], rest[len(rest) // 2], n


def run_bench(store, args, runs):
    p = subprocess.run([BENCH, store, "--iterations", str(runs), *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(p.stderr.strip())
    return json.loads(p.stdout)


def numpy_scipy(path):
    """The one-dataset answer from the cells: B cell against the rest, paired by donor."""
    import anndata
    import numpy as np
    import scipy.sparse as sp
    import scipy.stats as st

    t0 = time.perf_counter()
    a = anndata.read_h5ad(path)
    x = sp.csr_matrix(a.X, dtype=np.float64)
    totals = np.asarray(x.sum(axis=1)).ravel()
    scale = np.divide(1e4, totals, out=np.zeros_like(totals), where=totals > 0)
    x = sp.diags(scale) @ x
    x.data = np.log1p(x.data)
    side = (a.obs["cell_type"].astype(str) == "B cell").to_numpy()
    donor = a.obs["donor"].astype(str).to_numpy()
    means = {}
    for s in (True, False):
        for d in np.unique(donor):
            m = (side == s) & (donor == d)
            if m.sum() >= 10:
                means[(s, d)] = np.asarray(x[m].mean(axis=0)).ravel()
    pairs = sorted({d for (s, d) in means if (not s, d) in means and s})
    x1 = np.array([means[(True, d)] for d in pairs])
    x2 = np.array([means[(False, d)] for d in pairs])
    with np.errstate(all="ignore"):
        r = st.ttest_rel(x1, x2, axis=0)
    return time.perf_counter() - t0, len(pairs), int(np.isfinite(r.pvalue).sum())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store")
    ap.add_argument("--dataset", default="s1_01=/work/atlas/inputs-d75-c5000-g20000/s1/synth_01.h5ad",
                    help="NAME=PATH of the one-dataset scenario's dataset and its .h5ad")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out")
    args = ap.parse_args()
    name, _, path = args.dataset.partition("=")
    lines = ["| comparison | test | genes tested | first run | p50 of the next | goal (p50) |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for key, label, extra in scenarios(name):
        r = run_bench(args.store, extra, args.runs)
        p50 = r["run"]["p50_us"] / 1000
        goal = GOALS[key]
        lines.append(f"| {label} | {r['test']} | {r['rows']:,} | {r['first_s']:.2f} s | {p50:.1f} ms | "
                     f"≤ {goal} ms: {'met' if p50 <= goal else '**not met**'} |")
    first, p50, n = markers_p50(args.store, name, args.runs)
    lines.append(f"| markers of every cell type, dataset {name} (Python, {n} rows) | auto | | {first:.2f} s | "
                 f"{p50 * 1000:.1f} ms | ≤ {MARKERS_GOAL_MS} ms: "
                 f"{'met' if p50 * 1000 <= MARKERS_GOAL_MS else '**not met**'} |")
    text = "\n".join(lines)
    if path and os.path.exists(path):
        secs, pairs, tested = numpy_scipy(path)
        r = run_bench(args.store, scenarios(name)[0][2], args.runs)
        text += (f"\n\nThe one-dataset answer from the cells with anndata + numpy/scipy (read, cp10k_log1p, "
                 f"donor means, ttest_rel over {tested:,} genes, {pairs} donor pairs): {secs:.2f} s, "
                 f"{secs * 1000 / (r['run']['p50_us'] / 1000):.0f}× cellcube's p50.")
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
