"""Crash safety, with real training processes.

- ``kill -9`` at random moments (some right as a snapshot is being written) always
  leaves the newest complete snapshot loadable, and training resumes from it;
- a full disk during a snapshot keeps the previous snapshot and reports the error
  (a real tmpfs where this machine lets us mount one in a private namespace, and
  an injected ENOSPC everywhere);
- SIGINT and SIGHUP follow ``--sigint_effect`` / ``--sighup_effect``
  (stop, snapshot, none) as Caffe's.

Each training run is a tiny MLP on a 200-record LMDB (a few ms per iteration).
"""

import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.bad_inputs.recipes import mlp_training

ROOT = Path(__file__).resolve().parents[1]


def cli_env(extra_pythonpath=()):
    env = dict(os.environ)
    paths = [*map(str, extra_pythonpath), str(ROOT)]
    env["PYTHONPATH"] = os.pathsep.join(
        paths + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env.pop("CAFFEPY_DEBUG", None)
    return env


def cli_command(*args):
    return [sys.executable, "-m", "caffepy.cli", *args]


class Training:
    """A ``caffepy train`` process whose stderr lines are collected as they come."""

    def __init__(self, cwd, *args, env=None, command=None):
        self.lines = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            command
            or cli_command(
                "train", "--solver", "solver.prototxt", "--no-progress", *args
            ),
            cwd=cwd,
            env=env or cli_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self.lines.append(None)  # EOF
            self._cond.notify_all()

    def wait_for(self, pattern, timeout=60, after=0):
        """Block until a line (from index ``after`` on) matches ``pattern``;
        return its index, or None when the process ended first."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            i = after
            while True:
                while i < len(self.lines):
                    line = self.lines[i]
                    if line is None:
                        return None
                    if rx.search(line):
                        return i
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"no line matching {pattern!r}:\n" + self.text()
                    )
                self._cond.wait(left)

    def signal(self, signum):
        self.proc.send_signal(signum)

    def finish(self, timeout=120):
        self.proc.wait(timeout)
        self._reader.join(timeout)
        self.proc.stderr.close()
        return self.proc.returncode

    def text(self):
        return "\n".join(line for line in self.lines if line is not None)


def snapshots(folder, prefix="snap/mlp"):
    """{iteration: solverstate path} of the complete snapshots (a .solverstate)."""
    found = {}
    for path in glob.glob(os.path.join(folder, prefix + "_iter_*.solverstate")):
        found[int(re.search(r"_iter_(\d+)\.solverstate$", path).group(1))] = path
    return found


def check_snapshots(folder, net="net.prototxt", prefix="snap/mlp"):
    """Every complete snapshot and every caffemodel in the folder loads; returns
    {iteration: solverstate}."""
    import caffepy
    from caffepy.solvers import state as state_io

    here = os.getcwd()
    os.chdir(folder)
    try:
        for model in glob.glob(prefix + "_iter_*.caffemodel"):
            caffepy.Net(net, caffepy.TEST, weights=model)  # parses and fits
        found = snapshots(".", prefix)
        for it, path in found.items():
            state = state_io.read_solverstate(path)
            assert state.iter == it
            assert os.path.exists(state_io.resolve_learned_net(state.learned_net, path))
            assert state_io.read_sidecar(path)["iter"] == it
    finally:
        os.chdir(here)
    return found


# -- kill -9 -------------------------------------------------------------------------------
def test_kill_9_at_random_moments_leaves_a_resumable_snapshot(tmp_path):
    # 256 hidden units: snapshots of ~150 kB, so a kill often lands inside one.
    mlp_training(tmp_path, hidden=256, max_iter=300, snapshot=5, display=5)
    rng = np.random.default_rng(1701)
    newest = None
    for mode in ["in model write", "in state write", "random", "random", "random"]:
        args = ["--snapshot", snapshots(tmp_path)[newest]] if newest else []
        run = Training(tmp_path, *args)
        start = run.wait_for(r"Iteration \d+")
        if start is not None:
            if mode == "in model write":
                run.wait_for("Snapshotting to binary proto file", after=start)
            elif mode == "in state write":
                run.wait_for("Snapshotting solver state", after=start)
            else:
                if newest is None:
                    # NOTE: on a loaded machine the first snapshot can take longer
                    # than the random delay: let one start, so a resume is tested.
                    run.wait_for("Snapshotting solver state", after=start)
                time.sleep(rng.uniform(0.0, 0.3))
            run.signal(signal.SIGKILL)
        assert run.finish() in (-signal.SIGKILL, 0), run.text()
        found = check_snapshots(tmp_path)  # (none when killed in the first one)
        assert newest is None or max(found) >= newest
        newest = max(found, default=None)
    # The last resume runs to the end; the interrupted snapshots' temporary files
    # are gone.
    assert newest is not None
    run = Training(tmp_path, "--snapshot", snapshots(tmp_path)[newest])
    assert run.finish() == 0, run.text()
    assert f"Restored solver state from {snapshots(tmp_path)[newest]}" in run.text()
    assert max(check_snapshots(tmp_path)) == 300
    assert not glob.glob(str(tmp_path / "snap" / ".*.tmp"))


# -- full disk ----------------------------------------------------------------------------------
SITECUSTOMIZE = '''\
"""Test hook: file writes through os.fdopen fail with ENOSPC once
CAFFEPY_TEST_DISK_BUDGET bytes have been written (a disk filling up)."""
import errno
import os

_budget = [int(os.environ["CAFFEPY_TEST_DISK_BUDGET"])]
_fdopen = os.fdopen


class _Limited:
    def __init__(self, f):
        self._f = f

    def write(self, data):
        if len(data) > _budget[0]:
            self._f.write(data[:_budget[0]])
            _budget[0] = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        _budget[0] -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def fdopen(fd, mode="r", *args, **kwargs):
    f = _fdopen(fd, mode, *args, **kwargs)
    return _Limited(f) if "w" in mode or "a" in mode else f


os.fdopen = fdopen
'''


def _snapshot_bytes(folder):
    """The bytes one snapshot of the solver in ``folder`` takes on disk."""
    import caffepy

    here = os.getcwd()
    os.chdir(folder)
    try:
        solver = caffepy.get_solver("solver.prototxt")
        solver.param.snapshot_prefix = "measure/mlp"
        files = solver.snapshot()
        for net in [solver.net, *solver.test_nets]:
            for layer in net.data_layers:
                layer.close()
        total = sum(os.path.getsize(f) for f in files)
        total += os.path.getsize(files[1] + ".caffepy.json")
        shutil.rmtree("measure")
    finally:
        os.chdir(here)
    return total


def _can_mount_tmpfs(folder):
    if not shutil.which("unshare") or not sys.platform.startswith("linux"):
        return False
    probe = folder / "probe"
    probe.mkdir()
    res = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {probe}"],
        capture_output=True,
        timeout=30,
    )
    probe.rmdir()
    return res.returncode == 0


@pytest.mark.parametrize("disk", ["injected", "tmpfs"])
def test_full_disk_during_snapshot_keeps_the_previous_one(tmp_path, disk):
    mlp_training(tmp_path, hidden=256, max_iter=40, snapshot=10)
    (tmp_path / "snap").mkdir()
    per_snapshot = _snapshot_bytes(tmp_path)
    train = ["train", "--solver", "solver.prototxt", "--no-progress"]
    if disk == "injected":
        hook = tmp_path / "hook"
        hook.mkdir()
        (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
        env = cli_env([hook])
        # room for one snapshot and half of the next
        env["CAFFEPY_TEST_DISK_BUDGET"] = str(per_snapshot * 3 // 2)
        run = Training(tmp_path, env=env, command=cli_command(*train))
        out = tmp_path / "snap"
    else:
        if not _can_mount_tmpfs(tmp_path):
            pytest.skip("cannot mount a tmpfs in a private mount namespace here")
        # A tmpfs (in a namespace of its own) with room for one snapshot, the
        # metrics log and half of the next snapshot; its content is copied out
        # when training has ended.
        size_kib = (per_snapshot * 3 // 2) // 1024 + 12
        out = tmp_path / "copy"
        out.mkdir()
        script = (
            f"mount -t tmpfs -o size={size_kib}k tmpfs snap || exit 99; "
            f"{subprocess.list2cmdline(cli_command(*train))}; rc=$?; "
            "cp -a snap/. copy/; exit $rc"
        )
        run = Training(tmp_path, command=["unshare", "-m", "sh", "-c", script])
    rc = run.finish()
    assert rc == 1, run.text()
    errors = [line for line in run.lines if line and line.startswith("caffepy: error:")]
    assert len(errors) == 1 and "Traceback" not in run.text(), run.text()
    assert "cannot write the snapshot of iteration 20" in errors[0]
    assert "No space left on device" in errors[0]
    assert "the previous snapshot snap/mlp_iter_10.caffemodel is intact" in errors[0]
    # The previous snapshot is whole; nothing of the failed one is left.
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if "iter_20" in n or n.endswith(".tmp")], names
    found = check_snapshots(out.parent, prefix=f"{out.name}/mlp")
    assert list(found) == [10]
    # ... and training resumes from it (on a disk with room).
    if disk == "tmpfs":
        for name in names:
            shutil.copy(out / name, tmp_path / "snap" / name)
    run = Training(tmp_path, "--snapshot", "snap/mlp_iter_10.solverstate")
    assert run.finish() == 0, run.text()
    assert max(check_snapshots(tmp_path)) == 40


# -- SIGINT / SIGHUP -----------------------------------------------------------------------------
def _signal_run(tmp_path, *args):
    mlp_training(tmp_path, max_iter=1000000, snapshot=0, display=10)
    return Training(tmp_path, *args)


def test_sigint_stops_with_a_snapshot(tmp_path):
    run = _signal_run(tmp_path)  # Caffe's default: --sigint_effect stop
    run.wait_for(r"Iteration [1-9]\d+")
    run.signal(signal.SIGINT)
    assert run.finish() == 0, run.text()
    assert "Optimization stopped early" in run.text()
    found = check_snapshots(tmp_path)
    assert len(found) == 1 and 0 < min(found) < 1000000


def test_sighup_snapshots_and_goes_on(tmp_path):
    run = _signal_run(tmp_path)  # Caffe's default: --sighup_effect snapshot
    run.wait_for(r"Iteration [1-9]\d+")
    run.signal(signal.SIGHUP)
    i = run.wait_for("Snapshotting solver state")
    run.wait_for(r"Iteration \d+", after=i)  # still training
    assert run.proc.poll() is None
    run.signal(signal.SIGINT)
    assert run.finish() == 0, run.text()
    assert len(check_snapshots(tmp_path)) == 2  # the SIGHUP's and the stop's


def test_sigint_snapshot_and_sighup_stop(tmp_path):
    run = _signal_run(
        tmp_path, "--sigint_effect", "snapshot", "--sighup_effect", "stop"
    )
    run.wait_for(r"Iteration [1-9]\d+")
    run.signal(signal.SIGINT)
    i = run.wait_for("Snapshotting solver state")
    run.wait_for(r"Iteration \d+", after=i)
    assert run.proc.poll() is None
    run.signal(signal.SIGHUP)
    assert run.finish() == 0, run.text()
    assert "Optimization stopped early" in run.text()
    assert len(check_snapshots(tmp_path)) == 2


def test_signals_with_effect_none_are_ignored(tmp_path):
    run = _signal_run(tmp_path, "--sigint_effect", "none", "--sighup_effect", "none")
    i = run.wait_for(r"Iteration [1-9]\d+")
    run.signal(signal.SIGINT)
    run.signal(signal.SIGHUP)
    j = run.wait_for(r"Iteration \d+", after=i + 1)
    run.wait_for(r"Iteration \d+", after=j + 1)
    assert run.proc.poll() is None
    assert not snapshots(tmp_path)
    run.signal(signal.SIGKILL)
    assert run.finish() == -signal.SIGKILL


# -- SIGTERM, shared prefixes ----------------------------------------------------------------
def _no_temp_files(folder):
    return [p.name for p in Path(folder).rglob("*.tmp")]


def test_sigterm_snapshots_then_stops(tmp_path):
    run = _signal_run(tmp_path)  # default: --sigterm_effect snapshot
    run.wait_for(r"Iteration [1-9]\d+")
    run.signal(signal.SIGTERM)
    assert run.finish() == 0, run.text()
    assert "SIGTERM received: will snapshot and stop" in run.text()
    assert "Optimization stopped early" in run.text()
    found = check_snapshots(tmp_path)
    assert len(found) == 1 and 0 < min(found) < 1000000
    assert not _no_temp_files(tmp_path)


def test_sigterm_none_is_ignored_and_stop_stops(tmp_path):
    run = _signal_run(tmp_path, "--sigterm_effect", "none")
    i = run.wait_for(r"Iteration [1-9]\d+")
    run.signal(signal.SIGTERM)
    run.wait_for(r"Iteration \d+", after=i + 1)
    assert run.proc.poll() is None
    run.signal(signal.SIGKILL)
    run.finish()
    assert not snapshots(tmp_path)


def test_sigterm_while_building_ends_in_one_line(tmp_path):
    mlp_training(tmp_path, max_iter=10)
    # a Python layer that sleeps in setup holds the run before training starts
    (tmp_path / "slow_layer.py").write_text(
        "import time\nimport caffepy\n\n\nclass Slow(caffepy.Layer):\n"
        "    def setup(self, bottom, top):\n"
        "        print('SETUP', flush=True, file=__import__('sys').stderr)\n"
        "        time.sleep(30)\n\n"
        "    def reshape(self, bottom, top):\n        top[0].reshape(*bottom[0].shape)\n"
        "\n    def forward(self, bottom, top):\n        top[0].data[...] = bottom[0].data\n"
        "\n    def backward(self, top, propagate_down, bottom):\n        pass\n"
    )
    net = (tmp_path / "net.prototxt").read_text()
    net += (
        'layer { name: "slow" type: "Python" bottom: "data" top: "slow" '
        'python_param { module: "slow_layer" layer: "Slow" } }\n'
    )
    (tmp_path / "net.prototxt").write_text(net)
    run = Training(tmp_path, env=cli_env([tmp_path]))
    if run.wait_for("^SETUP") is None:
        pytest.fail(run.text())
    run.signal(signal.SIGTERM)
    assert run.finish() == 143, run.text()
    assert "Traceback" not in run.text()
    assert run.lines[-2].startswith("caffepy: error: terminated by SIGTERM"), run.text()
    assert not _no_temp_files(tmp_path)


def test_a_prefix_in_use_by_a_live_run_is_refused(tmp_path):
    first = _signal_run(tmp_path)
    first.wait_for(r"Iteration [1-9]\d+")
    second = Training(tmp_path)
    assert second.finish() == 1, second.text()
    line = [x for x in second.lines if x and x.startswith("caffepy: error:")]
    assert len(line) == 1 and "'snap/mlp' is in use by another running" in line[0]
    assert f"process {first.proc.pid}" in line[0]
    assert first.proc.poll() is None  # the first run goes on
    first.signal(signal.SIGKILL)  # a crash leaves no stuck lock
    first.finish()
    third = Training(tmp_path)
    third.wait_for(r"Iteration [1-9]\d+")
    third.signal(signal.SIGINT)
    assert third.finish() == 0, third.text()


_READ_UNDER_TRUNCATION = """
import sys

from caffepy.data.db import LMDBReader
from caffepy.net import Net

# without the per-record size check (which turns a truncation between reads
# into a DataError), any read after the truncation touches a page past the end
LMDBReader.check_unchanged = lambda self: None
net = Net(sys.argv[1], 1)
net.forward()
print("READY", flush=True)
sys.stdin.readline()  # the parent truncates the database, then writes a line
for _ in range(100):
    net.forward()
print("NO BUS ERROR", flush=True)
"""


def test_a_database_truncated_while_read_ends_in_one_line(tmp_path):
    from caffepy.data.busguard import BUS_ERROR_EXIT
    from tests.data.common import raw_db

    db, *_ = raw_db(tmp_path / "train_lmdb", n=300, shape=(3, 32, 32))
    (tmp_path / "net.prototxt").write_text(
        'layer { name: "data" type: "Data" top: "data" top: "label" data_param '
        f'{{ source: "{db}" batch_size: 10 backend: LMDB }} }}\n'
    )
    (tmp_path / "child.py").write_text(_READ_UNDER_TRUNCATION)
    proc = subprocess.Popen(
        [sys.executable, "child.py", "net.prototxt"],
        cwd=tmp_path,
        env=cli_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "READY", proc.stderr.read()
        data_file = os.path.join(db, "data.mdb")
        with open(data_file, "r+b") as f:
            f.truncate(8192)  # the two meta pages only
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "NO BUS ERROR" not in out
    assert proc.returncode == BUS_ERROR_EXIT, err
    assert err.splitlines() == [
        f"caffepy: error: database {db} was truncated or changed while being "
        "read (bus error)"
    ], err
