"""The Solver loop: construction checks, test nets, display, callbacks and
actions, snapshot / restore (Caffe's files plus caffepy's sidecar)."""

import json
import logging
import os
import re
from pathlib import Path

import numpy as np
import pytest

import caffepy
from caffepy import rng
from caffepy.errors import SolverError
from caffepy.net import Net
from caffepy.proto import caffe_pb2
from caffepy.solvers import (
    AdamSolver,
    SGDSolver,
    Solver,
    get_solver,
)
from tests.solvers.common import LS_NET, feed, ls_batches, solver_param

SGD = 'type: "SGD" base_lr: 0.05 lr_policy: "fixed" momentum: 0.9 weight_decay: 0.01 '


def _feed_steps(solver, steps, seed=5):
    return feed(
        solver, ("x", "y"), [pb for s in ls_batches(steps, seed=seed) for pb in s]
    )


# -- construction ---------------------------------------------------------------------
def test_get_solver_picks_class_and_pycaffe_surface():
    solver = get_solver(solver_param('type: "Adam" base_lr: 0.01 lr_policy: "fixed"'))
    assert isinstance(solver, AdamSolver)
    assert solver.iter == 0 and solver.test_nets == []
    assert isinstance(solver.net, Net) and solver.net.phase == caffepy.TRAIN
    assert len(solver.history) == 4  # two sets for weight and bias
    assert isinstance(SGDSolver(solver_param(SGD)), SGDSolver)  # pycaffe's way
    with pytest.raises(SolverError, match="Solver is abstract"):
        Solver(solver_param(SGD))
    assert caffepy.get_solver is get_solver


def test_legacy_solver_type_enum():
    param = solver_param('solver_type: NESTEROV base_lr: 0.1 lr_policy: "fixed"')
    assert type(get_solver(param)).__name__ == "NesterovSolver"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            'type: "Adamm" base_lr: 0.1 lr_policy: "fixed"',
            r"unknown solver type 'Adamm' \(did you mean 'Adam'",
        ),
        (
            'type: "AdaGrad" base_lr: 0.1 lr_policy: "fixed" momentum: 0.9',
            "AdaGrad solver: momentum must be 0",
        ),
        (
            'type: "RMSProp" base_lr: 0.1 lr_policy: "fixed" momentum: 0.5',
            "RMSProp solver: momentum must be 0",
        ),
        (
            'type: "RMSProp" base_lr: 0.1 lr_policy: "fixed" rms_decay: 1.0',
            r"rms_decay must lie in \[0, 1\)",
        ),
        (
            'type: "Adam" base_lr: 0.1 lr_policy: "fixed" momentum: 1',
            r"momentum must lie in \[0, 1\)",
        ),
        (SGD + 'regularization_type: "L3"', "unknown regularization_type 'L3'"),
        ('type: "SGD" base_lr: 0.1 lr_policy: "step" gamma: 0.1', "needs stepsize > 0"),
        ('type: "SGD" base_lr: 0.1 lr_policy: "bogus"', "unknown lr_policy 'bogus'"),
        (SGD + "test_iter: 2", "test_iter is set .* but test_interval is not"),
        (SGD + "iter_size: 0", "iter_size must be >= 1"),
        (SGD + "snapshot: 10", "snapshot is set .* but snapshot_prefix is not"),
        (
            SGD + 'snapshot: 10 snapshot_prefix: "/proc/nonexistent/p"',
            "cannot write to snapshot prefix",
        ),
        (SGD + "average_loss: 0", "average_loss must be >= 1"),
        (
            SGD + "test_iter: 1 test_interval: 5 test_state { stage: 'a' } "
            "test_state { stage: 'b' }",
            "test_state must be unset or given once per",
        ),
    ],
)
def test_construction_errors(text, match):
    with pytest.raises(SolverError, match=match):
        get_solver(solver_param(text))


def test_train_net_count_errors():
    with pytest.raises(SolverError, match="exactly one train net.*got 0"):
        get_solver(solver_param(SGD, net=""))
    param = solver_param(SGD)
    param.train_net_param.CopyFrom(param.net_param)
    with pytest.raises(SolverError, match=r"got 2 \(net_param, train_net_param\)"):
        get_solver(param)


def test_net_file_relative_to_working_directory(tmp_path, monkeypatch):
    param = solver_param(SGD)
    (tmp_path / "net.prototxt").write_text(
        re.sub(r"^\s*net_param \{|\}\s*$", "", LS_NET.strip())
    )
    solver_text = SGD + 'net: "net.prototxt"'
    (tmp_path / "solver.prototxt").write_text(solver_text)
    monkeypatch.chdir(tmp_path)
    solver = get_solver("solver.prototxt")
    assert solver.net.name == param.net_param.name
    # Caffe's default snapshot prefix: the solver file without its extension
    assert solver.param.snapshot_prefix == "solver"
    monkeypatch.chdir(tmp_path.parent)
    with pytest.raises(SolverError, match="does not exist .*working directory"):
        get_solver(tmp_path / "solver.prototxt")


def test_snapshot_prefix_directory(tmp_path):
    (tmp_path / "snaps").mkdir()
    path = tmp_path / "my_solver.prototxt"
    path.write_text(LS_NET + SGD + f'snapshot_prefix: "{tmp_path / "snaps"}"')
    solver = get_solver(path)
    assert solver.param.snapshot_prefix == str(tmp_path / "snaps" / "my_solver")


def test_random_seed_makes_fillers_repeatable():
    a = get_solver(solver_param(SGD + "random_seed: 7"))
    rng.set_random_seed(99)
    b = get_solver(solver_param(SGD + "random_seed: 7"))
    np.testing.assert_array_equal(
        a.net.params["ip"][0].data, b.net.params["ip"][0].data
    )


# -- test nets, display, callbacks ----------------------------------------------------
def test_test_nets_share_weights_and_log(caplog):
    solver = get_solver(
        solver_param(SGD + "display: 2 test_iter: 3 test_iter: 1 test_interval: 2")
    )
    assert len(solver.test_nets) == 2
    for net in solver.test_nets:
        assert net.phase == caffepy.TEST
        assert np.shares_memory(
            net.params["ip"][0].data, solver.net.params["ip"][0].data
        )
    _feed_steps(solver, 3)
    for net in solver.test_nets:
        x, y = ls_batches(1, seed=9)[0][0]
        net.blobs["x"].data[...] = x
        net.blobs["y"].data[...] = y
    seen = []
    solver.add_test_callback(lambda it, i, res: seen.append((it, i, res)))
    with caplog.at_level(logging.INFO, logger="caffepy"):
        solver.step(3)
    msgs = [r.getMessage() for r in caplog.records]
    # tests at iterations 0 and 2, each net in turn
    assert [m for m in msgs if "Testing net" in m] == [
        "Iteration 0, Testing net (#0)",
        "Iteration 0, Testing net (#1)",
        "Iteration 2, Testing net (#0)",
        "Iteration 2, Testing net (#1)",
    ]
    out = [m for m in msgs if m.startswith("    Test net output")]
    assert re.fullmatch(
        r"    Test net output #0: loss = ([\d.e+-]+) "
        r"\(\* 1 = ([\d.e+-]+) loss\)",
        out[0],
    )
    assert [s[:2] for s in seen] == [(0, 0), (0, 1), (2, 0), (2, 1)]
    assert seen[0][2][0][0] == "loss"
    # display every 2 iterations: Caffe's three lines
    assert any(
        re.fullmatch(
            r"Iteration 0 \([\d.e+-]+ iter/s, [\d.e+-]+s/2 iters\), "
            r"loss = [\d.e+-]+",
            m,
        )
        for m in msgs
    )
    assert any(
        re.fullmatch(
            r"    Train net output #0: loss = [\d.e+-]+ "
            r"\(\* 1 = [\d.e+-]+ loss\)",
            m,
        )
        for m in msgs
    )
    assert "Iteration 2, lr = 0.05" in msgs
    assert not any(m.startswith("Iteration 1") for m in msgs)


def test_test_initialization_false():
    solver = get_solver(
        solver_param(SGD + "test_iter: 1 test_interval: 2 test_initialization: false")
    )
    seen = []
    solver.add_test_callback(lambda it, i, res: seen.append(it))
    _feed_steps(solver, 3)
    solver.step(3)
    assert seen == [2]


def test_callbacks_and_smoothed_loss():
    solver = get_solver(solver_param(SGD + "average_loss: 2"))
    got = []
    solver.add_callback(lambda it, loss, lr: got.append((it, loss, lr)))
    calls = []
    solver.add_callback(lambda: calls.append("start"), lambda: calls.append("ready"))
    _feed_steps(solver, 3)
    solver.step(3)
    assert [g[0] for g in got] == [1, 2, 3]
    assert all(g[2] == pytest.approx(0.05) for g in got)
    assert calls == ["start", "ready"] * 3
    assert solver.smoothed_loss == pytest.approx((got[1][1] + got[2][1]) / 2)


def test_request_stop_and_snapshot(tmp_path):
    prefix = tmp_path / "run"
    solver = get_solver(solver_param(SGD + f'max_iter: 10 snapshot_prefix: "{prefix}"'))
    solver.add_callback(
        lambda it, loss, lr: it == 2 and solver.request_action("snapshot")
    )
    solver.add_callback(lambda it, loss, lr: it == 4 and solver.request_action("stop"))
    _feed_steps(solver, 10)
    solver.solve()
    assert solver.iter == 4
    # the requested snapshot at 2, and the end-of-training one at the stop
    assert sorted(os.listdir(tmp_path)) == sorted(
        f"run_iter_{n}.{ext}"
        for n in (2, 4)
        for ext in ("caffemodel", "solverstate", "solverstate.caffepy.json")
    )
    with pytest.raises(SolverError, match="unknown solver action 'pause'"):
        solver.request_action("pause")


def test_solve_snapshots_at_interval_and_end(tmp_path):
    prefix = tmp_path / "s"
    solver = get_solver(
        solver_param(
            SGD + f'max_iter: 5 snapshot: 2 snapshot_prefix: "{prefix}" display: 1'
        )
    )
    _feed_steps(solver, 6)
    solver.solve()
    assert solver.iter == 5
    names = {f for f in os.listdir(tmp_path) if f.endswith(".solverstate")}
    assert names == {
        "s_iter_2.solverstate",
        "s_iter_4.solverstate",
        "s_iter_5.solverstate",
    }


# -- snapshot and restore -------------------------------------------------------------
def _solver(rule, tmp_path, extra=""):
    text = {
        "SGD": SGD,
        "Adam": 'type: "Adam" base_lr: 0.01 lr_policy: "fixed" ',
        "multistep": 'type: "Nesterov" base_lr: 0.1 momentum: 0.9 '
        'lr_policy: "multistep" gamma: 0.5 stepvalue: 1 '
        "stepvalue: 3 ",
    }[rule]
    return get_solver(
        solver_param(text + f'snapshot_prefix: "{tmp_path / "p"}" ' + extra)
    )


@pytest.mark.parametrize("rule", ["SGD", "Adam", "multistep"])
def test_snapshot_restore_continues_exactly(rule, tmp_path):
    a = _solver(rule, tmp_path)
    _feed_steps(a, 6)
    a.step(3)
    model, state_file = a.snapshot()
    assert model == f"{tmp_path / 'p'}_iter_3.caffemodel"
    assert state_file == f"{tmp_path / 'p'}_iter_3.solverstate"
    draw = rng.get_rng().random(3)
    a.step(3)

    state = caffe_pb2.SolverState()
    state.ParseFromString(Path(state_file).read_bytes())
    assert state.iter == 3 and state.learned_net == model
    assert len(state.history) == len(a.history)
    assert state.current_step == (1 if rule == "multistep" else 0)
    sidecar = json.loads(Path(state_file + ".caffepy.json").read_text())
    assert sidecar["iter"] == 3 and sidecar["solver_type"] == a.type

    rng.set_random_seed(12345)
    b = _solver(rule, tmp_path)
    b.restore(state_file)
    np.testing.assert_array_equal(rng.get_rng().random(3), draw)
    assert b.iter == 3 and b.current_step == state.current_step
    for h_b in b.history:
        assert h_b.dtype == np.float32
    queue = _feed_steps(b, 6)
    for _ in range(3):
        queue.popleft()
    b.step(3)
    for pa, pb in zip(a.net.learnable_params, b.net.learnable_params):
        np.testing.assert_array_equal(pa.data, pb.data)
    for h_a, h_b in zip(a.history, b.history):
        np.testing.assert_array_equal(h_a, h_b)


def test_data_layer_state_in_sidecar(tmp_path, monkeypatch):
    class Cursor:
        name = "data"

        def __init__(self):
            self.pos = 0

        def state(self):
            return {"pos": self.pos}

        def set_state(self, value):
            self.pos = value["pos"]

    cursors = {}
    monkeypatch.setattr(
        Net,
        "data_layers",
        property(lambda net: [cursors.setdefault(id(net), Cursor())]),
    )
    a = _solver("SGD", tmp_path)
    a.net.data_layers[0].pos = 17
    _, state_file = a.snapshot()
    b = _solver("SGD", tmp_path)
    b.restore(state_file)
    assert b.net.data_layers[0].pos == 17


def test_learned_net_beside_the_state(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = get_solver(solver_param(SGD + 'snapshot_prefix: "rel"'))
    _feed_steps(a, 2)
    a.step(2)
    _, state_file = a.snapshot()
    assert (
        caffe_pb2.SolverState.FromString(Path(state_file).read_bytes()).learned_net
        == "rel_iter_2.caffemodel"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    b = get_solver(solver_param(SGD))
    b.restore(tmp_path / state_file)
    np.testing.assert_array_equal(
        b.net.params["ip"][0].data, a.net.params["ip"][0].data
    )
    os.remove(tmp_path / "rel_iter_2.caffemodel")
    with pytest.raises(SolverError, match="names the weights 'rel_iter_2.caffemodel'"):
        get_solver(solver_param(SGD)).restore(tmp_path / state_file)


def test_restore_errors(tmp_path):
    a = _solver("Adam", tmp_path)
    model, state_file = a.snapshot()
    sgd = _solver("SGD", tmp_path)
    with pytest.raises(SolverError, match="point to the matching .solverstate"):
        sgd.restore(model)
    renamed = tmp_path / "weights.solverstate"
    renamed.write_bytes(Path(model).read_bytes())
    with pytest.raises(SolverError, match="not a solver state"):
        sgd.restore(renamed)
    with pytest.raises(
        SolverError,
        match="holds 4 history blobs but a SGD solver on this net expects 2",
    ):
        sgd.restore(state_file)
    assert sgd.iter == 0
    # a state whose history does not fit the parameter shapes
    state = caffe_pb2.SolverState.FromString(Path(state_file).read_bytes())
    del state.history[2:]
    state.history[0].shape.dim[:] = [7, 3]
    state.history[0].data[:] = [0.0] * 21
    bad = tmp_path / "bad.solverstate"
    bad.write_bytes(state.SerializeToString())
    with pytest.raises(
        SolverError,
        match=r"parameter ip/0 has shape \[7, 3\] but the "
        r"parameter has shape \[2, 3\]",
    ):
        sgd.restore(bad)
    with pytest.raises(SolverError, match="cannot read solver state"):
        sgd.restore(tmp_path / "missing.solverstate")


def test_train_and_test_state_select_layers():
    staged = LS_NET.rstrip().rstrip("}") + (
        'layer { name: "q" type: "Power" bottom: "p" top: "q" '
        'include { stage: "s" } }\n}\n'
    )
    solver = get_solver(
        solver_param(
            SGD + "test_iter: 1 test_iter: 1 test_interval: 5 "
            'test_state { stage: "s" } test_state { level: 1 }',
            net=staged,
        )
    )
    assert "q" not in solver.net.layer_dict
    assert "q" in solver.test_nets[0].layer_dict
    assert "q" not in solver.test_nets[1].layer_dict
    solver = get_solver(solver_param(SGD + 'train_state { stage: "s" }', net=staged))
    assert "q" in solver.net.layer_dict
