"""Faults: whatever happens to the process or the machine, a store is either the old one
or the complete new one, and errors are one clear line (docs/RELIABILITY.md).

 1. test_killed_merge_leaves_output_untouched: `cellcube merge -o M ...` SIGKILLed at
    random points, 16 times (half anywhere in the run, half while the temp file is being
    written): M stays byte-identical (or, if the kill came after the rename, is the
    complete new store), opens in anndata and passes the h5py cross-check. (build and
    add are covered the same way in test_build.py.)
 2. test_full_disk_*: a 2 MB tmpfs mounted by the test (root only): `build` into it
    fails with exit 1 and one line saying there is no space, leaving no file at all;
    `add` to a small store already there fails the same way and leaves the store
    byte-identical.
 3. test_source_*_mid_build: the last of three inputs is truncated, overwritten,
    replaced (rename) or deleted while a build runs: the build fails with one line
    naming the file (changed/vanished, or the reader's error when the change came
    before the file was opened), or succeeds only with what the file holds now.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
import warnings
from pathlib import Path

import pytest

import gen_studies
import helpers
import store_reference as sr

warnings.filterwarnings("ignore")

# Totals over the module, printed at the end (docs/RELIABILITY.md quotes them).
STATS = {"merge_kills": 0, "merge_kills_writing": 0, "merge_runs": 0, "disk_full": 0,
         "source_changes": 0, "source_detected": 0}


def run(args, cwd=None, timeout=300):
    return helpers.run(args, timeout=timeout, cwd=cwd)


def run_ok(args, **kw):
    kw.setdefault("timeout", 300)
    return helpers.run_ok(args, **kw)


tmp_leftovers = helpers.tmp_leftovers


def timed_build(cellcube, out, inputs):
    """The argv of a one-thread build of `inputs` into `out`, and how long one run takes
    here (the store it wrote is removed): the fault tests aim at moments of such a run."""
    argv = [str(a) for a in (cellcube, "build", "-o", out, "--quiet", "--threads", "1", *inputs)]
    t0 = time.monotonic()
    run_ok(argv)
    total = time.monotonic() - t0
    out.unlink()
    return argv, total


def read_anndata(path):
    import anndata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return anndata.read_h5ad(path)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """Three 20,000 x 1,000 gzip CSR count files with partly different genes."""
    d = tmp_path_factory.mktemp("faults_big")
    return [gen_studies.write_big(d / f"big{k}.h5ad", seed=300 + k, gene_offset=60 * k) for k in range(3)]


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    print(f"\nfaults: {json.dumps(STATS)}")


# --------------------------------------------------------------------------
# 1. merge under SIGKILL
# --------------------------------------------------------------------------


def test_killed_merge_leaves_output_untouched(cellcube, big, tmp_path):
    shards = []
    for k, src in enumerate(big):
        s = tmp_path / f"shard{k}.h5ad"
        run_ok([cellcube, "build", "-o", s, "--quiet", "--threads", "1", src])
        shards.append(s)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    merged = out_dir / "M.h5ad"
    run_ok([cellcube, "merge", "-o", merged, "--quiet", shards[0], shards[1]])
    original = merged.read_bytes()
    argv = [str(a) for a in (cellcube, "merge", "-o", merged, "--quiet", *shards)]

    # How long a complete merge takes, and how long its temp file exists.
    total, writing = helpers.run_watching_tmp(argv, out_dir)
    assert writing is not None, "merge wrote no temp file beside its output"
    assert merged.read_bytes() != original
    want_complete = sr.StoreView(merged).dataset_names
    merged.write_bytes(original)

    rnd = random.Random(4242)
    killed = killed_writing = finished = 0
    runs = 16
    for it in range(runs):
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.monotonic()
        if it % 2 == 0:
            time.sleep(rnd.uniform(0, 0.95 * total))
        else:
            while proc.poll() is None and not tmp_leftovers(out_dir) and time.monotonic() - t0 < 60:
                time.sleep(0.0005)
            time.sleep(rnd.uniform(0, 0.9 * writing))
        writing_now = bool(tmp_leftovers(out_dir))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        rc = proc.wait(timeout=60)
        now = merged.read_bytes()
        if now != original:
            # Only a run that got as far as the rename may change the output, and then
            # the output is the complete new store.
            view = sr.StoreView(merged)
            assert view.dataset_names == want_complete and not view.h5_problems, (
                f"run {it}: merge (exit {rc}) left an output that is neither the old store nor the "
                f"complete new one: datasets {view.dataset_names}, problems {view.h5_problems[:3]}")
            finished += 1
            merged.write_bytes(original)
        elif rc == -signal.SIGKILL:
            killed += 1
            killed_writing += writing_now
        else:
            assert rc == 0, f"run {it}: merge exited {rc}"
            finished += 1
        read_anndata(merged)
        assert not sr.StoreView(merged).h5_problems
        for name in tmp_leftovers(out_dir):  # a killed process may leave its temp file
            (out_dir / name).unlink()
    STATS["merge_runs"] += runs
    STATS["merge_kills"] += killed
    STATS["merge_kills_writing"] += killed_writing
    print(f"merge kills: {killed} of {runs} ({killed_writing} while writing), {finished} finished; "
          f"merge takes {total:.2f}s, writing {writing:.2f}s")
    assert killed >= runs // 2 and killed_writing >= runs // 4, (
        f"only {killed} of {runs} merges were killed mid-way ({killed_writing} while writing); "
        f"merge takes {total:.2f}s, writing {writing:.2f}s")


# --------------------------------------------------------------------------
# 2. a full disk
# --------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs mounted for the test, unmounted afterwards."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the full-disk tests run as root in CI)")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"mount of a tmpfs is not permitted here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


NO_SPACE = ["no space", "space left", "disk is full", "disk full"]


def test_full_disk_build(cellcube, big, small_disk):
    out = small_disk / "store.h5ad"
    proc = run([cellcube, "build", "-o", out, "--quiet", "--threads", "1", *big[:2]])
    helpers.assert_error(proc, code=1, any_of=NO_SPACE)
    left = sorted(p.name for p in small_disk.iterdir())
    assert left == [], f"a build that ran out of space left {left}\n" + helpers.describe(proc)
    STATS["disk_full"] += 1


def test_full_disk_add_keeps_store(cellcube, big, tmp_path, small_disk):
    small = tmp_path / "small.h5ad"
    gen_studies.write_big(small, seed=9, n_obs=400, n_vars=60)
    store = small_disk / "store.h5ad"
    run_ok([cellcube, "build", "-o", store, "--quiet", "--groupby", "", small])
    original = store.read_bytes()
    proc = run([cellcube, "add", store, "--quiet", "--threads", "1", big[0]])
    helpers.assert_error(proc, code=1, any_of=NO_SPACE)
    assert store.read_bytes() == original, "a failed add changed the store"
    left = sorted(p.name for p in small_disk.iterdir())
    assert left == ["store.h5ad"], f"a failed add left {left}"
    STATS["disk_full"] += 1


# --------------------------------------------------------------------------
# 3. an input that changes or vanishes during the build
# --------------------------------------------------------------------------


def _truncate(path, spare):
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


def _overwrite(path, spare):
    # in place: same inode, other contents
    with open(path, "r+b") as f:
        f.write(spare.read_bytes())
        f.truncate()


def _replace(path, spare):
    tmp = path.with_suffix(".new")
    shutil.copyfile(spare, tmp)
    os.rename(tmp, path)


def _delete(path, spare):
    path.unlink()


CHANGES = {"truncate": _truncate, "overwrite": _overwrite, "replace": _replace, "delete": _delete}


@pytest.mark.parametrize("change", list(CHANGES))
def test_source_changes_mid_build(cellcube, big, tmp_path, change):
    """The build reads big0, big1, then big2 (plans all three first); big2 is changed
    at several moments of the run. Each run must fail naming big2, or succeed with a
    store that records big2 exactly as it is now (the change came before it was read)."""
    spare = tmp_path / "spare.h5ad"
    gen_studies.write_big(spare, seed=77, gene_offset=500)
    inputs = [tmp_path / f"in{k}.h5ad" for k in range(3)]
    for src, dst in zip(big, inputs):
        shutil.copyfile(src, dst)
    out = tmp_path / "store.h5ad"
    argv, total = timed_build(cellcube, out, inputs)

    detected = 0
    # Fractions of a normal run's duration at which big2 is changed: the plan step is
    # short, so most land while big0/big1 are aggregated (after big2 was opened).
    fractions = [0.3, 0.5, 0.7]
    for frac in fractions:
        shutil.copyfile(big[2], inputs[2])
        st = inputs[2].stat()
        before = (st.st_size, int(st.st_mtime))
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(frac * total)
        running = proc.poll() is None
        CHANGES[change](inputs[2], spare)
        _, stderr = proc.communicate(timeout=300)
        STATS["source_changes"] += 1
        desc = f"{change} at {frac:.0%} of {total:.2f}s (still running: {running}): exit {proc.returncode}\n{stderr}"
        assert proc.returncode in (0, 1), "killed by a signal? " + desc
        if proc.returncode == 1:
            lines = stderr.splitlines()
            assert len(lines) == 1 and lines[0].startswith(helpers.ERROR_PREFIX), "not one error line: " + desc
            assert str(inputs[2]) in lines[0], "the error must name the changed file: " + desc
            if "changed while it was being read" in lines[0] or "vanished while it was being read" in lines[0]:
                detected += 1
            assert not out.exists() and not tmp_leftovers(tmp_path), "a failed build left files: " + desc
        else:
            # It succeeded: big2 was read whole either before the change (the store records
            # the original file) or after it (it records the file as it is now).
            row = sr.StoreView(out).datasets.loc["in2"]
            got = (int(row["source_size"]), int(row["source_mtime"]))
            now = (inputs[2].stat().st_size, int(inputs[2].stat().st_mtime)) if inputs[2].exists() else None
            assert got in (before, now), (
                f"the build succeeded but records big2 as {got}, neither the original {before} nor "
                f"the current {now}: " + desc)
            out.unlink()
        if not inputs[2].exists():
            shutil.copyfile(big[2], inputs[2])
    STATS["source_detected"] += detected
    print(f"{change}: {detected} of {len(fractions)} changes detected mid-read (build takes {total:.2f}s)")
    assert detected >= 1, f"no {change} of the last input was detected while the build ran ({total:.2f}s)"


# --------------------------------------------------------------------------
# 5. a stopped command stops its worker process and leaves no file
# --------------------------------------------------------------------------


def _state(pid):
    """The process state letter ('R', 'S', 'Z', ...), or None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL],
                         ids=lambda s: signal.Signals(s).name)
def test_stopped_build_stops_its_worker(cellcube, big, tmp_path, sig):
    """cellcube reads the inputs in a child process (util/isolate.h). Signalling the
    command (Ctrl-C, a service manager's SIGTERM, SIGKILL) must stop that worker too, at
    any moment, and leave neither a store nor a temporary file (SIGKILL of the command
    itself cannot clean up: a temporary file may stay, never a partial store)."""
    out = tmp_path / "store.h5ad"
    argv, total = timed_build(cellcube, out, big)
    stopped = 0
    for frac in (0.2, 0.5, 0.8, 0.95):
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        while len(helpers.process_tree(proc.pid)) < 2 and proc.poll() is None:
            assert time.monotonic() < deadline, "no worker process appeared"
            time.sleep(0.005)
        workers = helpers.process_tree(proc.pid)[1:]
        time.sleep(frac * total)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
        desc = f"{signal.Signals(sig).name} at {frac:.0%} of {total:.2f}s: exit {proc.returncode}\n{stderr}"
        if proc.returncode == 0:  # it finished first
            out.unlink()
            continue
        assert proc.returncode == -sig, desc
        stopped += 1
        assert stderr == "", "a stopped command prints nothing: " + desc
        deadline = time.monotonic() + 5
        while any(_state(w) not in (None, "Z") for w in workers):
            assert time.monotonic() < deadline, "the worker outlived the command: " + desc
            time.sleep(0.01)
        if out.exists():  # stopped after the rename: it must be the complete new store
            assert sr.StoreView(out).dataset_names == [p.stem for p in big], desc
            out.unlink()
        if sig != signal.SIGKILL:
            assert not tmp_leftovers(tmp_path), "a temporary file was left: " + desc
        for p in tmp_leftovers(tmp_path):
            (tmp_path / p).unlink()
    assert stopped >= 2, f"only {stopped} of 4 builds were still running when signalled ({total:.2f}s)"
