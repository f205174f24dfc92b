"""Bad input: every case is a clean error, never a crash or a wrong answer.

The contract checked by helpers.assert_error: exit code 1 (2 for usage
errors), not a signal; stderr exactly one line, starting 'cellcube: error: ',
mentioning what is wrong.  The broken files are made with h5py in tmp_path,
starting from a small valid file written by anndata.

Which command must fail, per case:
  * unreadable files (missing, directory, not HDF5, truncated, not AnnData),
    shape mismatches, unknown encoding-type, non-monotone indptr: both
    `cellcube inspect` and `cellcube-dump` (all detectable from metadata or
    the index pointer array);
  * column indices out of range / negative, undecodable filter: `cellcube-dump`
    (which reads every value) and `cellcube inspect --check` (which streams
    everything); plain `cellcube inspect` is not required to notice.
"""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

import gen_anndata
import helpers
import reference


def write_base(path, encoding="csr", compression=None, n_obs=60, n_vars=40, seed=7):
    """A small valid AnnData file (X in `encoding`) written by anndata."""
    import anndata

    rng = np.random.default_rng(seed)
    d = gen_anndata.make_counts(rng, n_obs, n_vars).astype(np.float32)
    X = gen_anndata.encode(d, encoding, rng)
    a = anndata.AnnData(X=X, obs=gen_anndata.make_obs(rng, n_obs), var=gen_anndata.make_var(rng, n_vars), dtype=X.dtype)
    a.write_h5ad(path, compression=compression)
    return path


def both(cellcube, cellcube_dump, path):
    return (
        helpers.run([cellcube, "inspect", path]),
        helpers.run([cellcube_dump, path]),
    )


@pytest.fixture
def base_csr(tmp_path):
    return write_base(tmp_path / "base_csr.h5ad", "csr")


# ---------------------------------------------------------------- sanity


def test_base_file_is_valid(cellcube, cellcube_dump, base_csr):
    """The unmodified base file is accepted (so the failures below are caused
    by the damage, not by the base file)."""
    assert helpers.run([cellcube, "inspect", base_csr]).returncode == 0
    assert helpers.run([cellcube, "inspect", "--check", base_csr]).returncode == 0
    helpers.run_json([cellcube_dump, base_csr])


# ---------------------------------------------------------------- unreadable files


def test_missing_file(cellcube, cellcube_dump, tmp_path):
    path = tmp_path / "does_not_exist.h5ad"
    for proc in both(cellcube, cellcube_dump, path):
        helpers.assert_error(proc, mentions=["does_not_exist.h5ad"])


def test_directory(cellcube, cellcube_dump, tmp_path):
    path = tmp_path / "a_directory.h5ad"
    path.mkdir()
    for proc in both(cellcube, cellcube_dump, path):
        helpers.assert_error(proc, mentions=["a_directory.h5ad"])


def test_not_hdf5(cellcube, cellcube_dump, tmp_path):
    path = tmp_path / "text_file.h5ad"
    path.write_text("cell,gene,count\nAAAC,CD3E,4\n" * 100)
    for proc in both(cellcube, cellcube_dump, path):
        helpers.assert_error(proc, mentions=["text_file.h5ad"])


def test_hdf5_not_anndata(cellcube, cellcube_dump, tmp_path):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("matrix", data=np.arange(12.0).reshape(3, 4))
        f.create_group("metadata").attrs["note"] = "not an AnnData file"
    for proc in both(cellcube, cellcube_dump, path):
        helpers.assert_error(proc, any_of=["obs", "anndata"])


def _largest_real_gzip_file():
    best = None
    for p in helpers.real_files():
        infos = reference.h5_matrix_infos(p)
        if any(m["path"] == "X" and m["filter"].startswith("gzip") for m in infos):
            if best is None or p.stat().st_size > best.stat().st_size:
                best = p
    return best


def test_truncated_file(cellcube, cellcube_dump, data_dir, tmp_path):
    src = _largest_real_gzip_file()
    assert src is not None, f"no real file with a gzip X in {data_dir}"
    path = tmp_path / ("truncated_" + src.name)
    shutil.copyfile(src, path)
    with open(path, "r+b") as fh:
        fh.truncate(src.stat().st_size // 2)
    for proc in both(cellcube, cellcube_dump, path):
        helpers.assert_error(proc, mentions=[path.name])
    helpers.assert_error(helpers.run([cellcube, "inspect", "--check", path]), mentions=[path.name])


# ---------------------------------------------------------------- structure


def test_x_rows_disagree_with_obs(cellcube, cellcube_dump, tmp_path):
    path = write_base(tmp_path / "rows.h5ad", "dense")
    with h5py.File(path, "r+") as f:
        x = f["X"][:]
        attrs = dict(f["X"].attrs)
        del f["X"]
        ds = f.create_dataset("X", data=np.vstack([x, x[:1]]))  # one row too many
        for k, v in attrs.items():
            ds.attrs[k] = v
        bad_rows = ds.shape[0]
    for proc in both(cellcube, cellcube_dump, path):
        helpers.assert_error(proc, patterns=[r"\bX\b"], any_of=[str(bad_rows), "shape"])


def test_x_cols_disagree_with_var(cellcube, cellcube_dump, tmp_path):
    path = write_base(tmp_path / "cols.h5ad", "csr")
    with h5py.File(path, "r+") as f:
        n_obs, n_vars = (int(x) for x in f["X"].attrs["shape"])
        f["X"].attrs["shape"] = np.array([n_obs, n_vars - 1], dtype=np.int64)  # one gene short
    for proc in both(cellcube, cellcube_dump, path):
        helpers.assert_error(proc, patterns=[r"\bX\b"], any_of=[str(n_vars - 1), "shape"])


def test_indptr_not_monotone(cellcube, cellcube_dump, tmp_path):
    path = write_base(tmp_path / "indptr.h5ad", "csr")
    with h5py.File(path, "r+") as f:
        ip = f["X/indptr"][:]
        i = len(ip) // 2
        assert ip[i + 1] > ip[i - 1] + 1
        ip[i] = ip[i + 1] + 1  # rises above its successor, ends stay valid
        assert ip[0] == 0 and ip[-1] == f["X/data"].shape[0]
        f["X/indptr"][...] = ip
    for proc in both(cellcube, cellcube_dump, path):  # inspect validates indptr
        helpers.assert_error(proc, mentions=["indptr"])


@pytest.mark.parametrize("bad", ["too_large", "negative"])
def test_indices_out_of_range(cellcube, cellcube_dump, tmp_path, bad):
    path = write_base(tmp_path / f"indices_{bad}.h5ad", "csr")
    with h5py.File(path, "r+") as f:
        idx = f["X/indices"][:]
        n_vars = int(f["X"].attrs["shape"][1])
        idx[len(idx) // 3] = n_vars if bad == "too_large" else -3
        f["X/indices"][...] = idx
    helpers.assert_error(helpers.run([cellcube_dump, path]), any_of=["indices", "index"])
    helpers.assert_error(helpers.run([cellcube, "inspect", "--check", path]), any_of=["indices", "index"])
    # plain inspect may or may not notice; it must not crash either way
    proc = helpers.run([cellcube, "inspect", path])
    if proc.returncode != 0:
        helpers.assert_error(proc, any_of=["indices", "index"])


def test_unknown_encoding_type(cellcube, cellcube_dump, tmp_path):
    path = write_base(tmp_path / "foo.h5ad", "csr")
    with h5py.File(path, "r+") as f:
        f["X"].attrs["encoding-type"] = "foo_matrix"
    for proc in both(cellcube, cellcube_dump, path):
        helpers.assert_error(proc, mentions=["foo_matrix"])


def test_undecodable_filter(cellcube, cellcube_dump, tmp_path):
    """X/data compressed with filter 32001 (blosc, not available) holding junk
    bytes: reading the values must fail cleanly."""
    path = write_base(tmp_path / "filter.h5ad", "csr")
    with h5py.File(path, "r+") as f:
        n = f["X/data"].shape[0]
        del f["X/data"]
        ds = f.create_dataset(
            "X/data", shape=(n,), dtype="f4", chunks=(256,), compression=32001, allow_unknown_filter=True
        )
        for start in range(0, n, 256):
            ds.id.write_direct_chunk((start,), b"\x02\x01junk, not a blosc frame" * 4)
    with h5py.File(path, "r") as f:  # the damage is real: h5py cannot read it
        with pytest.raises(OSError):
            f["X/data"][:10]
    helpers.assert_error(helpers.run([cellcube_dump, path]), any_of=["filter", "32001"])
    helpers.assert_error(helpers.run([cellcube, "inspect", "--check", path]), any_of=["filter", "32001"])


def test_missing_matrix(cellcube_dump, base_csr):
    helpers.assert_error(helpers.run([cellcube_dump, base_csr, "--matrix", "layers/nope"]), mentions=["layers/nope"])
    helpers.assert_error(helpers.run([cellcube_dump, base_csr, "--matrix", "raw/X"]), mentions=["raw"])


# ---------------------------------------------------------------- command line


def test_unknown_column_suggests_near_name(cellcube, base_csr):
    proc = helpers.run([cellcube, "inspect", base_csr, "--column", "cell_typ"])
    line = helpers.assert_error(proc, mentions=["cell_typ"])
    assert "cell_type" in line, "the error should suggest 'cell_type'\n" + helpers.describe(proc)


def test_unknown_column_far_from_everything(cellcube, base_csr):
    proc = helpers.run([cellcube, "inspect", base_csr, "--column", "nosuchcol"])
    helpers.assert_error(proc, mentions=["nosuchcol"])


def test_usage_no_file(cellcube):
    helpers.assert_error(helpers.run([cellcube, "inspect"]), code=2)


def test_usage_unknown_option(cellcube, base_csr):
    helpers.assert_error(helpers.run([cellcube, "inspect", base_csr, "--no-such-option"]), code=2, mentions=["--no-such-option"])


def test_gene_suggestions_are_close_names_only(cellcube, tmp_path):
    """A one-letter gene ('a', a real mouse gene) is not "close" to every name holding
    an 'a'; real near misses are still suggested, both ways of containment."""
    import anndata
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(3)
    genes = ["a", "Cd3e", "Foxp3", "Xist", "Actb", "Gapdh"]
    x = sp.csr_matrix(gen_anndata.make_counts(rng, 40, len(genes)).astype(np.float32))
    obs = pd.DataFrame({"cell_type": pd.Categorical(rng.choice(["T", "B"], 40))},
                       index=[f"c{i}" for i in range(40)])
    src = tmp_path / "mouse.h5ad"
    anndata.AnnData(X=x, obs=obs, var=pd.DataFrame(index=genes)).write_h5ad(src)
    store = tmp_path / "mouse_store.h5ad"
    helpers.run_ok([cellcube, "build", "-o", store, "--quiet", src])

    def error(name):
        return helpers.assert_error(helpers.run([cellcube, "query", store, "--genes", name]), mentions=[name])

    line = error("FOOBAR1")
    assert "'a'" not in line and "nothing close" in line, line
    assert "'Cd3e'" in error("Cd3") and "'Foxp3'" in error("FOXP") and "'Gapdh'" in error("Gapdhx")
    assert "'a'" not in error("Xista"), "a one-letter name is never close by containment"


def test_output_directory_is_checked_before_any_input_is_read(cellcube, tmp_path):
    """A missing output directory is reported first, before any input is opened (here
    the input does not exist either, so reading it first would give another error)."""
    missing_dir = tmp_path / "no" / "such" / "dir"
    for cmd in (["build", "-o", missing_dir / "s.h5ad", tmp_path / "absent.h5ad"],
                ["merge", "-o", missing_dir / "s.h5ad", tmp_path / "a.h5ad", tmp_path / "b.h5ad"]):
        line = helpers.assert_error(helpers.run([cellcube, *cmd]), mentions=[str(missing_dir)])
        assert "does not exist" in line and "absent" not in line and "a.h5ad" not in line, line


@pytest.mark.parametrize("direct", [True, False], ids=["direct-reads", "through-libhdf5"])
def test_a_damaged_gzip_chunk_is_named_the_same_everywhere(tmp_path, direct):
    """A gzip chunk whose bytes were overwritten: `build` (with its own chunk reader, or
    through libhdf5's filter) and `inspect --check` all say the chunk does not inflate
    (damaged gzip data), not libhdf5's "inflate() failed"."""
    import anndata
    import scipy.sparse as sp

    rng = np.random.default_rng(3)
    x = sp.random(400, 60, density=0.3, format="csr", random_state=3, dtype=np.float32)
    x.data = rng.integers(1, 9, size=x.nnz).astype(np.float32)
    a = anndata.AnnData(X=x)
    a.obs["cell_type"] = pd_categorical(rng, 400)
    path = tmp_path / "damaged.h5ad"
    a.write_h5ad(path, compression="gzip")
    with h5py.File(path, "r") as f:
        ds = f["X/data"]
        assert ds.chunks and ds.compression == "gzip" and ds.id.get_num_chunks() >= 2
        info = ds.id.get_chunk_info(1)
    with open(path, "r+b") as fh:  # the middle of chunk 1's deflate stream
        fh.seek(info.byte_offset + info.size // 2)
        fh.write(b"\xff" * 16)
    cellcube = str(helpers.cellcube_path())
    args = [cellcube, "build", "-o", str(tmp_path / "s.h5ad"), "--quiet", str(path)]
    if not direct:
        args.append("--no-direct-reads")
    helpers.assert_error(helpers.run(args), mentions=["does not inflate (damaged gzip data)"])
    assert not (tmp_path / "s.h5ad").exists()
    proc = helpers.run([cellcube, "inspect", str(path), "--check"])
    assert "does not inflate (damaged gzip data)" in proc.stdout + proc.stderr, helpers.describe(proc)


def pd_categorical(rng, n):
    import pandas as pd

    return pd.Categorical(rng.choice(["a", "b", "c"], size=n))


def test_a_listed_column_that_cannot_be_read_says_the_file_looks_damaged(tmp_path):
    """A column obs lists (column-order) but HDF5 cannot find, as zeroed bytes in the
    group's index leave it: the error says the file looks damaged and names the object."""
    path = tmp_path / "vanished.h5ad"
    write_base(path)
    with h5py.File(path, "r+") as f:
        obs = f["obs"]
        order = [c.decode() if isinstance(c, bytes) else c for c in obs.attrs["column-order"]]
        victim = order[0]
        del obs[victim]  # what a damaged index shows: listed, not there
    proc = helpers.run([str(helpers.cellcube_path()), "build", "-o", str(tmp_path / "s.h5ad"),
                        "--quiet", str(path)])
    helpers.assert_error(proc, mentions=["looks damaged", f"'obs/{victim}'", "h5dump"])
