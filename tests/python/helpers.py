"""Shared helpers for the cellcube Python tests (paths, running binaries)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parents[1]  # tests/python/../..
DATA_DIR = (REPO / ".." / "shared" / "data" / "h5ad").resolve()

ERROR_PREFIX = "cellcube: error: "


def real_files():
    """Every .h5ad in the shared data dir (sorted); [] if there is none."""
    if not DATA_DIR.is_dir():
        return []
    return sorted(DATA_DIR.glob("*.h5ad"))


def _binary(env, name, fallback_env=None):
    """$ENV, else beside $FALLBACK_ENV, else in $CELLCUBE_BUILD (what the Makefile
    passes: build/ or the sanitizer build), else <repo>/build."""
    if os.environ.get(env):
        return Path(os.environ[env])
    if fallback_env and os.environ.get(fallback_env):
        return Path(os.environ[fallback_env]).parent / name
    if os.environ.get("CELLCUBE_BUILD"):
        return Path(os.environ["CELLCUBE_BUILD"]) / name
    return REPO / "build" / name


def cellcube_path() -> Path:
    return _binary("CELLCUBE_BIN", "cellcube")


def dump_path() -> Path:
    return _binary("CELLCUBE_DUMP_BIN", "cellcube-dump", fallback_env="CELLCUBE_BIN")


def require_binary(path: Path, what: str) -> Path:
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"{what} binary not found or not executable at {path}. Build the project "
            f"(it is expected at <repo>/build/{path.name}) or point "
            f"{'CELLCUBE_BIN' if path.name == 'cellcube' else 'CELLCUBE_DUMP_BIN'} at it.",
            pytrace=False,
        )
    return path


def run(args, timeout=180, cwd=None, env=None) -> subprocess.CompletedProcess:
    """Runs args (capturing text output); `env` adds to (or, with None values, removes
    from) this process's environment."""
    args = [str(a) for a in args]
    full_env = None
    if env:
        full_env = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    try:
        return subprocess.run(
            args,
            capture_output=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            cwd=cwd,
            env=full_env,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"timed out after {timeout}s: {' '.join(args)}", pytrace=False)


def run_ok(args, **kw) -> subprocess.CompletedProcess:
    proc = run(args, **kw)
    assert proc.returncode == 0, "command failed\n" + describe(proc)
    return proc


def describe(proc) -> str:
    err = proc.stderr if len(proc.stderr) < 3000 else proc.stderr[:3000] + "...[truncated]"
    out = proc.stdout if len(proc.stdout) < 1000 else proc.stdout[:1000] + "...[truncated]"
    return f"$ {' '.join(proc.args)}\nexit code: {proc.returncode}\n--- stderr:\n{err}\n--- stdout:\n{out}"


def _reject_constant(name):
    raise ValueError(f"non-standard JSON constant {name!r} (NaN must be written as null)")


def run_json(args, timeout=180):
    """Run a command that must succeed and print one JSON document."""
    proc = run(args, timeout=timeout)
    assert proc.returncode == 0, "command failed\n" + describe(proc)
    try:
        return json.loads(proc.stdout, parse_constant=_reject_constant)
    except ValueError as e:
        pytest.fail(f"stdout is not valid JSON: {e}\n" + describe(proc), pytrace=False)


def assert_error(proc, *, code=1, mentions=(), any_of=(), patterns=(), continued=False):
    """The error contract: exit code `code` (never a signal), stderr exactly
    one line starting with 'cellcube: error: ', which contains every string in
    `mentions` and at least one of `any_of` (case-insensitive), and matches
    every regular expression in `patterns` (case-sensitive, searched in the
    text after the prefix). With `continued`, the one error may go on over lines
    indented by two spaces (the CLI's form for an error that lists things:
    src/cli/main.cc), and `mentions`/`any_of` are looked for in all its lines."""
    info = describe(proc)
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}\n" + info
    assert proc.returncode == code, f"expected exit code {code}\n" + info
    lines = proc.stderr.splitlines()
    if continued:
        assert lines and all(ln.startswith("  ") for ln in lines[1:]), \
            "an error's further lines must be indented\n" + info
    else:
        assert len(lines) == 1, f"stderr must be exactly one line, got {len(lines)}\n" + info
    line = lines[0]
    assert line.startswith(ERROR_PREFIX), f"stderr must start with {ERROR_PREFIX!r}\n" + info
    low = "\n".join(lines).lower()
    for m in mentions:
        assert str(m).lower() in low, f"error message should mention {m!r}\n" + info
    if any_of:
        assert any(str(m).lower() in low for m in any_of), (
            f"error message should mention one of {list(any_of)!r}\n" + info
        )
    for pat in patterns:
        assert re.search(pat, line[len(ERROR_PREFIX):]), f"error message should match /{pat}/\n" + info
    return line


# --------------------------------------------------------------------------
# the two agreement checks shared by test_real_files and test_generated
# --------------------------------------------------------------------------


def check_inspect(cellcube, path):
    """`cellcube inspect FILE --json` agrees with anndata/h5py."""
    import reference

    want = reference.expected_inspect(path)
    got = run_json([cellcube, "inspect", path, "--json"])
    problems = []
    if not isinstance(got, dict):
        pytest.fail(f"inspect --json printed {type(got).__name__}, not an object", pytrace=False)
    gp = got.get("path")
    if not isinstance(gp, str) or Path(gp).resolve() != Path(path).resolve():
        problems.append(f"path: got {gp!r} want {str(path)!r}")
    problems += reference.compare_inspect(got, want)
    assert not problems, f"inspect --json of {Path(path).name} disagrees with anndata/h5py:\n  " + "\n  ".join(
        problems
    )
    return got


def check_dump(cellcube_dump, path, matrix):
    """`cellcube-dump FILE [--matrix M]` agrees with the reference."""
    import reference

    want = reference.expected_dump(path, matrix)
    args = [cellcube_dump, path] if matrix == "X" else [cellcube_dump, path, "--matrix", matrix]
    got = run_json(args)
    if not isinstance(got, dict):
        pytest.fail(f"cellcube-dump printed {type(got).__name__}, not an object", pytrace=False)
    problems = reference.compare_dump(got, want)
    assert not problems, f"cellcube-dump of {Path(path).name} [{matrix}] disagrees with the reference:\n  " + "\n  ".join(
        problems
    )


def column_listing_problems(stdout, labels):
    """`inspect --column` output (human text; its layout is free) must show
    every value present with its cell count on one line; missing values are
    shown as NA.  Counts may be written plain (1632) or grouped (1,632)."""
    from collections import Counter

    lines = stdout.splitlines()
    problems = []
    for label, n in Counter(labels).items():
        text = "NA" if label is None else label
        count = re.compile(rf"(?<![\w.,])(?:{n}|{n:,})(?![\w.,])")
        if not any(text in ln and count.search(ln.replace(text, " ", 1)) for ln in lines):
            problems.append(f"no line shows value {text!r} with count {n}")
    return problems


def tmp_leftovers(directory) -> list[str]:
    """Names of the temporary files a store writer left in `directory` (STORE.tmp-PID-N)."""
    return sorted(p.name for p in Path(directory).iterdir() if ".tmp-" in p.name)


def run_watching_tmp(argv, directory):
    """Runs argv to success; returns (total seconds, seconds from the appearance of a
    temporary store file in `directory` to the end, or None if none was seen): the
    kill tests aim at moments of such a run."""
    import time

    t0 = time.monotonic()
    proc = subprocess.Popen([str(a) for a in argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = None
    while proc.poll() is None:
        if first is None and tmp_leftovers(directory):
            first = time.monotonic()
        time.sleep(0.001)
    end = time.monotonic()
    assert proc.returncode == 0, proc.stderr.read().decode(errors="replace")
    return end - t0, (end - first) if first else None


def sanitized_build() -> bool:
    """True when the binaries under test were built with ASan + UBSan (make test-asan)."""
    cache = cellcube_path().parent / "CMakeCache.txt"
    return cache.is_file() and "CELLCUBE_SANITIZE:BOOL=ON" in cache.read_text(errors="replace")


def libhdf5_bug_env() -> dict:
    """Environment for feeding files on which libhdf5 itself misbehaves
    (fuzz/libhdf5-findings): a 1 GiB memory limit, so the runaway allocation fails in
    seconds. Under ASan also its SEGV handler off, so that a crash is a signal as in a
    release build, and its interceptors' reports on libhdf5's own bugs suppressed
    (fuzz/libhdf5.supp)."""
    env = {"CELLCUBE_MEMORY_LIMIT": "1G"}
    if sanitized_build():
        env["ASAN_OPTIONS"] = ("handle_segv=0:allocator_may_return_null=1:detect_leaks=0:"
                               f"suppressions={REPO / 'fuzz' / 'libhdf5.supp'}")
    return env


def process_tree(pid: int) -> list[int]:
    """pid and its descendants alive now (from /proc/PID/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            pass
    return out
