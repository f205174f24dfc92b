#!/usr/bin/env python3
"""Distributions from the store's histograms, timed (docs/BENCHMARKS.md, "Histograms").

- The standard dot plots (cellcube-bench-query: one dataset, and atlas-wide by tissue x
  cell_type) with the mean (n_cells, frac, mean) and with the median (n_cells, frac,
  median): p50 of each and their ratio.
- `de --test wilcoxon` of one dataset (B cell against the rest, every gene) in process:
  the first run and the p50 of the next; markers of every cell type of that dataset by
  Wilcoxon through the Python module, first and p50.
- The same one-dataset test from the cells: anndata reads the file, cp10k_log1p, and
  scipy.stats.mannwhitneyu(axis=0) over every gene on the binned values (the test the
  store answers), in chunks of genes: its time and the ratio to cellcube's p50.

usage: /usr/bin/python3 bench/wilcoxon_bench.py STORE [--dataset NAME=PATH] [--runs N]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.environ.get("CELLCUBE_BUILD", os.path.join(os.path.dirname(HERE), "build"))
BENCH = os.path.join(BUILD, "cellcube-bench-query")


def bench(store, args, iterations):
    p = subprocess.run([BENCH, store, "--iterations", str(iterations), *args], capture_output=True,
                       text=True)
    if p.returncode != 0:
        raise RuntimeError(p.stderr.strip())
    return json.loads(p.stdout)


def dot_plots(store, iterations):
    mean = bench(store, [], iterations)["queries"]
    median = bench(store, ["--metrics", "n_cells,frac,median"], iterations)["queries"]
    return [(a["name"], a["run"]["p50_us"], b["run"]["p50_us"]) for a, b in zip(mean, median)]


def markers(store, dataset, runs):
    sys.path.insert(0, os.path.join(BUILD, "python"))
    import warnings

    import cellcube

    warnings.simplefilter("ignore")
    s = cellcube.open(store)
    times, n = [], 0
    for _ in range(runs + 1):
        t0 = time.perf_counter()
        n = len(s.markers(datasets=[dataset], test="wilcoxon"))
        times.append(time.perf_counter() - t0)
    rest = sorted(times[1:])
    return times[0], rest[len(rest) // 2], n


def scipy_from_cells(path, hist_max=math.log(10001), chunk=2000):
    import anndata
    import numpy as np
    import scipy.sparse as sp
    import scipy.stats as st

    t0 = time.perf_counter()
    a = anndata.read_h5ad(path)
    x = sp.csr_matrix(a.X, dtype=np.float64)
    totals = np.asarray(x.sum(axis=1)).ravel()
    scale = np.divide(1e4, totals, out=np.zeros_like(totals), where=totals > 0)
    x = (sp.diags(scale) @ x).tocsc()
    x.data = np.log1p(x.data)
    side = (a.obs["cell_type"].astype(str) == "B cell").to_numpy()
    edges = np.array([i * (hist_max / 64) for i in range(64)] + [hist_max])
    tested = 0
    for lo in range(0, x.shape[1], chunk):
        block = x[:, lo:lo + chunk].toarray()
        binned = np.where(block > 0, np.clip(np.searchsorted(edges, block, "left") - 1, 0, 63), -1)
        with np.errstate(all="ignore"):
            r = st.mannwhitneyu(binned[side], binned[~side], axis=0, alternative="two-sided",
                                use_continuity=True, method="asymptotic")
        tested += int(np.isfinite(r.pvalue).sum())
    return time.perf_counter() - t0, tested


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store")
    ap.add_argument("--dataset", default="s1_01=/work/atlas/inputs-d75-c5000-g20000/s1/synth_01.h5ad")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=300)
    args = ap.parse_args()
    name, _, path = args.dataset.partition("=")
    lines = ["| figure | mean | median | ratio |", "| --- | ---: | ---: | ---: |"]
    for q, mean, median in dot_plots(args.store, args.iterations):
        lines.append(f"| dot plot `{q}` p50 | {mean:.0f} µs | {median:.0f} µs | {median / mean:.2f}× |")
    r = bench(args.store, ["--datasets", name, "--de-compare", "cell_type", "--de-group1", "B cell",
                           "--de-test", "wilcoxon"], args.runs)
    p50 = r["run"]["p50_us"] / 1000
    lines += ["", "| Wilcoxon | first run | p50 | rows |", "| --- | ---: | ---: | ---: |",
              f"| one dataset ({name}), B cell against the rest, every gene | {r['first_s']:.3f} s | "
              f"{p50:.1f} ms | {r['rows']:,} |"]
    first, m50, n = markers(args.store, name, args.runs)
    lines.append(f"| markers of every cell type of {name} (Python, DataFrame included) | {first:.3f} s | "
                 f"{m50 * 1000:.1f} ms | {n:,} |")
    if path and os.path.exists(path):
        secs, tested = scipy_from_cells(path)
        lines.append(f"\nThe one-dataset test from the cells (anndata, cp10k_log1p, binned, "
                     f"scipy.stats.mannwhitneyu over {tested:,} genes): {secs:.2f} s, "
                     f"{secs * 1000 / p50:.0f}× cellcube's p50.")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
