"""On a real GPU only (``CAFFEPY_TEST_REAL_GPU=1``, tools/gpu_check.sh): libcublas
called directly equals CuPy's matmul, and LeNet / CIFAR10-quick trained from a
replayed CUDA graph equal the eager run, with the iteration times of both
printed (``pytest -s``). The simulator has no graphs: skipped there."""

import os
import sys
import time

import numpy as np
import pytest

from caffepy.backend import mode
from caffepy.backend.cuda import graph, memory
from tests.conftest import ROOT
from tests.gpu.test_cublas import CASES

pytestmark = pytest.mark.skipif(
    memory.simulated(), reason="needs a real GPU (CAFFEPY_TEST_REAL_GPU=1)"
)


@pytest.mark.parametrize("a_shape,a_t,b_shape,b_t,c_shape", CASES)
def test_direct_cublas_equals_cupy_matmul(gpu, a_shape, a_t, b_shape, b_t, c_shape):
    import cupy

    from caffepy.backend.cuda import cublas

    gen = np.random.default_rng(1701)

    def make(shape, t):
        if not t:
            return cupy.asarray(gen.normal(size=shape).astype(np.float32))
        ts = shape[:-2] + (shape[-1], shape[-2])
        return cupy.asarray(gen.normal(size=ts).astype(np.float32)).swapaxes(-1, -2)

    a, b = make(a_shape, a_t), make(b_shape, b_t)
    out = cupy.full(c_shape, np.nan, np.float32)
    cublas.matmul(a, b, out)
    np.testing.assert_allclose(out.get(), cupy.matmul(a, b).get(), rtol=1e-5, atol=1e-5)


def _prepared(tmp_path, model, batch):
    sys.path.insert(0, str(ROOT / "bench"))
    from common import DATA_SHAPES, prepare_net

    dst = tmp_path / f"{model}.prototxt"
    inputs = prepare_net(
        str(ROOT / f"models/{model}/train_val.prototxt"),
        str(dst),
        batch,
        0,
        DATA_SHAPES[model],
    )
    return str(dst), inputs


def _train(path, inputs, iters, use_graph):
    from google.protobuf import text_format

    import caffepy
    from caffepy.proto import caffe_pb2
    from tests.gpu.test_graph import _feed

    sp = caffe_pb2.SolverParameter()
    text_format.Merge(
        'type: "SGD" base_lr: 0.01 lr_policy: "inv" gamma: 0.0001 power: 0.75 '
        "momentum: 0.9 weight_decay: 0.0005 random_seed: 7 display: 0",
        sp,
    )
    with open(path, encoding="utf-8") as f:
        text_format.Merge(f.read(), sp.net_param)
    mode.set_cuda_graph(use_graph)
    try:
        solver = caffepy.get_solver(sp)
        gen = np.random.default_rng(3)
        batches = [
            tuple(
                gen.integers(0, 10, s).astype(np.float32)
                if len(s) == 1
                else gen.standard_normal(s, dtype=np.float32)
                for s in inputs.values()
            )
            for _ in range(iters)
        ]
        _feed(solver, batches)
        losses = []
        solver.add_callback(lambda it, loss, rate: losses.append(loss))
        solver.step(2)
        solver.ops.synchronize()
        t = time.perf_counter()
        solver.step(iters - 2)
        solver.ops.synchronize()
        ms = (time.perf_counter() - t) * 1e3 / (iters - 2)
    finally:
        mode.set_cuda_graph(True)
    weights = [b.data.copy() for b in solver.net.learnable_params]
    return solver, losses, weights, ms


@pytest.mark.parametrize("model,batch", [("lenet", 64), ("cifar10_quick", 100)])
@pytest.mark.parametrize("direct", [True, False], ids=["same_gemm", "cupy_gemm"])
def test_graph_training_equals_eager(gpu, tmp_path, monkeypatch, model, batch, direct):
    """With libcublas in both runs the two must agree bit for bit (same kernels,
    same order); with CuPy's GEMMs in the eager run, to fp32 rounding."""
    if direct:
        monkeypatch.setattr(graph, "_direct_cublas_env", True)
    path, inputs = _prepared(tmp_path, model, batch)
    iters = 30
    _, l_eager, w_eager, ms_eager = _train(path, inputs, iters, False)
    solver, l_graph, w_graph, ms_graph = _train(path, inputs, iters, True)
    g = graph.graph_of(solver)
    print(
        f"\n{model} b{batch} ({'libcublas' if direct else 'CuPy'} GEMMs eager): "
        f"eager {ms_eager:.3f} ms/iter, graph {ms_graph:.3f} ms/iter "
        f"({ms_eager / ms_graph:.2f}x); graph: captures {g and g.captures}, "
        f"replays {g and g.replays}, failed {g and g.failed}, "
        f"blockers {graph.blockers(solver, graph.CupyGraphs.unavailable())}"
    )
    assert g is not None and g.failed is None and g.replays == iters - 1
    if direct:
        assert l_graph == l_eager
        for a, b in zip(w_eager, w_graph):
            np.testing.assert_array_equal(b, a)
    else:
        np.testing.assert_allclose(l_graph, l_eager, rtol=1e-3)
        for a, b in zip(w_eager, w_graph):
            np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-4)


def test_env_turns_the_graph_off(gpu, tmp_path, monkeypatch):
    monkeypatch.setenv("CAFFEPY_CUDA_GRAPH", "0")
    path, inputs = _prepared(tmp_path, "lenet", 8)
    solver, *_ = _train(path, inputs, 4, True)
    assert graph.graph_of(solver) is None
    assert os.environ["CAFFEPY_CUDA_GRAPH"] == "0"
