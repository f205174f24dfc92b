#!/usr/bin/python3
"""Fallback inputs for the browser tests when build/cellcube has no `synth` command:
two small seeded .h5ad files (cell types, disease, sex, donor; integer counts) written
with anndata. Usage: make_inputs.py DIR [--cells N] [--genes N] [--seed N]"""

import argparse
import warnings
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp

warnings.filterwarnings("ignore")

MARKERS = {
    "T cell": ["CD3E", "CD3D", "IL7R"],
    "B cell": ["MS4A1", "CD79A"],
    "NK cell": ["NKG7", "GNLY"],
    "monocyte": ["CD14", "LYZ", "S100A8"],
    "epithelial cell": ["EPCAM", "KRT8"],
}


def write(path, rng, n_cells, n_genes, name):
    symbols = [g for gs in MARKERS.values() for g in gs] + ["ACTB", "GAPDH", "ISG15", "MX1"]
    symbols += [f"GENE{i}" for i in range(n_genes - len(symbols))]
    types = list(MARKERS)
    donors = [f"{name}_D{i}" for i in range(1, 6)]
    cell_type = rng.choice(types, n_cells)
    donor = rng.choice(donors, n_cells)
    ill = np.isin(donor, donors[:3])
    disease = np.where(ill, "COVID-19" if name.endswith("2") else "lung adenocarcinoma", "normal")
    sex = np.where(np.isin(donor, donors[::2]), "female", "male")
    rate = np.full((n_cells, n_genes), 0.05)
    for t, genes in MARKERS.items():
        cols = [symbols.index(g) for g in genes]
        rate[np.ix_(cell_type == t, cols)] = 3.0
    rate[:, [symbols.index("ACTB"), symbols.index("GAPDH")]] = 5.0
    rate[np.ix_(ill, [symbols.index("ISG15"), symbols.index("MX1")])] = 2.0
    counts = sp.csr_matrix(rng.poisson(rate).astype(np.int32))
    obs = pd.DataFrame(
        {c: pd.Categorical(v) for c, v in
         dict(cell_type=cell_type, disease=disease, sex=sex, donor=donor).items()},
        index=[f"{name}_cell{i}" for i in range(n_cells)])
    var = pd.DataFrame(index=symbols)
    anndata.AnnData(X=counts, obs=obs, var=var).write_h5ad(path, compression="gzip")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--cells", type=int, default=3000)
    ap.add_argument("--genes", type=int, default=300)
    ap.add_argument("--seed", type=int, default=3)
    a = ap.parse_args()
    out = Path(a.dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    for i in (1, 2):
        write(out / f"synth_0{i}.h5ad", rng, a.cells, a.genes, f"synth_0{i}")


if __name__ == "__main__":
    main()
