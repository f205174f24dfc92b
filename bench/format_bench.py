#!/usr/bin/env python3
"""Store format 1 beside format 2, in one run (issue 11).

For each input set, the store cellcube 0.2 wrote (format 1: int32 group + uint32 nnz
+ float64 sum + float64 sumsq, every entry checked at open) and the store this
cellcube writes (format 2: int32 group + uint16 nnz + float64 sum + float32 m2, entries
checked per gene when read), built from the same inputs with the same options:

- store size and bytes per stored entry (the whole file);
- in-process open (`cellcube-bench-query`'s open_s, best of 3) and the dot plot's p50;
- a `cellcube query` process: wall time and peak RSS (best of 3);
- and this cellcube reading the format-1 store (formats 1 and 2 are both read).

The format-1 binaries are built from --old-commit (default: the last commit that
wrote format 1) in a git worktree under the build directory, once.

Input sets: the seed's shape (bench/build_bench.py's write_seed_shape: 10 datasets,
30 cell types x 27 combinations, 400 genes, every entry stored), and --mid: the first
N .h5ad files of a folder (default: 75 synth datasets of 5,000 cells x 20,000 genes,
made with `cellcube synth` when absent), grouped down to the donor.

usage: /usr/bin/python3 bench/format_bench.py [--mid DIR] [--mid-datasets N] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.environ.get("CELLCUBE_BUILD", os.path.join(ROOT, "build"))
sys.path.insert(0, HERE)

import build_bench  # noqa: E402  (write_seed_shape)

OLD_COMMIT = "2f420a0"  # issue 10's last commit: format 1
GROUPBY_MID = "tissue,disease,cancer_stage,sex,donor"


def run(cmd, **kw):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))[:300]} failed: {p.stderr[-800:]}")
    return p


def old_binaries(commit):
    """cellcube and cellcube-bench-query as of `commit`, built once."""
    src = os.path.join(BUILD, "format1-src")
    out = os.path.join(BUILD, "format1-build")
    exe, bench = os.path.join(out, "cellcube"), os.path.join(out, "cellcube-bench-query")
    if os.access(exe, os.X_OK) and os.access(bench, os.X_OK):
        return exe, bench
    if not os.path.isdir(src):
        run(["git", "-C", ROOT, "worktree", "add", "--detach", src, commit])
    dist = os.path.join(src, "web", "dist")
    if not os.path.exists(dist):  # the page is not measured: reuse this tree's assets
        os.symlink(os.path.join(ROOT, "web", "dist"), dist)
    print(f"building format-1 cellcube ({commit}) in {out} ...", file=sys.stderr)
    run(["cmake", "-S", src, "-B", out, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release"])
    run(["cmake", "--build", out, "--target", "cellcube", "cellcube-bench-query"])
    return exe, bench


def time_v(cmd):
    p = subprocess.run(["/usr/bin/time", "-v"] + [str(c) for c in cmd], capture_output=True,
                       text=True)
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-600:])
    wall = rss = None
    for line in p.stderr.splitlines():
        line = line.strip()
        if line.startswith("Elapsed (wall clock) time"):
            t = line.split(": ", 1)[1].split(":")
            wall = sum(float(x) * 60 ** i for i, x in enumerate(reversed(t)))
        elif line.startswith("Maximum resident set size"):
            rss = int(line.split(": ", 1)[1]) * 1024
    return wall, rss, p.stdout


def entries(store):
    import h5py

    with h5py.File(store, "r") as f:
        return int(f["layers/nnz/indices"].shape[0]), str(f["uns/cellcube/format_version"][()].decode()
                                                          if isinstance(f["uns/cellcube/format_version"][()], bytes)
                                                          else f["uns/cellcube/format_version"][()])


def dotplot_genes(store, n=20):
    """The n genes with the most entries (the heaviest dot plot)."""
    import h5py
    import numpy as np

    with h5py.File(store, "r") as f:
        ptr = f["layers/nnz/indptr"][:]
        ids = f["var/_index"][:]
    top = np.argsort(-np.diff(ptr), kind="stable")[:n]
    return [x.decode() if isinstance(x, bytes) else str(x) for x in ids[np.sort(top)]]


def measure(label, exe, bench, store, genes):
    n_entries, version = entries(store)
    size = os.path.getsize(store)
    opens, p50s = [], []
    for _ in range(3):
        out = json.loads(run([bench, store, "--iterations", 300, "--no-csv", "--genes",
                              ",".join(genes), "--by", "cell_type"]).stdout)
        opens.append(out["open_s"])
        p50s.append(out["queries"][0]["run"]["p50_us"] if "run" in out["queries"][0]
                    else out["queries"][0]["run_csv"]["p50_us"])
    walls, rsss = [], []
    for _ in range(3):
        wall, rss, _ = time_v([exe, "query", store, "--genes", ",".join(genes), "--by",
                               "cell_type", "--format", "csv"])
        walls.append(wall)
        rsss.append(rss)
    return {"label": label, "version": version, "size": size, "entries": n_entries,
            "bpe": size / n_entries, "open_s": min(opens), "p50_us": min(p50s),
            "proc_wall": min(walls), "proc_rss": max(rsss)}


def build(exe, store, inputs, groupby):
    t0 = time.perf_counter()
    run([exe, "build", "-o", store, "--quiet", "--memory-limit", "off"]
        + (["--groupby", groupby] if groupby is not None else []) + inputs)
    return time.perf_counter() - t0


def mid_inputs(d, n):
    os.makedirs(d, exist_ok=True)
    files = sorted(f for f in os.listdir(d) if f.endswith(".h5ad"))
    if len(files) < n:
        run([os.path.join(BUILD, "cellcube"), "synth", "--datasets", n, "--cells", 5000,
             "--genes", 20000, "--seed", 1, "-o", d])
        files = sorted(f for f in os.listdir(d) if f.endswith(".h5ad"))
    return [os.path.join(d, f) for f in files[:n]]


def fmt_bytes(n):
    for unit, k in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= k:
            return f"{n / k:.2f} {unit}"
    return f"{n} B"


def table(title, rows, build_s):
    out = [f"### {title}", "",
           "| store | format | size | entries | bytes / entry | build | open (in-process) | "
           "dot plot p50 | `cellcube query` process | its peak RSS |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        out.append(f"| {r['label']} | {r['version']} | {fmt_bytes(r['size'])} | {r['entries']:,} | "
                   f"{r['bpe']:.1f} | {build_s.get(r['label'], '–')} | {r['open_s'] * 1e3:.1f} ms | "
                   f"{r['p50_us']:.0f} µs | {r['proc_wall']:.2f} s | {r['proc_rss'] / 2**20:.0f} MB |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old-commit", default=OLD_COMMIT)
    ap.add_argument("--mid", help="folder of .h5ad inputs for the larger store "
                                  "(default: synth datasets under the build directory)")
    ap.add_argument("--mid-datasets", type=int, default=75)
    ap.add_argument("--workdir", help="where stores go (default: a temporary folder)")
    ap.add_argument("--out", help="also write the Markdown here")
    args = ap.parse_args()

    new_exe, new_bench = os.path.join(BUILD, "cellcube"), os.path.join(BUILD, "cellcube-bench-query")
    old_exe, old_bench = old_binaries(args.old_commit)
    work = args.workdir or tempfile.mkdtemp(prefix="cellcube-format-bench-")
    os.makedirs(work, exist_ok=True)
    sections = []
    try:
        seed_dir = os.path.join(work, "seed-inputs")
        os.makedirs(seed_dir, exist_ok=True)
        seed_inputs = build_bench.write_seed_shape(seed_dir)
        mid = mid_inputs(args.mid or os.path.join(BUILD, "format-bench-inputs"), args.mid_datasets)
        for title, inputs, groupby in (
                ("The seed's shape: 10 datasets, 8,100 groups, 400 genes", seed_inputs, None),
                (f"{len(mid)} synth datasets × 5,000 cells × 20,000 genes, groups down to the donor",
                 mid, GROUPBY_MID)):
            old_store, new_store = os.path.join(work, "format1.h5ad"), os.path.join(work, "format2.h5ad")
            build_s = {}
            build_s["format 1, cellcube 0.2"] = f"{build(old_exe, old_store, inputs, groupby):.1f} s"
            build_s["format 2"] = f"{build(new_exe, new_store, inputs, groupby):.1f} s"
            genes = dotplot_genes(new_store)
            rows = [measure("format 1, cellcube 0.2", old_exe, old_bench, old_store, genes),
                    measure("format 1, this cellcube", new_exe, new_bench, old_store, genes),
                    measure("format 2", new_exe, new_bench, new_store, genes)]
            sections.append(table(title, rows, build_s))
            print(sections[-1] + "\n", file=sys.stderr)
            os.remove(old_store)
            os.remove(new_store)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    head = (f"Measured by `bench/format_bench.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
            f"{os.cpu_count()} cores, {platform.platform()}, load average {os.getloadavg()[0]:.1f}. "
            f"Format-1 binaries built from commit {args.old_commit}. Dot plot: the 20 genes with the "
            f"most entries, by cell_type; open and p50 from `cellcube-bench-query` (best of 3), "
            f"the process with `/usr/bin/time -v` (best of 3 wall, largest RSS).")
    text = head + "\n\n" + "\n\n".join(sections)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
