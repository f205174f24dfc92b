"""cellcube: query a cellcube store from Python.

    import cellcube
    s = cellcube.open("atlas.h5ad")
    df = s.query(["CD3E", "MS4A1"], by="cell_type",
                 where={"disease": "normal"}, metrics=["n_cells", "frac", "mean"])

``Store.query`` returns a pandas DataFrame with the columns of ``cellcube query
--format csv``: the ``by`` columns in the order given (labels as str, ``"NA"`` for a
missing value), ``gene`` (the store's gene id), then the metrics in the order given
(``n_cells`` and ``nnz`` int64, the others float64; NaN where the CSV has an empty
field). Rows are the splits in the by-columns' value order (NA last), genes in the
order asked; a (split, gene) without cells of a dataset that measured the gene has
no row. Metrics: n_cells, nnz, frac, sum, mean, mean_expr, var, std (docs/QUERY.md).

Each answer's notes (why there are no rows; datasets on different scales; scaled data,
whose rows have an empty mean_expr) are in ``df.attrs["notes"]`` and are also issued as
``CellcubeWarning``s, as the command line prints them on stderr.

Errors raise ``FileNotFoundError`` (no store at the path) or ``ValueError`` (an
unknown gene, column, value, dataset or metric, or a damaged store), with the same
one-line message as the command line. A Store is read-only and may be shared
between threads; queries release the GIL.
"""

from __future__ import annotations

import math
import warnings
from typing import Iterable, Mapping, Optional, Sequence, Union

from . import _cellcube

__all__ = ["open", "Store", "METRICS", "CellcubeWarning"]

METRICS = list(_cellcube.METRICS)

Names = Union[str, Iterable[str], None]


def _names(value: Names, what: str) -> list:
    """None -> [], a str -> [it], an iterable of str -> list."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    try:
        items = list(value)
    except TypeError:
        raise ValueError(f"{what} must be a str or a list of str, not {type(value).__name__}") from None
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{what} must be str, not {type(item).__name__} ({item!r})")
    return items


def _label(value) -> str:
    """A where value as the store labels it: None/NaN -> "NA", True -> "True", 3 -> "3"."""
    if value is None:
        return "NA"
    if isinstance(value, float) and math.isnan(value):
        return "NA"
    if isinstance(value, (bool, int, float, str)):
        return str(value)
    try:  # numpy scalars
        return str(value.item())
    except AttributeError:
        raise ValueError(f"where values must be str (or bool/int/float), not {type(value).__name__}") from None


def _where(where: Optional[Mapping]) -> list:
    if where is None:
        return []
    if not isinstance(where, Mapping):
        raise ValueError("where must be a dict {column: value or [values]}")
    out = []
    for column, values in where.items():
        if not isinstance(column, str):
            raise ValueError(f"where keys must be column names (str), not {column!r}")
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            values = [values]
        labels = [_label(v) for v in values]
        if not labels:
            raise ValueError(f"no value given for column '{column}'")
        out.append((column, labels))
    return out


class Store:
    """A cellcube store opened for queries (see cellcube.open)."""

    def __init__(self, native):
        self._s = native

    def __repr__(self):
        return (f"<cellcube.Store {self._s.path!r}: {len(self.datasets)} datasets, "
                f"{self._s.n_groups} groups, {len(self._s.gene_ids)} genes>")

    @property
    def path(self) -> str:
        return self._s.path

    @property
    def datasets(self) -> list:
        """The dataset names, in store order."""
        return self._s.datasets

    @property
    def preload(self) -> tuple:
        """What open(..., preload=True) did: (done, bytes, bytes on 2 MB pages, why not)."""
        return self._s.preload

    @property
    def columns(self) -> list:
        """The columns to split or filter by: dataset, cell_type, then the group-by columns."""
        return self._s.columns

    def values(self, column: str) -> list:
        """The values `column` takes, in its order, then "NA" if some cells lack one."""
        return self._s.values(column)

    @property
    def genes(self):
        """A DataFrame of the store's genes: `gene` (id) and `symbol` ("" when unknown)."""
        import pandas as pd

        return pd.DataFrame({"gene": self._s.gene_ids, "symbol": self._s.gene_symbols})

    def _args(self, genes, by, where, datasets, metrics):
        gene_list = _names(genes, "genes")
        if not gene_list:
            raise ValueError("no genes asked for")
        return (gene_list, _names(by, "by"), _where(where), _names(datasets, "datasets"),
                _names(metrics, "metrics"))

    def query(self, genes: Names, by: Names = None, where: Optional[Mapping] = None,
              datasets: Names = None, metrics: Names = None, rollup: Names = None):
        """Metrics per (split, gene) over the selected cells, as a pandas DataFrame.

        genes     gene ids or symbols (case-insensitive): a str or a list of str
        by        column(s) to split by, e.g. "cell_type" or ["tissue", "cell_type"]
        where     {column: value or [values]}: values of one column OR-ed, columns
                  AND-ed; values matched literally; None or "NA" selects missing values
        datasets  only these datasets (default: all)
        metrics   any of METRICS (default: n_cells, frac, mean)
        rollup    ontology-backed column(s) whose terms stand for their subtree
                  (docs/ONTOLOGY.md): a term in `where` selects its subtypes too, and
                  splitting by the column gives one row per term in tree order, with a
                  `depth` column after it

        Values of ontology-backed columns are term labels; df.attrs["term_ids"] maps each
        backed by-column's labels to their term ids.
        """
        import pandas as pd

        names, columns, notes, term_ids = self._s.query(
            *self._args(genes, by, where, datasets, metrics), rollup=_names(rollup, "rollup"))
        data = {}
        for name, col in zip(names, columns):
            data[name] = _object_column(col) if isinstance(col, list) else col  # labels, genes: str
        # A dict keeps the column order; passing columns= as well would make pandas
        # reindex (several times slower).
        frame = pd.DataFrame(data)
        frame.attrs["term_ids"] = {column: dict(ids) for column, ids in term_ids.items()}
        return _with_notes(frame, notes)

    def query_csv(self, genes: Names, by: Names = None, where: Optional[Mapping] = None,
                  datasets: Names = None, metrics: Names = None, rollup: Names = None) -> str:
        """The same query as CSV text, exactly as `cellcube query --format csv` prints it."""
        return self._s.query_text(*self._args(genes, by, where, datasets, metrics), "csv",
                                  rollup=_names(rollup, "rollup"))

    def query_json(self, genes: Names, by: Names = None, where: Optional[Mapping] = None,
                   datasets: Names = None, metrics: Names = None, rollup: Names = None) -> str:
        """The same query as JSON text, exactly as `cellcube query --format json` prints it."""
        return self._s.query_text(*self._args(genes, by, where, datasets, metrics), "json",
                                  rollup=_names(rollup, "rollup"))

    def distribution(self, genes: Names, by: Names = None, where: Optional[Mapping] = None,
                     datasets: Names = None, rollup: Names = None):
        """Each gene's distribution per split, from the store's histograms (docs/QUERY.md),
        as a pandas DataFrame with the columns of `cellcube distribution --format csv`: the
        by-columns, gene, n_cells, zeros (cells without a value above 0), bin_00 ... bin_63
        (expressing cells per bin; nullable Int64, <NA> in a row holding scaled data).
        Bin i covers (edges[i], edges[i + 1]], the 65 edges in df.attrs["edges"]; the
        answer's notes in df.attrs["notes"]. Arguments as in query().
        """
        import io

        import pandas as pd

        gene_list, by_list, where_list, dataset_list, _ = self._args(genes, by, where, datasets,
                                                                     None)
        text, notes, edges = self._s.distribution_text(gene_list, by_list, where_list,
                                                       dataset_list,
                                                       rollup=_names(rollup, "rollup"))
        label_types = {column: str for column in by_list}
        label_types["gene"] = str
        frame = pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[""],
                            dtype=label_types)
        zeros = list(frame.columns).index("zeros")
        for column in frame.columns[zeros:]:  # zeros and the bins
            frame[column] = frame[column].astype("Int64")
        frame["n_cells"] = frame["n_cells"].astype("int64")
        frame.attrs["edges"] = list(edges)
        return _with_notes(frame, notes)

    def de(self, compare: str, group1: Names, group2: Names = "rest",
           where: Optional[Mapping] = None, datasets: Names = None, test: str = "auto",
           donor: Optional[str] = None, min_cells: int = 10, min_frac: float = 0.0,
           direction: str = "both", top: Optional[int] = None, rollup: Names = None):
        """Differential expression between two sides of the selected cells (docs/DE.md), as
        a pandas DataFrame with the columns of `cellcube de --format csv` (NaN = empty; the
        counts nullable Int64; a gene without a symbol ""), the test that ran in
        df.attrs["test"] and the answer's notes in df.attrs["notes"].

        compare   the column whose values make the sides, e.g. "cell_type"
        group1    side 1's value(s) of that column
        group2    side 2's value(s), or "rest" (default): every other selected group
        where, datasets   the population, as in query()
        test      "auto" (default), "donors" (pseudobulk), "cells" (Welch) or "wilcoxon"
                  (Mann-Whitney U on the binned values; t holds z, effect the AUC)
        donor     the donor column (default: donor, donor_id, individual, patient, subject)
        min_cells a donor counts on a side with this many cells there (default 10)
        min_frac, direction, top   filters, as `cellcube de`
        rollup    ontology-backed column(s) rolled up (docs/ONTOLOGY.md): with `compare`
                  among them, group1's term is its whole subtree, and "rest" leaves out
                  the cells labelled with the term's ancestors
        """
        return _frame(*self._de(compare, group1, group2, where, datasets, test, donor,
                                min_cells, min_frac, direction, top, rollup))

    def de_csv(self, compare: str, group1: Names, group2: Names = "rest",
               where: Optional[Mapping] = None, datasets: Names = None, test: str = "auto",
               donor: Optional[str] = None, min_cells: int = 10, min_frac: float = 0.0,
               direction: str = "both", top: Optional[int] = None,
               rollup: Names = None) -> str:
        """de() as CSV text, exactly as `cellcube de --format csv` prints it."""
        return self._de(compare, group1, group2, where, datasets, test, donor, min_cells,
                        min_frac, direction, top, rollup, fmt="csv")[0]

    def _de(self, compare, group1, group2, where, datasets, test, donor, min_cells, min_frac,
            direction, top, rollup, fmt="columns"):
        """A DE's (names, columns, notes, test), or with fmt="csv" its (CSV text, notes, test)."""
        return self._s.de_text(compare, _names(group1, "group1"), _names(group2, "group2"),
                               _where(where), _names(datasets, "datasets"), test, donor or "",
                               int(min_cells), float(min_frac), direction,
                               -1 if top is None else int(top), fmt,
                               rollup=_names(rollup, "rollup"))

    def markers(self, column: str = "cell_type", where: Optional[Mapping] = None,
                datasets: Names = None, top: int = 10, max_padj: float = 0.05,
                test: str = "auto", donor: Optional[str] = None, min_cells: int = 10,
                rollup: Names = None, direction: str = "up", min_frac: float = 0.0):
        """Marker genes of each value of `column` (docs/DE.md), as a pandas DataFrame with the
        columns of `cellcube markers --format csv`, as de() gives them (attrs included).
        With `column` in `rollup` (docs/ONTOLOGY.md), one block per term a rolled-up query
        shows. direction "up" (default: higher in the value than in the rest), "down" or
        "both", and min_frac, as `cellcube markers --direction/--min-frac`."""
        return _frame(*self._s.markers_text(column, _where(where), _names(datasets, "datasets"),
                                            int(top), float(max_padj), test, donor or "",
                                            int(min_cells), "columns",
                                            rollup=_names(rollup, "rollup"),
                                            direction=direction, min_frac=float(min_frac)))


class CellcubeWarning(UserWarning):
    """A note on an answer: datasets on different scales, scaled data, no rows and why."""


def _with_notes(frame, notes):
    """The frame with its answer's notes in ``frame.attrs["notes"]``, each also warned
    (CellcubeWarning), as the command line prints them on stderr."""
    frame.attrs["notes"] = list(notes)
    for note in notes:
        warnings.warn(note, CellcubeWarning, stacklevel=3)
    return frame


def _object_column(values):
    """A list of str as a numpy object array (pandas keeps it as it is)."""
    import numpy as np

    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


def _frame(names, columns, notes, test):
    """A DataFrame of a DE or markers answer, built from its columns (no text parsed): the
    columns of the CSV, labels, genes and symbols as str (a gene without a symbol ""),
    the counts nullable Int64 (<NA> where the CSV is empty), the other numbers float64
    (NaN where it is empty); the answer's notes in attrs["notes"] and the test that ran
    in attrs["test"] ("cells", "donors-paired", "donors-unpaired", "wilcoxon"; markers:
    "mixed" when the values' tests differ)."""
    import pandas as pd

    data = {}
    for name, col in zip(names, columns):
        if isinstance(col, tuple):  # a count: (values, missing)
            data[name] = pd.arrays.IntegerArray(col[0], col[1])
        elif isinstance(col, list):
            data[name] = _object_column(col)
        else:
            data[name] = col
    frame = pd.DataFrame(data)
    frame.attrs["test"] = test
    return _with_notes(frame, notes)


def open(path, preload: bool = False) -> Store:  # noqa: A001 - the documented name
    """Opens a cellcube store (memory-mapped, validated) for queries. With preload=True its
    arrays are copied into memory on 2 MB pages when they take at most three quarters of
    the memory available (`cellcube serve --preload`): a DE across the whole store takes
    fewer page faults. Store.preload says what happened: (done, bytes, bytes on 2 MB
    pages, why not)."""
    import os

    return Store(_cellcube.open(os.fspath(path), preload=bool(preload)))
