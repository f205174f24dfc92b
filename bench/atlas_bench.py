#!/usr/bin/python3
"""Atlas-scale benchmark: hundreds of synthetic datasets (default 4 seeds × 75 datasets ×
5,000 cells × 20,000 genes = 300 datasets, 1.5 M cells) built into one store, then the
store used the ways a portal uses it. Every figure is measured in this run and printed
as Markdown for docs/BENCHMARKS.md. A benchmark, never a test: it takes tens of minutes
and several GB of disk at the default size.

usage: /usr/bin/python3 bench/atlas_bench.py [--datasets-per-seed N] [--seeds N] [--cells N]
           [--genes N] [--workdir DIR] [--keep-inputs] [--quick] [--disk-limit-gb G]
           [--out FILE]

Steps, in one run:
  1. `cellcube synth` per seed (1..--seeds) into WORKDIR/inputs-*/sS/; the files go to
     build as NAME=FILE with NAME = sS_synth_NNN (synth's own names repeat across seeds).
     With --keep-inputs the inputs stay and are reused by the next run of the same shape.
  2. Page cache: every input file is read once (plain sequential reads) before the
     timed steps; `fincore` reports how much of the inputs is cached before the floor
     and before the build.
  3. Read floor: h5py/libhdf5 reads and inflates every file's X/data, X/indices,
     X/indptr, sequentially, one pass.
  4. `cellcube build -o STORE --quiet --groupby tissue,disease,cancer_stage,sex,donor
     NAME=FILE...` (default options otherwise) under `/usr/bin/time -v`: wall time,
     "Maximum resident set size"; checked against getrusage(RUSAGE_CHILDREN) of a
     wrapper process and against the sum of RSS and PSS over the process tree sampled
     from /proc every 0.2 s. The workdir's size (du) and the file system's used bytes
     (statvfs) are sampled every 0.5 s while it runs, adding the unnamed files (O_TMPFILE
     spill files) the build's processes hold open under the workdir, which du cannot
     see; TMPDIR points into the workdir.
  5. `cellcube info STORE --json`: size, entries, groups; `cellcube info` process time.
  6. `cellcube-bench-query` (bench/query_latency.cc) in process: its standard dot-plot
     and atlas queries, and the dot plot of this benchmark (20 genes by cell_type over
     the whole atlas); p50/p99.
  7. `cellcube query STORE --genes <20> --by cell_type --format csv` as a process under
     time -v, best of 3.
  8. Python (PYTHONPATH=<build>/python): cellcube.open(STORE) median of 5, then
     s.query(genes, by="cell_type") p50 of >= 50 runs.
  9. `cellcube serve STORE --port P`: time from start to the first answered
     /api/v1/query?genes=...&by=cell_type (polled every 10 ms).
Everything is removed at the end (inputs too unless --keep-inputs). A failing step is
reported as failed; the exit status is non-zero when the build fails.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import h5py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("CELLCUBE_BUILD", os.path.join(ROOT, "build"))
CELLCUBE = os.environ.get("CELLCUBE_BIN", os.path.join(BUILD, "cellcube"))
PY = "/usr/bin/python3"
GROUPBY = "tissue,disease,cancer_stage,sex,donor"
GB = 1e9

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from build_bench import floor_h5py  # noqa: E402  (the same floor as the build benchmark)


# --------------------------------------------------------------------------- helpers

class StepFailed(Exception):
    pass


def run(cmd, env=None, check=True):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env)
    if check and p.returncode != 0:
        raise StepFailed(f"`{' '.join(map(str, cmd[:3]))} ...` exited {p.returncode}: "
                         f"{p.stderr.strip()[-600:]}")
    return p


def parse_time_v(stderr):
    """Wall seconds, peak RSS in bytes and exit status from GNU time -v's report."""
    wall = rss = status = None
    for line in stderr.splitlines():
        line = line.strip()
        if line.startswith("Elapsed (wall clock) time"):
            v = line.rsplit(" ", 1)[-1]
            secs = 0.0
            for part in v.split(":"):
                secs = secs * 60 + float(part)
            wall = secs
        elif line.startswith("Maximum resident set size"):
            rss = int(line.rsplit(" ", 1)[-1]) * 1024
        elif line.startswith("Exit status"):
            status = int(line.rsplit(" ", 1)[-1])
    return wall, rss, status


def fmt_bytes(n):
    if n is None:
        return "—"
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:,.2f} {unit}"
    return f"{n:,.0f} B"


def fmt_s(s):
    if s is None:
        return "—"
    if s >= 1:
        return f"{s:,.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:,.1f} ms"
    return f"{s * 1e6:,.1f} µs"


def fmt_us(us):
    return fmt_s(us / 1e6)


def du(path):
    """Bytes allocated under path (st_blocks, so sparse files count what they use)."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass  # a temporary file renamed or removed meanwhile
    return total


def unlinked_bytes(pids, under):
    """Bytes allocated to files under `under` that these processes hold open but that
    have no name (O_TMPFILE or unlinked: the build's spill files), which du cannot see."""
    seen, total = set(), 0
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            link = f"/proc/{pid}/fd/{fd}"
            try:
                target = os.readlink(link)
                if not (target.startswith(under) and target.endswith(" (deleted)")):
                    continue
                st = os.stat(link)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def fs_used(path):
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def fs_free(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def proc_tree(root_pid):
    """PIDs of root_pid and all its descendants (from /proc/*/stat)."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def tree_memory(root_pid, comm="cellcube"):
    """(sum of RSS, sum of PSS, processes) over the processes of the tree named comm
    (the build's wrapper and /usr/bin/time are left out)."""
    rss = pss = n = 0
    for pid in proc_tree(root_pid):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != comm:
                    continue
            n += 1
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
        except OSError:
            pass
    return rss, pss, n


class Monitor(threading.Thread):
    """Samples a process tree's memory (every 0.2 s) and a directory's and its file
    system's disk use (every 0.5 s) until stopped."""

    def __init__(self, pid, workdir, disk_limit=None):
        super().__init__(daemon=True)
        self.pid, self.workdir, self.disk_limit = pid, workdir, disk_limit
        self.stopped_for_disk = None
        self.stop_event = threading.Event()
        self.fs_start = fs_used(workdir)
        self.peak_rss = self.peak_pss = 0
        self.peak_du = self.peak_fs_delta = self.peak_hidden = 0
        self.samples = 0
        self.max_procs = 0

    def run(self):
        next_disk = 0.0
        while not self.stop_event.is_set():
            rss, pss, n = tree_memory(self.pid)
            self.max_procs = max(self.max_procs, n)
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            now = time.monotonic()
            if now >= next_disk:
                hidden = unlinked_bytes(proc_tree(self.pid), self.workdir)
                used = du(self.workdir) + hidden
                self.peak_hidden = max(self.peak_hidden, hidden)
                self.peak_du = max(self.peak_du, used)
                if self.disk_limit and used > self.disk_limit and not self.stopped_for_disk:
                    # a guard for the shared disk: stop the build (its own process group)
                    self.stopped_for_disk = used
                    try:
                        os.killpg(self.pid, signal.SIGTERM)
                    except OSError:
                        pass
                self.peak_fs_delta = max(self.peak_fs_delta, fs_used(self.workdir) - self.fs_start)
                next_disk = now + 0.5
            self.samples += 1
            self.stop_event.wait(0.2)

    def stop(self):
        self.stop_event.set()
        self.join()


def fincore_bytes(paths):
    """Bytes of these files resident in the page cache (util-linux fincore), or None."""
    if not shutil.which("fincore"):
        return None
    total = 0
    for i in range(0, len(paths), 100):
        p = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES"] + paths[i:i + 100],
                           capture_output=True, text=True)
        if p.returncode != 0:
            return None
        total += sum(int(x) for x in p.stdout.split())
    return total


def machine():
    cpu = ""
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = {}
    for line in open("/proc/meminfo"):
        k, v = line.split(":", 1)
        mem[k] = int(v.split()[0]) * 1024
    return {"cores": os.cpu_count(), "cpu": cpu, "ram": mem.get("MemTotal", 0),
            "available": mem.get("MemAvailable", 0), "platform": platform.platform()}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def version():
    try:
        v = run([CELLCUBE, "--version"]).stdout.strip()
    except StepFailed:
        v = "cellcube (version unknown)"
    try:
        commit = run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).stdout.strip()
        dirty = run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"]).stdout.strip()
        v += f", commit {commit}" + (" with uncommitted changes" if dirty else "")
    except StepFailed:
        pass
    return v


# --------------------------------------------------------------------------- steps

def make_inputs(args, inputs_dir, report):
    """Synthesises (or reuses) the inputs; returns [(name, path)]."""
    pairs = []
    synth_s = 0.0
    reused = 0
    for seed in range(1, args.seeds + 1):
        d = os.path.join(inputs_dir, f"s{seed}")
        stamp = os.path.join(d, ".complete.json")
        want = {"datasets": args.datasets_per_seed, "cells": args.cells, "genes": args.genes,
                "seed": seed, "cellcube": report["version"].split(",")[0]}
        ok = False
        if os.path.exists(stamp):
            try:
                ok = json.load(open(stamp)) == want
            except (OSError, ValueError):
                ok = False
        if not ok:
            shutil.rmtree(d, ignore_errors=True)
            t0 = time.perf_counter()
            run([CELLCUBE, "synth", "-o", d, "--datasets", args.datasets_per_seed, "--cells",
                 args.cells, "--genes", args.genes, "--seed", seed, "--quiet"])
            synth_s += time.perf_counter() - t0
            json.dump(want, open(stamp, "w"))
        else:
            reused += 1
        # synth names files synth_01 ... synth_99, synth_100 (at least two digits).
        files = [f for f in os.listdir(d) if f.startswith("synth_") and f.endswith(".h5ad")]
        files.sort(key=lambda f: int(f[len("synth_"):-len(".h5ad")]))
        if len(files) != args.datasets_per_seed:
            raise StepFailed(f"{d} holds {len(files)} datasets, expected {args.datasets_per_seed}")
        for f in files:
            i = int(f[len("synth_"):-len(".h5ad")])
            pairs.append((f"s{seed}_synth_{i:03d}", os.path.join(d, f)))
    report["synth_s"] = synth_s
    report["synth_reused_seeds"] = reused
    return pairs


def shape(pairs):
    cells = values = size = 0
    genes = set()
    for _, path in pairs:
        size += os.path.getsize(path)
        with h5py.File(path, "r") as f:
            x = f["X"]
            values += x["data"].shape[0]
            cells += x["indptr"].shape[0] - 1
            genes.add(int(x.attrs["shape"][1]))
    return {"datasets": len(pairs), "cells": cells, "values": values, "bytes": size,
            "genes": sorted(genes)}


def warm_cache(paths):
    t0 = time.perf_counter()
    buf = bytearray(16 << 20)
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass
    return time.perf_counter() - t0


WRAPPER = r"""
import resource, subprocess, sys
rc = subprocess.call(sys.argv[1:])
sys.stderr.write("\nRUSAGE_CHILDREN_MAXRSS_KB %d\n" % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(rc)
"""


def timed_build(store, pairs, workdir, disk_limit):
    tmpdir = os.path.join(workdir, "tmp")
    os.makedirs(tmpdir, exist_ok=True)
    env = dict(os.environ, TMPDIR=tmpdir)
    cmd = [PY, "-c", WRAPPER, "/usr/bin/time", "-v", CELLCUBE, "build", "-o", store, "--quiet",
           "--groupby", GROUPBY] + [f"{n}={p}" for n, p in pairs]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    mon = Monitor(proc.pid, workdir, disk_limit)
    mon.start()
    out, err = proc.communicate()
    wall_outer = time.perf_counter() - t0
    mon.stop()
    after = du(workdir)  # the finished store: a build shorter than a sample interval
    wall, rss, status = parse_time_v(err)
    children = None
    for line in err.splitlines():
        if line.startswith("RUSAGE_CHILDREN_MAXRSS_KB"):
            children = int(line.split()[1]) * 1024
    res = {"wall": wall if wall is not None else wall_outer, "wall_outer": wall_outer,
           "rss": rss, "rusage_children": children, "tree_rss": mon.peak_rss,
           "tree_pss": mon.peak_pss, "peak_du": max(mon.peak_du, after), "peak_hidden": mon.peak_hidden,
           "peak_fs_delta": mon.peak_fs_delta, "samples": mon.samples, "procs": mon.max_procs,
           "exit": proc.returncode, "after_du": after,
           "tmp_left": du(tmpdir)}
    if proc.returncode != 0:
        msg = "\n".join(l for l in err.splitlines()
                        if l.strip() and not l.startswith(("\t", "RUSAGE_CHILDREN", "Command exited",
                                                           "Command terminated")))
        res["error"] = msg[-1500:] or f"exit {proc.returncode}"
        if mon.stopped_for_disk:
            res["error"] += (f"\nstopped by the benchmark: the workdir reached "
                             f"{fmt_bytes(mon.stopped_for_disk)} (--disk-limit-gb)")
    return res


def bench_query_bin():
    for p in (os.path.join(BUILD, "cellcube-bench-query"), os.path.join(BUILD, "bench", "query_latency")):
        if os.access(p, os.X_OK):
            return p
    return None


def in_process(store, genes_arg):
    """cellcube-bench-query: the standard queries and this benchmark's dot plot."""
    exe = bench_query_bin()
    if exe is None:
        raise StepFailed(f"no cellcube-bench-query in {BUILD}")

    def bq(extra, seconds=3.0):
        probe = json.loads(run([exe, store, "--iterations", "20"] + extra).stdout)
        worst = max(q["run_csv"]["p50_us"] for q in probe["queries"])
        n = int(min(20000, max(200, seconds * 1e6 / max(worst, 1.0))))
        return json.loads(run([exe, store, "--iterations", n] + extra).stdout)

    standard = bq([])
    genes = genes_arg or standard["queries"][0]["query"]["genes"]
    custom = bq(["--genes", ",".join(genes), "--by", "cell_type"])
    return standard, custom, genes


PY_HELPER = r"""
import json, statistics, sys, time
import cellcube
store, genes = sys.argv[1], sys.argv[2].split(",")
opens = []
for _ in range(5):
    t0 = time.perf_counter()
    s = cellcube.open(store)
    opens.append(time.perf_counter() - t0)
    del s
s = cellcube.open(store)
df = s.query(genes, by="cell_type")
lat = []
deadline = time.perf_counter() + 3.0
while len(lat) < 50 or (time.perf_counter() < deadline and len(lat) < 5000):
    t0 = time.perf_counter()
    s.query(genes, by="cell_type")
    lat.append(time.perf_counter() - t0)
lat.sort()
print(json.dumps({"open": opens, "rows": len(df), "runs": len(lat),
                  "p50": lat[len(lat) // 2], "p99": lat[min(len(lat) - 1, int(0.99 * len(lat)))]}))
"""


def python_module(store, genes):
    env = dict(os.environ, PYTHONPATH=os.path.join(BUILD, "python"))
    return json.loads(run([PY, "-c", PY_HELPER, store, ",".join(genes)], env=env).stdout)


def query_process(store, genes):
    best = None
    for _ in range(3):
        p = run(["/usr/bin/time", "-v", CELLCUBE, "query", store, "--genes", ",".join(genes),
                 "--by", "cell_type", "--format", "csv"])
        wall, rss, _ = parse_time_v(p.stderr)
        rows = max(0, len(p.stdout.splitlines()) - 1)
        if best is None or wall < best["wall"]:
            best = {"wall": wall, "rss": rss, "rows": rows}
        best["max_rss"] = max(best.get("max_rss", 0), rss)
    return best


def info_process(store):
    walls, rss = [], 0
    for _ in range(5):
        p = run(["/usr/bin/time", "-v", CELLCUBE, "info", store])
        wall, peak, _ = parse_time_v(p.stderr)
        walls.append(wall)
        rss = max(rss, peak or 0)
    return {"median": statistics.median(walls), "min": min(walls), "rss": rss}


def serve_first_answer(store, genes, timeout=600):
    port = free_port()
    url = (f"http://127.0.0.1:{port}/api/v1/query?"
           + urllib.parse.urlencode({"genes": ",".join(genes), "by": "cell_type"}))
    t0 = time.perf_counter()
    proc = subprocess.Popen([CELLCUBE, "serve", store, "--port", str(port), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first_connect = None
    try:
        while time.perf_counter() - t0 < timeout:
            if proc.poll() is not None:
                raise StepFailed(f"serve exited {proc.returncode}: {proc.stderr.read().strip()[-600:]}")
            try:
                with urllib.request.urlopen(url, timeout=30) as r:
                    body = r.read()
                    if r.status == 200:
                        done = time.perf_counter() - t0
                        rows = len(json.loads(body)["rows"])
                        return {"first_answer": done, "first_connect": first_connect or done,
                                "rows": rows}
            except urllib.error.HTTPError as e:
                first_connect = first_connect or time.perf_counter() - t0
                if e.code < 500:
                    raise StepFailed(f"serve answered {e.code}: {e.read()[:300]!r}")
            except (urllib.error.URLError, ConnectionError, socket.timeout):
                pass
            time.sleep(0.01)
        raise StepFailed(f"no answer within {timeout} s")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- report

def verdict(ok):
    return "met" if ok else "**not met**"


def markdown(args, r):
    m, sh = r["machine"], r.get("shape")
    L = []
    L.append("## Atlas scale (`bench/atlas_bench.py`)\n")
    L.append(f"Measured by `make bench-atlas` on {time.strftime('%Y-%m-%d %H:%M %Z')}"
             f"{' (--quick: a smoke run, not the atlas)' if args.quick else ''}; every figure "
             f"below comes from this run. {r['version']}.\n")
    L.append(f"**Machine**: {m['cores']} cores ({m['cpu']}), {m['ram'] / 2**30:.0f} GiB RAM "
             f"({m['available'] / 2**30:.0f} GiB available at the start), {m['platform']}; "
             f"load average {r['load_before']:.1f} at the start, {r['load_after']:.1f} at the end "
             "(the machine may be shared).\n")
    if sh:
        L.append(f"**Data**: {args.seeds} seeds × {args.datasets_per_seed} datasets "
                 f"(`cellcube synth --datasets {args.datasets_per_seed} --cells {args.cells} "
                 f"--genes {args.genes} --seed S`, S = 1..{args.seeds}; "
                 + (f"{r['synth_s']:.0f} s to write" if r["synth_reused_seeds"] == 0 else
                    f"{r['synth_reused_seeds']} of {args.seeds} seeds' files reused from an earlier run")
                 + f"): {sh['datasets']:,} datasets, {sh['cells']:,} cells, "
                 f"{' or '.join(f'{g:,}' for g in sh['genes'])} genes per file, {sh['values']:,} stored values "
                 f"(gzip CSR), {fmt_bytes(sh['bytes'])} of input files. Built with `--groupby {GROUPBY}`.\n")
    if r.get("failed_inputs"):
        L.append(f"**Inputs failed**: {r['failed_inputs']}\n")
        return "\n".join(L)

    L.append("| step | figure | goal |")
    L.append("| --- | --- | --- |")

    def row(step, figure, goal=""):
        L.append(f"| {step} | {figure} | {goal} |")

    fl = r.get("floor")
    if isinstance(fl, str):
        row("read floor (h5py)", f"failed: {fl}")
    elif fl is not None:
        row("read floor: h5py/libhdf5 reads + inflates X/data, X/indices, X/indptr of every "
            "file, sequentially, one pass", f"{fmt_s(fl)} ({sh['values'] / fl / 1e6:,.0f} M values/s)")
    b = r.get("build")
    if b is not None:
        if "error" in b:
            row("`cellcube build` (default options)",
                f"**failed** (exit {b['exit']}) after {fmt_s(b['wall'])}: {b['error'].splitlines()[-1][:300]}")
        else:
            ratio = b["wall"] / fl if isinstance(fl, float) else None
            row("`cellcube build` (default options): wall time",
                f"{fmt_s(b['wall'])}" + (f" = {ratio:.2f} × floor" if ratio else ""),
                f"≤ 1.0 × floor: {verdict(ratio is not None and ratio <= 1.0)}")
        ok = "error" not in b
        row("build: peak RSS (time -v, largest process of the tree)", fmt_bytes(b["rss"]),
            f"≤ 2 GB: {verdict(b['rss'] is not None and b['rss'] <= 2e9)}" if ok else "(build failed)")
        row("build: checks of the peak", f"getrusage(RUSAGE_CHILDREN) of a wrapper "
            f"{fmt_bytes(b['rusage_children'])}; sum over the tree's cellcube processes sampled every "
            f"0.2 s ({b['samples']} samples, up to {b['procs']} processes at once): "
            f"RSS {fmt_bytes(b['tree_rss'])}, PSS {fmt_bytes(b['tree_pss'])}")
        row("disk: workdir peak during the build (inputs + store + temporaries: du, plus the "
            "unnamed files the build holds open, from /proc/PID/fd; every 0.5 s)",
            f"{fmt_bytes(b['peak_du'])} (inputs {fmt_bytes(r['inputs_du'])}; unnamed temporary "
            f"files at most {fmt_bytes(b['peak_hidden'])}; "
            f"file system used +{fmt_bytes(max(0, b['peak_fs_delta']))} over the build's start, "
            f"statvfs, other jobs included); {fmt_bytes(b['after_du'])} after",
            f"≤ 25 GB: {verdict(b['peak_du'] <= 25e9)}" if ok else "(build failed)")
    inf = r.get("info")
    if isinstance(inf, str):
        row("store (`cellcube info --json`)", f"failed: {inf}")
    elif inf is not None:
        bpe = inf['size_bytes'] / max(1, inf['n_entries'])
        row("store", f"{fmt_bytes(inf['size_bytes'])} (format {inf.get('format_version')}), "
            f"{inf['n_entries']:,} (group, gene) entries, "
            f"{bpe:.1f} bytes per entry, "
            f"{inf['n_groups']:,} groups, {inf['n_genes']:,} genes, {inf['n_datasets']:,} datasets, "
            f"{inf['n_cells']:,} cells", f"≤ 18.5 B per entry: {verdict(bpe <= 18.5)}")
    v = r.get("info_proc")
    label = "`cellcube info STORE` process: wall time (median / min of 5), peak RSS"
    if isinstance(v, str):
        row(label, f"failed: {v}")
    elif v is not None:
        row(label, f"{fmt_s(v['median'])} / {fmt_s(v['min'])}, {fmt_bytes(v['rss'])}",
            f"≤ 0.3 s and ≤ 300 MB: {verdict(v['median'] <= 0.3 and v['rss'] <= 300e6)}")
    pm = r.get("python")
    if isinstance(pm, str):
        row("Python module", f"failed: {pm}")
    elif pm is not None:
        row("`cellcube.open(STORE)` in Python (median of 5; isolated: the HDF5 part runs in "
            "a child process first)",
            f"{fmt_s(statistics.median(pm['open']))} (min {fmt_s(min(pm['open']))})",
            f"≤ 0.1 s: {verdict(statistics.median(pm['open']) <= 0.1)}")
    ip = r.get("in_process")
    if isinstance(ip, str):
        row("in process (cellcube-bench-query)", f"failed: {ip}")
    elif ip is not None:
        std, cus = ip
        row("store open in cellcube-bench-query (QueryEngine::Open: map, metadata, name "
            "index; no child)", fmt_s(std["open_s"]), f"≤ 50 ms: {verdict(std['open_s'] <= 0.05)}")
        c = cus["queries"][0]
        row(f"dot plot, 20 genes by cell_type, whole atlas ({c['rows']:,} rows): in process "
            f"(QueryEngine::Run, {cus['iterations']:,} runs)",
            f"p50 {fmt_us(c['run']['p50_us'])}, p99 {fmt_us(c['run']['p99_us'])}; with CSV text "
            f"p50 {fmt_us(c['run_csv']['p50_us'])}",
            f"≤ 1 ms p50: {verdict(c['run']['p50_us'] <= 1000)}")
        for q in std["queries"]:
            qq = q["query"]
            desc = f"by {','.join(qq['by'])}"
            if qq["where"]:
                desc += ", where " + ", ".join(f"{k}={v[0]}" for k, v in qq["where"].items())
            if qq["datasets"]:
                desc += f", dataset {qq['datasets'][0]}"
            row(f"standard `{q['name']}` query of cellcube-bench-query ({desc}; {q['rows']:,} rows; "
                f"{std['iterations']:,} runs)",
                f"p50 {fmt_us(q['run']['p50_us'])}, p99 {fmt_us(q['run']['p99_us'])}")
    if isinstance(pm, dict):
        row(f"dot plot through Python: `s.query(genes, by=\"cell_type\")` → DataFrame "
            f"({pm['rows']:,} rows, {pm['runs']:,} runs)", f"p50 {fmt_s(pm['p50'])}, p99 {fmt_s(pm['p99'])}",
            f"≤ 2 ms p50: {verdict(pm['p50'] <= 0.002)}")
    qp = r.get("query_proc")
    if isinstance(qp, str):
        row("`cellcube query` process", f"failed: {qp}")
    elif qp is not None:
        row(f"`cellcube query STORE --genes <20> --by cell_type --format csv` process "
            f"({qp['rows']:,} rows; best of 3)",
            f"{fmt_s(qp['wall'])}, peak RSS {fmt_bytes(qp['rss'])} (largest of the 3: {fmt_bytes(qp['max_rss'])})",
            f"≤ 0.3 s and ≤ 300 MB: {verdict(qp['wall'] <= 0.3 and qp['max_rss'] <= 300e6)}")
    sv = r.get("serve")
    if isinstance(sv, str):
        row("`cellcube serve`: start to first answer", f"failed: {sv}")
    elif sv is not None:
        row(f"`cellcube serve STORE`: start to the first answered "
            f"`/api/v1/query?genes=<20>&by=cell_type` ({sv['rows']:,} rows; polled every 10 ms)",
            fmt_s(sv['first_answer']) + ("" if sv["first_connect"] >= sv["first_answer"] else
                                         f" (first HTTP response, an error, at {fmt_s(sv['first_connect'])})"),
            f"≤ 1 s: {verdict(sv['first_answer'] <= 1.0)}")
    L.append("")
    if r.get("genes"):
        L.append(f"The 20 genes (cellcube-bench-query's choice: the most stored entries among "
                 f"those the first dataset measured): {', '.join(r['genes'])}.\n")
    pc = r.get("cache")
    if pc:
        L.append(f"Page cache: every input file was read once ({fmt_s(pc['warm_s'])}) before the "
                 "floor and the build; resident input bytes (fincore) before the floor "
                 f"{fmt_bytes(pc.get('before_floor'))}, before the build {fmt_bytes(pc.get('before_build'))} "
                 f"of {fmt_bytes(sh['bytes'])}.\n")
    L.append(f"Workdir: {r['workdir']} "
             f"({'kept inputs' if args.keep_inputs else 'removed at the end'}).\n")
    return "\n".join(L)


# --------------------------------------------------------------------------- main

def default_base():
    """/tmp when its file system has room for the atlas (30 GB free), else the file
    system of the project (its parent directory)."""
    tmp = tempfile.gettempdir()
    if fs_free(tmp) >= 30e9:
        return tmp
    return os.path.dirname(ROOT)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets-per-seed", type=int, default=75)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--cells", type=int, default=5000, help="cells per dataset")
    ap.add_argument("--genes", type=int, default=20000)
    ap.add_argument("--workdir", help="where inputs, store and temporaries go (default: a "
                    "directory under /tmp if it has 30 GB free, else beside the project)")
    ap.add_argument("--keep-inputs", action="store_true",
                    help="keep the synthetic inputs (and reuse them in the next run)")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: 2 seeds × 3 datasets × 1,000 cells × 2,000 genes")
    ap.add_argument("--disk-limit-gb", type=float, default=40,
                    help="stop the build if the workdir grows beyond this (default 40; the "
                         "goal is 25)")
    ap.add_argument("--out", help="also write the Markdown here")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.datasets_per_seed, args.cells, args.genes = 2, 3, 1000, 2000
    if not os.access(CELLCUBE, os.X_OK):
        sys.exit(f"build cellcube first ({CELLCUBE} missing)")

    tag = f"inputs-d{args.datasets_per_seed}-c{args.cells}-g{args.genes}"
    created_workdir = False
    if args.workdir:
        workdir = os.path.abspath(args.workdir)
        created_workdir = not os.path.exists(workdir)
        os.makedirs(workdir, exist_ok=True)
    elif args.keep_inputs:
        workdir = os.path.join(default_base(), "cellcube-atlas-bench")  # stable: reused
        created_workdir = not os.path.exists(workdir)
        os.makedirs(workdir, exist_ok=True)
    else:
        workdir = tempfile.mkdtemp(prefix="cellcube-atlas-bench-", dir=default_base())
        created_workdir = True
    inputs_dir = os.path.join(workdir, tag)
    store = os.path.join(workdir, "atlas-store.h5ad")

    r = {"machine": machine(), "version": version(), "load_before": os.getloadavg()[0],
         "workdir": workdir}
    print(f"workdir {workdir} ({fmt_bytes(fs_free(workdir))} free)", file=sys.stderr)

    def step(key, fn):
        print(f"[{time.strftime('%H:%M:%S')}] {key} ...", file=sys.stderr)
        try:
            r[key] = fn()
        except Exception as e:  # noqa: BLE001 - every failure is reported, not hidden
            r[key] = f"{type(e).__name__}: {e}"[:600]
        return r[key]

    build_failed = True
    try:
        try:
            print(f"[{time.strftime('%H:%M:%S')}] inputs ...", file=sys.stderr)
            pairs = make_inputs(args, inputs_dir, r)
            r["shape"] = shape(pairs)
            r["inputs_du"] = du(inputs_dir)
        except Exception as e:  # noqa: BLE001
            r["failed_inputs"] = f"{type(e).__name__}: {e}"[:1000]
            pairs = None
        if pairs:
            paths = [p for _, p in pairs]
            cache = r["cache"] = {}
            cache["warm_s"] = warm_cache(paths)
            cache["before_floor"] = fincore_bytes(paths)

            def floor():
                t0 = time.perf_counter()
                for p in paths:
                    floor_h5py(p)
                return time.perf_counter() - t0

            step("floor", floor)
            cache["before_build"] = fincore_bytes(paths)
            if os.path.exists(store):
                os.remove(store)
            print(f"[{time.strftime('%H:%M:%S')}] build ...", file=sys.stderr)
            r["build"] = timed_build(store, pairs, workdir, args.disk_limit_gb * 1e9)
            build_failed = "error" in r["build"]
            if not build_failed:
                step("info", lambda: json.loads(run([CELLCUBE, "info", store, "--json"]).stdout))
                step("info_proc", lambda: info_process(store))
                ip = step("in_process", lambda: in_process(store, None))
                if isinstance(ip, tuple):
                    r["in_process"] = ip[:2]
                    r["genes"] = ip[2]
                else:
                    # without cellcube-bench-query: the first 20 genes of the store
                    env = dict(os.environ, PYTHONPATH=os.path.join(BUILD, "python"))
                    try:
                        r["genes"] = json.loads(run([PY, "-c", "import cellcube,json,sys;"
                                                     "print(json.dumps(cellcube.open(sys.argv[1])._s.gene_ids[:20]))",
                                                     store], env=env).stdout)
                    except StepFailed:
                        r["genes"] = None
                if r.get("genes"):
                    genes = r["genes"]
                    step("query_proc", lambda: query_process(store, genes))
                    step("python", lambda: python_module(store, genes))
                    step("serve", lambda: serve_first_answer(store, genes))
    finally:
        r["load_after"] = os.getloadavg()[0]
        if os.path.exists(store):
            os.remove(store)
        shutil.rmtree(os.path.join(workdir, "tmp"), ignore_errors=True)
        if not args.keep_inputs:
            shutil.rmtree(inputs_dir, ignore_errors=True)
            if created_workdir:
                shutil.rmtree(workdir, ignore_errors=True)

    text = markdown(args, r)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    if r.get("failed_inputs") or build_failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
