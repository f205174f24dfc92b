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
 3. test_source_changes_mid_build: the last of three inputs is truncated, overwritten,
    replaced (rename) or deleted at moments the test picks by watching the build open
    its inputs (inotify) and stopping it there: before the input was planned (the
    build reads the new file, or fails with one line naming it), after it was planned,
    and while it is being read (the build fails with one line naming it as changed or
    vanished, every time).
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import select
import shutil
import signal
import struct
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


class OpenWatch:
    """inotify on a directory: the names of the files opened in it, in order. The build
    opens each input several times (libhdf5), first to plan them all, then to
    aggregate them one after another; these opens mark the moments the test acts at."""

    IN_OPEN = 0x20

    def __init__(self, directory):
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if self._libc.inotify_add_watch(self.fd, os.fsencode(directory), self.IN_OPEN) < 0:
            err = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(err, f"inotify_add_watch {directory}")
        self._pending = []

    def pending(self):
        """The opens queued now, without waiting."""
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            i = 0
            while i < len(buf):
                _, _, _, length = struct.unpack_from("iIII", buf, i)
                self._pending.append(buf[i + 16:i + 16 + length].rstrip(b"\0").decode())
                i += 16 + length
        out, self._pending = self._pending, []
        return out

    def wait(self, timeout):
        """The next open, or None after `timeout` seconds."""
        if not self._pending:
            select.select([self.fd], [], [], timeout)
            self._pending = self.pending()
        return self._pending.pop(0) if self._pending else None

    def close(self):
        os.close(self.fd)


# The moments at which big2 (in2) is changed, as opens the build makes:
#   "before-plan": the first open of in0, when in2 has not been planned: the build then
#                  reads in2 as it is after the change;
#   "after-plan":  the first open of in0 after in2's (planning done, in0 being
#                  aggregated): in2 changed after its plan must be reported as changed;
#   "mid-read":    the next open of in2 (it is being aggregated): the same.
MOMENTS = {
    "before-plan": ["in0.h5ad"],
    "after-plan": ["in2.h5ad", "in0.h5ad"],
    "mid-read": ["in2.h5ad", "in0.h5ad", "in2.h5ad"],
}


def _stop_group(proc):
    """SIGSTOPs the build and its worker; returns once every one of them is stopped."""
    os.killpg(proc.pid, signal.SIGSTOP)
    deadline = time.monotonic() + 10
    while any(_state(p) not in (None, "T", "t", "Z") for p in helpers.process_tree(proc.pid)):
        assert time.monotonic() < deadline, "the build did not stop on SIGSTOP"
        time.sleep(0.001)


def _holds_open(proc, path):
    want = os.path.realpath(path)
    for pid in helpers.process_tree(proc.pid):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == want:
                    return True
            except OSError:
                pass
    return False


def _build_changing(argv, watch_dir, inputs, moment, change, spare):
    """Runs the build, stops it (SIGSTOP of its process group) at `moment`, changes
    in2 if the stopped build is where the moment says, and lets it go on. Returns
    (changed, exit code, stderr); changed is False when the stop came too late (the
    build had moved past the moment while the test reacted), and nothing was changed."""
    watch = OpenWatch(watch_dir)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        todo = list(MOMENTS[moment])
        deadline = time.monotonic() + 120
        while todo:
            name = watch.wait(0.2)
            if name is None:
                assert proc.poll() is None, f"the build ended (exit {proc.returncode}) before {todo} was opened"
                assert time.monotonic() < deadline, f"no open of {todo} within 120 s"
            elif name == todo[0]:
                todo.pop(0)
        _stop_group(proc)
        later = watch.pending()  # complete: every process of the build is stopped
        if moment == "before-plan":
            in_time = "in2.h5ad" not in later
        elif moment == "after-plan":
            in_time = "in2.h5ad" not in later and _holds_open(proc, inputs[0])
        else:
            in_time = _holds_open(proc, inputs[2])
        if in_time:
            CHANGES[change](inputs[2], spare)
        os.killpg(proc.pid, signal.SIGCONT)
        _, stderr = proc.communicate(timeout=300)
        return in_time, proc.returncode, stderr
    finally:
        watch.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.parametrize("change", list(CHANGES))
def test_source_changes_mid_build(cellcube, big, tmp_path, change):
    """The build plans big0, big1, big2, then aggregates them in that order. big2 is
    changed at three moments the test controls (MOMENTS), with the build stopped while
    it is changed. Changed after it was planned, the build must fail with one line
    naming big2 as changed (vanished, for a delete) and leave no file; changed before,
    it reads big2 as it now is: a store recording the new file, or one error line
    naming big2 when there is nothing to read."""
    spare = tmp_path / "spare.h5ad"
    gen_studies.write_big(spare, seed=77, gene_offset=500)
    work = tmp_path / "work"
    work.mkdir()
    inputs = [work / f"in{k}.h5ad" for k in range(3)]
    for src, dst in zip(big, inputs):
        shutil.copyfile(src, dst)
    out = work / "store.h5ad"
    argv = [str(a) for a in (cellcube, "build", "-o", out, "--quiet", "--threads", "1", *inputs)]
    word = "vanished" if change == "delete" else "changed"

    runs = []
    for moment in MOMENTS:
        for attempt in range(3):
            shutil.copyfile(big[2], inputs[2])
            changed, rc, stderr = _build_changing(argv, work, inputs, moment, change, spare)
            if changed:
                break
            assert rc == 0, f"{moment}: the unchanged build failed: exit {rc}\n{stderr}"
            out.unlink()
        else:
            pytest.fail(f"{change} {moment}: in 3 runs the build never stopped where the moment is")
        STATS["source_changes"] += 1
        runs.append(f"{moment} on run {attempt + 1}")
        desc = f"{change} {moment} (run {attempt + 1}): exit {rc}\n{stderr}"
        lines = stderr.splitlines()
        if moment == "before-plan" and change in ("overwrite", "replace"):
            assert rc == 0 and stderr == "", desc
            row = sr.StoreView(out).datasets.loc["in2"]
            st = inputs[2].stat()
            assert (int(row["source_size"]), int(row["source_mtime"])) == (st.st_size, int(st.st_mtime)), (
                "the store must record big2 as it was read (after the change): " + desc)
            out.unlink()
            continue
        assert rc == 1 and len(lines) == 1 and lines[0].startswith(helpers.ERROR_PREFIX), "not one error line: " + desc
        assert str(inputs[2]) in lines[0], "the error must name the changed file: " + desc
        if moment != "before-plan":
            assert f"{word} while it was being read" in lines[0], desc
            STATS["source_detected"] += 1
        assert not out.exists() and not tmp_leftovers(work), "a failed build left files: " + desc
    print(f"{change}: changed {', '.join(runs)}")


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
