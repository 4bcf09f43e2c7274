"""CUDA graph replay of a training iteration (caffepy/backend/cuda/graph.py): when
it is used, and that the replayed path trains as the eager one.

The simulator has no CUDA graphs, so solvers there always run eagerly; the
replay bookkeeping (warm-up, capture, device scalars, heads, shape changes,
failures) is exercised with a fake backend whose "graph" is the captured Python
body, run again at each launch (as a real capture, nothing runs while it is
captured)."""

import logging
from collections import deque

import numpy as np
import pytest

from caffepy import syncedmem
from caffepy.backend import mode
from caffepy.backend.cuda import graph, memory
from caffepy.solvers import get_solver
from tests.gpu.test_training import CONV_NET
from tests.solvers.common import ls_batches, solver_param

SGD = (
    'type: "SGD" base_lr: 0.05 lr_policy: "inv" gamma: 0.1 power: 0.75 '
    "momentum: 0.9 weight_decay: 0.01 random_seed: 3 "
)


class FakeGraphs:
    """A graph backend on the CPU: capture keeps the body, launch runs it."""

    def __init__(self, fail=False):
        self.fail = fail
        self.captured = self.launched = 0

    @staticmethod
    def unavailable():
        return None

    def capture(self, body):
        assert graph.capturing()
        if self.fail:
            raise RuntimeError("operation not permitted when stream is capturing")
        self.captured += 1
        return body

    def launch(self, body):
        self.launched += 1
        graph._capturing = True  # what the device replays was captured so
        try:
            body()
        finally:
            graph._capturing = False

    @staticmethod
    def read(scalar):
        return float(scalar)


def _ls_batches(n):
    return [pb for s in ls_batches(n, seed=5) for pb in s]


def _conv_batches(n, num=2):
    gen = np.random.default_rng(7)
    return [
        (gen.normal(size=(num, 1, 6, 6)), gen.integers(0, 3, size=num).astype(float))
        for _ in range(n)
    ]


def _feed(solver, batches):
    """The Input layer writes the next batch into its tops on each forward (the
    data layer's prefetched batch: host writes, copied in before the graph)."""
    layer = solver.net.layers[0]
    queue = deque(batches)

    def forward(bottom, top):
        for blob, value in zip(top, queue.popleft()):
            blob.reshape(value.shape)
            blob.data[...] = value
        return 0.0

    layer.Forward = forward


def _solver(batches, text="", net=None, backend=None):
    param = solver_param(SGD + text) if net is None else solver_param(SGD + text, net)
    solver = get_solver(param)
    _feed(solver, batches)
    losses = []
    solver.add_callback(lambda it, loss, rate: losses.append((loss, rate)))
    if backend is not None:
        graph.install(solver, backend)
    return solver, losses


def _weights(solver):
    return [b.data.copy() for b in solver.net.learnable_params]


def _assert_same_training(a, b):
    (sa, la), (sb, lb) = a, b
    np.testing.assert_allclose([x for x, _ in lb], [x for x, _ in la], rtol=1e-5)
    assert [r for _, r in lb] == [r for _, r in la]
    for x, y in zip(_weights(sa), _weights(sb)):
        np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-6)


# -- when ---------------------------------------------------------------------------
def test_simulator_runs_every_iteration_eagerly(gpu):
    if not memory.simulated():
        pytest.skip("a real GPU: tests/gpu/test_real_gpu_graph.py checks it")
    solver, _ = _solver(_ls_batches(3))
    assert "numba's CUDA simulator has no CUDA graphs" in graph.blockers(
        solver, graph.CupyGraphs.unavailable()
    )
    solver.step(3)
    assert graph.graph_of(solver) is None


def test_an_eligible_solver_has_no_blockers(gpu):
    solver, _ = _solver(_conv_batches(1), net=CONV_NET)
    assert graph.blockers(solver) == []


@pytest.mark.parametrize(
    "text,reason",
    [
        ("iter_size: 2", "iter_size is 2"),
        ("clip_gradients: 1", "clip_gradients"),
        ("debug_info: true", "debug_info"),
    ],
)
def test_solver_settings_that_block(gpu, text, reason):
    solver, _ = _solver(_ls_batches(1), text)
    assert any(reason in r for r in graph.blockers(solver))


def test_callbacks_between_backward_and_update_block(gpu):
    solver, _ = _solver(_ls_batches(1))
    solver.add_callback(lambda: None, lambda: None)
    assert any("callbacks" in r for r in graph.blockers(solver))


def test_turned_off_by_env_and_by_mode(gpu, monkeypatch):
    solver, _ = _solver(_ls_batches(1))
    monkeypatch.setenv("CAFFEPY_CUDA_GRAPH", "0")
    assert any("turned off" in r for r in graph.blockers(solver))
    monkeypatch.delenv("CAFFEPY_CUDA_GRAPH")
    assert graph.blockers(solver) == []
    mode.set_cuda_graph(False)
    try:
        assert any("turned off" in r for r in graph.blockers(solver))
    finally:
        mode.set_cuda_graph(True)


def test_layers_that_block(gpu):
    net = CONV_NET.replace(
        'layer { name: "relu"',
        'layer { name: "drop" type: "Dropout" bottom: "h" top: "h" }\n'
        '  layer { name: "relu"',
    )
    solver, _ = _solver(_conv_batches(1), net=net)
    reasons = graph.blockers(solver)
    assert reasons == ["layer 'drop' (Dropout) draws its random mask on the host"]


def test_an_update_rule_of_its_own_blocks(gpu):
    from caffepy.solvers.sgd import SGDSolver

    class Mine(SGDSolver):
        def compute_update_value(self, param_id, rate):
            super().compute_update_value(param_id, rate)

    solver = Mine(solver_param(SGD))
    assert any("no one-launch kernel" in r for r in graph.blockers(solver))


# -- the replayed path ----------------------------------------------------------------
@pytest.mark.parametrize("net", [None, CONV_NET], ids=["least_squares", "conv"])
def test_replayed_training_equals_eager(gpu, net):
    n = 6
    batches = _ls_batches(n) if net is None else _conv_batches(n)
    eager = _solver(batches, net=net)
    eager[0].step(n)
    fake = FakeGraphs()
    replayed = _solver(batches, net=net, backend=fake)
    replayed[0].step(n)
    _assert_same_training(eager, replayed)
    g = graph.graph_of(replayed[0])
    assert (g.eager, g.captures, g.replays) == (1, 1, n - 1)
    assert fake.launched == n - 1


def test_display_iterations_run_eagerly_between_replays(gpu, caplog):
    n = 6
    eager = _solver(_ls_batches(n), "display: 2")
    eager[0].step(n)
    replayed = _solver(_ls_batches(n), "display: 2", backend=FakeGraphs())
    with caplog.at_level(logging.INFO, logger="caffepy"):
        replayed[0].step(n)
    _assert_same_training(eager, replayed)
    g = graph.graph_of(replayed[0])
    assert g.replays == 2  # iterations 1, 3, 5 are replays; 1 is the warm-up
    assert "Iteration 4, lr = " in caplog.text


def test_a_new_batch_shape_recaptures(gpu):
    batches = _conv_batches(3) + _conv_batches(3, num=3)
    eager = _solver(batches, net=CONV_NET)
    eager[0].step(6)
    replayed = _solver(batches, net=CONV_NET, backend=FakeGraphs())
    replayed[0].step(6)
    _assert_same_training(eager, replayed)
    g = graph.graph_of(replayed[0])
    assert (g.eager, g.captures, g.replays) == (2, 2, 4)


def test_capture_failure_falls_back_to_eager_for_good(gpu, caplog):
    n = 5
    eager = _solver(_ls_batches(n))
    eager[0].step(n)
    fake = FakeGraphs(fail=True)
    replayed = _solver(_ls_batches(n), backend=fake)
    with caplog.at_level(logging.WARNING, logger="caffepy"):
        replayed[0].step(n)
    _assert_same_training(eager, replayed)
    g = graph.graph_of(replayed[0])
    assert g.failed and "capture failed" in g.failed
    assert (g.captures, g.replays, fake.launched) == (0, 0, 0)
    assert caplog.text.count("training continues without CUDA graphs") == 1


def test_replayed_iteration_copies_only_batch_and_loss(gpu):
    solver, _ = _solver(_conv_batches(4), net=CONV_NET, backend=FakeGraphs())
    solver.step(2)  # warm-up, capture
    syncedmem.reset_copy_counts()
    solver.step(1)
    counts = syncedmem.copy_counts()
    assert graph.graph_of(solver).replays == 2
    assert counts["h2d"] == 2  # x and y
    assert counts["d2h"] == 1  # the loss


def test_host_writes_between_replays_are_seen(gpu):
    def run(backend):
        solver, losses = _solver(_ls_batches(5), backend=backend)
        solver.step(3)
        solver.net.learnable_params[0].data[...] = 0.5  # pycaffe surgery
        solver.step(2)
        return solver, losses

    _assert_same_training(run(None), run(FakeGraphs()))


def test_a_replaced_history_array_repacks_and_recaptures(gpu):
    def run(backend):
        solver, losses = _solver(_ls_batches(6), backend=backend)
        solver.step(3)
        h = solver.history[0]
        solver.history[0] = solver.ops.from_host(solver.ops.to_host(h) * 0.5)
        solver.step(3)
        return solver, losses

    eager, replayed = run(None), run(FakeGraphs())
    _assert_same_training(eager, replayed)
    g = graph.graph_of(replayed[0])
    assert (g.eager, g.captures, g.replays) == (2, 2, 4)
