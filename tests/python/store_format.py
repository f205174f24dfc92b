"""Reading a cellcube store the way an anndata/h5py user would (docs/FORMAT.md), for the
tests' independent references, and writing format-1 and format-2 stores from format-3
ones to test that today's cellcube still reads them.

Format 3 adds to format 2 only what strip_format3 removes: raw.cellcube (entry_offsets
and the histogram records), uns/cellcube/histograms and the datasets' column
values_above_hist_max.

Format 2 keeps per (group, gene) nnz, sum (float64) and m2 = sum over the group's cells
of (v - sum/n_cells)^2 (float32); Σv² is m2 + sum²/n_cells. Which genes each dataset
measured is a packed bitset, uns/cellcube/measured, one row per dataset.
"""
from __future__ import annotations

import shutil

import h5py
import numpy as np
import scipy.sparse as sp


def format_version(uns) -> int:
    return int(str(np.asarray(uns["format_version"]).reshape(-1)[0]
                   if not isinstance(uns["format_version"], str) else uns["format_version"]))


def sumsq_layer(layers, n_cells) -> sp.csc_matrix:
    """Σv² per (group, gene) as a CSC matrix: the stored sumsq (format 1) or
    m2 + sum²/n_cells (format 2), in float64."""
    if "sumsq" in layers:
        return sp.csc_matrix(layers["sumsq"], dtype=np.float64)
    s = sp.csc_matrix(layers["sum"], dtype=np.float64)
    m2 = sp.csc_matrix(layers["m2"], dtype=np.float64)
    assert np.array_equal(s.indptr, m2.indptr) and np.array_equal(s.indices, m2.indices)
    n = np.asarray(n_cells, dtype=np.float64)[s.indices]
    return sp.csc_matrix((m2.data + s.data * s.data / n, s.indices, s.indptr), shape=s.shape)


def measured_gene_lists(uns, n_datasets: int, n_genes: int) -> list[np.ndarray]:
    """Per dataset, the ascending indices of the genes it measured."""
    if "measured" in uns:
        bits = np.asarray(uns["measured"], dtype=np.uint8)
        assert bits.shape == (n_datasets, 8 * ((n_genes + 63) // 64)), bits.shape
        flags = np.unpackbits(bits, axis=1, bitorder="little")[:, :n_genes]
        return [np.flatnonzero(flags[d]) for d in range(n_datasets)]
    mi = np.asarray(uns["measured_indptr"])
    mg = np.asarray(uns["measured_genes"])
    return [mg[mi[d]:mi[d + 1]] for d in range(n_datasets)]


def strip_format3(f: h5py.File) -> None:
    """Turns an open format-3 store into the format-2 store an older cellcube wrote."""
    if "raw.cellcube" in f:
        del f["raw.cellcube"]
    u = f["uns/cellcube"]
    if "histograms" in u:
        del u["histograms"]
    table = u["datasets"]
    if "values_above_hist_max" in table:
        del table["values_above_hist_max"]
        order = [c.decode() if isinstance(c, bytes) else str(c) for c in table.attrs["column-order"]]
        table.attrs["column-order"] = np.array([c for c in order if c != "values_above_hist_max"],
                                               dtype=h5py.string_dtype())
    del u["format_version"]
    u.create_dataset("format_version", data="2", dtype=h5py.string_dtype())


def write_format2(src: str, dst: str) -> None:
    """Rewrites the format-3 store `src` as the format-2 store `dst`."""
    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        strip_format3(f)


def write_format1(src: str, dst: str, sum_dtype: str = "float64") -> None:
    """Rewrites the format-3 store `src` as the format-1 store `dst` that cellcube 0.2
    wrote: layers nnz (uint32), sum and sumsq (both `sum_dtype`), measured genes as
    int32 lists with an int64 indptr."""
    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        strip_format3(f)
        layers = f["layers"]
        indptr = layers["nnz/indptr"][:]
        indices = layers["nnz/indices"][:]
        nnz = layers["nnz/data"][:].astype(np.uint32)
        s = layers["sum/data"][:].astype(np.float64)
        m2 = layers["m2/data"][:].astype(np.float64)
        n_cells = f["obs/n_cells"][:].astype(np.float64)
        sumsq = m2 + s * s / n_cells[indices]
        attrs = dict(layers["nnz"].attrs)
        for name in ("nnz", "sum", "m2"):
            del layers[name]
        for name, data in (("nnz", nnz), ("sum", s.astype(sum_dtype)),
                           ("sumsq", sumsq.astype(sum_dtype))):
            g = layers.create_group(name)
            for k, v in attrs.items():
                g.attrs[k] = v
            g.create_dataset("data", data=data)
            if name == "nnz":
                g.create_dataset("indices", data=indices)
                g.create_dataset("indptr", data=indptr)
            else:
                g["indices"] = layers["nnz/indices"]  # hard links, as format 1 had
                g["indptr"] = layers["nnz/indptr"]
        u = f["uns/cellcube"]
        n_genes = len(indptr) - 1
        lists = measured_gene_lists({"measured": u["measured"][:]}, u["measured"].shape[0], n_genes)
        del u["measured"]
        u.create_dataset("measured_indptr",
                         data=np.concatenate([[0], np.cumsum([len(x) for x in lists])]).astype(np.int64))
        u.create_dataset("measured_genes",
                         data=np.concatenate(lists).astype(np.int32) if lists else np.zeros(0, np.int32))
        del u["format_version"]
        u.create_dataset("format_version", data="1", dtype=h5py.string_dtype())
