"""The histogram layer as build, add, remove and merge write it (docs/FORMAT.md, format 3).

Every store here is read back with h5py only: the records in raw.cellcube/hist_data are
decoded by `decode_record` below, written from the format's description (not by calling
cellcube), and each entry's 64 bins are compared with numpy's binning of its cells'
transformed values (the transform reproduced with numpy, as the other build tests do).
Binning by the definition: bin i holds e_i < v <= e_(i+1), e_i = i * (H / 64) as a double,
e_64 = H, values above H in bin 63; here with np.searchsorted over the edges, not with
cellcube's ceil(v / w) and corrections.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import helpers
import reference
import store_format
import store_reference as sr
from helpers import run, run_ok

BINS = 64
DEFAULT_MAX = 9.210440366976517  # ln(10001), the largest cp10k_log1p value


# --------------------------------------------------------------------------
# an independent reader of format 3
# --------------------------------------------------------------------------


class BadRecord(AssertionError):
    """A record that breaks docs/FORMAT.md's encoding."""


def _varint_length(v: int) -> int:
    return max(1, (int(v).bit_length() + 6) // 7)


def decode_record(buf: np.ndarray, at: int, nnz: int) -> tuple[np.ndarray, int]:
    """The bins of the record at `at` of an entry of `nnz` expressing cells, and its
    length. A list (first byte < 64): nnz bin bytes, ascending. A range (first byte
    0x40 | lo): lo, then hi, then hi - lo + 1 LEB128 counts. Whichever is shorter is
    written, the list on a tie. Raises BadRecord on anything else
    (test_decoder_refuses_broken_records shows each check firing)."""
    bins = np.zeros(BINS, dtype=np.int64)
    if nnz == 0:
        return bins, 0
    first = int(buf[at])
    if first < BINS:
        listed = buf[at:at + nnz].astype(np.int64)
        if len(listed) != nnz:
            raise BadRecord(f"list of {nnz} bins cut short at {len(listed)}")
        if np.any(np.diff(listed) < 0):
            raise BadRecord(f"list bins not ascending: {listed.tolist()}")
        if listed.max() >= BINS:
            raise BadRecord(f"list bin {listed.max()} beyond the last bin")
        np.add.at(bins, listed, 1)
        lo, hi = int(listed[0]), int(listed[-1])
        as_range = 2 + sum(_varint_length(c) for c in bins[lo:hi + 1])
        if nnz > as_range:
            raise BadRecord(f"a list of {nnz} bytes where a range takes {as_range}")
        return bins, nnz
    if first & 0xC0 != 0x40:
        raise BadRecord(f"unknown record form {first:#x}")
    lo, hi = first & 0x3F, int(buf[at + 1])
    if not lo <= hi < BINS:
        raise BadRecord(f"bad bin range {lo}..{hi}")
    p = at + 2
    for b in range(lo, hi + 1):
        value, shift = 0, 0
        while True:
            if p >= len(buf):
                raise BadRecord("range record cut short")
            byte = int(buf[p])
            p += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        bins[b] = value
    if bins[lo] == 0 or bins[hi] == 0:
        raise BadRecord("a range whose end bin is empty")
    if bins.sum() != nnz:
        raise BadRecord(f"range counts add up to {bins.sum()}, not {nnz}")
    if p - at >= nnz:  # the shorter form is written, the list on a tie
        raise BadRecord(f"a range of {p - at} bytes where a list takes {nnz}")
    return bins, p - at


def test_decoder_refuses_broken_records():
    """The independent decoder above can fail: every one of its checks refuses a record
    built to break it, and it decodes the well-formed ones."""
    def record(*b):
        return np.array(b, dtype=np.uint8)

    good_list, n = decode_record(record(3, 5, 5), 0, 3)
    assert n == 3 and good_list[3] == 1 and good_list[5] == 2
    good_range, n = decode_record(record(0x40 | 10, 12, 100, 0, 100), 0, 200)
    assert n == 5 and good_range[10] == 100 and good_range[12] == 100
    broken = [
        (record(3, 5), 3, "cut short"),
        (record(5, 3, 5), 3, "not ascending"),
        (record(3, 70, 70), 3, "beyond the last bin"),
        (record(*([7] * 20)), 20, "where a range takes"),  # 3 bytes as a range
        (record(0x80, 1), 1, "unknown record form"),
        (record(0x40 | 12, 10, 1), 1, "bad bin range"),
        (record(0x40 | 10, 12, 100, 0), 200, "cut short"),
        (record(0x40 | 10, 12, 0, 0, 100), 100, "end bin is empty"),
        (record(0x40 | 10, 12, 100, 0, 100), 201, "add up to"),
        (record(0x40 | 10, 11, 1, 1), 2, "where a list takes"),
    ]
    for buf, nnz, why in broken:
        with pytest.raises(BadRecord, match=why):
            decode_record(buf, 0, nnz)


class Store:
    """A format-3 store's arrays and histograms, read with h5py."""

    def __init__(self, path):
        with h5py.File(path, "r") as f:
            self.indptr = f["layers/nnz/indptr"][:]
            self.indices = f["layers/nnz/indices"][:]
            self.nnz = f["layers/nnz/data"][:].astype(np.int64)
            self.n_cells = f["obs/n_cells"][:]
            cats = [x.decode() for x in f["obs/dataset/categories"][:]]
            self.dataset_of_group = np.array(cats, dtype=object)[f["obs/dataset/codes"][:]]
            self.datasets = cats
            table = f["uns/cellcube/datasets"]
            self.above = dict(zip(cats, table["values_above_hist_max"][:].tolist()))
            self.negative = dict(zip(cats, table["negative_values"][:].tolist()))
            self.version = f["uns/cellcube/format_version"][()].decode()
            raw = f["raw.cellcube"]
            self.entry_offsets = raw["entry_offsets"][:]
            self.has_histograms = "histograms" in f["uns/cellcube"]
            if self.has_histograms:
                h = f["uns/cellcube/histograms"]
                assert int(h["bins"][()]) == BINS
                self.max = float(h["max"][()])
                self.hist_data = raw["hist_data"][:]
                self.hist_indptr = raw["hist_indptr"][:]
                self.hist_offsets = raw["hist_offsets"][:]
                assert self.hist_data.dtype == np.uint8 and self.hist_indptr.dtype == np.int64
                assert self.hist_offsets.dtype == np.uint32
            else:
                assert "hist_data" not in raw and "hist_offsets" not in raw
        assert self.entry_offsets.dtype == np.uint32
        self.n_genes = len(self.indptr) - 1

    def histograms(self) -> tuple[dict, np.ndarray]:
        """{(group, gene): bins} of every stored entry, and each entry's record start."""
        out, starts = {}, np.zeros(len(self.indices), dtype=np.int64)
        for g in range(self.n_genes):
            at = int(self.hist_indptr[g])
            for e in range(self.indptr[g], self.indptr[g + 1]):
                starts[e] = at
                group = int(self.indices[e])
                if self.negative[self.dataset_of_group[group]] == 1:
                    out[group, g] = None  # not binned: an empty record
                    continue
                bins, length = decode_record(self.hist_data, at, int(self.nnz[e]))
                out[group, g] = bins
                at += length
            assert at == self.hist_indptr[g + 1], f"gene {g}: records end at {at}"
        return out, starts

    def offset_problems(self) -> list:
        """entry_offsets and hist_offsets against indptr/indices, counted here."""
        P = []
        first_group = {d: int(np.argmax(self.dataset_of_group == d)) for d in self.datasets}
        n_d = len(self.datasets)
        if self.entry_offsets.shape != (self.n_genes, n_d):
            return [f"entry_offsets shape {self.entry_offsets.shape}"]
        starts = self.histograms()[1] if self.has_histograms else None
        for g in range(self.n_genes):
            groups = self.indices[self.indptr[g]:self.indptr[g + 1]]
            for d, name in enumerate(self.datasets):
                e = int(np.searchsorted(groups, first_group[name], side="left"))
                if self.entry_offsets[g, d] != e:
                    P.append(f"entry_offsets[{g}, {d}] = {self.entry_offsets[g, d]}, want {e}")
                if starts is None:
                    continue
                k = self.indptr[g] + e
                at = starts[k] if k < self.indptr[g + 1] else self.hist_indptr[g + 1]
                if self.hist_offsets[g, d] != at - self.hist_indptr[g]:
                    P.append(f"hist_offsets[{g}, {d}] = {self.hist_offsets[g, d]}, "
                             f"want {at - self.hist_indptr[g]}")
        return P[:10]


# --------------------------------------------------------------------------
# the reference: numpy over the inputs
# --------------------------------------------------------------------------


def edges_of(hist_max: float) -> np.ndarray:
    e = np.arange(BINS + 1, dtype=np.float64) * (hist_max / BINS)
    e[BINS] = hist_max
    return e


def bin_of(values: np.ndarray, hist_max: float) -> np.ndarray:
    """Bins of values > 0 by the definition (searchsorted over the edges)."""
    return np.minimum(np.searchsorted(edges_of(hist_max), values, side="left") - 1, BINS - 1)


def reference_histograms(store_path, inputs: dict, hist_max: float) -> tuple[dict, dict]:
    """{(group, gene): bins} of every (group, gene) with a value above 0, and the values
    above H per dataset, from each input's transformed values."""
    view = sr.StoreView(store_path)
    out, above = {}, {}
    for name, path in inputs.items():
        rec = view.datasets.loc[name]
        adata = sr._read(path)
        values, var = reference.matrix_from_adata(adata, rec["matrix"])
        dense = values.toarray() if sp.issparse(values) else np.asarray(values)
        v = sr.apply_transform(dense, rec["transform"])
        columns = [rec["cell_type_column"]] + [c for c in str(rec["groupby"]).split(",") if c]
        per_col = [reference.column_labels(adata.obs[c]) for c in columns]
        names = ["cell_type"] + columns[1:]
        row_of_key = {view.key_set(r): int(r) for r in view.rows_of(name)}
        cell_rows = np.array([row_of_key[frozenset((n, lab) for n, lab in zip(names, labs)
                                                   if lab is not None)]
                              for labs in zip(*per_col)])
        genes = np.array([view.gene_index[g] for g in sr.make_unique(var.index)])
        above[name] = int((v > hist_max).sum())
        for row in np.unique(cell_rows):
            block = v[cell_rows == row]
            cells, cols = np.nonzero(block > 0)
            counts = np.zeros((block.shape[1], BINS), dtype=np.int64)
            np.add.at(counts, (cols, bin_of(block[cells, cols], hist_max)), 1)
            for j in np.unique(cols):
                out[int(row), int(genes[j])] = counts[j]
    return out, above


def histogram_problems(store_path, inputs: dict) -> list:
    """Every entry's decoded histogram against numpy's, the counts above H, the offsets."""
    s = Store(store_path)
    assert s.version == "3" and s.has_histograms
    got, _ = s.histograms()
    want, above = reference_histograms(store_path, inputs, s.max)
    P = s.offset_problems()
    for key, bins in got.items():
        if bins is None:
            continue
        w = want.get(key, np.zeros(BINS, dtype=np.int64))
        if not np.array_equal(bins, w):
            P.append(f"entry (group, gene) {key}: bins {np.flatnonzero(bins).tolist()} "
                     f"{bins[bins > 0].tolist()}, want {np.flatnonzero(w).tolist()} {w[w > 0].tolist()}")
    missing = [k for k in want if k not in got and s.negative[s.dataset_of_group[k[0]]] != 1]
    if missing:
        P.append(f"{len(missing)} (group, gene) with values above 0 have no entry, e.g. {missing[:3]}")
    for name in inputs:
        w = -1 if s.negative[name] == 1 else above[name]
        if s.above[name] != w:
            P.append(f"{name}: values_above_hist_max {s.above[name]}, want {w}")
    return P[:20]


# --------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------

REAL = {  # name: (file, extra build options)
    "pbmc_small_csc": ("anndata-0.8_pbmc-small_X-csc-f64.h5ad", ["--cell-type", "groups"]),
    "schema3_raw": ("anndata-0.8.0_cellxgene-schema3-example_csr_raw.h5ad", []),
    "pbmc68k_legacy_raw": ("anndata-0.6_pbmc68k-reduced_dense-gzip_legacy-raw.h5ad", []),
    "pertpy_csc_f32": ("anndata-0.8_pertpy-sc-sim_X-csc-f32.h5ad", []),
}


def write_edges_file(path, hist_max=DEFAULT_MAX, huge=True):
    """Values exactly at the edges i * H / 64 and just above them, above H, zeros, an
    all-zero gene; groups of 1, 5, 64, 65, 300 cells and (`huge`) 70,000 cells: every
    kind of the build's bins."""
    rng = np.random.default_rng(5)
    sizes = {"one": 1, "five": 5, "sixtyfour": 64, "sixtyfive": 65, "three_hundred": 300}
    if huge:
        sizes["huge"] = 70_000
    labels = np.concatenate([[k] * n for k, n in sizes.items()])
    n = len(labels)
    e = edges_of(hist_max)
    x = np.zeros((n, 6))
    x[:, 0] = rng.choice(e, n)                            # exact edges (0 included)
    x[:, 1] = np.nextafter(rng.choice(e[:-1], n), np.inf)  # just above an edge
    x[:, 2] = np.where(rng.random(n) < 0.3, hist_max * rng.uniform(1.0, 3.0, n), 0)
    x[:, 3] = np.where(rng.random(n) < 0.5, rng.uniform(0, hist_max, n), 0)
    # x[:, 4] stays 0: an all-zero gene
    x[:, 5] = np.where(rng.random(n) < 0.02, hist_max, 0)  # exactly H: bin 63
    obs = pd.DataFrame({"cell_type": pd.Categorical(labels)}, index=[f"c{i}" for i in range(n)])
    var = pd.DataFrame(index=[f"G{j}" for j in range(x.shape[1])])
    ad.AnnData(X=sp.csr_matrix(x), obs=obs, var=var, dtype=np.float64).write_h5ad(path)
    with h5py.File(path, "r") as f:  # float64 as written: the edges exactly
        assert f["X/data"].dtype == np.float64
    return path


def write_counts_file(path, seed, n_cells=600, n_genes=40, negative=False):
    rng = np.random.default_rng(seed)
    x = rng.poisson(0.8, (n_cells, n_genes)).astype(np.float32)
    x[:, 7] = 0  # an all-zero gene
    if negative:
        x = x - 0.5  # scaled data: flagged, not binned
    obs = pd.DataFrame({"cell_type": pd.Categorical(rng.choice(["T", "B", "NK", "tiny"], n_cells,
                                                               p=[0.5, 0.3, 0.195, 0.005])),
                        "donor": pd.Categorical(rng.choice(["d1", "d2", "d3"], n_cells))},
                       index=[f"c{i}" for i in range(n_cells)])
    var = pd.DataFrame(index=[f"G{j}" for j in range(n_genes)])
    ad.AnnData(X=sp.csr_matrix(x), obs=obs, var=var, dtype=np.float32).write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("hist-inputs")
    return {"edges": write_edges_file(d / "edges.h5ad"),
            "a": write_counts_file(d / "a.h5ad", 1),
            "b": write_counts_file(d / "b.h5ad", 2, n_cells=900),
            "neg": write_counts_file(d / "neg.h5ad", 3, negative=True)}


def build(cellcube, out, paths, *extra):
    run_ok([cellcube, "build", "-o", out, "--quiet", *extra, *map(str, paths)])
    return out


def digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --------------------------------------------------------------------------
# the histograms are the values' histograms
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_files_histograms_match_numpy(cellcube, data_dir, tmp_path, name):
    file, extra = REAL[name]
    store = build(cellcube, tmp_path / "s.h5ad", [f"{name}={data_dir / file}"], *extra)
    P = histogram_problems(store, {name: data_dir / file})
    assert not P, "\n".join(P)


def test_values_at_the_edges_every_slot_kind(cellcube, inputs, tmp_path):
    """Values exactly at i * H / 64 (bin i - 1), just above (bin i), exactly H (bin 63)
    and above H (bin 63, counted), in groups of 1 to 70,000 cells."""
    store = build(cellcube, tmp_path / "e.h5ad", [inputs["edges"]], "--transform", "none",
                  "--groupby", "")
    P = histogram_problems(store, {"edges": inputs["edges"]})
    assert not P, "\n".join(P)
    s = Store(store)
    assert s.n_cells.max() == 70_000 and s.above["edges"] > 0
    assert s.indptr[5] == s.indptr[4], "the all-zero gene has no entries"


def test_hist_max_sets_the_edges_and_counts_above(cellcube, inputs, tmp_path):
    store = tmp_path / "h.h5ad"
    proc = run_ok([cellcube, "build", "-o", store, "--hist-max", "2.5", "--transform", "none",
                   "--groupby", "", "a=" + str(inputs["a"])])
    s = Store(store)
    assert s.max == 2.5
    P = histogram_problems(store, {"a": inputs["a"]})
    assert not P, "\n".join(P)
    assert s.above["a"] > 0
    assert (f"dataset 'a': {s.above['a']} values above the histograms' upper edge 2.5 were "
            "counted in the top bin; build with --hist-max to widen it") in proc.stderr
    info = helpers.run_json([cellcube, "info", store, "--json"])
    assert info["histograms"] == {"bins": 64, "max": 2.5}
    assert info["datasets"][0]["values_above_hist_max"] == s.above["a"]
    text = run_ok([cellcube, "info", store]).stdout
    assert "histograms: 64 bins over (0, 2.5]" in text


def test_a_dataset_with_negative_values_is_not_binned(cellcube, inputs, tmp_path):
    store = build(cellcube, tmp_path / "n.h5ad", [inputs["a"], inputs["neg"]], "--transform", "none")
    s = Store(store)
    assert s.negative == {"a": 0, "neg": 1} and s.above["neg"] == -1
    got, starts = s.histograms()
    neg = [k for k in got if s.dataset_of_group[k[0]] == "neg"]
    assert neg and all(got[k] is None for k in neg)
    # Their records are empty: each starts where the next entry's does.
    for g in range(s.n_genes):
        for e in range(s.indptr[g], s.indptr[g + 1]):
            if s.dataset_of_group[s.indices[e]] == "neg":
                nxt = starts[e + 1] if e + 1 < s.indptr[g + 1] else s.hist_indptr[g + 1]
                assert nxt == starts[e]
    P = histogram_problems(store, {"a": inputs["a"], "neg": inputs["neg"]})
    assert not P, "\n".join(P)
    info = helpers.run_json([cellcube, "info", store, "--json"])
    assert [d["values_above_hist_max"] for d in info["datasets"]] == [0, None]


def test_anndata_reads_the_store_without_warnings(cellcube, inputs, tmp_path):
    store = build(cellcube, tmp_path / "w.h5ad", [inputs["a"], inputs["b"]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = ad.read_h5ad(store)
    assert a.raw is None and "raw.cellcube" not in a.uns
    assert float(a.uns["cellcube"]["histograms"]["max"]) == DEFAULT_MAX
    assert int(a.uns["cellcube"]["histograms"]["bins"]) == 64
    assert list(a.uns["cellcube"]["datasets"]["values_above_hist_max"]) == [0, 0]


def test_no_histograms(cellcube, inputs, tmp_path):
    store = build(cellcube, tmp_path / "x.h5ad", [inputs["a"], inputs["b"]], "--no-histograms")
    s = Store(store)
    assert not s.has_histograms and s.above == {"a": -1, "b": -1}
    assert not s.offset_problems()
    info = helpers.run_json([cellcube, "info", store, "--json"])
    assert info["histograms"] is None
    assert "histograms: none (built with --no-histograms" in run_ok([cellcube, "info", store]).stdout
    with_hist = build(cellcube, tmp_path / "y.h5ad", [inputs["a"], inputs["b"]])
    assert Path(store).stat().st_size < Path(with_hist).stat().st_size


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "x"])
def test_hist_max_must_be_a_finite_number_above_zero(cellcube, inputs, tmp_path, value):
    out = tmp_path / "bad.h5ad"
    proc = run([cellcube, "build", "-o", out, "--hist-max", value, inputs["a"]])
    helpers.assert_error(proc, code=2, mentions=["--hist-max", "finite number above 0"])
    assert not out.exists()


# --------------------------------------------------------------------------
# determinism, and the records carried by merge, add and remove
# --------------------------------------------------------------------------


def test_thread_counts_and_shards_give_the_same_bytes(cellcube, inputs, tmp_path):
    paths = [inputs["a"], inputs["b"], inputs["neg"]]
    one = build(cellcube, tmp_path / "t1.h5ad", paths, "--threads", "1")
    two = build(cellcube, tmp_path / "t2.h5ad", paths, "--threads", "2")
    assert digest(one) == digest(two)
    shards = [build(cellcube, tmp_path / f"s{i}.h5ad", [p], "--threads", "2")
              for i, p in enumerate(paths)]
    merged = tmp_path / "m.h5ad"
    run_ok([cellcube, "merge", "-o", merged, "--quiet", *shards])
    assert digest(merged) == digest(one), "shards merged differ from one build"


def test_add_and_remove_carry_the_records(cellcube, inputs, tmp_path):
    paths = [inputs["a"], inputs["neg"], inputs["b"]]
    both = build(cellcube, tmp_path / "all.h5ad", paths)
    grown = build(cellcube, tmp_path / "grown.h5ad", paths[:1])
    run_ok([cellcube, "add", grown, "--quiet", *map(str, paths[1:])])
    assert digest(grown) == digest(both)
    run_ok([cellcube, "remove", grown, "--quiet", "neg"])
    P = histogram_problems(grown, {"a": inputs["a"], "b": inputs["b"]})
    assert not P, "\n".join(P)
    kept = build(cellcube, tmp_path / "kept.h5ad", [inputs["a"], inputs["b"]])
    got, want = Store(grown), Store(kept)
    assert np.array_equal(got.hist_data, want.hist_data)
    assert np.array_equal(got.hist_offsets, want.hist_offsets)
    assert np.array_equal(got.entry_offsets, want.entry_offsets)


# --------------------------------------------------------------------------
# layouts that differ, older formats, damage
# --------------------------------------------------------------------------


def test_add_with_another_hist_max_changes_nothing(cellcube, inputs, tmp_path):
    store = build(cellcube, tmp_path / "s.h5ad", [inputs["a"]], "--hist-max", "5")
    before = digest(store)
    proc = run([cellcube, "add", store, "--hist-max", "6", inputs["b"]])
    helpers.assert_error(proc, mentions=["(0, 5.0]", "--hist-max 6.0", "add uses the store's layout"])
    proc = run([cellcube, "add", store, "--no-histograms", inputs["b"]])
    helpers.assert_error(proc, mentions=["--no-histograms", "add uses the store's layout"])
    assert digest(store) == before
    assert not helpers.tmp_leftovers(tmp_path)
    run_ok([cellcube, "add", store, "--hist-max", "5", "--quiet", inputs["b"]])
    assert Store(store).max == 5.0


def test_merge_of_different_layouts_is_refused(cellcube, inputs, tmp_path):
    a = build(cellcube, tmp_path / "a.h5ad", [inputs["a"]])
    b5 = build(cellcube, tmp_path / "b5.h5ad", [inputs["b"]], "--hist-max", "5")
    bn = build(cellcube, tmp_path / "bn.h5ad", [inputs["b"]], "--no-histograms")
    b2 = tmp_path / "b2.h5ad"
    store_format.write_format2(str(build(cellcube, tmp_path / "b3.h5ad", [inputs["b"]])), str(b2))
    out = tmp_path / "out.h5ad"
    for other, words in ((b5, "(0, 5.0]"), (bn, "no histograms"), (b2, "no histograms")):
        proc = run([cellcube, "merge", "-o", out, a, other])
        helpers.assert_error(proc, mentions=["cannot merge", words, "one histogram layout"])
        assert not out.exists()
    # Stores without histograms merge into one without (format 2 counts as none).
    an = build(cellcube, tmp_path / "an.h5ad", [inputs["a"]], "--no-histograms")
    run_ok([cellcube, "merge", "-o", out, "--quiet", an, b2])
    s = Store(out)
    assert not s.has_histograms and s.above == {"a": -1, "b": -1} and not s.offset_problems()


def test_add_to_a_format_2_store_gives_format_3_without_histograms(cellcube, inputs, tmp_path):
    old = tmp_path / "old.h5ad"
    store_format.write_format2(str(build(cellcube, tmp_path / "v3.h5ad", [inputs["a"]])), str(old))
    assert helpers.run_json([cellcube, "info", old, "--json"])["histograms"] is None
    assert "histograms: none (format 2" in run_ok([cellcube, "info", old]).stdout
    proc = run_ok([cellcube, "add", old, inputs["b"]])
    assert "has no histograms" in proc.stderr and "rebuild it" in proc.stderr
    s = Store(old)
    assert s.version == "3" and not s.has_histograms and s.above == {"a": -1, "b": -1}
    assert not s.offset_problems()


def test_a_damaged_record_is_reported_by_add_and_merge(cellcube, inputs, tmp_path):
    store = build(cellcube, tmp_path / "d.h5ad", [inputs["a"]])
    with h5py.File(store, "r") as f:
        offset = f["raw.cellcube/hist_data"].id.get_offset()
        nnz0 = int(f["layers/nnz/data"][0])
    with open(store, "r+b") as f:  # the first record's first byte: a form no record has
        f.seek(offset)
        f.write(bytes([0xC0]))
    assert nnz0 > 0
    before = digest(store)
    for argv in ([cellcube, "add", store, inputs["b"]],
                 [cellcube, "merge", "-o", tmp_path / "m.h5ad", store]):
        proc = run(argv)
        helpers.assert_error(proc, mentions=[f"store '{store}' is damaged", "histogram record"])
    assert digest(store) == before and not (tmp_path / "m.h5ad").exists()


def test_resaved_by_anndata_reads_as_a_store_without_histograms(cellcube, inputs, tmp_path):
    """anndata's write_h5ad drops raw.cellcube (read_h5ad skips it)."""
    store = build(cellcube, tmp_path / "s.h5ad", [inputs["a"]])
    resaved = tmp_path / "r.h5ad"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ad.read_h5ad(store).write_h5ad(resaved)
    info = helpers.run_json([cellcube, "info", resaved, "--json"])
    assert info["histograms"] is None and info["datasets"][0]["values_above_hist_max"] is None
    got = run_ok([cellcube, "query", resaved, "--genes", "G1,G2", "--by", "cell_type",
                  "--format", "csv"]).stdout
    want = run_ok([cellcube, "query", store, "--genes", "G1,G2", "--by", "cell_type",
                   "--format", "csv"]).stdout
    assert got == want
