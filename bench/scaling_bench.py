#!/usr/bin/env python3
"""Scaling figures for docs/SCALING.md (issue 14): the Snakemake workflow at several
sizes of one pool of inputs, and what its stores cost to open, query and serve.

For each size N (the first N input files in name order):
  1. shards: `snakemake --until shard --cores 2 --config threads=2` builds each missing
     shard, one at a time on both cores; shards already built for a smaller size are
     hard-linked in, so each input is built once over the whole run;
  2. merges: `snakemake --cores 1` runs the tree of merges, one merge at a time;
  3. checks: a flat `cellcube merge` of all N shards, and (N <= --direct-max) a direct
     `cellcube build` of the N files, each timed and compared byte for byte with the
     workflow's store;
  4. the store: size, groups, entries; open, the standard dot plot and atlas queries and
     two differential expressions (`cellcube-bench-query`), warm; `info`, a dot plot and
     a DE from a cold page cache (the store's pages dropped with posix_fadvise) with the
     bytes each left in the page cache (fincore); `cellcube serve`'s resident memory.
At the largest size it then removes one input from the middle of the name order and puts
it back, timing the two incremental runs.

Every cellcube command the workflow runs goes through a wrapper that times it (wall,
CPU, peak RSS of the process tree from wait4) into a log, so the figures are the
commands', not Snakemake's.

usage: CELLCUBE_BUILD=DIR /usr/bin/python3 bench/scaling_bench.py [--work DIR]
           [--sizes 10,50,300] [--inputs DIR ...] [--fanin 8] [--direct-max 50]
           [--out results.json]
"""
from __future__ import annotations

import argparse
import filecmp
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BUILD = Path(os.environ.get("CELLCUBE_BUILD", REPO / "build"))
CELLCUBE = BUILD / "cellcube"
BENCH = BUILD / "cellcube-bench-query"
SNAKEFILE = REPO / "workflow" / "Snakefile"
DEFAULT_INPUTS = [f"/work/atlas/inputs-d75-c5000-g20000/s{i}" for i in range(1, 5)]
GROUPBY = "tissue,disease,cancer_stage,sex,donor"

WRAPPER = """#!/usr/bin/python3
# Runs cellcube and appends its wall time, CPU and peak RSS (wait4: the process and the
# children it waited for) to a log, one JSON line per command.
import fcntl, json, os, sys, time
t0 = time.monotonic()
pid = os.fork()
if pid == 0:
    os.execv({real!r}, [{real!r}] + sys.argv[1:])
_, status, ru = os.wait4(pid, 0)
wall = time.monotonic() - t0
code = os.waitstatus_to_exitcode(status)
with open({log!r}, "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    f.write(json.dumps({{"argv": sys.argv[1:], "wall_s": wall, "user_s": ru.ru_utime,
                        "sys_s": ru.ru_stime, "maxrss_mb": ru.ru_maxrss / 1024,
                        "code": code, "end": time.time()}}) + "\\n")
sys.exit(code)
"""


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(argv, cwd=None, check=True):
    p = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p


def timed(argv, cwd=None):
    """(wall seconds, peak RSS MB of the tree) of a command that must succeed."""
    t0 = time.monotonic()
    proc = subprocess.Popen([str(a) for a in argv], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    err = proc.stderr.read().decode(errors="replace")
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} failed:\n{err[-3000:]}")
    return wall, ru.ru_maxrss / 1024


def run_json(argv):
    return json.loads(run(argv).stdout)


def drop_cache(path):
    """Drops the file's pages from the page cache (only this file's)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def resident_bytes(path):
    out = run(["fincore", "--bytes", "--noheadings", "--output", "RES", path]).stdout.split()
    return int(out[0])


def file_values(path):
    """(cells, stored values) of an .h5ad's X, read from its metadata."""
    import h5py

    with h5py.File(path, "r") as f:
        x = f["X"]
        if isinstance(x, h5py.Dataset):
            return x.shape[0], x.shape[0] * x.shape[1]
        return x["indptr"].shape[0] - 1, x["data"].shape[0]


def store_meta(path):
    info = run_json([CELLCUBE, "info", path, "--json"])
    return info


class Commands:
    """The wrapper's log: the commands the workflow ran."""

    def __init__(self, path):
        self.path = path
        self.seen = 0

    def new(self):
        if not self.path.exists():
            return []
        lines = self.path.read_text().splitlines()
        out = [json.loads(x) for x in lines[self.seen:]]
        self.seen = len(lines)
        return out


def output_of(argv):
    return argv[argv.index("-o") + 1]


def snakemake(cwd, config, cores, extra=()):
    argv = ["snakemake", "-s", SNAKEFILE, "--cores", str(cores), "--quiet", *extra, "--config",
            *[f"{k}={v}" for k, v in config.items()]]
    t0 = time.monotonic()
    p = run(argv, cwd=cwd)
    return time.monotonic() - t0, p.stdout + p.stderr


def summarize(values):
    values = sorted(values)
    if not values:
        return {}
    return {"n": len(values), "min": values[0], "median": statistics.median(values),
            "p90": values[min(len(values) - 1, int(0.9 * len(values)))], "max": values[-1],
            "sum": sum(values)}


def serve_memory(store, genes, de_args):
    """Resident memory of `cellcube serve` after it answered a dot plot and a DE."""
    proc = subprocess.Popen([CELLCUBE, "serve", store, "--port", "0", "--threads", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = None
        t0 = time.monotonic()
        for line in proc.stdout:
            m = re.search(r"http://[^:]+:(\d+)/", line)
            if m:
                port = int(m.group(1))
                break
        start_s = time.monotonic() - t0

        def get(path, params):
            url = f"http://127.0.0.1:{port}{path}?" + urllib.parse.urlencode(params, doseq=True)
            with urllib.request.urlopen(url, timeout=600) as r:
                return r.read()

        status = lambda: dict(  # noqa: E731
            (k, int(v.split()[0]) / 1024) for k, v in
            (ln.split(":", 1) for ln in Path(f"/proc/{proc.pid}/status").read_text().splitlines())
            if k in ("VmRSS", "RssAnon", "RssFile"))
        at_start = status()
        get("/api/v1/query", {"genes": ",".join(genes), "by": "cell_type"})
        after_dot = status()
        get("/api/v1/de", de_args)
        after_de = status()
        return {"ready_s": start_s, "start": at_start, "after_dotplot": after_dot, "after_de": after_de}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def read_whole(path):
    """Reads the file once, so that the warm figures below start from a cached store."""
    with open(path, "rb") as f:
        while f.read(8 << 20):
            pass


def measure_store(store, first_dataset):
    m = store_meta(store)
    size = os.path.getsize(store)
    read_whole(store)
    r = run_json([BENCH, store, "--iterations", "300"])
    dot, atlas = r["queries"]
    genes = dot["query"]["genes"]
    de_all = ["--where", "tissue=blood", "--de-compare", "cell_type", "--de-group1", "B cell"]
    de_one = ["--datasets", first_dataset, "--de-compare", "cell_type", "--de-group1", "B cell"]
    de_all_r = run_json([BENCH, store, "--iterations", "9", *de_all])
    de_one_r = run_json([BENCH, store, "--iterations", "9", *de_one])
    opens = [run_json([BENCH, store, "--iterations", "1", "--genes", genes[0]])["open_s"] for _ in range(5)]

    cold = {}
    drop_cache(store)
    wall, rss = timed([CELLCUBE, "info", store])
    cold["info"] = {"wall_s": wall, "maxrss_mb": rss, "cached_bytes": resident_bytes(store)}
    drop_cache(store)
    wall, rss = timed([CELLCUBE, "query", store, "--genes", ",".join(genes), "--by", "cell_type",
                       "--format", "csv"])
    cold["dotplot"] = {"wall_s": wall, "maxrss_mb": rss, "cached_bytes": resident_bytes(store)}
    drop_cache(store)
    t0 = time.monotonic()
    de_cold = run_json([BENCH, store, "--iterations", "1", *de_all])
    cold["de_atlas"] = {"wall_s": time.monotonic() - t0, "open_s": de_cold["open_s"],
                        "first_s": de_cold["first_s"], "cached_bytes": resident_bytes(store)}
    drop_cache(store)
    de_one_cold = run_json([BENCH, store, "--iterations", "1", *de_one])
    cold["de_one_dataset"] = {"first_s": de_one_cold["first_s"], "cached_bytes": resident_bytes(store)}

    serve = serve_memory(store, genes, {"compare": "cell_type", "group1": "B cell", "where": "tissue:blood"})
    dot_where = next(((c, v[0]) for c, v in dot["query"]["where"].items()), None)
    touched = {
        "dotplot": pages_touched(store, genes, dot_where, dot["query"]["datasets"][0]),
        "atlas": pages_touched(store, genes),
        "de_one_dataset": pages_touched(store, None, dataset=first_dataset),
        "de_atlas": pages_touched(store, None, where=("tissue", "blood")),
    }
    return {
        "touched": touched,
        "bytes": size, "datasets": m.get("n_datasets", r["n_datasets"]), "groups": r["n_groups"],
        "genes": r["n_genes"], "entries": r["n_entries"], "cells": m.get("n_cells"),
        "open_s": {"median": statistics.median(opens), "min": min(opens)},
        "dotplot": {"rows": dot["rows"], "gene_entries": dot["gene_entries"], "p50_us": dot["run"]["p50_us"],
                    "p99_us": dot["run"]["p99_us"], "query": dot["query"]},
        "atlas": {"rows": atlas["rows"], "gene_entries": atlas["gene_entries"], "p50_us": atlas["run"]["p50_us"],
                  "p99_us": atlas["run"]["p99_us"]},
        "de_atlas": {"test": de_all_r["test"], "genes": de_all_r["rows"], "first_s": de_all_r["first_s"],
                     "p50_ms": de_all_r["run"]["p50_us"] / 1000},
        "de_one_dataset": {"dataset": first_dataset, "test": de_one_r["test"], "genes": de_one_r["rows"],
                           "first_s": de_one_r["first_s"], "p50_ms": de_one_r["run"]["p50_us"] / 1000},
        "cold": cold, "serve": serve,
    }


def pages_touched(store, gene_ids, where=None, dataset=None):
    """Bytes of the 4 KiB pages of each entry array that hold the entries a query reads:
    the entries of `gene_ids` (None: every gene) whose group passes the filter (`where`
    = (column, value), `dataset` = its name). Exact for the data arrays; the indices
    array also gets the galloping search's probes between runs, so it is a lower bound
    there. Independent of the device's readahead, which fincore's figures include."""
    import h5py
    import numpy as np

    with h5py.File(store, "r") as f:
        n_groups = f["obs/n_cells"].shape[0]
        keep = np.ones(n_groups, dtype=bool)
        for column, value in ([where] if where else []) + ([("dataset", dataset)] if dataset else []):
            cats = [c.decode() if isinstance(c, bytes) else str(c) for c in f[f"obs/{column}/categories"][:]]
            keep &= f[f"obs/{column}/codes"][:] == cats.index(value)
        indptr = f["layers/nnz/indptr"][:]
        arrays = {name: f[f"layers/{layer}"] for name, layer in
                  (("indices", "nnz/indices"), ("nnz", "nnz/data"), ("sum", "sum/data"), ("m2", "m2/data"))}
        if gene_ids is None:
            lo, hi = 0, int(indptr[-1])
            positions = np.arange(lo, hi, dtype=np.int64)
            groups = arrays["indices"][:]
        else:
            ids = [g.decode() for g in f["var/_index"][:]]
            where_of = {g: i for i, g in enumerate(ids)}
            ranges = [(int(indptr[where_of[g]]), int(indptr[where_of[g] + 1])) for g in gene_ids]
            positions = np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in ranges])
            groups = np.concatenate([arrays["indices"][a:b] for a, b in ranges])
        positions = positions[keep[groups]]
        del groups
        out = {"entries": int(positions.size)}
        for name, ds in arrays.items():
            offset, width = ds.id.get_offset(), ds.dtype.itemsize
            out[name] = int(np.unique((offset + positions * width) // 4096).size) * 4096
        # What these queries read: default metrics and the donor-level DE need no m2
        # (var/std and the cell-level test add the m2 pages).
        out["read"] = out["indices"] + out["nnz"] + out["sum"]
    return out


def jobs_summary(cmds, values_of):
    shards, merges = [], []
    for c in cmds:
        if c["code"] != 0:
            raise RuntimeError(f"a workflow command failed: {c}")
        out = output_of(c["argv"])
        if c["argv"][0] == "build":
            name = Path(out).stem
            cells, values = values_of[name]
            shards.append({"name": name, "source": c["argv"][-1], "wall_s": c["wall_s"], "cpu_s": c["user_s"] + c["sys_s"],
                           "maxrss_mb": c["maxrss_mb"], "values": values, "cells": cells,
                           "bytes": os.path.getsize(out)})
        elif c["argv"][0] == "merge":
            ins = c["argv"][c["argv"].index("-o") + 2:]
            level = "root" if "/merge/" not in out else Path(out).parent.name
            merges.append({"output": out, "level": level, "inputs": len(ins), "wall_s": c["wall_s"],
                           "maxrss_mb": c["maxrss_mb"], "cpu_s": c["user_s"] + c["sys_s"],
                           "bytes_out": os.path.getsize(out)})
    return shards, merges


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/work/scaling-work")
    ap.add_argument("--sizes", default="10,50,300")
    ap.add_argument("--inputs", nargs="+", default=DEFAULT_INPUTS)
    ap.add_argument("--fanin", type=int, default=8)
    ap.add_argument("--direct-max", type=int, default=50)
    ap.add_argument("--no-incremental", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--only-measure", action="store_true",
                    help="measure the stores an earlier run left (WORK/nN/atlas.h5ad) again, into --out's "
                         "'sizes'; nothing is built")
    args = ap.parse_args()

    for b in (CELLCUBE, BENCH):
        if not os.access(b, os.X_OK):
            sys.exit(f"scaling_bench: error: {b} is missing (set CELLCUBE_BUILD)")
    work = Path(args.work)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    bin_dir = work / "wrapped"
    bin_dir.mkdir(parents=True, exist_ok=True)
    cmd_log = bin_dir / "commands.jsonl"
    wrapper = bin_dir / "cellcube"
    wrapper.write_text(WRAPPER.format(real=str(CELLCUBE.resolve()), log=str(cmd_log)))
    wrapper.chmod(0o755)
    commands = Commands(cmd_log)
    commands.new()

    if args.only_measure:
        previous = json.loads(Path(args.out).read_text())
        previous["remeasured"] = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                  "load_at_start": os.getloadavg()[0]}
        for n in sizes:
            store = work / f"n{n}" / "atlas.h5ad"
            first = sorted(p.stem for p in (work / f"n{n}" / "inputs").glob("*.h5ad"))[0]
            log(f"measuring {store}")
            previous["sizes"][str(n)]["store"] = measure_store(store, first)
        previous["remeasured"]["load_at_end"] = os.getloadavg()[0]
        Path(args.out).write_text(json.dumps(previous, indent=1, default=str))
        print(report(previous))
        return

    # The pool: every input, named <folder>_<stem> so that names are unique.
    pool = {}
    for d in args.inputs:
        for f in sorted(Path(d).glob("*.h5ad")):
            pool[f"{Path(d).name}_{f.stem}"] = f
    names = sorted(pool)
    if len(names) < sizes[-1]:
        sys.exit(f"scaling_bench: error: {len(names)} inputs, fewer than the largest size {sizes[-1]}")
    values_of = {n: file_values(pool[n]) for n in names[: sizes[-1]]}
    shard_pool = work / "shard-pool"
    shard_pool.mkdir(exist_ok=True)
    # The path each pooled shard was built from, as its store records it ("source"): a
    # direct build given the same paths writes the same bytes.
    sources_file = shard_pool / "sources.json"
    source_of = json.loads(sources_file.read_text()) if sources_file.exists() else {}

    results = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"cores": os.cpu_count(), "platform": platform.platform(),
                    "load_at_start": os.getloadavg()[0],
                    "mem_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30},
        "commit": run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"]).stdout.strip(),
        "groupby": GROUPBY, "fanin": args.fanin, "sizes": {},
    }
    for n in sizes:
        log(f"size {n}")
        d = work / f"n{n}"
        if d.exists():
            shutil.rmtree(d)
        (d / "inputs").mkdir(parents=True)
        for name in names[:n]:
            (d / "inputs" / f"{name}.h5ad").symlink_to(pool[name])
        store = d / "atlas.h5ad"
        shard_dir = Path(str(store) + ".work") / "shards"
        shard_dir.mkdir(parents=True)
        for name in names[:n]:
            if (shard_pool / f"{name}.h5ad").exists():
                os.link(shard_pool / f"{name}.h5ad", shard_dir / f"{name}.h5ad")
        config = {"inputs": d / "inputs", "store": store, "cellcube": wrapper, "groupby": GROUPBY,
                  "fanin": args.fanin}
        shard_wall, _ = snakemake(d, {**config, "threads": 2}, 2, ["--until", "shard"])
        merge_wall, _ = snakemake(d, {**config, "threads": 2}, 1)
        shards, merges = jobs_summary(commands.new(), values_of)
        for x in shards:
            source_of[x["name"]] = x["source"]
        for name in names[:n]:
            if not (shard_pool / f"{name}.h5ad").exists():
                os.link(shard_dir / f"{name}.h5ad", shard_pool / f"{name}.h5ad")
        sources_file.write_text(json.dumps(source_of, indent=0))
        all_shards = [shard_dir / f"{name}.h5ad" for name in names[:n]]
        entry = {"snakemake_shards_wall_s": shard_wall, "snakemake_merges_wall_s": merge_wall,
                 "shards": shards, "merges": merges,
                 "shard_bytes": sum(os.path.getsize(p) for p in all_shards),
                 "input_values": sum(values_of[x][1] for x in names[:n]),
                 "input_cells": sum(values_of[x][0] for x in names[:n]),
                 "input_bytes": sum(os.path.getsize(pool[x]) for x in names[:n])}
        log(f"  workflow: shards {shard_wall:.1f} s ({len(shards)} built), merges {merge_wall:.1f} s "
            f"({len(merges)} merges)")

        flat = d / "flat.h5ad"
        wall, rss = timed([CELLCUBE, "merge", "--quiet", "-o", flat, *all_shards])
        entry["flat_merge"] = {"wall_s": wall, "maxrss_mb": rss, "identical": filecmp.cmp(flat, store, shallow=False)}
        flat.unlink()
        log(f"  flat merge {wall:.1f} s")
        if n <= args.direct_max:
            direct = d / "direct.h5ad"
            wall, rss = timed([CELLCUBE, "build", "--quiet", "--threads", "2", "--groupby", GROUPBY, "-o", direct,
                               *[source_of[x] for x in names[:n]]])
            entry["direct_build"] = {"wall_s": wall, "maxrss_mb": rss,
                                     "identical": filecmp.cmp(direct, store, shallow=False)}
            direct.unlink()
            log(f"  direct build {wall:.1f} s")
        entry["store"] = measure_store(store, names[0])
        log(f"  store {entry['store']['bytes'] / 1e9:.2f} GB, {entry['store']['groups']} groups")

        if n == sizes[-1] and not args.no_incremental:
            middle = names[n // 2]
            (d / "inputs" / f"{middle}.h5ad").unlink()
            wall, _ = snakemake(d, {**config, "threads": 2}, 2)
            removed = jobs_summary(commands.new(), values_of)
            (d / "inputs" / f"{middle}.h5ad").symlink_to(pool[middle])
            wall2, _ = snakemake(d, {**config, "threads": 2}, 2)
            added = jobs_summary(commands.new(), values_of)
            entry["incremental"] = {
                "file": middle,
                "remove": {"wall_s": wall, "shards": removed[0], "merges": removed[1]},
                "add": {"wall_s": wall2, "shards": added[0], "merges": added[1]},
            }
            log(f"  incremental: remove {wall:.1f} s, add {wall2:.1f} s")
        results["sizes"][str(n)] = entry
        # The merges below the root are kept for the incremental run only.
        if n != sizes[-1]:
            shutil.rmtree(Path(str(store) + ".work") / "merge", ignore_errors=True)
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=1, default=str))

    results["machine"]["load_at_end"] = os.getloadavg()[0]
    text = json.dumps(results, indent=1, default=str)
    if args.out:
        Path(args.out).write_text(text)
    print(report(results))


def report(results):
    """The headline figures as Markdown, from the results."""
    lines = [f"Measured {results['when']}, commit {results['commit']}, {results['machine']['cores']} cores, "
             f"load {results['machine']['load_at_start']:.1f} → {results['machine'].get('load_at_end', 0):.1f}.", "",
             "| datasets | cells | input values | shards: s per M values (median) | merges | merge MB/s (median) "
             "| flat merge | store | groups | groups/dataset | bytes/group | open | dot plot p50 | atlas p50 "
             "| DE atlas p50 (first) |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for n, e in results["sizes"].items():
        s = e["store"]
        per_m = [x["wall_s"] / (x["values"] / 1e6) for x in e["shards"]]
        mbps = [x["bytes_out"] / 1e6 / x["wall_s"] for x in e["merges"]]
        lines.append(
            f"| {n} | {e['input_cells']:,} | {e['input_values'] / 1e6:,.0f} M "
            f"| {statistics.median(per_m) if per_m else float('nan'):.3f} "
            f"| {len(e['merges'])} ({sum(x['wall_s'] for x in e['merges']):.1f} s) "
            f"| {statistics.median(mbps) if mbps else float('nan'):.0f} | {e['flat_merge']['wall_s']:.1f} s "
            f"| {s['bytes'] / 1e9:.2f} GB | {s['groups']:,} | {s['groups'] / s['datasets']:.0f} "
            f"| {s['bytes'] / s['groups'] / 1e3:.0f} KB | {s['open_s']['median'] * 1e3:.1f} ms "
            f"| {s['dotplot']['p50_us']:.0f} µs | {s['atlas']['p50_us'] / 1e3:.2f} ms "
            f"| {s['de_atlas']['p50_ms']:.0f} ms ({s['de_atlas']['first_s']:.2f} s) |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
