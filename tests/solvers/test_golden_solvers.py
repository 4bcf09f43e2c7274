"""The solver cases written by BVLC Caffe (fixtures/caffe-golden/solvers), run
generically from each case's json + npz: six steps from the recorded initial
parameters, then a resume from Caffe's own iteration-3 snapshot."""

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest

from caffepy.solvers import get_solver
from tests.conftest import GOLDEN
from tests.solvers.common import feed

CASES = sorted(p.stem for p in (GOLDEN / "solvers").glob("solver_*.json"))
PARAM_TOL = {"rtol": 1e-4, "atol": 1e-6}


def _case(case, monkeypatch, golden):
    folder = golden / "solvers"
    monkeypatch.chdir(folder)
    meta = json.loads((folder / f"{case}.json").read_text())
    npz = np.load(folder / f"{case}.npz")
    return meta, {k: npz[k] for k in npz.files}


def _keys(arrays, kind):
    """(layer, index, key) for every ``kind/<layer>/<i>`` entry."""
    out = []
    for key in arrays:
        parts = key.split("/")
        if parts[0] == kind:
            out.append((parts[1], int(parts[2]), key))
    return sorted(out)


def _passes(meta, arrays, k):
    """The (data, label) batches of step k, one per forward/backward pass."""
    data, label = arrays["batch/data"][k], arrays["batch/label"][k]
    if meta["iter_size"] > 1:
        return list(zip(data, label))
    return [(data, label)]


def _run_steps(solver, meta, arrays, steps, expect_key):
    rates, losses = [], []
    solver.add_callback(lambda it, loss, lr: (rates.append(lr), losses.append(loss)))
    passes = [p for k in steps for p in _passes(meta, arrays, k)]
    feed(solver, ("data", "label"), passes)
    for k in steps:
        solver.step(1)
        for layer, i, key in _keys(arrays, expect_key):
            got = solver.net.params[layer][i].data
            want = arrays[key][k]
            update = arrays[key.replace(expect_key, "update_iter", 1)][k]
            np.testing.assert_allclose(
                got,
                want,
                **PARAM_TOL,
                err_msg=f"{layer}/{i} after step {k + 1}; update applied "
                f"{solver.net.params[layer][i].diff.ravel()[:4]} vs Caffe's "
                f"{update.ravel()[:4]}",
            )
    return rates, losses


@pytest.mark.parametrize("case", CASES)
def test_six_steps(case, monkeypatch, golden, caplog):
    meta, arrays = _case(case, monkeypatch, golden)
    solver = get_solver(f"{case}.prototxt")
    assert solver.type == meta["solver_type"]
    for layer, i, key in _keys(arrays, "param_init"):
        solver.net.params[layer][i].data[...] = arrays[key]
    with caplog.at_level(logging.INFO, logger="caffepy"):
        rates, losses = _run_steps(solver, meta, arrays, range(6), "param_iter")
    assert solver.iter == 6
    np.testing.assert_allclose(rates, meta["lr_logged"], rtol=1e-5)
    np.testing.assert_allclose(losses, meta["loss_logged"], rtol=2e-5)
    np.testing.assert_allclose(
        solver.net.blobs["loss"].data, arrays["loss_blob"][-1], rtol=1e-5
    )
    # Caffe's own log lines
    lr_lines = [
        r.getMessage()
        for r in caplog.records
        if re.match(r"Iteration \d+, lr = ", r.getMessage())
    ]
    assert lr_lines[0] == f"Iteration 0, lr = {meta['lr_logged'][0]:g}"
    if "clip_l2norm_logged" in arrays:
        clip = [
            r.getMessage()
            for r in caplog.records
            if r.getMessage().startswith("Gradient clipping")
        ]
        norms = [float(re.search(r"L2 norm ([\d.e+-]+)", m).group(1)) for m in clip]
        np.testing.assert_allclose(
            norms, arrays["clip_l2norm_logged"][: len(norms)], rtol=1e-4
        )
        assert len(norms) == np.count_nonzero(arrays["clip_scale_logged"] < 1)


@pytest.mark.parametrize("case", CASES)
def test_resume_from_caffe_snapshot(case, monkeypatch, golden):
    meta, arrays = _case(case, monkeypatch, golden)
    solver = get_solver(f"{case}.prototxt")
    solver.restore(f"{case}_iter_3.solverstate")
    assert solver.iter == meta["solverstate"]["iter"] == 3
    assert solver.current_step == meta["solverstate"]["current_step"]
    for layer, i, key in _keys(arrays, "snapshot_param"):
        np.testing.assert_array_equal(solver.net.params[layer][i].data, arrays[key])
        np.testing.assert_allclose(
            solver.net.params[layer][i].data,
            arrays[f"param_iter/{layer}/{i}"][2],
            **PARAM_TOL,
        )
    history = sorted(
        (int(k.split("/")[2]), k) for k in arrays if k.startswith("state/history/")
    )
    assert len(history) == len(solver.history) == meta["solverstate"]["n_history_blobs"]
    for i, key in history:
        np.testing.assert_array_equal(solver.history[i], arrays[key])
    rates, _ = _run_steps(solver, meta, arrays, range(3, 6), "param_iter")
    np.testing.assert_allclose(rates, meta["lr_logged"][3:], rtol=1e-5)
    for layer, i, key in _keys(arrays, "resume_param_iter"):
        np.testing.assert_allclose(
            solver.net.params[layer][i].data, arrays[key][-1], **PARAM_TOL
        )


@pytest.mark.parametrize("case", CASES)
def test_snapshot_matches_caffe_files(case, monkeypatch, golden, tmp_path):
    """Restoring Caffe's iteration-3 snapshot and writing our own gives the same
    SolverState and the same weights in the .caffemodel as Caffe wrote."""
    from caffepy.proto import caffe_pb2

    _case(case, monkeypatch, golden)  # chdir into solvers/
    solver = get_solver(f"{case}.prototxt")
    solver.restore(f"{case}_iter_3.solverstate")
    solver.param.snapshot_prefix = str(tmp_path / case)
    model, state_file = solver.snapshot()
    ours = caffe_pb2.SolverState.FromString(Path(state_file).read_bytes())
    theirs = caffe_pb2.SolverState.FromString(
        Path(f"{case}_iter_3.solverstate").read_bytes()
    )
    assert ours.learned_net == model
    ours.learned_net = theirs.learned_net
    assert ours == theirs
    net = caffe_pb2.NetParameter.FromString(Path(model).read_bytes())
    ref = caffe_pb2.NetParameter.FromString(
        Path(f"{case}_iter_3.caffemodel").read_bytes()
    )
    ours_blobs = {lp.name: list(lp.blobs) for lp in net.layer if lp.blobs}
    ref_blobs = {lp.name: list(lp.blobs) for lp in ref.layer if lp.blobs}
    assert ours_blobs == ref_blobs
