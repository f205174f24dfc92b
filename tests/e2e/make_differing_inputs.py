#!/usr/bin/python3
"""Inputs for the browser tests of datasets that differ: copies of two .h5ad files where
the first loses its donor column (donors in only some datasets), and both gain a column
with one value for every cell ('assay') and one whose cells are all missing ('note').
Usage: make_differing_inputs.py FIRST.h5ad SECOND.h5ad OUTDIR"""

import sys
import warnings
from pathlib import Path

import anndata
import numpy as np
import pandas as pd

warnings.filterwarnings("ignore")


def main():
    first, second, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    for source, drop_donor in ((first, True), (second, False)):
        a = anndata.read_h5ad(source)
        if drop_donor:
            a.obs = a.obs.drop(columns=["donor"])
        a.obs["assay"] = pd.Categorical(["10x 3' v3"] * a.n_obs)
        a.obs["note"] = pd.Categorical([np.nan] * a.n_obs, categories=["x"])
        a.write_h5ad(out / f"{Path(source).stem}_differs.h5ad")


if __name__ == "__main__":
    main()
