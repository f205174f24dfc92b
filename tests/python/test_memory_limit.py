"""docs/SCALING.md: one setting bounds a command's memory (`--memory-limit SIZE`, by default
$CELLCUBE_MEMORY_LIMIT, else 2G), and a command that runs out of memory says so in one
line: "out of memory ...", how much it used, the limit, and the setting that gives it
more; never that an input is damaged, and no file is left behind."""

from __future__ import annotations

import re

import pytest

import helpers

# A bound no build of 20,000 cells x 2,000 genes fits in (two worker threads' stacks
# alone are 16 MiB), yet above the few MiB where libhdf5's own allocations fail first
# (those report an HDF5 read error, not "out of memory"; docs/RELIABILITY.md).
TINY = "16M"
TINY_SHOWN = "16.0 MiB"


@pytest.fixture(scope="module")
def synth(cellcube, tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    helpers.run_ok([cellcube, "synth", "-o", d, "--datasets", "1", "--cells", "20000",
                    "--genes", "2000", "--quiet"])
    return sorted(d.glob("*.h5ad"))


def check_out_of_memory(proc, limit_shown=TINY_SHOWN):
    line = helpers.assert_error(proc, code=1, mentions=["out of memory", f"of the {limit_shown} limit",
                                                        "--memory-limit", "CELLCUBE_MEMORY_LIMIT"])
    assert re.search(r"\(used [0-9.]+ (B|KiB|MiB|GiB) of the ", line), line
    assert re.search(r"e\.g\. --memory-limit [0-9]+[MG]$", line), line
    for lie in ("damaged", "crashed", "SIG", "internal error"):
        assert lie not in line, line
    return line


@pytest.mark.parametrize("how", ["option", "option=", "environment"])
def test_build_past_the_limit_says_out_of_memory(cellcube, synth, tmp_path, how):
    out = tmp_path / "out"
    out.mkdir()
    argv = [cellcube, "build", "-o", out / "store.h5ad", *synth]
    env = {"CELLCUBE_MEMORY_LIMIT": None}
    if how == "option":
        argv[2:2] = ["--memory-limit", TINY]
    elif how == "option=":
        argv.append(f"--memory-limit={TINY}")
    else:
        env["CELLCUBE_MEMORY_LIMIT"] = TINY
    proc = helpers.run(argv, env=env)
    check_out_of_memory(proc)
    assert sorted(p.name for p in out.iterdir()) == [], list(out.iterdir())


def test_add_past_the_limit_keeps_the_store(cellcube, synth, tmp_path):
    store = tmp_path / "store.h5ad"
    helpers.run_ok([cellcube, "build", "-o", store, "--quiet", *synth])
    before = store.read_bytes()
    proc = helpers.run([cellcube, "add", store, "--memory-limit", TINY, "--quiet", f"again={synth[0]}"])
    line = check_out_of_memory(proc)
    assert "'again'" in line, line  # what it was doing: aggregating dataset 'again'
    assert store.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.h5ad"]


def test_the_option_wins_over_the_environment(cellcube, synth, tmp_path):
    store = tmp_path / "store.h5ad"
    proc = helpers.run([cellcube, "build", "-o", store, "--quiet", "--memory-limit", "1G", *synth],
                       env={"CELLCUBE_MEMORY_LIMIT": TINY})
    assert proc.returncode == 0, helpers.describe(proc)
    # An unusable variable does not matter when the option is given.
    for argv in (["info", store], ["query", store, "--genes", "CD3E"], ["inspect", synth[0]]):
        proc = helpers.run([cellcube, *argv, "--memory-limit", "512M"], env={"CELLCUBE_MEMORY_LIMIT": "abc"})
        assert proc.returncode == 0, helpers.describe(proc)
        assert proc.stderr == "", helpers.describe(proc)


@pytest.mark.parametrize("argv, env", [
    (["--memory-limit", "abc"], {}),
    (["--memory-limit=12k"], {}),
    (["--memory-limit", "1G", "--memory-limit", "2G"], {}),
    (["--memory-limit"], {}),
    ([], {"CELLCUBE_MEMORY_LIMIT": "abc"}),
], ids=["abc", "below-1M", "twice", "no-value", "environment"])
def test_a_malformed_limit_is_a_usage_error(cellcube, synth, tmp_path, argv, env):
    out = tmp_path / "store.h5ad"
    proc = helpers.run([cellcube, "build", "-o", out, *synth, *argv], env=env)
    line = helpers.assert_error(proc, code=2, any_of=["--memory-limit", "CELLCUBE_MEMORY_LIMIT"])
    if argv[-1:] != ["2G"]:
        assert "e.g." in line, line
    assert not out.exists()


def test_help_describes_the_setting(cellcube):
    text = helpers.run_ok([cellcube, "--help"]).stdout
    assert "--memory-limit SIZE" in text and "CELLCUBE_MEMORY_LIMIT" in text and "2G" in text, text
    for command in ("inspect", "build", "add", "remove", "merge", "info", "query"):
        text = helpers.run_ok([cellcube, command, "--help"]).stdout
        assert "--memory-limit SIZE" in text, (command, text)
