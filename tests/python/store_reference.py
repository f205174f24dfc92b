"""Independent reference for cellcube stores (docs/QUERY.md, docs/FORMAT.md; docs/FORMAT.md).

* ``expected_dataset(path, ...)`` computes, with anndata + numpy in float64,
  what a store must hold for one input file: the chosen matrix, transform,
  cell-type and group-by columns, the cell groups with their cell counts, and
  per (group, gene) nnz / sum / sumsq of the transformed values, plus which
  entries must be stored (some cell's value nonzero).
* ``StoreView(path)`` reads a store with ``anndata.read_h5ad`` and cross-checks
  every array it uses against a plain h5py read of the same file.
* ``compare_dataset`` / ``digest`` / ``compare_digests`` turn the two into lists
  of human-readable problems (empty = agreement).

Nothing about the inputs is hard-coded: the rules below are docs/QUERY.md/§5's, the
data are read back from the files.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

import store_format

import reference

warnings.filterwarnings("ignore", module="anndata")

CELL_TYPE_CANDIDATES = ["cell_type", "celltype", "cell_ontology_class", "CellType",
                        "cell_type_ontology_term_id", "leiden", "louvain"]
SYMBOL_CANDIDATES = ["feature_name", "gene_symbols", "gene_symbol", "gene_name", "symbol"]
AUTO_GROUPBY_MIN, AUTO_GROUPBY_MAX = 2, 200
AUTO_GROUPBY_MIN_MEAN_CELLS = 5  # docs/SCALING.md: default groups average at least this many cells
TRANSFORM_SAMPLE = 10000
DATASET_COLUMNS = ["source", "source_size", "source_mtime", "n_cells", "n_genes", "n_groups",
                   "matrix", "transform", "cell_type_column", "groupby", "gene_symbols_column"]
MAX_PROBLEMS = 15


def _read(path):
    import anndata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return anndata.read_h5ad(str(path))


def _s(x):
    return x.decode() if isinstance(x, bytes) else str(x)


# --------------------------------------------------------------------------
# expected contents for one input
# --------------------------------------------------------------------------


def choose_matrix(path, matrix="auto") -> str:
    """The matrix path as the store's `matrix` column names it."""
    with h5py.File(path, "r") as f:
        has_raw = "raw" in f and isinstance(f["raw"], h5py.Group) and "X" in f["raw"]
        if matrix == "auto":
            if has_raw:
                return "raw/X"
            if "raw.X" in f:
                return "raw.X"
            if "layers" in f and "counts" in f["layers"]:
                return "layers/counts"
            return "X"
        if matrix == "raw":
            return "raw/X" if has_raw else "raw.X"
        return matrix


def first_stored_values(path, matrix, n=TRANSFORM_SAMPLE) -> np.ndarray:
    """The first n stored values of a matrix, in storage order."""
    with h5py.File(path, "r") as f:
        obj = f[matrix]
        if isinstance(obj, h5py.Dataset):
            rows = max(1, -(-n // max(1, obj.shape[1])))
            return np.asarray(obj[:rows], dtype=np.float64).ravel()[:n]
        return np.asarray(obj["data"][:n], dtype=np.float64)


def choose_transform(path, matrix, transform="auto") -> str:
    if transform != "auto":
        return transform
    v = first_stored_values(path, matrix)
    return "cp10k_log1p" if bool(np.all(v >= 0) and np.all(v == np.floor(v))) else "none"


def apply_transform(x: np.ndarray, transform: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if transform == "none":
        return x.copy()
    if transform == "log1p":
        return np.log1p(x)
    if transform == "cp10k_log1p":
        total = x.sum(axis=1, keepdims=True)
        scaled = np.divide(x * 1e4, total, out=np.zeros_like(x), where=total != 0)
        return np.log1p(scaled)
    raise ValueError(transform)


def choose_cell_type(obs: pd.DataFrame, cell_type=None) -> str:
    if cell_type:
        return cell_type
    for c in CELL_TYPE_CANDIDATES:
        if c in obs.columns:
            return c
    raise LookupError("no cell-type column")


def count_groups(obs: pd.DataFrame, columns: list) -> int:
    """Distinct combinations of the columns' labels (missing = a value of its own)."""
    labels = [reference.column_labels(obs[c]) for c in columns]
    return len(set(zip(*labels))) if labels else min(len(obs), 1)


DESIGN_WORDS = {"donor", "donors", "individual", "patient", "subject", "sample", "source",
                "condition", "disease", "tissue", "stage", "treatment", "sex"}


def is_design_column(name) -> bool:
    """docs/BUILD.md: a word of the name (split at non-alphanumerics, any case) names the
    study's design."""
    import re

    return any(w.lower() in DESIGN_WORDS for w in re.split(r"[^A-Za-z0-9]+", str(name)) if w)


def default_groupby_choice(obs: pd.DataFrame, cell_type_col: str) -> dict:
    """docs/SCALING.md's default --groupby: of the other categorical (or boolean) obs columns
    with 2 or more distinct values, leave out the identifier-like ones (more than 200
    values, or more than half the cells); then, while the groups of cell type + the
    columns average fewer than 5 cells, drop the column with the most values (the later
    one in obs order on a tie). The id column of a CELLxGENE pair (COL_ontology_term_id
    beside COL) is never a candidate.  {"chosen": [names], "identifier_like": [(name, n_values)],
    "dropped": [(name, groups with it still in)], "n_groups": groups of the choice}."""
    n_cells = len(obs)
    chosen, identifier_like, dropped = [], [], []
    n_values = {}
    for name in obs.columns:
        if name in (cell_type_col, "dataset", "cell_type"):
            continue
        # A CELLxGENE pair's id column groups exactly as its label column (docs/BUILD.md).
        suffix = "_ontology_term_id"
        if str(name).endswith(suffix) and str(name)[: -len(suffix)] in obs.columns:
            continue
        kind = reference.column_kind(obs[name])
        if kind not in ("categorical", "boolean", "nullable-boolean"):
            continue
        n = int(obs[name].nunique(dropna=True))
        if n < AUTO_GROUPBY_MIN:
            continue
        if n > AUTO_GROUPBY_MAX or 2 * n > n_cells:
            identifier_like.append((str(name), n))
            continue
        chosen.append(str(name))
        n_values[str(name)] = n
    n_groups = count_groups(obs, [cell_type_col] + chosen)
    while chosen and n_cells < AUTO_GROUPBY_MIN_MEAN_CELLS * n_groups:
        # Columns naming the study's design go last (docs/BUILD.md).
        pool = [c for c in chosen if not is_design_column(c)] or chosen
        most = max(n_values[c] for c in pool)
        widest = [c for c in pool if n_values[c] == most][-1]
        dropped.append((widest, n_groups))
        chosen.remove(widest)
        n_groups = count_groups(obs, [cell_type_col] + chosen)
    return {"chosen": chosen, "identifier_like": identifier_like, "dropped": dropped,
            "n_groups": n_groups}


def default_groupby(obs: pd.DataFrame, cell_type_col: str) -> list:
    """The columns docs/SCALING.md's default --groupby takes (default_groupby_choice)."""
    return default_groupby_choice(obs, cell_type_col)["chosen"]


def make_unique(ids) -> list:
    import anndata.utils

    return [str(x) for x in anndata.utils.make_index_unique(pd.Index([str(i) for i in ids]))]


@dataclass
class Expected:
    name: str
    record: dict  # the uns/cellcube/datasets row (without the index)
    gene_ids: list
    symbols: list  # per gene, "" when unknown
    columns: list  # "cell_type", then the group-by columns
    keys: list  # per group: tuple of labels (None = NA), aligned with columns
    n_cells: np.ndarray  # per group
    nnz: np.ndarray  # groups x genes
    sum: np.ndarray
    sumsq: np.ndarray
    abssum: np.ndarray
    stored: np.ndarray  # bool: some cell's value nonzero
    cell_labels: dict = field(default_factory=dict)  # column -> per-cell labels

    def key_set(self, g) -> frozenset:
        return frozenset((c, l) for c, l in zip(self.columns, self.keys[g]) if l is not None)


def expected_dataset(path, name=None, *, source=None, cell_type=None, groupby=None, matrix="auto",
                     transform="auto", gene_symbols=None) -> Expected:
    """What the store holds for the input `path` built with these options
    (groupby=None: the default; a list: as given)."""
    path = Path(path)
    name = name or path.stem
    adata = _read(path)
    mpath = choose_matrix(path, matrix)
    values, var = reference.matrix_from_adata(adata, mpath)
    dense = values.toarray() if sp.issparse(values) else np.asarray(values)
    tr = choose_transform(path, mpath, transform)
    v = apply_transform(dense, tr)

    ct = choose_cell_type(adata.obs, cell_type)
    gb = default_groupby(adata.obs, ct) if groupby is None else [g for g in groupby if g != ct]
    labels = {"cell_type": reference.column_labels(adata.obs[ct])}
    for g in gb:
        labels[g] = reference.column_labels(adata.obs[g])
    columns = ["cell_type"] + gb
    per_cell = list(zip(*(labels[c] for c in columns)))
    index = {}
    group_of_cell = np.empty(adata.n_obs, dtype=np.int64)
    for i, k in enumerate(per_cell):
        group_of_cell[i] = index.setdefault(k, len(index))
    keys = list(index)
    n_groups = len(keys)
    G = sp.csr_matrix((np.ones(adata.n_obs), (group_of_cell, np.arange(adata.n_obs))),
                      shape=(n_groups, adata.n_obs))
    nnz = np.rint(G @ (v > 0).astype(np.float64)).astype(np.int64)
    ssum = G @ v
    sumsq = G @ (v * v)
    abssum = G @ np.abs(v)
    stored = (G @ (v != 0).astype(np.float64)) > 0
    n_cells = np.bincount(group_of_cell, minlength=n_groups)

    ids = make_unique(var.index)
    sym_col = gene_symbols
    if sym_col is None:
        sym_col = next((c for c in SYMBOL_CANDIDATES if c in var.columns), "")
    if sym_col:
        symbols = ["" if (s is None or (isinstance(s, float) and math.isnan(s))) else str(s)
                   for s in var[sym_col].tolist()]
    else:
        symbols = [""] * len(ids)

    st = os.stat(path)
    record = {
        "source": str(source if source is not None else path),
        "source_size": int(st.st_size),
        "source_mtime": int(st.st_mtime),
        "n_cells": int(adata.n_obs),
        "n_genes": len(ids),
        "n_groups": n_groups,
        "matrix": mpath,
        "transform": tr,
        "cell_type_column": ct,
        "groupby": ",".join(gb),
        "gene_symbols_column": sym_col,
    }
    return Expected(name, record, ids, symbols, columns, keys, n_cells, nnz, ssum, sumsq, abssum,
                    stored, labels)


# --------------------------------------------------------------------------
# reading a store
# --------------------------------------------------------------------------


class StoreView:
    """A store read with anndata; `h5_problems` lists every disagreement with h5py."""

    def __init__(self, path):
        self.path = Path(path)
        self.adata = a = _read(path)
        obs = a.obs
        self.obs_columns = [str(c) for c in obs.columns]
        self.columns = [c for c in self.obs_columns if c != "n_cells"]
        self.labels = {}
        for c in self.columns:
            s = obs[c]
            self.labels[c] = [None if (x is None or (isinstance(x, float) and math.isnan(x))) else str(x)
                              for x in s.astype(object).tolist()]
        self.n_cells = obs["n_cells"].to_numpy() if "n_cells" in obs else None
        self.genes = [str(g) for g in a.var_names]
        self.gene_index = {g: j for j, g in enumerate(self.genes)}
        self.symbols = ([("" if not isinstance(s, str) else s) for s in a.var["symbol"].tolist()]
                        if "symbol" in a.var else None)
        self.layers = {k: sp.csc_matrix(a.layers[k]) if not sp.isspmatrix_csc(a.layers[k]) else a.layers[k]
                       for k in a.layers.keys()}
        # Σv² as an anndata user recovers it (FORMAT.md): m2 + sum²/n_cells in format 2.
        self.stored_layers = dict(self.layers)
        if "m2" in self.layers and "sum" in self.layers and self.n_cells is not None:
            self.layers["sumsq"] = store_format.sumsq_layer(self.layers, self.n_cells)
        self.layer_types = {k: type(a.layers[k]) for k in a.layers.keys()}
        uns = a.uns.get("cellcube", {})
        self.uns = uns
        ds = uns.get("datasets")
        self.datasets = ds if isinstance(ds, pd.DataFrame) else None
        self.dataset_names = [str(x) for x in self.datasets.index] if self.datasets is not None else []
        self.measured = {}
        if "measured" in uns or "measured_indptr" in uns:
            lists = store_format.measured_gene_lists(uns, len(self.dataset_names), len(self.genes))
            for name, genes in zip(self.dataset_names, lists):
                self.measured[name] = [self.genes[j] for j in genes]
        self.h5_problems = self._cross_check()

    # -- h5py cross-check
    def _cross_check(self) -> list:
        p = []
        with h5py.File(self.path, "r") as f:
            order = [_s(x) for x in np.atleast_1d(f["obs"].attrs.get("column-order", []))]
            if order != self.obs_columns:
                p.append(f"h5py obs column-order {order} != anndata {self.obs_columns}")
            for c in self.columns:
                if c not in f["obs"]:
                    continue
                g = f["obs"][c]
                cats = [_s(x) for x in g["categories"][:]]
                codes = g["codes"][:]
                lab = [None if k < 0 else cats[k] for k in codes]
                if lab != self.labels[c]:
                    p.append(f"obs[{c!r}]: h5py labels differ from anndata's")
            if "n_cells" in f["obs"] and self.n_cells is not None:
                if not np.array_equal(f["obs"]["n_cells"][:], self.n_cells):
                    p.append("obs n_cells: h5py differs from anndata")
            vi = [_s(x) for x in f["var"][_s(f["var"].attrs["_index"])][:]]
            if vi != self.genes:
                p.append("var index: h5py differs from anndata")
            for k, m in self.stored_layers.items():
                g = f["layers"][k]
                for part in ("data", "indices", "indptr"):
                    if not np.array_equal(g[part][:], getattr(m, part)):
                        p.append(f"layers/{k}/{part}: h5py differs from anndata")
            u = f["uns/cellcube"] if "uns/cellcube" in f else None
            if u is not None:
                for k in ("measured", "measured_indptr", "measured_genes"):
                    if k in u and not np.array_equal(u[k][:], np.asarray(self.uns.get(k))):
                        p.append(f"uns/cellcube/{k}: h5py differs from anndata")
        return p

    # -- access
    def rows_of(self, dataset) -> np.ndarray:
        return np.array([i for i, d in enumerate(self.labels["dataset"]) if d == dataset], dtype=np.int64)

    def key_set(self, row) -> frozenset:
        return frozenset((c, self.labels[c][row]) for c in self.columns[1:] if self.labels[c][row] is not None)

    def record(self, dataset) -> dict:
        row = self.datasets.loc[dataset]
        out = {}
        for c in DATASET_COLUMNS:
            if c not in self.datasets.columns:
                out[c] = "<absent>"
                continue
            x = row[c]
            out[c] = int(x) if isinstance(x, (int, np.integer)) else (x if isinstance(x, str) else x)
        return out

    def dense_rows(self, rows):
        """nnz, sum, sumsq (float64) and the stored pattern of the given rows."""
        out = []
        for k in ("nnz", "sum", "sumsq"):
            out.append(np.asarray(self.layers[k][rows, :].toarray(), dtype=np.float64))
        pat = self.layers["nnz"].copy()
        pat.data = np.ones_like(pat.data, dtype=np.float64)
        out.append(np.asarray(pat[rows, :].toarray()) > 0)
        return out


# --------------------------------------------------------------------------
# comparisons
# --------------------------------------------------------------------------


def _close(got, want, scale, rtol):
    return np.abs(got - want) <= rtol * np.abs(want) + 1e-9 * scale + 1e-30


class _Problems(list):
    """Problem lines, at most MAX_PROBLEMS and a line saying more were left out."""

    def add(self, msg):
        if len(self) < MAX_PROBLEMS:
            self.append(msg)
        elif len(self) == MAX_PROBLEMS:
            self.append("... (more problems not shown)")


def compare_dataset(view: StoreView, exp: Expected, rtol=1e-5) -> list:
    """Problems with dataset `exp.name` in the store, against the reference."""
    name = exp.name
    if name not in view.dataset_names:
        return [f"dataset {name!r} not in uns/cellcube/datasets ({view.dataset_names})"]
    P = _Problems()
    _record_problems(view, exp, P)
    _measured_problems(view, exp, P)
    row_of_key, exp_keys = _group_problems(view, exp, P)
    matched = [(g, row_of_key[k]) for g, k in enumerate(exp_keys) if k in row_of_key]
    if matched:
        _value_problems(view, exp, exp_keys, matched, rtol, P)
    return list(P)


def _record_problems(view, exp, P):
    got_rec = view.record(exp.name)
    for k, w in exp.record.items():
        g = got_rec.get(k)
        if k == "groupby":  # order as the columns are chosen; compare as lists
            if sorted(str(g).split(",")) != sorted(w.split(",")):
                P.add(f"{exp.name}: datasets.groupby = {g!r}, want {w!r}")
        elif g != w:
            P.add(f"{exp.name}: datasets.{k} = {g!r}, want {w!r}")


def _measured_problems(view, exp, P):
    name = exp.name
    measured = view.measured.get(name)
    if measured is None:
        P.add(f"{name}: no measured genes recorded")
        measured = []
    if sorted(measured) != sorted(exp.gene_ids):
        missing = sorted(set(exp.gene_ids) - set(measured))[:5]
        extra = sorted(set(measured) - set(exp.gene_ids))[:5]
        P.add(f"{name}: measured genes differ: {len(measured)} recorded, {len(exp.gene_ids)} in the "
              f"file; missing e.g. {missing}, extra e.g. {extra}")


def _group_problems(view, exp, P):
    """The dataset's group rows against the reference's groups; returns the store's row
    of each key and the reference's keys."""
    name = exp.name
    rows = view.rows_of(name)
    own = set(exp.columns)
    for c in view.columns[1:]:
        if c not in own:
            bad = [r for r in rows if view.labels[c][r] is not None]
            if bad:
                P.add(f"{name}: column {c!r} is not one of its grouping columns but group row {bad[0]} "
                      f"has value {view.labels[c][bad[0]]!r} (want NA)")
    for c in exp.columns:
        if c not in view.columns:
            P.add(f"{name}: grouping column {c!r} missing from the store's obs ({view.columns})")
    row_of_key = {}
    for r in rows:
        k = view.key_set(r)
        if k in row_of_key:
            P.add(f"{name}: two group rows ({row_of_key[k]}, {r}) with the same values {sorted(k)}")
        row_of_key[k] = r
    exp_keys = [exp.key_set(g) for g in range(len(exp.keys))]
    want_set = set(exp_keys)
    for k in sorted(set(row_of_key) - want_set, key=str)[:5]:
        P.add(f"{name}: store has a group the reference lacks: {sorted(k)}")
    for k in sorted(want_set - set(row_of_key), key=str)[:5]:
        P.add(f"{name}: store lacks the group {sorted(k)}")
    if len(rows) != len(exp.keys):
        P.add(f"{name}: {len(rows)} group rows, want {len(exp.keys)}")
    return row_of_key, exp_keys


def _value_problems(view, exp, exp_keys, matched, rtol, P):
    """n_cells per group; which (group, gene) entries are stored; nnz, sum and sumsq."""
    name = exp.name
    eg = np.array([g for g, _ in matched])
    sr = np.array([r for _, r in matched])
    for g, r in matched:
        if int(view.n_cells[r]) != int(exp.n_cells[g]):
            P.add(f"{name}: group {sorted(exp_keys[g])}: n_cells {view.n_cells[r]} want {exp.n_cells[g]}")

    nnz, ssum, sumsq, pat = view.dense_rows(sr)
    # entries of genes the dataset did not measure
    cols = np.array([view.gene_index.get(gid, -1) for gid in exp.gene_ids])
    for j, gid in enumerate(exp.gene_ids):
        if cols[j] < 0:
            P.add(f"{name}: gene {gid!r} it measured is not in the store's var")
    not_measured = np.ones(len(view.genes), dtype=bool)
    not_measured[cols[cols >= 0]] = False
    if pat[:, not_measured].any():
        gi, gj = np.argwhere(pat[:, not_measured])[0]
        gene = np.array(view.genes)[not_measured][gj]
        P.add(f"{name}: entry in gene {gene!r}, which the dataset did not measure "
              f"(group {sorted(exp_keys[eg[gi]])})")
    ok = cols >= 0
    ec = np.nonzero(ok)[0]
    sc = cols[ok]
    g_pat = pat[:, sc]
    w_pat = exp.stored[eg][:, ec]

    def where(mask, what, got, want):
        for i, j in np.argwhere(mask)[:4]:
            P.add(f"{name}: group {sorted(exp_keys[eg[i]])}, gene {exp.gene_ids[ec[j]]!r}: {what} "
                  f"got {got[i, j]!r} want {want[i, j]!r}")
        n = int(mask.sum())
        if n > 4:
            P.add(f"{name}: ... {what}: {n} (group, gene) pairs differ in all")

    where(g_pat != w_pat, "entry stored", g_pat, w_pat)
    both = g_pat & w_pat
    w_nnz = exp.nnz[eg][:, ec].astype(np.float64)
    where(both & (nnz[:, sc] != w_nnz), "nnz", nnz[:, sc], w_nnz)
    scale = exp.abssum[eg][:, ec]
    w_sum = exp.sum[eg][:, ec]
    where(both & ~_close(ssum[:, sc], w_sum, scale, rtol), "sum", ssum[:, sc], w_sum)
    w_sq = exp.sumsq[eg][:, ec]
    where(both & ~_close(sumsq[:, sc], w_sq, w_sq, rtol), "sumsq", sumsq[:, sc], w_sq)


def expected_symbols(exps) -> dict:
    """gene -> symbol: the first dataset (in store order) with a symbol wins."""
    out = {}
    for e in exps:
        for gid, s in zip(e.gene_ids, e.symbols):
            if not out.get(gid):
                out[gid] = s
    return out


def ordering_problems(view: StoreView) -> list:
    """FORMAT.md: the groups of one dataset are consecutive rows, datasets in the order
    of uns/cellcube/datasets, each sorted by the codes its input gave its values,
    missing last. The first dataset's values come first in the store's categories, so
    its rows must also be sorted by the store's codes; later datasets' need not."""
    P = []
    with h5py.File(view.path, "r") as f:
        codes = {c: f["obs"][c]["codes"][:].astype(np.int64) for c in view.columns}
    big = np.iinfo(np.int64).max
    start = 0
    for d in view.dataset_names:
        rows = list(view.rows_of(d))
        if rows != list(range(start, start + len(rows))):
            P.append(f"{d}: its groups are not consecutive rows from {start}")
        start += len(rows)
    for d in view.dataset_names[:1]:
        rows = view.rows_of(d)
        gb = str(view.datasets.loc[d, "groupby"])
        cols = ["cell_type"] + [c for c in gb.split(",") if c]
        keys = [tuple(big if codes[c][r] < 0 else codes[c][r] for c in cols) for r in rows]
        for a, b, ra, rb in zip(keys, keys[1:], rows, rows[1:]):
            if not a < b:
                la = tuple(view.labels[c][ra] for c in cols)
                lb = tuple(view.labels[c][rb] for c in cols)
                P.append(f"{d}: group row {ra} {la} (store codes {a}) comes before row {rb} {lb} "
                         f"(store codes {b}); columns {cols}, NA last")
                break
    return [p.replace(str(big), "NA") for p in P]


# --------------------------------------------------------------------------
# store-to-store comparison (add / remove / merge)
# --------------------------------------------------------------------------


def digest(view: StoreView) -> dict:
    entries = {}
    m = {k: view.layers[k] for k in ("nnz", "sum", "sumsq")}
    keys = [(view.labels["dataset"][r], view.key_set(r)) for r in range(len(view.n_cells))]
    for j, gene in enumerate(view.genes):
        lo, hi = m["nnz"].indptr[j], m["nnz"].indptr[j + 1]
        for k in range(lo, hi):
            r = m["nnz"].indices[k]
            entries[keys[r] + (gene,)] = (int(m["nnz"].data[k]), float(m["sum"].data[k]),
                                          float(m["sumsq"].data[k]))
    used = {}
    for c in view.columns:
        used[c] = {l for l in view.labels[c] if l is not None}
    return {
        "datasets": {d: view.record(d) for d in view.dataset_names},
        "groups": {k: int(n) for k, n in zip(keys, view.n_cells)},
        "entries": entries,
        "measured": {d: frozenset(g) for d, g in view.measured.items()},
        "genes": set(view.genes),
        "symbols": dict(zip(view.genes, view.symbols or [])),
        "columns": set(view.columns),
        "labels_used": used,
    }


def restrict(dg: dict, datasets) -> dict:
    """The part of a digest that concerns the given datasets."""
    ds = set(datasets)
    genes = set().union(*(dg["measured"].get(d, frozenset()) for d in ds)) if ds else set()
    return {
        "datasets": {d: r for d, r in dg["datasets"].items() if d in ds},
        "groups": {k: v for k, v in dg["groups"].items() if k[0] in ds},
        "entries": {k: v for k, v in dg["entries"].items() if k[0] in ds},
        "measured": {d: g for d, g in dg["measured"].items() if d in ds},
        "symbols": {g: s for g, s in dg["symbols"].items() if g in genes},
    }


def compare_digests(got: dict, want: dict, rtol=1e-6, ignore_record_fields=()) -> list:
    P = []

    def add(msg):
        if len(P) < MAX_PROBLEMS:
            P.append(msg)

    gd, wd = got.get("datasets", {}), want.get("datasets", {})
    if list(gd) != list(wd):
        add(f"datasets: got {list(gd)} want {list(wd)}")
    for d in wd:
        if d in gd:
            for k, w in wd[d].items():
                if k in ignore_record_fields:
                    continue
                if gd[d].get(k) != w:
                    add(f"datasets[{d!r}].{k}: got {gd[d].get(k)!r} want {w!r}")
    for key in ("genes", "columns"):
        if key in want and got.get(key) != want[key]:
            add(f"{key}: only in got {sorted(got.get(key, set()) - want[key])[:8]}, "
                f"only in want {sorted(want[key] - got.get(key, set()))[:8]}")
    if "labels_used" in want:
        for c, w in want["labels_used"].items():
            g = got.get("labels_used", {}).get(c)
            if g is not None and g != w:
                add(f"values of column {c!r}: only in got {sorted(g - w)[:5]}, only in want {sorted(w - g)[:5]}")
    if got.get("measured") != want.get("measured"):
        for d in set(got.get("measured", {})) | set(want.get("measured", {})):
            a, b = got["measured"].get(d, frozenset()), want["measured"].get(d, frozenset())
            if a != b:
                add(f"measured genes of {d!r}: only in got {sorted(a - b)[:5]}, only in want {sorted(b - a)[:5]}")
    if got.get("symbols") != want.get("symbols"):
        diff = [g for g in set(got["symbols"]) | set(want["symbols"])
                if got["symbols"].get(g) != want["symbols"].get(g)]
        add(f"symbols differ for {len(diff)} genes, e.g. {[(g, got['symbols'].get(g), want['symbols'].get(g)) for g in sorted(diff)[:3]]}")
    gg, wg = got["groups"], want["groups"]
    if gg != wg:
        only_g = [k for k in gg if k not in wg][:3]
        only_w = [k for k in wg if k not in gg][:3]
        ncell = [(k, gg[k], wg[k]) for k in gg if k in wg and gg[k] != wg[k]][:3]
        add(f"groups differ: {len(gg)} vs {len(wg)}; only in got {only_g}; only in want {only_w}; "
            f"n_cells differ {ncell}")
    ge, we = got["entries"], want["entries"]
    only_g = [k for k in ge if k not in we]
    only_w = [k for k in we if k not in ge]
    if only_g or only_w:
        add(f"entries: {len(only_g)} only in got (e.g. {only_g[:2]}), {len(only_w)} only in want "
            f"(e.g. {only_w[:2]})")
    bad = 0
    for k, w in we.items():
        g = ge.get(k)
        if g is None:
            continue
        if g[0] != w[0] or not math.isclose(g[1], w[1], rel_tol=rtol, abs_tol=1e-12) or not math.isclose(
            g[2], w[2], rel_tol=rtol, abs_tol=1e-12
        ):
            bad += 1
            if bad <= 3:
                add(f"entry {k}: got (nnz, sum, sumsq) {g} want {w}")
    if bad > 3:
        add(f"... {bad} entries differ in all")
    return P
