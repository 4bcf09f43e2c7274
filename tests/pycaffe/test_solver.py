"""caffe.SGDSolver through ``import caffe``: the behaviour of BVLC's
test_solver.py, the snapshot files (with caffepy's named sidecar) and ``lr``."""

import os

import numpy as np
import pytest

import caffe
from tests.pycaffe.nets import simple_net_text, write_temp


@pytest.fixture
def solver(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    net = write_temp(simple_net_text(13))
    path = write_temp(
        f"net: '{net}' test_iter: 10 test_interval: 10 base_lr: 0.01 momentum: 0.9 "
        "weight_decay: 0.0005 lr_policy: 'inv' gamma: 0.0001 power: 0.75 "
        "display: 100 max_iter: 100 snapshot_after_train: false "
        "snapshot_prefix: 'model'"
    )
    s = caffe.SGDSolver(path)
    caffe.get_solver(path)
    caffe.get_solver_from_file(path)
    rng = np.random.default_rng(1701)
    for n in [s.net] + list(s.test_nets):
        n.blobs["label"].data[...] = rng.integers(13, size=n.blobs["label"].shape)
    os.remove(path)
    os.remove(net)
    return s


def test_solve(solver):
    assert solver.iter == 0
    solver.solve(None)
    assert solver.iter == 100


def test_apply_update(solver):
    data = solver.net.layers[1].blobs[0].data
    data[...] = 0
    solver.net.layers[1].blobs[0].diff[...] = 1
    solver.apply_update()
    np.testing.assert_allclose(solver.net.layers[1].blobs[0].data, -0.01, atol=1e-7)


def test_nets_outlive_the_solver(solver):
    nets = [solver.net] + list(solver.test_nets)
    assert len(nets) == 2
    del solver
    total = 0.0
    for net in nets:
        for ps in net.params.values():
            total += sum(float(p.data.sum() + p.diff.sum()) for p in ps)
        total += sum(float(b.data.sum() + b.diff.sum()) for b in net.blobs.values())
    assert np.isfinite(total)


def test_snapshot_writes_caffe_files_and_a_named_sidecar(solver):
    solver.snapshot()
    for name in (
        "model_iter_0.caffemodel",
        "model_iter_0.solverstate",
        "model_iter_0.solverstate.caffepy.json",
    ):
        assert os.path.isfile(name), name
    state = caffe.proto.caffe_pb2.SolverState()
    with open("model_iter_0.solverstate", "rb") as f:
        state.ParseFromString(f.read())
    assert state.iter == 0 and state.learned_net.endswith("model_iter_0.caffemodel")


def test_lr_reads_the_rate_without_advancing(solver):
    expected = 0.01 * (1 + 0.0001 * solver.iter) ** -0.75
    assert solver.lr == pytest.approx(expected)
    solver.step(3)
    assert solver.lr == pytest.approx(0.01 * (1 + 0.0001 * 3) ** -0.75)
    solver.param.lr_policy = "multistep"
    solver.param.gamma = 0.1
    solver.param.stepvalue.extend([3, 5])
    step = solver.current_step
    assert solver.lr == pytest.approx(0.001)
    assert solver.lr == pytest.approx(0.001)
    assert solver.current_step == step


def test_single_process_values():
    assert caffe.solver_count() == 1 and caffe.solver_rank() == 0
    assert caffe.has_nccl() is False
    with pytest.raises(
        caffe.CaffepyError if hasattr(caffe, "CaffepyError") else Exception,
        match="NCCL",
    ):
        caffe.NCCL()
