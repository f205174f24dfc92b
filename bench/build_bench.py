#!/usr/bin/python3
"""Build benchmarks (issue 3): cellcube build against the plain libhdf5 floor and a
vectorised numpy/scipy implementation of the same aggregates, the store size for the
seed discussion's shape against its one-group-per-leaf HDF5 file, peak RSS while
building a 1M-cell dataset, and the issue's wide case (genes20k: 60,000 cells × 20,000
genes, 600 cell groups interleaved at random). Every figure is measured in this run;
results are printed as Markdown for docs/BENCHMARKS.md.

usage: /usr/bin/python3 bench/build_bench.py [--quick] [--parts speed,size,rss,genes20k] [--out FILE]
"""
import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np
import scipy.sparse as sp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CELLCUBE = os.environ.get("CELLCUBE_BIN", os.path.join(ROOT, "build", "cellcube"))


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def timed(fn, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def peak_rss_mb(cmd):
    """Runs cmd under /usr/bin/time -v; returns (seconds, peak RSS in MB)."""
    t0 = time.perf_counter()
    res = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
    secs = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-2000:])
    for line in res.stderr.splitlines():
        if "Maximum resident set size" in line:
            return secs, int(line.split()[-1]) / 1024
    raise RuntimeError("no RSS in /usr/bin/time output")


def floor_h5py(path):
    """Reads and decompresses the whole CSR matrix (data, indices, indptr) with libhdf5."""
    with h5py.File(path, "r") as f:
        g = f["X"]
        for part in ("data", "indices", "indptr"):
            g[part][...]


def numpy_aggregate(path, group_cols):
    """The same aggregates, vectorised with scipy: cp10k_log1p, then per group sums
    through a sparse indicator matrix."""
    import anndata

    a = anndata.read_h5ad(path)
    x = a.X.tocsr().astype(np.float64)
    totals = np.asarray(x.sum(axis=1)).ravel()
    scale = np.divide(1e4, totals, out=np.zeros_like(totals), where=totals > 0)
    x = sp.diags(scale) @ x
    x.data = np.log1p(x.data)
    keys = a.obs[group_cols].astype(str).agg("|".join, axis=1)
    codes, uniques = keys.factorize()
    ind = sp.csr_matrix((np.ones(len(codes)), (codes, np.arange(len(codes)))),
                        shape=(len(uniques), x.shape[0]))
    s = ind @ x
    sq = x.copy()
    sq.data **= 2
    ssq = ind @ sq
    nz = x.copy()
    nz.data = (nz.data > 0).astype(np.float64)
    n = ind @ nz
    return s, ssq, n


def write_genes20k(path, n_cells=60_000, n_genes=20_000, per_cell=1000, n_types=20, n_sub=30,
                   seed=20_000):
    """The issue's wide case: n_cells × n_genes raw counts with ~per_cell stored values per
    cell, written by anndata as gzip CSR (X/data float32, X/indices int32, X/indptr;
    anndata's default chunking). obs `cell_type` (n_types values) × `group` (n_sub
    values) gives n_types·n_sub cell groups, assigned to cells at random so every group
    is spread over the whole matrix. Genes have skewed detection rates (2–40% of cells).
    Vectorised numpy; deterministic for a given seed. Returns the stored values."""
    import anndata
    import pandas as pd

    rng = np.random.default_rng(seed)
    # Gene popularity: a power law over a random order of the genes.
    rank = rng.permutation(n_genes)
    p = 1.0 / (rank + 200.0) ** 0.7
    p /= p.sum()
    # Draw k genes per cell with replacement, k chosen so that ~per_cell stay distinct.
    lo, hi = float(per_cell), 4.0 * per_cell
    for _ in range(40):
        mid = (lo + hi) / 2
        if np.sum(1 - (1 - p) ** mid) < per_cell:
            lo = mid
        else:
            hi = mid
    k = int(round(hi))
    cdf = np.cumsum(p)
    cdf[-1] = 1.0
    idx = np.empty((n_cells, k), dtype=np.int32)
    step = 5000
    for s in range(0, n_cells, step):
        e = min(n_cells, s + step)
        idx[s:e] = np.searchsorted(cdf, rng.random((e - s, k)), side="right")
    idx.sort(axis=1)
    keep = np.ones(idx.shape, dtype=bool)
    keep[:, 1:] = idx[:, 1:] != idx[:, :-1]
    indices = idx[keep]
    del idx
    indptr = np.zeros(n_cells + 1, dtype=np.int64)
    np.cumsum(keep.sum(axis=1), out=indptr[1:])
    del keep
    data = rng.geometric(0.6, size=indices.size).astype(np.float32)  # counts 1, 2, 3, ...
    x = sp.csr_matrix((data, indices, indptr), shape=(n_cells, n_genes))
    combo = rng.integers(0, n_types * n_sub, size=n_cells)
    obs = pd.DataFrame({
        "cell_type": pd.Categorical([f"type_{t:02d}" for t in range(n_types)])[combo // n_sub],
        "group": pd.Categorical([f"group_{g:02d}" for g in range(n_sub)])[combo % n_sub],
    }, index=[f"cell_{i}" for i in range(n_cells)])
    var = pd.DataFrame(index=[f"ENSG{g:011d}" for g in range(n_genes)])
    anndata.AnnData(X=x, obs=obs, var=var, dtype=np.float32).write_h5ad(path, compression="gzip")
    return int(indices.size)


def machine():
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.platform()}"


def write_seed_shape(d, n_datasets=10, n_types=30, n_genes=400, cells_per_group=6, seed=0,
                     type_names=None):
    """Seed-shaped inputs: 10 datasets, 30 cell types, 3 metadata columns of 3 values,
    400 genes; every joint combination of the columns occurs. `type_names` (n_types
    labels) replaces type_00, type_01, ... (e.g. Cell Ontology labels)."""
    import anndata
    import pandas as pd

    rng = np.random.default_rng(seed)
    paths = []
    combos = [(t, a, b, c) for t in range(n_types) for a in range(3) for b in range(3) for c in range(3)]
    n = len(combos) * cells_per_group
    genes = [f"G{g:04d}" for g in range(n_genes)]
    for i in range(n_datasets):
        rows = np.repeat(np.arange(len(combos)), cells_per_group)
        obs = pd.DataFrame({
            "cell_type": pd.Categorical([type_names[combos[r][0]] if type_names else
                                         f"type_{combos[r][0]:02d}" for r in rows]),
            "stage": pd.Categorical([f"stage_{combos[r][1]}" for r in rows]),
            "sex": pd.Categorical([f"sex_{combos[r][2]}" for r in rows]),
            "condition": pd.Categorical([f"cond_{combos[r][3]}" for r in rows]),
        }, index=[f"d{i}_c{j}" for j in range(n)])
        counts = rng.poisson(3.0, size=(n, n_genes)).astype(np.float32)
        ad = anndata.AnnData(X=sp.csr_matrix(counts), obs=obs,
                             var=pd.DataFrame(index=genes), dtype=np.float32)
        p = os.path.join(d, f"seed_{i:02d}.h5ad")
        ad.write_h5ad(p, compression="gzip")
        paths.append(p)
    return paths


def seed_writer_bytes_per_leaf(d, n_leaves_target=20000):
    """The seed's one-group-per-leaf HDF5 layout (its write_dict_to_hdf5, re-implemented):
    nested groups metadata/group/dataset/celltype/gene holding attributes per metric."""
    path = os.path.join(d, "seed_layout.h5")
    rng = np.random.default_rng(1)
    n_metrics = 3
    leaves = 0
    t0 = time.perf_counter()
    with h5py.File(path, "w") as f:
        for m in range(3):
            for v in range(3):
                for ds in range(2):
                    for ct in range(30):
                        for g in range(60):
                            grp = f.create_group(f"meta_{m}/group_{v}/ds_{ds}/ct_{ct}/gene_{g}")
                            for k in range(n_metrics):
                                grp.create_dataset(f"Agg_metric_{k+1}", data=rng.random())
                            leaves += 1
                            if leaves >= n_leaves_target:
                                break
                        if leaves >= n_leaves_target:
                            break
                    if leaves >= n_leaves_target:
                        break
                if leaves >= n_leaves_target:
                    break
            if leaves >= n_leaves_target:
                break
    secs = time.perf_counter() - t0
    return os.path.getsize(path) / leaves, secs / leaves


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller inputs (a smoke run)")
    ap.add_argument("--out", help="also write the Markdown here")
    ap.add_argument("--parts", default="speed,size,rss,genes20k",
                    help="comma-separated: speed (build vs floor and numpy), size (the seed's "
                         "shape), rss (peak memory at 1M cells), genes20k (60,000 cells × "
                         "20,000 genes, 600 interleaved groups); default all")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    if not os.access(CELLCUBE, os.X_OK):
        sys.exit(f"build cellcube first ({CELLCUBE} missing)")
    tmp = tempfile.mkdtemp(prefix="cellcube-bench-")
    lines = []
    try:
        cells = 100_000 if args.quick else 500_000
        genes = 2000
        if "speed" in parts:
            d = os.path.join(tmp, "one")
            run([CELLCUBE, "synth", "-o", d, "--datasets", "1", "--cells", str(cells),
                 "--genes", str(genes), "--seed", "7", "--quiet"])
            src = os.path.join(d, sorted(os.listdir(d))[0])
            with h5py.File(src, "r") as f:
                nnz = f["X/data"].shape[0]
            store = os.path.join(tmp, "one.h5ad")
            groupby = "tissue,disease,cancer_stage,sex,donor"
            build = [CELLCUBE, "build", "-o", store, "--quiet", "--groupby", groupby, src]
            t_floor = timed(lambda: floor_h5py(src))
            t_build = timed(lambda: run(build))
            t_build1 = timed(lambda: run(build + ["--threads", "1"]))
            t_hdf5 = timed(lambda: run(build + ["--threads", "1", "--no-direct-reads"]), repeat=1)
            t0 = time.perf_counter()
            numpy_aggregate(src, ["cell_type"] + groupby.split(","))
            t_numpy = time.perf_counter() - t0
            lines += [
                f"### Build speed ({cells:,} cells × {genes:,} genes, {nnz:,} stored values, gzip CSR)",
                "",
                "| what | seconds | ratio |",
                "| --- | ---: | ---: |",
                f"| floor: h5py/libhdf5 reads and inflates data, indices, indptr | {t_floor:.2f} | 1.00 |",
                f"| `cellcube build`, 2 threads (direct chunk reads + libdeflate) | {t_build:.2f} | {t_build / t_floor:.2f} × floor |",
                f"| `cellcube build --threads 1` | {t_build1:.2f} | {t_build1 / t_floor:.2f} × floor |",
                f"| `cellcube build --threads 1`, reads through libhdf5 | {t_hdf5:.2f} | {t_hdf5 / t_floor:.2f} × floor |",
                f"| vectorised numpy/scipy (anndata read + sparse indicator products) | {t_numpy:.2f} | cellcube is {t_numpy / t_build:.1f}× faster |",
                "",
            ]

        # Store size for the seed's shape.
        if "size" in parts:
            sd = os.path.join(tmp, "seed")
            os.makedirs(sd)
            paths = write_seed_shape(sd, cells_per_group=2 if args.quick else 6)
            seed_store = os.path.join(tmp, "seed_store.h5ad")
            run([CELLCUBE, "build", "-o", seed_store, "--quiet", "--groupby", "stage,sex,condition"] + paths)
            info = run([CELLCUBE, "info", seed_store, "--json"]).stdout
            import json

            info = json.loads(info)
            entries, size = info["n_entries"], info["size_bytes"]
            seed_leaves = 10 * 30 * 3 * 3 * 400
            per_leaf, secs_per_leaf = seed_writer_bytes_per_leaf(sd, 5000 if args.quick else 20000)
            seed_size = per_leaf * seed_leaves
            lines += [
                "### Store size for the seed's shape (10 datasets, 30 cell types, 3 columns × 3 values, 400 genes)",
                "",
                f"| what | value |",
                "| --- | ---: |",
                f"| seed leaves (column, value, dataset, cell type, gene) | {seed_leaves:,} |",
                f"| seed layout, measured on {5000 if args.quick else 20000:,} leaves: bytes per leaf | {per_leaf:,.0f} |",
                f"| seed layout, whole file (extrapolated) | {seed_size / 1e6:,.0f} MB ({secs_per_leaf * seed_leaves:,.0f} s to write) |",
                f"| cellcube store: (group, gene) entries, every joint combination | {entries:,} |",
                f"| cellcube store: file size | {size / 1e6:,.1f} MB |",
                f"| cellcube store: bytes per stored entry (all statistics, index, metadata) | {size / entries:.1f} |",
                f"| seed file / cellcube store | {seed_size / size:.0f}× |",
                "",
            ]

        # Peak RSS for a 1M-cell dataset.
        if "rss" in parts:
            big_cells = 200_000 if args.quick else 1_000_000
            bd = os.path.join(tmp, "big")
            run([CELLCUBE, "synth", "-o", bd, "--datasets", "1", "--cells", str(big_cells),
                 "--genes", str(genes), "--seed", "11", "--quiet"])
            big = os.path.join(bd, sorted(os.listdir(bd))[0])
            secs, rss = peak_rss_mb([CELLCUBE, "build", "-o", os.path.join(tmp, "big.h5ad"), "--quiet", big])
            lines += [
                f"### Peak memory building one {big_cells:,}-cell dataset ({genes:,} genes, default options)",
                "",
                f"| what | value |",
                "| --- | ---: |",
                f"| input file | {os.path.getsize(big) / 1e6:,.0f} MB |",
                f"| build time | {secs:.1f} s |",
                f"| peak RSS | {rss:,.0f} MB |",
                "",
            ]

        # The wide case: 20,000 genes, 600 groups interleaved across the cells.
        if "genes20k" in parts:
            wide_cells = 20_000 if args.quick else 60_000
            wide_genes = 20_000
            wd = os.path.join(tmp, "genes20k")
            os.makedirs(wd)
            src = os.path.join(wd, "genes20k.h5ad")
            t0 = time.perf_counter()
            nnz = write_genes20k(src, n_cells=wide_cells, n_genes=wide_genes)
            load_before = os.getloadavg()[0]
            t_write = time.perf_counter() - t0
            with h5py.File(src, "r") as f:
                chunks = f["X/data"].chunks
                comp = f["X/data"].compression
            store = os.path.join(wd, "store.h5ad")
            build = [CELLCUBE, "build", "-o", store, "--quiet", "--cell-type", "cell_type",
                     "--groupby", "group", src]
            floor_h5py(src)  # the page cache warm for every timed step alike
            t_floor = timed(lambda: floor_h5py(src))
            t_build2 = timed(lambda: run(build + ["--threads", "2"]))
            t_build1 = timed(lambda: run(build + ["--threads", "1"]))
            import json

            info = json.loads(run([CELLCUBE, "info", store, "--json"]).stdout)
            t0 = time.perf_counter()
            numpy_aggregate(src, ["cell_type", "group"])
            t_numpy = time.perf_counter() - t0
            r2, r1 = t_build2 / t_floor, t_build1 / t_floor
            speedup = t_numpy / t_build2

            def verdict(ok):
                return "met" if ok else "**not met**"

            lines += [
                f"### Build speed, 20,000 genes ({wide_cells:,} cells × {wide_genes:,} genes, "
                f"{info['n_groups']:,} cell groups interleaved at random, {nnz:,} stored values, "
                f"gzip CSR)",
                "",
                f"Input: {os.path.getsize(src) / 1e6:,.0f} MB written by anndata "
                f"({comp}, X/data chunks {chunks}; {t_write:.0f} s to generate and write); "
                f"store: {info['n_entries']:,} entries, {info['size_bytes'] / 1e6:,.1f} MB. "
                f"Load average {load_before:.1f} before the timed steps, "
                f"{os.getloadavg()[0]:.1f} after.",
                "",
                "| what | seconds | ratio |",
                "| --- | ---: | ---: |",
                f"| floor: h5py/libhdf5 reads and inflates data, indices, indptr | {t_floor:.2f} | 1.00 |",
                f"| `cellcube build --threads 2` | {t_build2:.2f} | {r2:.2f} × floor |",
                f"| `cellcube build --threads 1` | {t_build1:.2f} | {r1:.2f} × floor |",
                f"| vectorised numpy/scipy (anndata read + sparse indicator products) | {t_numpy:.2f} | "
                f"{speedup:.2f} × build (2 threads) |",
                "",
                f"Goals: build ≤ 0.7× the floor with 2 threads — {verdict(r2 <= 0.7)} ({r2:.2f}×); "
                f"numpy/scipy ≥ 10× the build's time — {verdict(speedup >= 10)} ({speedup:.2f}×).",
                "",
            ]
        out = "\n".join([f"Machine: {machine()}", ""] + lines)
        print(out)
        if args.out:
            with open(args.out, "w") as f:
                f.write(out + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
