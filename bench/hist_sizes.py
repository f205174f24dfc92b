#!/usr/bin/env python3
"""Bytes of the histogram records per stored entry, by the entries' expressing cells
(docs/BENCHMARKS.md, "Histograms"). Decodes the record lengths from docs/FORMAT.md.

usage: /usr/bin/python3 bench/hist_sizes.py STORE...
"""
import h5py, numpy as np, sys
def lengths(path):
    f = h5py.File(path, "r")
    data = f["raw.cellcube/hist_data"][:]
    nnz = f["layers/nnz/data"][:].astype(np.int64)
    out = np.zeros(len(nnz), dtype=np.int64); at = 0
    for k, n in enumerate(nnz):
        if n == 0: continue
        if data[at] < 64: L = n
        else:
            lo, hi = data[at] & 63, data[at+1]; L = 2; c = 0
            while c < hi - lo + 1:
                if data[at+L] < 128: c += 1
                L += 1
        out[k] = L; at += L
    assert at == len(data)
    return nnz, out
for path in sys.argv[1:]:
    nnz, L = lengths(path)
    print(path, "entries", len(nnz), "mean nnz %.1f" % nnz.mean(), "hist B/entry %.2f" % L.mean())
    for lo, hi in ((1, 10), (10, 50), (80, 120), (500, 100000)):
        m = (nnz >= lo) & (nnz < hi)
        if m.any(): print("  nnz in [%d,%d): %d entries, %.2f B/entry" % (lo, hi, m.sum(), L[m].mean()))
