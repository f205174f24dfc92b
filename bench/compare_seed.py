#!/usr/bin/python3
"""Query benchmark (issue 4): cellcube against the approaches of the seed discussion
(../shared/seed/), on the same synthetic atlas, in one run.

  usage: /usr/bin/python3 bench/compare_seed.py [--build DIR] [--datasets N] [--cells N]
                                                [--genes N] [--seconds S] [--out FILE]

1. Writes the atlas with `cellcube synth` and builds its store (both cached under
   <build>/bench-data/).
2. `cellcube-bench-query STORE` picks the two standard queries and times them in
   process (C++): "dotplot" = 20 genes by cell_type, one where, one dataset; "atlas" =
   the same genes over every dataset by tissue x cell_type.
3. The same queries through the Python module (raw columns, and the DataFrame).
4. The seed's pre-computation: one leaf per (metadata column, value, dataset, cell
   type, gene) holding the leaf's metrics (n_cells, nnz, sum, frac, mean, mean_expr,
   var, std), for the 20 genes of the queries (the seed's full size would be every
   gene). The leaves are computed with cellcube from the same store. Then the same
   two answers from
     - a nested Python dict   d[column][value][dataset][cell_type][gene] -> dict
     - an h5py file, one group per leaf with the metrics as attributes (the seed's
       write_dict_to_hdf5 layout; the file is kept open between queries)
     - Redis hashes, one per leaf (redis-server started here on a loopback port in a
       temporary directory, stopped after), with sets indexing the levels.
   Each answer is checked against cellcube's before it is timed. The atlas-wide
   answer pools the per-dataset leaves (sums of n_cells, nnz, sum); cross-filters
   such as stage=II AND sex=female cannot be answered from any of them.
Prints a Markdown section for docs/BENCHMARKS.md (and writes it to --out).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(cmd, **kw):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{proc.stderr}")
    return proc.stdout


def timeit(fn, seconds, min_iter=5, max_iter=100000):
    """Calls fn repeatedly for about `seconds`; returns sorted latencies in µs."""
    fn()  # warm
    out = []
    deadline = time.perf_counter() + seconds
    while len(out) < max_iter and (len(out) < min_iter or time.perf_counter() < deadline):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e6)
    out.sort()
    return out


def p(lat, q):
    return lat[min(len(lat) - 1, int(q * len(lat)))]


# --------------------------------------------------------------------------
# answers: {(split labels..., gene): (n_cells, frac, mean)}
# --------------------------------------------------------------------------


def answer_from_frame(df, by):
    out = {}
    for row in df.itertuples(index=False):
        d = row._asdict()
        out[tuple(d[c] for c in by) + (d["gene"],)] = (int(d["n_cells"]), d["frac"], d["mean"])
    return out


def same_answer(a, b):
    if a.keys() != b.keys():
        return f"different rows: {len(a)} vs {len(b)}; e.g. {sorted(set(a) ^ set(b))[:3]}"
    for k in a:
        (n1, f1, m1), (n2, f2, m2) = a[k], b[k]
        if n1 != n2 or not math.isclose(f1, f2, rel_tol=1e-9) or not math.isclose(m1, m2, rel_tol=1e-9, abs_tol=1e-12):
            return f"row {k}: {a[k]} vs {b[k]}"
    return ""


# --------------------------------------------------------------------------
# the seed's leaves
# --------------------------------------------------------------------------

LEAF_METRICS = ["n_cells", "nnz", "sum", "frac", "mean", "mean_expr", "var", "std"]


def make_leaves(store, genes):
    """{column: {value: {dataset: {cell_type: {gene: {metric: value}}}}}}"""
    leaves = {}
    for col in store.columns[2:]:
        df = store.query(genes, by=["dataset", "cell_type", col], metrics=LEAF_METRICS)
        level = leaves.setdefault(col, {})
        for row in df.itertuples(index=False):
            d = row._asdict()
            leaf = {m: (None if isinstance(d[m], float) and math.isnan(d[m]) else d[m]) for m in LEAF_METRICS}
            leaf["n_cells"] = int(leaf["n_cells"])
            leaf["nnz"] = int(leaf["nnz"])
            (level.setdefault(d[col], {}).setdefault(d["dataset"], {})
             .setdefault(d["cell_type"], {}))[d["gene"]] = leaf
    return leaves


def count_leaves(leaves):
    return sum(len(g) for c in leaves.values() for v in c.values() for d in v.values() for g in d.values())


# dict ------------------------------------------------------------------------

def dict_dotplot(d, col, value, dataset, genes):
    out = {}
    for ct, per_gene in d[col][value][dataset].items():
        for g in genes:
            leaf = per_gene.get(g)
            if leaf is not None:
                out[(ct, g)] = (leaf["n_cells"], leaf["frac"], leaf["mean"])
    return out


def dict_atlas(d, col, genes):
    acc = {}
    for value, per_ds in d[col].items():
        for _ds, per_ct in per_ds.items():
            for ct, per_gene in per_ct.items():
                for g in genes:
                    leaf = per_gene.get(g)
                    if leaf is None:
                        continue
                    a = acc.setdefault((value, ct, g), [0, 0, 0.0])
                    a[0] += leaf["n_cells"]
                    a[1] += leaf["nnz"]
                    a[2] += leaf["sum"]
    return {k: (n, nnz / n, s / n) for k, (n, nnz, s) in acc.items()}


# h5py ------------------------------------------------------------------------

def h5_name(s):
    return s.replace("/", "\u2215")


def h5_write(path, leaves):
    import h5py

    with h5py.File(path, "w") as f:
        for col, per_val in leaves.items():
            gc = f.create_group(h5_name(col))
            for val, per_ds in per_val.items():
                gv = gc.create_group(h5_name(val))
                for ds, per_ct in per_ds.items():
                    gd = gv.create_group(h5_name(ds))
                    for ct, per_gene in per_ct.items():
                        gt = gd.create_group(h5_name(ct))
                        for g, leaf in per_gene.items():
                            leaf_group = gt.create_group(h5_name(g))
                            for k, v in leaf.items():
                                leaf_group.attrs[k] = math.nan if v is None else v


def h5_dotplot(f, col, value, dataset, genes):
    out = {}
    grp = f[h5_name(col)][h5_name(value)][h5_name(dataset)]
    for ct in grp:
        per_gene = grp[ct]
        for g in genes:
            name = h5_name(g)
            if name in per_gene:
                a = per_gene[name].attrs
                out[(ct.replace("\u2215", "/"), g)] = (int(a["n_cells"]), float(a["frac"]), float(a["mean"]))
    return out


def h5_atlas(f, col, genes):
    acc = {}
    gc = f[h5_name(col)]
    for value in gc:
        for ds in gc[value]:
            grp = gc[value][ds]
            for ct in grp:
                per_gene = grp[ct]
                for g in genes:
                    name = h5_name(g)
                    if name not in per_gene:
                        continue
                    a = per_gene[name].attrs
                    key = (value.replace("\u2215", "/"), ct.replace("\u2215", "/"), g)
                    s = acc.setdefault(key, [0, 0, 0.0])
                    s[0] += int(a["n_cells"])
                    s[1] += int(a["nnz"])
                    s[2] += float(a["sum"])
    return {k: (n, nnz / n, s / n) for k, (n, nnz, s) in acc.items()}


# redis -----------------------------------------------------------------------

SEP = "\x1f"


class RedisServer:
    def __init__(self, tmp):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(tmp),
             "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        self.client = redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)
        for _ in range(100):
            try:
                self.client.ping()
                return
            except Exception:
                time.sleep(0.05)
        self.stop()
        sys.exit("redis-server did not start")

    def stop(self):
        try:
            self.client.shutdown(nosave=True)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def redis_load(r, leaves):
    pipe = r.pipeline(transaction=False)
    n = 0
    for col, per_val in leaves.items():
        for val, per_ds in per_val.items():
            pipe.sadd(col, val)
            for ds, per_ct in per_ds.items():
                pipe.sadd(SEP.join([col, val]), ds)
                for ct, per_gene in per_ct.items():
                    pipe.sadd(SEP.join([col, val, ds]), ct)
                    for g, leaf in per_gene.items():
                        pipe.hset(SEP.join([col, val, ds, ct, g]),
                                  mapping={k: ("" if v is None else repr(v)) for k, v in leaf.items()})
                        n += 1
                        if n % 5000 == 0:
                            pipe.execute()
    pipe.execute()


def redis_dotplot(r, col, value, dataset, genes):
    cts = sorted(r.smembers(SEP.join([col, value, dataset])))
    pipe = r.pipeline(transaction=False)
    keys = [(ct, g) for ct in cts for g in genes]
    for ct, g in keys:
        pipe.hmget(SEP.join([col, value, dataset, ct, g]), "n_cells", "frac", "mean")
    out = {}
    for (ct, g), (n, frac, mean) in zip(keys, pipe.execute()):
        if n is not None:
            out[(ct, g)] = (int(n), float(frac), float(mean))
    return out


def redis_atlas(r, col, genes):
    values = sorted(r.smembers(col))
    pipe = r.pipeline(transaction=False)
    for v in values:
        pipe.smembers(SEP.join([col, v]))
    pairs = [(v, ds) for v, dss in zip(values, pipe.execute()) for ds in sorted(dss)]
    for v, ds in pairs:
        pipe.smembers(SEP.join([col, v, ds]))
    keys = [(v, ds, ct, g) for (v, ds), cts in zip(pairs, pipe.execute()) for ct in sorted(cts)
            for g in genes]
    for v, ds, ct, g in keys:
        pipe.hmget(SEP.join([col, v, ds, ct, g]), "n_cells", "nnz", "sum")
    acc = {}
    for (v, _ds, ct, g), (n, nnz, s) in zip(keys, pipe.execute()):
        if n is None:
            continue
        a = acc.setdefault((v, ct, g), [0, 0, 0.0])
        a[0] += int(n)
        a[1] += int(nnz)
        a[2] += float(s)
    return {k: (n, nnz / n, s / n) for k, (n, nnz, s) in acc.items()}


# --------------------------------------------------------------------------


def machine():
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()[:10]
    return os.cpu_count(), subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(), lscpu


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.environ.get("CELLCUBE_BUILD", str(ROOT / "build")))
    ap.add_argument("--datasets", type=int, default=10)
    ap.add_argument("--cells", type=int, default=20000)
    ap.add_argument("--genes", type=int, default=20000)
    ap.add_argument("--seconds", type=float, default=3.0, help="time per (approach, query)")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    build = Path(args.build).resolve()
    cellcube = build / "cellcube"
    bench_bin = build / "cellcube-bench-query"
    sys.path.insert(0, str(build / "python"))
    import cellcube as cc  # noqa: E402

    data = build / "bench-data" / f"atlas-d{args.datasets}-c{args.cells}-g{args.genes}"
    store_path = data / "store.h5ad"
    if not store_path.exists():
        data.mkdir(parents=True, exist_ok=True)
        print(f"writing the atlas into {data} ...", file=sys.stderr)
        t0 = time.time()
        run([cellcube, "synth", "-o", data, "--datasets", args.datasets, "--cells", args.cells,
             "--genes", args.genes, "--quiet"])
        t1 = time.time()
        run([cellcube, "build", "-o", store_path, "--quiet", *sorted(data.glob("synth_*.h5ad"))])
        print(f"synth {t1 - t0:.1f} s, build {time.time() - t1:.1f} s", file=sys.stderr)
    store_bytes = store_path.stat().st_size

    load_before = os.getloadavg()[0]
    # 1. cellcube in process (C++)
    native = json.loads(run([bench_bin, store_path, "--iterations", "20000"]))
    q = {x["name"]: x for x in native["queries"]}
    dot_q, atlas_q = q["dotplot"]["query"], q["atlas"]["query"]
    genes = dot_q["genes"]
    (wcol, wvals), = dot_q["where"].items()
    wval = wvals[0]
    dataset = dot_q["datasets"][0]
    atlas_col = atlas_q["by"][0]

    # 2. the Python module
    s = cc.open(store_path)
    dot_args = dict(genes=genes, by=["cell_type"], where={wcol: wval}, datasets=[dataset])
    atlas_args = dict(genes=genes, by=[atlas_col, "cell_type"])
    want_dot = answer_from_frame(s.query(**dot_args), ["cell_type"])
    want_atlas = answer_from_frame(s.query(**atlas_args), [atlas_col, "cell_type"])
    native_args = lambda a: (a["genes"], a.get("by", []), [(k, [v]) for k, v in a.get("where", {}).items()],  # noqa: E731
                             a.get("datasets", []), [])
    lat = {}
    lat[("module-raw", "dotplot")] = timeit(lambda: s._s.query(*native_args(dot_args)), args.seconds)
    lat[("module-raw", "atlas")] = timeit(lambda: s._s.query(*native_args(atlas_args)), args.seconds)
    lat[("module-df", "dotplot")] = timeit(lambda: s.query(**dot_args), args.seconds)
    lat[("module-df", "atlas")] = timeit(lambda: s.query(**atlas_args), args.seconds)

    # 3. the seed's leaves
    t0 = time.perf_counter()
    leaves = make_leaves(s, genes)
    leaves_s = time.perf_counter() - t0
    n_leaves = count_leaves(leaves)
    import copy
    import pickle

    tracemalloc.start()
    d = copy.deepcopy(leaves)
    dict_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    problems = {}
    problems["dict"] = (same_answer(dict_dotplot(d, wcol, wval, dataset, genes), want_dot),
                        same_answer(dict_atlas(d, atlas_col, genes), want_atlas))
    lat[("dict", "dotplot")] = timeit(lambda: dict_dotplot(d, wcol, wval, dataset, genes), args.seconds)
    lat[("dict", "atlas")] = timeit(lambda: dict_atlas(d, atlas_col, genes), args.seconds)
    pickle_bytes = len(pickle.dumps(leaves))

    import h5py

    tmp = Path(tempfile.mkdtemp(prefix="cellcube-bench-"))
    try:
        h5 = tmp / "leaves.hdf5"
        t0 = time.perf_counter()
        h5_write(h5, leaves)
        h5_write_s = time.perf_counter() - t0
        h5_bytes = h5.stat().st_size
        with h5py.File(h5, "r") as f:
            problems["h5py"] = (same_answer(h5_dotplot(f, wcol, wval, dataset, genes), want_dot),
                                same_answer(h5_atlas(f, atlas_col, genes), want_atlas))
            lat[("h5py", "dotplot")] = timeit(lambda: h5_dotplot(f, wcol, wval, dataset, genes), args.seconds)
            lat[("h5py", "atlas")] = timeit(lambda: h5_atlas(f, atlas_col, genes), args.seconds)

        server = RedisServer(tmp)
        try:
            r = server.client
            base = int(r.info("memory")["used_memory"])
            t0 = time.perf_counter()
            redis_load(r, leaves)
            redis_load_s = time.perf_counter() - t0
            redis_bytes = int(r.info("memory")["used_memory"]) - base
            problems["redis"] = (same_answer(redis_dotplot(r, wcol, wval, dataset, genes), want_dot),
                                 same_answer(redis_atlas(r, atlas_col, genes), want_atlas))
            lat[("redis", "dotplot")] = timeit(lambda: redis_dotplot(r, wcol, wval, dataset, genes), args.seconds)
            lat[("redis", "atlas")] = timeit(lambda: redis_atlas(r, atlas_col, genes), args.seconds)
        finally:
            server.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    bad = {k: v for k, v in problems.items() if any(v)}
    if bad:
        sys.exit(f"answers differ from cellcube's: {bad}")

    # report
    ncpu, nproc, lscpu = machine()
    base = {name: q[name]["run"]["p50_us"] for name in ("dotplot", "atlas")}
    rows = [("cellcube, C++ in process (QueryEngine::Run)",
             {n: (q[n]["run"]["p50_us"], q[n]["run"]["p99_us"]) for n in base}),
            ("cellcube, C++ in process, Run + CSV text",
             {n: (q[n]["run_csv"]["p50_us"], q[n]["run_csv"]["p99_us"]) for n in base})]
    labels = {"module-raw": "cellcube, Python module (columns)",
              "module-df": "cellcube, Python module (pandas DataFrame)",
              "dict": "seed: nested Python dict",
              "h5py": "seed: h5py, one group per leaf (file kept open)",
              "redis": "seed: Redis hashes (pipelined, loopback)"}
    for key, label in labels.items():
        rows.append((label, {n: (p(lat[(key, n)], 0.5), p(lat[(key, n)], 0.99)) for n in base}))

    def fmt(us):
        return f"{us:,.1f} µs" if us < 1000 else f"{us / 1000:,.2f} ms"

    lines = []
    lines.append("## Query\n")
    lines.append(f"Measured by `make bench` (`bench/compare_seed.py`, `bench/query_latency.cc`) on "
                 f"{time.strftime('%Y-%m-%d')}; every figure below comes from the same run.\n")
    lines.append(f"**Machine**: `nproc` = {nproc}; {platform.platform()}; load average "
                 f"{load_before:.1f} when the run started, {os.getloadavg()[0]:.1f} when it "
                 "ended (the machine is shared: the p99 figures and, to a lesser degree, the "
                 "p50 ones carry other jobs' noise)\n")
    lines.append("```\n" + "\n".join(lscpu) + "\n```\n")
    lines.append(f"**Data**: `cellcube synth --datasets {args.datasets} --cells {args.cells} "
                 f"--genes {args.genes}`, built with the default options: a store of "
                 f"{store_bytes / 1e6:,.1f} MB, {native['n_datasets']} datasets, "
                 f"{native['n_groups']:,} cell groups, {native['n_genes']:,} genes, "
                 f"{native['n_entries']:,} stored entries; opened (mapped and validated) in "
                 f"{native['open_s'] * 1000:,.0f} ms.\n")
    lines.append("**Queries** (chosen by `cellcube-bench-query` from the store):\n")
    lines.append(f"- *dot plot*: 20 genes (the 20 with the most stored entries), `--by cell_type "
                 f"--where {wcol}={wval} --datasets {dataset}`: {q['dotplot']['rows']} rows "
                 f"({q['dotplot']['splits']} cell types);")
    lines.append(f"- *atlas-wide*: the same genes, every dataset, `--by {atlas_col},cell_type`: "
                 f"{q['atlas']['rows']} rows.\n")
    lines.append("Latency (p50 / p99) and the ratio of each p50 to cellcube's in-process p50:\n")
    lines.append("| method | dot plot p50 / p99 | × cellcube | atlas-wide p50 / p99 | × cellcube |")
    lines.append("| --- | --- | --- | --- | --- |")
    for label, v in rows:
        cells = []
        for n in ("dotplot", "atlas"):
            p50, p99 = v[n]
            cells.append(f"{fmt(p50)} / {fmt(p99)}")
            cells.append(f"{p50 / base[n]:,.1f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"The seed's structures hold only the leaves of the 20 benchmark genes: {n_leaves:,} "
                 f"leaves (every (column, value, dataset, cell type) with cells, for the group-by "
                 f"columns {', '.join(s.columns[2:])}), computed with cellcube in {leaves_s:.1f} s. "
                 "Per leaf (8 metrics each):\n")
    lines.append("| method | build | size | per leaf |")
    lines.append("| --- | --- | --- | --- |")
    lines.append(f"| nested Python dict | (in memory) | {dict_bytes / 1e6:,.1f} MB traced "
                 f"({pickle_bytes / 1e6:,.1f} MB pickled) | {dict_bytes / n_leaves:,.0f} B |")
    lines.append(f"| h5py, one group per leaf | {h5_write_s:,.1f} s | {h5_bytes / 1e6:,.1f} MB | "
                 f"{h5_bytes / n_leaves:,.0f} B, {h5_write_s / n_leaves * 1e6:,.0f} µs to write |")
    lines.append(f"| Redis hashes | {redis_load_s:,.1f} s (pipelined) | {redis_bytes / 1e6:,.1f} MB used_memory | "
                 f"{redis_bytes / n_leaves:,.0f} B |")
    lines.append(f"| cellcube store (every gene, any roll-up) | see Build | {store_bytes / 1e6:,.1f} MB | "
                 f"{store_bytes / native['n_entries']:,.1f} B per (group, gene) entry |")
    lines.append("")
    lines.append(f"Scaled to all {native['n_genes']:,} genes, the seed's leaves would number "
                 f"~{n_leaves / len(genes) * native['n_genes']:,.0f}. Each seed structure answers only "
                 "one column's filter per leaf: the atlas-wide answer above pools the per-dataset "
                 "leaves in Python, and cross-filters (`--where stage=II --where sex=female`), splits "
                 "by two metadata columns, or a filter on one column with a split by another cannot "
                 "be answered from them at all; cellcube answers every combination from the same "
                 "store.\n")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
