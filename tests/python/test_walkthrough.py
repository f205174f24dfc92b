"""README.md's "Bring your own .h5ad" walkthrough, run as written on the real files.

The commands are read from the README's block (so the two cannot drift), run in order in
a folder holding the two real files under their own names, and each must exit 0 with
what the walkthrough's comments claim; the numbers are checked against anndata's reading
of the files. `serve` runs until stopped: it is started with the same arguments plus a
free port (8080 may be taken here) and asked for its metadata.
"""
from __future__ import annotations

import io
import json
import shlex

import pandas as pd
import pytest

import helpers
from helpers import describe, run

README = helpers.REPO / "README.md"
PBMC = "anndata-0.8plus_pbmc68k-reduced-rewritten_dense-gzip_raw-csr.h5ad"
WU = "anndata-0.7_scirpy-wu2020-200_csr-gzip_int16-codes.h5ad"


def walkthrough_commands():
    """The `cellcube ...` lines of the walkthrough's block, split as a shell would (an
    end-of-line comment dropped)."""
    section = README.read_text().split("## Bring your own `.h5ad`", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line, comments=True) for line in block.splitlines()
            if line.startswith("cellcube ")]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("walk")
    for name in (PBMC, WU):
        src = helpers.DATA_DIR / name
        if not src.is_file():
            pytest.fail(f"missing real file {src}", pytrace=False)
        (d / name).symlink_to(src)
    return d


@pytest.fixture(scope="module")
def obs():
    import anndata

    return {name: anndata.read_h5ad(helpers.DATA_DIR / name, backed="r").obs for name in (PBMC, WU)}


def check_inspect(args, proc, obs):
    out = proc.stdout
    if "--column" in args:
        counts = obs[PBMC]["bulk_labels"].value_counts()
        for value, n in counts.items():
            assert any(ln.split()[-1] == str(n) and ln.strip().startswith(value)
                       for ln in out.splitlines()), (value, n, out)
        return
    if args[1] == PBMC:
        assert "raw/X" in out and "categorical obs columns: bulk_labels, phase, louvain" in out, out
        assert "build's default: obs 'louvain'" in out, out
    else:
        assert "build's default: none of its default columns is in obs" in out, out
        assert "cluster_orig" in out.split("categorical obs columns:", 1)[1], out


def check_build(args, proc, obs):
    err = proc.stderr
    if args[0] == "build":
        assert "dataset 'pbmc68k': cell types from obs 'bulk_labels'" in err.splitlines(), err
        assert f"wrote atlas.h5ad: 1 datasets, {len(obs[PBMC])} cells" in err, err
    else:
        assert "dataset 'wu2020': cell types from obs 'cluster_orig'" in err.splitlines(), err
        assert f"wrote atlas.h5ad: 2 datasets, {len(obs[PBMC]) + len(obs[WU])} cells" in err, err


def check_info(proc, obs):
    blocks = proc.stdout.split("\n\n")
    used = next(b for b in blocks if "cell type column" in b)
    rows = {ln.split()[0]: ln.split() for ln in used.splitlines()[2:]}
    assert rows["pbmc68k"] == ["pbmc68k", "bulk_labels", "-", "phase"], used
    assert rows["wu2020"] == ["wu2020", "cluster_orig", "-", "source,patient"], used
    sizes = next(b for b in blocks if "transform" in b)
    rows = {ln.split()[0]: ln.split() for ln in sizes.splitlines()[2:]}
    assert rows["pbmc68k"][1] == f"{len(obs[PBMC])}" and rows["pbmc68k"][-1] == "raw/X", sizes
    assert rows["wu2020"][1] == f"{len(obs[WU])}" and rows["wu2020"][4] == "cp10k_log1p", sizes
    assert f"  pbmc68k: {PBMC}" in proc.stdout and f"  wu2020: {WU}" in proc.stdout


def check_query(args, proc, obs, folder, cellcube):
    # The table's numbers are the CSV's: ask again for CSV with the same arguments.
    csv = run([cellcube, *args, "--format", "csv"], cwd=folder)
    got = pd.read_csv(io.StringIO(csv.stdout), keep_default_na=False, na_values=[""])
    counts = obs[PBMC]["bulk_labels"].value_counts()
    for gene in ("CD3E", "MS4A1", "LYZ"):
        rows = got[(got.dataset == "pbmc68k") & (got.gene == gene)]
        assert dict(zip(rows.cell_type, rows.n_cells)) == {k: v for k, v in counts.items() if v}, gene
    assert "CD3E" in proc.stdout and "CD19+ B" in proc.stdout


def check_de(args, proc):
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:2] == ["gene", "symbol"] and len(lines) == 2 + 5, proc.stdout
    if "pbmc68k" in args:
        assert "test: cells" in proc.stderr, proc.stderr
    else:
        assert "test: donors" in proc.stderr and "donor column 'donor'" in proc.stderr, proc.stderr


def check_markers(proc, obs):
    lines = proc.stdout.splitlines()
    assert lines[0].split()[0] == "cell_type", proc.stdout
    types = [v for v in obs[PBMC]["bulk_labels"].cat.categories]
    per_type = {t: sum(ln.startswith(t + " ") for ln in lines[2:]) for t in types}
    assert all(n == 2 for n in per_type.values()), per_type
    assert "CD79A" in proc.stdout  # B cells' marker


def test_the_walkthrough_runs_as_written(cellcube, folder, obs, tmp_path):
    from test_server import Server, get

    commands = walkthrough_commands()
    assert [c[1] for c in commands] == ["inspect", "inspect", "inspect", "build", "add", "info",
                                        "query", "de", "de", "markers", "serve"], commands
    for argv in commands:
        assert argv[0] == "cellcube"
        args = argv[1:]
        if args[0] == "serve":
            srv = Server(cellcube, folder / args[1], tmp_path, cwd=folder, extra_args=args[2:])
            try:
                r = get(srv.port, "/api/v1/meta")
                assert r.status == 200, r.body
                meta = json.loads(r.body)
                assert [d["name"] for d in meta["datasets"]] == ["pbmc68k", "wu2020"], meta["datasets"]
            finally:
                srv.stop()
            continue
        proc = run([cellcube, *args], cwd=folder)
        assert proc.returncode == 0, describe(proc)
        if args[0] == "inspect":
            check_inspect(args, proc, obs)
        elif args[0] in ("build", "add"):
            check_build(args, proc, obs)
        elif args[0] == "info":
            check_info(proc, obs)
        elif args[0] == "query":
            check_query(args, proc, obs, folder, cellcube)
        elif args[0] == "de":
            check_de(args, proc)
        else:
            check_markers(proc, obs)
