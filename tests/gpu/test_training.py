"""GPU mode end to end on tiny nets: golden layer cases, a short training run that
equals the CPU's, snapshots that move between devices, and the host<->device copy
budget of an iteration."""

import numpy as np
import pytest

from caffepy import syncedmem
from caffepy.backend import mode
from caffepy.solvers import get_solver
from tests import test_golden_layers
from tests.solvers.common import feed, ls_batches, solver_param

SGD = (
    'type: "SGD" base_lr: 0.05 lr_policy: "fixed" momentum: 0.9 weight_decay: 0.01 '
    "random_seed: 3 "
)

# Every golden case runs in GPU mode, natively (the fixtures are tiny).
GOLDEN = sorted(test_golden_layers._cases())
#: Layer types that may fall back to the CPU in a golden case (data sources).
HOST_TYPES = {"Input", "Data", "ImageData", "DummyData", "Python"}


def _known(cases):
    have = set(test_golden_layers._cases())
    return [c for c in cases if c in have] or ["<fixtures absent>"]


@pytest.mark.parametrize("case", _known(GOLDEN))
def test_golden_case_in_gpu_mode(case, gpu, monkeypatch):
    from caffepy.net import Net

    created = []
    original = Net._create_layer

    def spy(self, lp):
        layer = original(self, lp)
        created.append(layer)
        return layer

    monkeypatch.setattr(Net, "_create_layer", spy)
    test_golden_layers.test_golden_layer_case(case, monkeypatch)
    fallback = [
        f"{lay.name} ({lay.type})"
        for lay in created
        if lay.type not in HOST_TYPES and not gpu.supports(lay)
    ]
    assert not fallback, "falls back to the CPU: " + ", ".join(fallback)


def _train(steps, text=""):
    solver = get_solver(solver_param(SGD + text))
    feed(solver, ("x", "y"), [pb for s in ls_batches(steps, seed=5) for pb in s])
    return solver


def _weights(solver):
    return [b.data.copy() for b in solver.net.learnable_params]


def test_five_iterations_equal_cpu(gpu):
    mode.set_mode_cpu()
    cpu = _train(5)
    cpu.step(5)
    mode.set_mode_gpu()
    dev = _train(5)
    dev.step(5)
    for a, b in zip(_weights(cpu), _weights(dev)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_gpu_snapshot_resumes_on_cpu(gpu, tmp_path):
    prefix = tmp_path / "g"
    dev = _train(3, f'snapshot_prefix: "{prefix}"')
    dev.step(3)
    _, state = dev.snapshot()
    mode.set_mode_cpu()
    resumed = get_solver(solver_param(SGD + f'snapshot_prefix: "{prefix}"'))
    resumed.restore(state)
    batches = [pb for s in ls_batches(5, seed=5) for pb in s]
    feed(resumed, ("x", "y"), batches[3:])
    resumed.step(2)
    ref = _train(5)
    ref.step(5)
    for a, b in zip(_weights(ref), _weights(resumed)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_gpu_iteration_copies_only_batch_and_loss(gpu):
    solver = _train(3)
    fallback = [
        f"{lay.name} ({lay.type})"
        for lay in solver.net.layers
        if not gpu.supports(lay) and lay.type != "Input"
    ]
    assert not fallback, "layers fall back to the CPU: " + ", ".join(fallback)
    solver.step(1)  # warm up: parameters move to the device once
    syncedmem.reset_copy_counts()
    solver.step(1)
    counts = syncedmem.copy_counts()
    # the batch in (x and y, written through the host views) and one loss value out
    assert counts["h2d"] == 2
    assert counts["d2h"] == 1


CONV_NET = """
net_param {
  name: "tiny_conv"
  layer { name: "input" type: "Input" top: "x" top: "y"
    input_param { shape { dim: 2 dim: 1 dim: 6 dim: 6 } shape { dim: 2 } } }
  layer { name: "conv" type: "Convolution" bottom: "x" top: "c"
    convolution_param { num_output: 2 kernel_size: 3
      weight_filler { type: "xavier" } } }
  layer { name: "pool" type: "Pooling" bottom: "c" top: "p"
    pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
  layer { name: "ip" type: "InnerProduct" bottom: "p" top: "h"
    inner_product_param { num_output: 4 weight_filler { type: "xavier" } } }
  layer { name: "relu" type: "ReLU" bottom: "h" top: "h" }
  layer { name: "ip2" type: "InnerProduct" bottom: "h" top: "s"
    inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
  layer { name: "loss" type: "SoftmaxWithLoss" bottom: "s" bottom: "y" top: "loss" }
}
"""


def test_gpu_conv_net_iteration_copies_only_batch_and_loss(gpu):
    solver = get_solver(solver_param(SGD, net=CONV_NET))
    gen = np.random.default_rng(7)
    batches = [
        (gen.normal(size=(2, 1, 6, 6)), gen.integers(0, 3, size=2).astype(float))
        for _ in range(2)
    ]
    feed(solver, ("x", "y"), batches)
    assert all(gpu.supports(lay) for lay in solver.net.layers[1:])
    solver.step(1)
    syncedmem.reset_copy_counts()
    solver.step(1)
    counts = syncedmem.copy_counts()
    assert counts["h2d"] == 2
    assert counts["d2h"] == 1
