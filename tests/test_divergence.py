"""Divergence (caffepy/solvers/divergence.py and the solver's checks) and the memory
estimate made before training."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import caffepy
from caffepy.errors import DivergenceError, ResourceError
from tests.bad_inputs.recipes import mlp_training

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def make_solver(tmp_path, monkeypatch):
    """Build a solver on the tiny MLP (solver fields as keywords) in tmp_path."""
    monkeypatch.chdir(tmp_path)
    made = []

    def make(divergence_check=True, **fields):
        mlp_training(tmp_path, **fields)
        solver = caffepy.get_solver(
            "solver.prototxt", divergence_check=divergence_check
        )
        made.append(solver)
        return solver

    yield make
    for solver in made:
        for layer in solver.net.data_layers:
            layer.close()


def _finite(path):
    net = caffepy.Net("net.prototxt", caffepy.TEST, weights=path)
    return all(
        np.isfinite(b.data).all() for blobs in net.params.values() for b in blobs
    )


def _poison_at(solver, iteration):
    def poison(it, loss, lr):
        if it == iteration:
            solver.net.params["ip1"][0].data[0, 0] = np.nan

    solver.add_callback(poison)


def test_nan_weights_stop_training_at_the_next_loss(make_solver):
    solver = make_solver(snapshot=5, max_iter=40)
    _poison_at(solver, 7)
    with pytest.raises(DivergenceError) as info:
        solver.solve()
    err = info.value
    assert err.iteration == 7 and solver.iter == 7
    assert err.lr == pytest.approx(0.1) and err.layer == "ip1"
    assert not math.isfinite(err.loss)
    msg = str(err)
    assert "training diverged at iteration 7 (lr 0.1): the loss is nan" in msg
    assert "the first layer whose output is non-finite is 'ip1' (InnerProduct)" in msg
    assert "non-finite weights in layer(s) 'ip1'" in msg
    assert "the last finite snapshot is snap/mlp_iter_5.caffemodel" in msg
    assert "--no-divergence-check" in msg
    # The last snapshot is finite; nothing was written after the divergence.
    assert sorted(os.listdir("snap")) == [
        "mlp_iter_5.caffemodel",
        "mlp_iter_5.solverstate",
        "mlp_iter_5.solverstate.caffepy.json",
    ]
    assert _finite("snap/mlp_iter_5.caffemodel")


def test_non_finite_weights_are_never_snapshotted(make_solver):
    solver = make_solver(snapshot=5, max_iter=40)
    _poison_at(solver, 10)  # after the update of iteration 9, before its snapshot
    with pytest.raises(
        DivergenceError,
        match="the weights are no longer finite.*"
        r"the snapshot of iteration 10 was not "
        "written",
    ):
        solver.solve()
    assert not os.path.exists("snap/mlp_iter_10.caffemodel")
    assert _finite("snap/mlp_iter_5.caffemodel")


def test_weights_are_checked_at_display_iterations(make_solver):
    solver = make_solver(snapshot=0, display=3, max_iter=40)

    def nan_gradient():  # before the update of iteration 6 (a display iteration)
        if solver.iter == 6:
            solver.net.params["ip2"][1].diff[:] = np.inf

    solver.add_callback(lambda: None, nan_gradient)
    with pytest.raises(DivergenceError) as info:
        solver.solve()
    assert info.value.iteration == 6
    assert "the weights are no longer finite" in str(info.value)
    assert info.value.nonfinite_params == [("ip2", 1)]


@pytest.mark.filterwarnings(
    "ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning"
)
def test_an_exploding_learning_rate_names_the_layer(make_solver):
    solver = make_solver(base_lr="1e30", snapshot=0)
    with pytest.raises(
        DivergenceError,
        match=r"lr 1e\+30.*first layer whose output "
        "is non-finite is 'ip",
    ):
        solver.solve()


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_the_check_can_be_turned_off(make_solver):
    solver = make_solver(divergence_check=False, snapshot=5, max_iter=15)
    _poison_at(solver, 7)
    solver.solve()  # trains on, as Caffe
    assert solver.iter == 15
    assert not _finite("snap/mlp_iter_15.caffemodel")


def _cli(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    env.pop("CAFFEPY_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "caffepy.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_stops_with_one_line_or_trains_on_with_the_flag(tmp_path):
    mlp_training(tmp_path, base_lr="1e30", snapshot=0)
    res = _cli("train", "--solver", "solver.prototxt", cwd=tmp_path)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, res.stderr
    assert errors[0].startswith("caffepy: error: training diverged at iteration ")
    res = _cli(
        "train", "--solver", "solver.prototxt", "--no-divergence-check", cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    assert "Optimization Done." in res.stderr


# -- memory ---------------------------------------------------------------------------------
def test_memory_estimate_counts_blobs_gradients_and_history(make_solver):
    solver = make_solver(hidden=100)
    params = (64 * 100 + 100 + 100 * 4 + 4) * 4
    # data (10x64), label, ip1 (10x100, in place with relu1), ip2 (10x4), loss
    activations = (10 * 64 + 10 + 10 * 100 + 10 * 4 + 1) * 4
    # parameters and activations with their gradients (no two of these
    # activations' gradients can share memory), SGD history, and the update
    # rule's two scratch buffers of the largest parameter's size
    expected = 2 * (params + activations) + params + 2 * (64 * 100 * 4)
    assert solver.memory_estimate() == expected


def test_a_net_that_does_not_fit_is_refused_before_training(tmp_path, monkeypatch):
    from caffepy.solvers import memory

    monkeypatch.chdir(tmp_path)
    mlp_training(tmp_path, hidden=100)
    monkeypatch.setattr(memory, "available_memory", lambda: 50_000)
    with pytest.raises(
        ResourceError,
        match=r"training this net needs at least "
        r"\d+ kB .* but only 49 kB of memory "
        "is available; reduce batch_size",
    ):
        caffepy.get_solver("solver.prototxt")
    solver = caffepy.get_solver("solver.prototxt", memory_check=False)
    for layer in solver.net.data_layers:
        layer.close()
