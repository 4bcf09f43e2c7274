"""``mpiexec -n 2 caffepy train`` against one process with ``iter_size: 2``.

Oracle: Caffe's multi-solver semantics (gradients summed over the ranks and
scaled by 1/N before the update; rank r of N takes records r, r+N, ...) make two
ranks of batch B take exactly the steps of one process with ``iter_size: 2``
over the same records, so the weights must match after every iteration.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from caffepy.data.datum import array_to_datum

pytest.importorskip("mpi4py")


def _find_mpiexec():
    """The mpiexec beside this Python (the `mpich` wheel's, matching mpi4py's
    MPI), else the first on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.access(beside, os.X_OK) else shutil.which("mpiexec")


MPIEXEC = _find_mpiexec()
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        MPIEXEC is None, reason="no mpiexec (pip install 'caffepy[mpi]')"
    ),
]

NET = """
name: "tiny"
layer {{ name: "data" type: "Data" top: "data" top: "label"
  data_param {{ source: "{db}" backend: LMDB batch_size: 4 }} }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  inner_product_param {{ num_output: 6 weight_filler {{ type: "gaussian" std: 0.3 }}
    bias_filler {{ type: "constant" value: 0.1 }} }} }}
layer {{ name: "relu" type: "ReLU" bottom: "ip1" top: "ip1" }}
{extra}
layer {{ name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param {{ num_output: 3 weight_filler {{ type: "gaussian" std: 0.3 }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }}
"""

SOLVER = """
net: "{net}"
base_lr: 0.1
momentum: 0.9
weight_decay: 0.001
lr_policy: "fixed"
max_iter: {max_iter}
snapshot: 3
snapshot_prefix: "{prefix}"
iter_size: {iter_size}
random_seed: 1701
display: 1
{solver_extra}
"""


def _env(**extra):
    env = dict(os.environ)
    env.pop("PYTEST_CURRENT_TEST", None)
    # Open MPI refuses root without these; MPICH ignores them.
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    # The ranks run from other folders: let them import this checkout.
    paths = [extra.pop("PYTHONPATH", ""), ROOT, env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env.update(extra)
    return env


def _write_db(path, n=22, seed=3):
    """n records of 1x2x3 floats; the label depends on the data (learnable)."""
    import lmdb

    gen = np.random.default_rng(seed)
    env = lmdb.open(str(path), map_size=1 << 22)
    with env.begin(write=True) as txn:
        for i in range(n):
            x = gen.normal(size=(1, 2, 3)).astype(np.float32)
            label = int(x.sum() > 0) + int(x[0, 0, 0] > 0.5)
            txn.put(f"{i:08d}".encode(), array_to_datum(x, label).SerializeToString())
    env.close()
    return str(path)


def _setup(root, name, iter_size, max_iter=6, extra="", solver_extra=""):
    db = root / "db"
    if not db.exists():
        _write_db(db)
    folder = root / name
    folder.mkdir()
    net = folder / "net.prototxt"
    net.write_text(NET.format(db=db, extra=extra))
    solver = folder / "solver.prototxt"
    solver.write_text(
        SOLVER.format(
            net=net,
            max_iter=max_iter,
            prefix="snap",
            iter_size=iter_size,
            solver_extra=solver_extra,
        )
    )
    return folder, solver


def _caffepy(*args):
    return [sys.executable, "-c", "from caffepy.cli import main; main()", *args]


def _run(cmd, cwd, timeout=240, **env):
    return subprocess.run(
        cmd,
        cwd=cwd,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _mpiexec_two(folders, args):
    """Rank 0 in folders[0], rank 1 in folders[1] (relative snapshot paths then
    show which rank wrote what)."""
    cmd = [MPIEXEC]
    for i, folder in enumerate(folders):
        if i:
            cmd.append(":")
        cmd += ["-n", "1", "-wdir", str(folder), *_caffepy(*args[i])]
    return cmd


def _weights(path):
    from caffepy.proto import caffe_pb2

    param = caffe_pb2.NetParameter()
    with open(path, "rb") as f:
        param.ParseFromString(f.read())
    return {
        (layer.name, i): np.asarray(b.data, np.float64)
        for layer in param.layer
        for i, b in enumerate(layer.blobs)
    }


def _assert_same(a, b):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and wa
    for key in wa:
        np.testing.assert_allclose(wa[key], wb[key], rtol=2e-5, atol=2e-6, err_msg=key)


def _snapshots(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("snap"))


@pytest.mark.parametrize("layer_wise", ["true", "false"])
def test_two_ranks_equal_iter_size_two_and_resume_in_one_process(tmp_path, layer_wise):
    one, solver1 = _setup(tmp_path, "one", iter_size=2)
    two, solver2 = _setup(
        tmp_path, "two", iter_size=1, solver_extra=f"layer_wise_reduce: {layer_wise}"
    )
    rank1_dir = tmp_path / "rank1"
    rank1_dir.mkdir()
    args = ["train", "--solver", str(solver2), "--no-progress"]
    t0 = time.monotonic()
    res = _run(_mpiexec_two([two, rank1_dir], [args, args]), tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "caffepy: error" not in res.stderr  # the watchdogs stayed quiet
    assert time.monotonic() - t0 < 120
    res = _run(_caffepy("train", "--solver", str(solver1), "--no-progress"), one)
    assert res.returncode == 0, res.stderr[-3000:]

    for it in (3, 6):
        _assert_same(
            two / f"snap_iter_{it}.caffemodel", one / f"snap_iter_{it}.caffemodel"
        )
    # Only rank 0 wrote snapshots (rank 1's relative prefix would land here).
    assert _snapshots(rank1_dir) == []
    assert "snap_iter_6.solverstate" in _snapshots(two)

    # A 2-rank snapshot resumes in one process and goes on as the 1-process run.
    resumed, solver3 = _setup(tmp_path, "resumed", iter_size=2)
    res = _run(
        _caffepy(
            "train",
            "--solver",
            str(solver3),
            "--no-progress",
            "--snapshot",
            str(two / "snap_iter_3.solverstate"),
        ),
        resumed,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    _assert_same(resumed / "snap_iter_6.caffemodel", one / "snap_iter_6.caffemodel")


def test_ranks_with_different_solvers_refuse_to_start(tmp_path):
    a, solver_a = _setup(tmp_path, "a", iter_size=1)
    b, solver_b = _setup(tmp_path, "b", iter_size=1)
    solver_b.write_text(solver_b.read_text().replace("base_lr: 0.1", "base_lr: 0.2"))
    res = _run(
        _mpiexec_two(
            [a, b],
            [
                ["train", "--solver", str(solver_a)],
                ["train", "--solver", str(solver_b)],
            ],
        ),
        tmp_path,
        timeout=120,
    )
    assert res.returncode != 0
    lines = [ln for ln in res.stderr.splitlines() if "caffepy: error" in ln]
    assert len(lines) == 1, res.stderr[-3000:]
    assert "different solvers" in lines[0] and "base_lr: 0.2" in lines[0]
    assert _snapshots(a) == [] and _snapshots(b) == []


FAULT_LAYER = '''
import os
import signal

import caffepy


class FaultOnRankOne(caffepy.Layer):
    """Passes nothing; rank 1 sends itself the signal named by param_str at its
    fifth forward (iteration 4, after the snapshot of iteration 3)."""

    def setup(self, bottom, top):
        self.calls = 0

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        self.calls += 1
        if caffepy.solver_rank() == 1 and self.calls == 5:
            os.kill(os.getpid(), getattr(signal, self.param_str))

    def backward(self, top, propagate_down, bottom):
        pass
'''


@pytest.mark.parametrize("fault", ["SIGSTOP", "SIGKILL"])
def test_a_lost_rank_stops_every_rank_and_the_snapshot_resumes(tmp_path, fault):
    (tmp_path / "fault_layer.py").write_text(FAULT_LAYER)
    extra = (
        'layer { name: "fault" type: "Python" bottom: "ip1" python_param { '
        f'module: "fault_layer" layer: "FaultOnRankOne" param_str: "{fault}" }} }}'
    )
    folder, solver = _setup(tmp_path, "fault", iter_size=1, extra=extra)
    args = ["train", "--solver", str(solver), "--no-progress"]
    t0 = time.monotonic()
    res = _run(
        _mpiexec_two([folder, folder], [args, args]),
        tmp_path,
        timeout=120,
        CAFFEPY_MPI_TIMEOUT="4",
        PYTHONPATH=str(tmp_path),
    )
    assert res.returncode != 0
    assert time.monotonic() - t0 < 90
    if fault == "SIGSTOP":
        # A hung rank: the others' collective times out and names it.
        lost = [ln for ln in res.stderr.splitlines() if "lost rank" in ln]
        assert lost and lost[0].startswith("caffepy: error: rank 0: lost rank 1"), (
            res.stderr[-3000:]
        )
    else:
        # The launcher kills the other ranks at once; rank 0's watchdog names
        # the rank that died first.
        died = [ln for ln in res.stderr.splitlines() if ln.startswith("caffepy:")]
        assert len(died) == 1, res.stderr[-3000:]
        assert re.fullmatch(
            r"caffepy: error: rank 1 \(pid \d+ on \S+\) died; stopping", died[0]
        ), died
    written = [n for n in _snapshots(folder) if "_iter_" in n]
    assert written == [
        "snap_iter_3.caffemodel",
        "snap_iter_3.solverstate",
        "snap_iter_3.solverstate.caffepy.json",
    ]
    again, solver2 = _setup(tmp_path, "again", iter_size=2)
    res = _run(
        _caffepy(
            "train",
            "--solver",
            str(solver2),
            "--no-progress",
            "--snapshot",
            str(folder / "snap_iter_3.solverstate"),
        ),
        again,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert (again / "snap_iter_6.caffemodel").exists()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_mpi_collective_helpers_on_two_ranks(tmp_path):
    script = tmp_path / "collectives.py"
    script.write_text(
        "import numpy as np\n"
        "from caffepy.parallel.launch import init_parallel\n"
        "comm = init_parallel()\n"
        "x = np.full(5, comm.rank + 1.0, np.float32)\n"
        "comm.allreduce_sum(x)\n"
        "assert (x == 3).all(), x\n"
        "y = np.full(3, float(comm.rank), np.float64)\n"
        "comm.bcast(y)\n"
        "assert (y == 0).all(), y\n"
        "got = comm.allgather({'r': comm.rank})\n"
        "assert got == [{'r': 0}, {'r': 1}], got\n"
        "comm.close()\n"
        f"open(f'{tmp_path}/ok{{comm.rank}}', 'w').write('ok')\n"
    )
    res = _run([MPIEXEC, "-n", "2", sys.executable, str(script)], tmp_path, timeout=60)
    assert res.returncode == 0, res.stderr[-3000:]
    # NOTE: one file per rank: the ranks' stdout lines can interleave mid-line.
    assert sorted(p.name for p in tmp_path.glob("ok*")) == ["ok0", "ok1"]
