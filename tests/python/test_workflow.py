"""workflow/Snakefile (issue 14): shards and a tree of merges give the store a direct
`cellcube build` gives, and an added input re-runs only its shard and the merges above it.

Snakemake is Debian's `snakemake` (scripts/install-deps.sh): a missing one fails. The
workflow finds `cellcube` on PATH, as a user would run it; the test puts the binary under
test there. `fanin=2` makes a tree of several levels out of a handful of small files.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import h5py
import pytest

import helpers
import store_format

SNAKEFILE = helpers.REPO / "workflow" / "Snakefile"
OPTIONS = ["groupby=tissue,disease,donor", "transform=cp10k_log1p"]
BUILD_OPTIONS = ["--groupby", "tissue,disease,donor", "--transform", "cp10k_log1p"]


def snakemake_binary() -> str:
    path = shutil.which("snakemake")
    if path is None:
        pytest.fail("snakemake is not installed: scripts/install-deps.sh installs Debian's "
                    "'snakemake' package", pytrace=False)
    return path


def text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def store_content(path: Path) -> dict:
    """What a store holds, read with h5py: the orders (datasets, genes, groups) and, keyed
    by (dataset and group labels, gene), every entry's n_cells, nnz, sum and m2; the
    dataset table and each dataset's measured genes."""
    with h5py.File(path, "r") as f:
        obs = f["obs"]
        columns = [text(c) for c in obs.attrs["column-order"] if text(c) != "n_cells"]
        labels = []
        for c in columns:
            categories = [text(v) for v in obs[c]["categories"][:]]
            labels.append([None if k < 0 else categories[k] for k in obs[c]["codes"][:]])
        groups = [tuple(sorted(zip(columns, row), key=lambda cv: cv[0])) for row in zip(*labels)]
        n_cells = obs["n_cells"][:]
        genes = [text(g) for g in f["var/_index"][:]]
        layers = f["layers"]
        indptr = layers["nnz/indptr"][:]
        indices = layers["nnz/indices"][:]
        nnz, sums, m2 = layers["nnz/data"][:], layers["sum/data"][:], layers["m2/data"][:]
        entries = {}
        for g, gene in enumerate(genes):
            for e in range(indptr[g], indptr[g + 1]):
                group = indices[e]
                entries[(groups[group], gene)] = (int(n_cells[group]), int(nnz[e]),
                                                  float(sums[e]), float(m2[e]))
        table = f["uns/cellcube/datasets"]
        datasets = [text(d) for d in table["_index"][:]]
        rows = {}
        for c in table.attrs["column-order"]:
            values = table[text(c)][:]
            for d, v in zip(datasets, values):
                rows.setdefault(d, {})[text(c)] = text(v) if isinstance(v, bytes) else v.item()
        u = f["uns/cellcube"]
        measured = store_format.measured_gene_lists(u, len(datasets), len(genes))
        measured = {d: {genes[i] for i in m} for d, m in zip(datasets, measured)}
    return {"datasets": datasets, "genes": genes, "groups": groups, "entries": entries,
            "table": rows, "measured": measured}


def assert_same_store(got: Path, want: Path):
    a, b = store_content(got), store_content(want)
    assert a["entries"], f"{got} holds no entries"
    assert set(a["entries"]) == set(b["entries"]), (
        f"{got} and {want} hold different (group, gene) entries: "
        f"{len(set(a['entries']) ^ set(b['entries']))} differ")
    differ = [k for k in a["entries"] if a["entries"][k] != b["entries"][k]]
    assert not differ, f"{len(differ)} entries differ, e.g. {differ[0]}: {a['entries'][differ[0]]} != " \
                       f"{b['entries'][differ[0]]}"
    assert a["table"] == b["table"], "the dataset tables differ"
    assert a["measured"] == b["measured"], "the measured genes differ"
    # The tree keeps the inputs' name order at every merge, so even the orders agree.
    assert a["datasets"] == b["datasets"]
    assert a["genes"] == b["genes"]
    assert a["groups"] == b["groups"]


def datasets_of(path: Path) -> list[str]:
    with h5py.File(path, "r") as f:
        return [text(d) for d in f["uns/cellcube/datasets/_index"][:]]


def work_files(work: Path) -> dict:
    """{path relative to the work dir: (inode, mtime_ns)} of its stores."""
    return {str(p.relative_to(work)): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in sorted(work.rglob("*.h5ad"))}


def job_counts(output: str) -> dict:
    """Snakemake's own "Job stats" table: {rule: jobs run}."""
    counts = {}
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "Job stats:":
            for row in lines[i + 3:]:
                m = re.match(r"^(\w+)\s+(\d+)\b", row)
                if not m:
                    break
                counts[m.group(1)] = int(m.group(2))
            break
    return counts


def store_job_inputs(output: str, work: Path) -> set:
    """The inputs of the job that merged the store, relative to the work dir, from
    Snakemake's account of the run."""
    m = re.search(r"^rule store:\n\s+input: (.*)$", output, flags=re.M)
    assert m, "no store job in the output:\n" + output[-3000:]
    return {str(Path(p).relative_to(work)) for p in m.group(1).split(", ")}


@pytest.fixture(scope="module")
def pool(cellcube, tmp_path_factory):
    d = tmp_path_factory.mktemp("pool")
    helpers.run_ok([cellcube, "synth", "-o", d, "--datasets", "7", "--cells", "300",
                    "--genes", "300", "--seed", "14", "--quiet"])
    files = sorted(d.glob("*.h5ad"))
    assert len(files) == 7, files
    return files


def snakemake(tmp_path, cellcube, inputs, store, extra=()):
    """Runs the workflow as the README says, with `cellcube` found on PATH."""
    bin_dir = tmp_path / "bin"
    if not bin_dir.exists():
        bin_dir.mkdir()
        (bin_dir / "cellcube").symlink_to(Path(cellcube).resolve())
    argv = [snakemake_binary(), "-s", SNAKEFILE, "--cores", "2", "--config",
            f"inputs={inputs}", f"store={store}", "fanin=2", "threads=1", *OPTIONS, *extra]
    return helpers.run(argv, cwd=tmp_path, timeout=300,
                       env={"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"})


def check_tree(work: Path, names: list[str]):
    """Every store in the work dir is part of the current tree: one shard per input, and
    the merges of each level cover disjoint runs of consecutive inputs (a leftover of an
    earlier tree would overlap the merge that replaced it)."""
    shards = sorted(p.stem for p in (work / "shards").glob("*.h5ad"))
    assert shards == names
    levels = {}
    for p in (work / "merge").rglob("*.h5ad"):
        ds = datasets_of(p)
        assert len(ds) >= 2, f"{p} merges fewer than two datasets: {ds}"
        start = names.index(ds[0])
        assert ds == names[start:start + len(ds)], f"{p} does not hold consecutive inputs: {ds}"
        levels.setdefault(p.parent.name, []).append(set(ds))
    assert levels, "no merge was made (the tree should have levels with fanin=2)"
    for level, sets in levels.items():
        seen = set()
        for s in sets:
            assert not (s & seen), f"merges of {level} overlap: {sets}"
            seen |= s


def test_workflow_equals_direct_build_and_reruns_only_what_an_added_file_touches(
        cellcube, pool, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    held_back = pool[3]  # sorts in the middle: the hard case for a tree cut by position
    for f in pool:
        if f != held_back:
            shutil.copy2(f, inputs / f.name)
    store = tmp_path / "out" / "atlas.h5ad"
    work = Path(str(store) + ".work")
    served = tmp_path / "served" / "atlas.h5ad"
    served.parent.mkdir()
    publish = [f"publish={served}"]

    def published():
        """The served name is a hard link of the store, and no temporary link is left."""
        assert served.stat().st_ino == store.stat().st_ino
        assert [p.name for p in served.parent.iterdir()] == [served.name]
        return served.stat().st_ino

    first = snakemake(tmp_path, cellcube, inputs, store, publish)
    assert first.returncode == 0, helpers.describe(first)
    names = sorted(p.stem for p in inputs.glob("*.h5ad"))
    counts = job_counts(first.stdout + first.stderr)
    assert counts.get("shard") == len(names), counts
    assert counts.get("merge", 0) >= 1 and counts.get("store") == 1, counts

    direct = tmp_path / "direct.h5ad"
    helpers.run_ok([cellcube, "build", "--quiet", "-o", direct, *BUILD_OPTIONS, inputs])
    assert_same_store(store, direct)
    check_tree(work, names)
    assert not [p for p in store.parent.iterdir() if ".tmp-" in p.name]
    first_inode = published()

    # Nothing changed: nothing runs, nothing is rewritten.
    before = work_files(work)
    again = snakemake(tmp_path, cellcube, inputs, store, publish)
    assert again.returncode == 0, helpers.describe(again)
    assert "Nothing to be done" in again.stdout + again.stderr, helpers.describe(again)
    assert work_files(work) == before
    assert published() == first_inode

    # One file more, in the middle of the name order.
    shutil.copy2(held_back, inputs / held_back.name)
    old_merges = {k: set(datasets_of(work / k)) for k in before if k.startswith("merge/")}
    added = snakemake(tmp_path, cellcube, inputs, store, publish)
    assert added.returncode == 0, helpers.describe(added)
    after = work_files(work)
    names = sorted(p.stem for p in inputs.glob("*.h5ad"))
    new = held_back.stem

    counts = job_counts(added.stdout + added.stderr)
    assert counts.get("shard") == 1, f"only the added file's shard should be built: {counts}"
    kept = {k for k in before if k in after}
    assert all(before[k] == after[k] for k in kept), \
        f"stores not above the added file were rewritten: {[k for k in kept if before[k] != after[k]]}"
    assert all(k in after for k in before if k.startswith("shards/")), "a shard was removed"
    made = sorted(k for k in after if k not in before)
    assert [k for k in made if k.startswith("shards/")] == [f"shards/{new}.h5ad"], made
    new_merges = [k for k in made if k.startswith("merge/")]
    assert counts.get("merge", 0) == len(new_merges), (counts, new_merges)
    removed = [old_merges[k] for k in before if k.startswith("merge/") and k not in after]
    store_inputs = store_job_inputs(added.stdout + added.stderr, work)
    for k in new_merges:
        ds = set(datasets_of(work / k))
        # Above the new file; or the other half of a merge its arrival cut in two; or,
        # at the top, a new level of the tree (the store's own inputs).
        assert new in ds or any(ds <= r for r in removed) or k in store_inputs, \
            f"{k} ({sorted(ds)}) was rebuilt needlessly"
    # The path from the new leaf to the root, at most two merges per level: far fewer
    # than the merges of the whole tree.
    levels = {k.split("/")[1] for k in after if k.startswith("merge/")}
    assert len(new_merges) <= 2 * len(levels), new_merges
    total_merges = len([k for k in after if k.startswith("merge/")])
    assert len(new_merges) < total_merges, (new_merges, total_merges)

    helpers.run_ok([cellcube, "build", "--quiet", "-o", direct, *BUILD_OPTIONS, inputs])
    assert_same_store(store, direct)
    check_tree(work, names)
    assert published() != first_inode


def test_bad_config_is_one_clear_line(cellcube, tmp_path):
    proc = helpers.run([snakemake_binary(), "-s", SNAKEFILE, "--cores", "1", "--config",
                        f"store={tmp_path / 'x.h5ad'}"], cwd=tmp_path)
    assert proc.returncode != 0
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "cellcube workflow:" in ln]
    assert lines == ["cellcube workflow: config 'inputs' is missing (e.g. --config inputs=DIR store=OUT.h5ad)"], \
        helpers.describe(proc)
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = helpers.run([snakemake_binary(), "-s", SNAKEFILE, "--cores", "1", "--config",
                        f"inputs={empty}", f"store={tmp_path / 'x.h5ad'}"], cwd=tmp_path)
    assert proc.returncode != 0
    assert f"cellcube workflow: folder '{empty}' holds no .h5ad file" in proc.stdout + proc.stderr, \
        helpers.describe(proc)
