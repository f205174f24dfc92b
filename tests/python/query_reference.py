"""Inputs and an independent float64 reference for the query tests (docs/QUERY.md, docs/BUILD.md).

``write_inputs(dir)`` writes three seeded datasets with anndata's write_h5ad:

  "lung,a"  CSR float32 counts, genes G000-G059; obs cell_type (with missing values and
            labels containing ',' and '='), stage (missing values), sex, condition
            (values 'a,b', 'x=y', 'p=q,r', 'plain'), treated (bool); gene G005 is zero
            in every cell and one cell is zero in every gene; explicit stored zeros.
  "blood"   dense float64 counts, genes G010-G079 (lacks G000-G009, adds G060-G079);
            obs cell_type, stage, sex only (no condition, no treated).
  "gut"     CSC int32 counts, genes G000-G029 and G080-G089 (G081 is zero everywhere,
            so the store has no entry for it); obs cell_type, stage, sex, treated.

Genes G003 and G007 share the symbol "DUP"; every other gene i has symbol "Sym<i>".

``build_store(cellcube, dir)`` builds the store with `cellcube build` and `cellcube add`
(a transform chosen per dataset: log1p, log1p, cp10k_log1p).

``Reference(inputs)`` reads the SOURCE files back with anndata, applies the transform
in float64, and ``Reference.expected(...)`` answers a query by pooling the selected
cells' values per (split, gene) and computing every metric with numpy (np.var with
ddof=1 and so on), without the store's sums.
"""

from __future__ import annotations

import csv
import io
import math
import os
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

import helpers

warnings.filterwarnings("ignore")

METRICS = ["n_cells", "nnz", "frac", "sum", "mean", "mean_expr", "var", "std",
           "median", "q05", "q25", "q75", "q95", "median_expr", "max"]
# What every store answers, histograms or not (format 1 and 2 stores, --no-histograms).
BASE_METRICS = METRICS[:8]
DISTRIBUTION_METRICS = {"median": 0.5, "q05": 0.05, "q25": 0.25, "q75": 0.75, "q95": 0.95}
HIST_MAX = math.log(10001)  # the store's default upper edge
DEFAULT_METRICS = ["n_cells", "frac", "mean"]
CELL_TYPES = ["T cell", "B cell", "NK cell", "mono, classical", "x=y"]
CONDITIONS = ["a,b", "x=y", "p=q,r", "plain"]

# name, genes, transform, --groupby, writer details
DATASETS = [
    ("lung,a", list(range(0, 60)), "log1p", "stage,sex,condition,treated"),
    ("blood", list(range(10, 80)), "log1p", "stage,sex"),
    ("gut", list(range(0, 30)) + list(range(80, 90)), "cp10k_log1p", "stage,sex,treated"),
]
FILES = {"lung,a": "lung.h5ad", "blood": "blood.h5ad", "gut": "gut.h5ad"}


def gene_id(i):
    return f"G{i:03d}"


def gene_symbol(i):
    return "DUP" if i in (3, 7) else f"Sym{i}"


# --------------------------------------------------------------------------
# binaries and the module, from $CELLCUBE_BUILD (what the Makefile passes), else
# $CELLCUBE_BIN's directory, else <repo>/build
# --------------------------------------------------------------------------


def build_dir() -> Path:
    if os.environ.get("CELLCUBE_BUILD"):
        return Path(os.environ["CELLCUBE_BUILD"])
    if os.environ.get("CELLCUBE_BIN"):
        return Path(os.environ["CELLCUBE_BIN"]).parent
    return helpers.REPO / "build"


def cellcube_binary() -> Path:
    return helpers.require_binary(build_dir() / "cellcube", "cellcube")


# --------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------


def _categorical(rng, n, values, missing=0.0):
    v = rng.choice(values, size=n).astype(object)
    if missing:
        v[rng.random(n) < missing] = None
    return pd.Categorical(v, categories=values)


def _counts(rng, n_obs, n_vars, zero_gene=None, zero_cell=True):
    mask = rng.random((n_obs, n_vars)) < 0.35
    d = np.where(mask, rng.poisson(3.0, size=(n_obs, n_vars)) + 1, 0).astype(np.float64)
    if zero_cell:
        d[int(rng.integers(0, n_obs)), :] = 0
    if zero_gene is not None:
        d[:, zero_gene] = 0
    return d


def write_inputs(outdir: Path) -> dict:
    """{dataset name: path} of the three inputs."""
    import anndata as ad

    rng = np.random.default_rng(20240604)
    outdir.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, genes, _transform, _groupby in DATASETS:
        n = {"lung,a": 300, "blood": 250, "gut": 200}[name]
        var = pd.DataFrame({"symbol": [gene_symbol(i) for i in genes]},
                           index=pd.Index([gene_id(i) for i in genes]))
        obs = {"cell_type": _categorical(rng, n, CELL_TYPES + (["plasma"] if name == "blood" else []),
                                         missing=0.06),
               "sex": _categorical(rng, n, ["F", "M"])}
        if name == "lung,a":
            obs["stage"] = _categorical(rng, n, ["I", "II", "III"], missing=0.1)
            obs["condition"] = _categorical(rng, n, CONDITIONS)
            obs["treated"] = rng.random(n) < 0.4
            d = _counts(rng, n, len(genes), zero_gene=genes.index(5))
            # CSR float32 with 7 explicit stored zeros
            coo = sp.coo_matrix(d.astype(np.float32))
            zr, zc = np.nonzero(d == 0)
            extra = rng.choice(len(zr), size=7, replace=False)
            rows = np.concatenate([coo.row, zr[extra]])
            cols = np.concatenate([coo.col, zc[extra]])
            vals = np.concatenate([coo.data, np.zeros(7, np.float32)])
            X = sp.csr_matrix((vals, (rows, cols)), shape=d.shape, dtype=np.float32)
            assert X.nnz == coo.nnz + 7
        elif name == "blood":
            obs["stage"] = _categorical(rng, n, ["II", "III", "IV"], missing=0.05)
            d = _counts(rng, n, len(genes))
            X = d
        else:
            obs["stage"] = _categorical(rng, n, ["I", "III", "IV"], missing=0.0)
            obs["treated"] = rng.random(n) < 0.5
            d = _counts(rng, n, len(genes), zero_gene=genes.index(81))
            X = sp.csc_matrix(d.astype(np.int32))
        obs = pd.DataFrame(obs, index=pd.Index([f"{name}-cell{i}" for i in range(n)]))
        path = outdir / FILES[name]
        ad.AnnData(X=X, obs=obs, var=var, dtype=X.dtype).write_h5ad(path)
        out[name] = path
    return out


def build_store(cellcube, inputs: dict, store: Path):
    """build (first dataset) + add (the others), each with its transform and group-by."""
    for k, (name, _genes, transform, groupby) in enumerate(DATASETS):
        cmd = [cellcube, "build", "-o", store] if k == 0 else [cellcube, "add", store]
        cmd += ["--cell-type", "cell_type", "--groupby", groupby, "--transform", transform,
                "--quiet", f"{name}={inputs[name]}"]
        proc = helpers.run(cmd)
        assert proc.returncode == 0, "building the test store failed\n" + helpers.describe(proc)
    return store


# --------------------------------------------------------------------------
# the reference
# --------------------------------------------------------------------------


class _Dataset:
    def __init__(self, name, path, transform):
        import anndata as ad

        a = ad.read_h5ad(path)
        X = a.X.toarray() if sp.issparse(a.X) else np.asarray(a.X)
        X = X.astype(np.float64)
        if transform == "log1p":
            V = np.log1p(X)
        elif transform == "cp10k_log1p":
            total = X.sum(axis=1, keepdims=True)
            scale = np.divide(1e4, total, out=np.zeros_like(total), where=total > 0)
            V = np.log1p(X * scale)
        else:
            V = X
        self.name = name
        self.V = V
        self.n = V.shape[0]
        self.gene_col = {g: j for j, g in enumerate(a.var_names)}
        self.labels = {"dataset": np.array([name] * self.n, dtype=object)}
        for col in a.obs.columns:
            s = a.obs[col]
            vals = np.empty(self.n, dtype=object)
            for i, v in enumerate(s.astype(object)):
                if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
                    vals[i] = None
                elif isinstance(v, (bool, np.bool_)):
                    vals[i] = "True" if v else "False"
                else:
                    vals[i] = str(v)
            self.labels[col] = vals

    def column(self, col):
        return self.labels.get(col, np.array([None] * self.n, dtype=object))


class Reference:
    def __init__(self, inputs: dict, store: Path):
        import anndata as ad

        self.datasets = [_Dataset(name, inputs[name], transform)
                         for name, _g, transform, _gb in DATASETS]
        s = ad.read_h5ad(store)
        # Presentation order only: the store's category order per column, NA last.
        self.order = {c: list(s.obs[c].cat.categories) for c in s.obs.columns
                      if hasattr(s.obs[c], "cat")}
        self.store_genes = list(s.var_names)
        self.store_symbols = list(s.var["symbol"]) if "symbol" in s.var else [""] * len(s.var_names)

    def resolve(self, names):
        """Gene ids for names: ids (case-insensitive) first, else symbols; dedup in order."""
        out = []
        for name in names:
            ids = [g for g in self.store_genes if g.lower() == name.lower()]
            if not ids:
                ids = [g for g, sym in zip(self.store_genes, self.store_symbols)
                       if sym and sym.lower() == name.lower()]
            assert ids, f"test bug: {name!r} is no gene"
            out += [g for g in ids if g not in out]
        return out

    def _position(self, col, label):
        cats = self.order[col]
        return len(cats) if label is None else cats.index(label)

    @staticmethod
    def _selected(ds, where):
        """Per cell of `ds`, whether the where filters keep it (OR within a column)."""
        mask = np.ones(ds.n, dtype=bool)
        for col, values in (where or {}).items():
            labs = ds.column(col)
            m = np.zeros(ds.n, dtype=bool)
            for v in values:
                m |= np.array([x is None for x in labs]) if v == "NA" else (labs == v)
            mask &= m
        return mask

    def scale_note(self, where=None, datasets=None):
        """What `cellcube query` prints on stderr for an answer with rows over this
        selection: a note when its cells come from datasets aggregated with different
        transforms (the datasets per transform, in store order), else nothing."""
        by_transform = {}
        for ds, (_name, _g, transform, _gb) in zip(self.datasets, DATASETS):
            if (not datasets or ds.name in datasets) and self._selected(ds, where).any():
                by_transform.setdefault(transform, []).append(f"'{ds.name}'")
        if len(by_transform) < 2:
            return ""
        listed = "; ".join(f"{t}: {', '.join(names)}" for t, names in sorted(by_transform.items()))
        return (f"cellcube: the selected cells come from datasets aggregated with different "
                f"transforms ({listed}): their values are on different scales, pooled and "
                f"compared anyway\n")

    def not_measured_note(self, genes, where=None, datasets=None):
        """What `cellcube query` prints on stderr before the notes of an answer with rows:
        per gene answered (in order), the selected datasets (those holding selected cells,
        in store order) that did not measure it, named by the gene's symbol (else id)."""
        selected = [ds for ds in self.datasets
                    if (not datasets or ds.name in datasets) and self._selected(ds, where).any()]
        out = ""
        for g in self.resolve(genes):
            missing = [f"'{ds.name}'" for ds in selected if g not in ds.gene_col]
            if not missing:
                continue
            sym = self.store_symbols[self.store_genes.index(g)] or g
            what = "dataset" if len(missing) == 1 else "datasets"
            out += (f"cellcube: {sym} was not measured in {len(missing)} selected {what} "
                    f"({', '.join(missing[:10])}{', ...' if len(missing) > 10 else ''}): "
                    f"their cells are not counted for it\n")
        return out

    def cli_note(self, genes, where=None, datasets=None):
        """All a non-empty `cellcube query` prints on stderr: not_measured_note, then
        scale_note."""
        return self.not_measured_note(genes, where, datasets) + self.scale_note(where, datasets)

    def selects_cells(self, where=None, datasets=None):
        """Whether the datasets and where filters leave any cell at all."""
        return any(self._selected(ds, where).any() for ds in self.datasets
                   if not datasets or ds.name in datasets)

    def pooled(self, genes, by=(), where=None, datasets=None):
        """[(split labels tuple, gene id, values)] over the selected cells, in output order:
        each (split, gene)'s cells of the datasets that measured the gene."""
        ids = self.resolve(genes)
        pooled = {}  # (split labels tuple, gene) -> list of value arrays
        for ds in self.datasets:
            if datasets and ds.name not in datasets:
                continue
            mask = self._selected(ds, where)
            if not mask.any():
                continue
            keys = [tuple(ds.column(c)[i] for c in by) for i in range(ds.n)]
            for key in {k for k, m in zip(keys, mask) if m}:
                cells = mask & np.array([k == key for k in keys])
                for g in ids:
                    if g in ds.gene_col:
                        pooled.setdefault((key, g), []).append(ds.V[cells, ds.gene_col[g]])
        splits = sorted({k for k, _g in pooled},
                        key=lambda key: tuple(self._position(c, l) for c, l in zip(by, key)))
        out = []
        for key in splits:
            for g in ids:
                if (key, g) in pooled:
                    v = np.concatenate(pooled[(key, g)])
                    if len(v):
                        out.append((key, g, v))
        return out

    def expected(self, genes, by=(), where=None, datasets=None, metrics=None):
        """Rows [{col: str, ..., 'gene': id, metric: int/float/None}] in output order."""
        metrics = metrics or DEFAULT_METRICS
        rows = []
        for key, g, v in self.pooled(genes, by, where, datasets):
            row = {c: ("NA" if l is None else l) for c, l in zip(by, key)}
            row["gene"] = g
            for m in metrics:
                row[m] = metric(m, v)
            rows.append(row)
        return rows


def hist_edges(hist_max=HIST_MAX):
    """The 65 edges of docs/FORMAT.md's layout: i * (H / 64) as doubles, the last H."""
    w = hist_max / 64
    return np.array([i * w for i in range(64)] + [hist_max])


def histogram(v, hist_max=HIST_MAX):
    """Counts per bin of the values above 0 (bin i: edges[i] < v <= edges[i + 1]; above H
    in the last bin), by numpy's search of the edges: independent of cellcube's rule."""
    pos = np.asarray(v, dtype=np.float64)
    pos = pos[pos > 0]
    b = np.searchsorted(hist_edges(hist_max), pos, side="left") - 1
    return np.bincount(np.clip(b, 0, 63), minlength=64).astype(np.int64)


def hist_quantile(counts, zeros, q, hist_max=HIST_MAX):
    """The quantile of docs/QUERY.md: zeros a point mass at 0, each bin's cells spread
    evenly over it; None when there are no cells."""
    n = zeros + int(counts.sum())
    if n == 0:
        return None
    r = q * n
    if r <= zeros:
        return 0.0
    w = hist_max / 64
    below = zeros
    for i, c in enumerate(counts):
        c = int(c)
        if c and below + c >= r:
            return (i * w if i < 64 else hist_max) + w * (r - below) / c
        below += c
    raise AssertionError("test bug: quantile beyond the cells")


def hist_max_value(counts, hist_max=HIST_MAX):
    nonzero = np.nonzero(counts)[0]
    return float(hist_edges(hist_max)[nonzero[-1] + 1]) if len(nonzero) else 0.0


def metric(name, v):
    n = len(v)
    nnz = int((v > 0).sum())
    if name in DISTRIBUTION_METRICS:
        return hist_quantile(histogram(v), n - nnz, DISTRIBUTION_METRICS[name])
    if name == "median_expr":
        return hist_quantile(histogram(v), 0, 0.5) if nnz else None
    if name == "max":
        return hist_max_value(histogram(v))
    return {
        "n_cells": n,
        "nnz": nnz,
        "frac": nnz / n,
        "sum": float(v.sum()),
        "mean": float(v.mean()),
        "mean_expr": float(v[v > 0].mean()) if nnz else None,
        "var": float(np.var(v, ddof=1)) if n >= 2 else None,
        "std": float(np.std(v, ddof=1)) if n >= 2 else None,
    }[name]


# --------------------------------------------------------------------------
# comparing
# --------------------------------------------------------------------------


def parse_csv(text):
    """CSV text -> (header, [dict of str])."""
    reader = csv.reader(io.StringIO(text))
    rows = list(reader)
    assert rows, "no CSV header"
    header = rows[0]
    return header, [dict(zip(header, r)) for r in rows[1:]]


def value_problems(m, got, want):
    """'' if `got` (str from CSV, '' = missing) is `want` within docs/QUERY.md's tolerance."""
    if want is None:
        return "" if got == "" else f"{m}: got {got!r}, want missing"
    if got == "":
        return f"{m}: got missing, want {want!r}"
    if m in ("n_cells", "nnz"):
        return "" if got == str(want) else f"{m}: got {got}, want {want}"
    x = float(got)
    if m == "frac":
        return "" if x == want else f"frac: got {x!r}, want {want!r} (exact)"
    if m in ("sum", "mean", "mean_expr"):
        ok = abs(x - want) <= 1e-5 * abs(want) or (want == 0 and x == 0)
    elif m in DISTRIBUTION_METRICS or m in ("median_expr", "max"):
        ok = abs(x - want) <= 1e-12 * max(1.0, abs(want))  # exact to the histogram definition
    else:
        ok = abs(x - want) <= max(1e-4 * abs(want), 1e-6)
    return "" if ok else f"{m}: got {x!r}, want {want!r}"


def compare_rows(header, got_rows, want_rows, by, metrics):
    want_header = list(by) + ["gene"] + list(metrics)
    problems = []
    if header != want_header:
        problems.append(f"header {header} != {want_header}")
        return problems
    if len(got_rows) != len(want_rows):
        problems.append(f"{len(got_rows)} rows, want {len(want_rows)}")
    for i, (g, w) in enumerate(zip(got_rows, want_rows)):
        key_g = [g[c] for c in list(by) + ["gene"]]
        key_w = [w[c] for c in list(by) + ["gene"]]
        if key_g != key_w:
            problems.append(f"row {i}: split/gene {key_g} != {key_w}")
            continue
        for m in metrics:
            p = value_problems(m, g[m], w[m])
            if p:
                problems.append(f"row {i} {key_w}: {p}")
    if len(got_rows) > len(want_rows):
        problems.append(f"extra rows, first {got_rows[len(want_rows)]}")
    elif len(got_rows) < len(want_rows):
        problems.append(f"missing rows, first {want_rows[len(got_rows)]}")
    return problems[:20]


def query_args(genes, by=(), where=None, datasets=None, metrics=None):
    args = ["--genes", ",".join(genes)]
    if by:
        args += ["--by", ",".join(by)]
    for col, values in (where or {}).items():
        for v in values:
            args += ["--where", f"{col}={v}"]
    if datasets:
        args += ["--datasets", ",".join(datasets)]
    if metrics:
        args += ["--metrics", ",".join(metrics)]
    return args


def python_env(build: Path) -> dict:
    """Environment for a Python subprocess importing the module from <build>/python.
    An ASan/UBSan build needs the sanitizer runtime preloaded into the interpreter, with
    libstdc++ (else ASan's __cxa_throw interceptor finds no real __cxa_throw: python3
    does not link libstdc++), and leak checks off (the interpreter keeps its objects)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(build / "python")
    cache = build / "CMakeCache.txt"
    if cache.is_file() and "CELLCUBE_SANITIZE:BOOL=ON" in cache.read_text(errors="replace"):
        def lib(compiler, name):
            return subprocess.run([compiler, f"-print-file-name={name}"], capture_output=True,
                                  text=True).stdout.strip()
        env["LD_PRELOAD"] = f"{lib('gcc', 'libasan.so')} {lib('g++', 'libstdc++.so.6')}"
        env["ASAN_OPTIONS"] = "detect_leaks=0:" + env.get("ASAN_OPTIONS", "")
    return env
