"""The solver update over every parameter in one launch (caffepy/backend/cuda/
packed.py) equals the per-parameter path, for every update rule, and keeps the
blobs, the history and the snapshots consistent."""

import numpy as np
import pytest

from caffepy import syncedmem
from caffepy.backend.cuda import packed
from caffepy.backend.cuda.kernels import launch as launch_mod
from caffepy.solvers import get_solver
from tests.solvers.common import feed, ls_batches, solver_param

RULES = {
    "SGD": "momentum: 0.9 ",
    "Nesterov": "momentum: 0.9 ",
    "AdaGrad": "delta: 1e-6 ",
    "RMSProp": "rms_decay: 0.95 delta: 1e-6 ",
    "AdaDelta": "momentum: 0.9 delta: 1e-6 ",
    "Adam": "momentum: 0.9 momentum2: 0.999 delta: 1e-8 ",
}


def _solver(rule, extra=""):
    text = (
        f'type: "{rule}" base_lr: 0.05 lr_policy: "inv" gamma: 0.1 power: 0.75 '
        f"weight_decay: 0.01 random_seed: 3 {RULES[rule]}{extra}"
    )
    solver = get_solver(solver_param(text))
    feed(solver, ("x", "y"), [pb for s in ls_batches(6, seed=5) for pb in s])
    return solver


def _state(solver):
    return [b.data.copy() for b in solver.net.learnable_params] + [
        solver.ops.to_host(h).copy() for h in solver.history
    ]


@pytest.mark.parametrize("rule", sorted(RULES))
@pytest.mark.parametrize("reg", ["L2", "L1"])
def test_packed_update_equals_per_parameter_path(rule, reg, gpu, monkeypatch):
    extra = f'regularization_type: "{reg}"'
    monkeypatch.setenv("CAFFEPY_PACKED_UPDATE", "0")
    ref = _solver(rule, extra)
    ref.step(4)
    monkeypatch.setenv("CAFFEPY_PACKED_UPDATE", "1")
    dev = _solver(rule, extra)
    dev.step(4)
    assert packed.packed_for(dev) is not None
    for a, b in zip(_state(ref), _state(dev)):
        np.testing.assert_allclose(b, a, rtol=2e-6, atol=1e-7)


def test_sgd_packed_is_bitwise_the_fused_kernel(gpu, monkeypatch):
    monkeypatch.setenv("CAFFEPY_PACKED_UPDATE", "0")
    ref = _solver("SGD")
    ref.step(3)
    monkeypatch.setenv("CAFFEPY_PACKED_UPDATE", "1")
    dev = _solver("SGD")
    dev.step(3)
    for a, b in zip(_state(ref), _state(dev)):
        np.testing.assert_array_equal(b, a)


def _count_launches(monkeypatch):
    seen = []
    original = launch_mod.launch

    def counting(kernel, n, *args):
        seen.append(getattr(kernel, "__name__", getattr(kernel, "py_func", kernel)))
        return original(kernel, n, *args)

    monkeypatch.setattr(launch_mod, "launch", counting)
    return seen


def _names(seen):
    return [getattr(k, "__name__", str(k)) for k in seen]


def test_one_launch_updates_every_parameter(gpu, monkeypatch):
    solver = _solver("Adam")
    solver.step(1)
    seen = _count_launches(monkeypatch)
    solver.step(1)
    names = [n for n in _names(seen) if "update" in n]
    assert names == ["packed_update"]


def test_lr_mult_zero_parameter_is_left_alone(gpu):
    solver = get_solver(
        solver_param(
            'type: "SGD" base_lr: 0.1 lr_policy: "fixed" momentum: 0.9 '
            "weight_decay: 0.01 random_seed: 3",
            net=_frozen_bias_net(),
        )
    )
    feed(solver, ("x", "y"), [pb for s in ls_batches(3, seed=5) for pb in s])
    bias = solver.net.learnable_params[1]
    before = bias.data.copy()
    solver.step(3)
    np.testing.assert_array_equal(bias.data, before)
    assert packed.packed_for(solver).ids == [0]


def _frozen_bias_net():
    from tests.solvers.common import LS_NET

    return LS_NET.replace("lr_mult: 2 decay_mult: 0", "lr_mult: 0 decay_mult: 0")


def test_host_write_between_iterations_reaches_the_packed_buffer(gpu):
    solver = _solver("SGD")
    solver.step(1)
    w = solver.net.learnable_params[0]
    w.data[...] = 0.25  # pycaffe's host write: the host becomes the head
    assert solver.net.learnable_params[1].diff.shape  # a host read of a diff
    pack = packed.packed_for(solver)
    lo, hi = 0, w.count
    np.testing.assert_array_equal(solver.ops.to_host(pack.w[lo:hi]), 0.25)
    solver.step(1)
    assert not np.allclose(w.data, 0.25)  # and the update moved it


def test_packed_iteration_copies_only_batch_and_loss(gpu):
    solver = _solver("SGD")
    solver.step(1)
    syncedmem.reset_copy_counts()
    solver.step(1)
    counts = syncedmem.copy_counts()
    assert counts["h2d"] == 2
    assert counts["d2h"] == 1


def test_snapshot_restore_keeps_the_packing(gpu, tmp_path):
    prefix = tmp_path / "p"
    a = _solver("Adam", f'snapshot_prefix: "{prefix}"')
    a.step(2)
    _, state = a.snapshot()
    a.step(2)
    b = _solver("Adam", f'snapshot_prefix: "{prefix}"')
    b.step(1)  # packs
    b.restore(state)
    feed(b, ("x", "y"), [pb for s in ls_batches(6, seed=5)[2:] for pb in s])
    b.step(2)
    for x, y in zip(_state(a), _state(b)):
        np.testing.assert_allclose(y, x, rtol=1e-6, atol=1e-7)
