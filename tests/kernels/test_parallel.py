"""The layers' task pool, and the results it must not change: conv gradients
identical from run to run and across thread counts, the fused SGD update
identical to the general path, the 4-wide max pooling identical to Caffe's."""

import threading

import numpy as np
import pytest

from caffepy.kernels import parallel
from tests import naive


@pytest.fixture
def pool():
    p = parallel.TaskPool(3)
    yield p


def test_every_task_runs_once_on_some_worker(pool):
    seen = []
    lock = threading.Lock()

    def task(i, worker):
        with lock:
            seen.append((i, worker))

    pool.run(task, 50)
    assert sorted(i for i, _ in seen) == list(range(50))
    assert {w for _, w in seen} <= {0, 1, 2}
    pool.run(task, 0)  # nothing to do is fine
    assert len(seen) == 50


def test_a_task_error_reaches_the_caller_and_the_pool_survives(pool):
    def task(i, worker):
        if i == 7:
            raise ValueError("task 7 failed")

    with pytest.raises(ValueError, match="task 7"):
        pool.run(task, 20)
    done = []
    pool.run(lambda i, w: done.append(i), 5)
    assert sorted(done) == list(range(5))


def test_blas_is_single_threaded_inside_tasks_and_restored(pool):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    libs = parallel._openblas_setters()
    if not libs:
        pytest.skip("numpy does not use a pthreads OpenBLAS here")
    get = libs[0][0]
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        before = get()
        inside = []
        pool.run(lambda i, w: inside.append(get()), 4)
        assert set(inside) == {1}
        assert get() == before


def test_split_covers_the_range():
    assert parallel.split(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert parallel.split(2, 8) == [(0, 1), (1, 2)]
    assert parallel.split(0, 4) == [(0, 0)]


def _conv_grads(size, params, shape):
    import numba

    from caffepy.blob import Blob
    from caffepy.testing import layer_from_text

    parallel.POOL.resize(size)
    numba.set_num_threads(min(size, numba.config.NUMBA_NUM_THREADS))
    layer = layer_from_text(
        f'name: "c" type: "Convolution" convolution_param {{ {params} '
        'weight_filler { type: "gaussian" std: 0.1 } '
        'bias_filler { type: "gaussian" std: 0.1 } }',
        0,
        np.float32,
    )
    gen = np.random.default_rng(5)
    x, y = Blob(shape), Blob()
    x.data[...] = gen.standard_normal(shape)
    layer.SetUp([x], [y])
    for blob in layer.blobs:
        blob.data[...] = np.random.default_rng(6).standard_normal(blob.shape)
    layer.Forward([x], [y])
    y.diff[...] = gen.standard_normal(y.shape)
    for blob in layer.blobs:
        blob.diff[...] = 0
    layer.Backward([y], [True], [x])
    return y.data.copy(), x.diff.copy(), [b.diff.copy() for b in layer.blobs]


@pytest.mark.parametrize(
    "params",
    [
        "num_output: 6 kernel_size: 3 pad: 1",
        "num_output: 4 kernel_size: 1 group: 2",
    ],
)
def test_conv_gradients_are_deterministic_with_threads(params):
    import numba

    size, kernel_threads = parallel.POOL.size, numba.get_num_threads()
    try:
        shape = (9, 4, 7, 7)
        one = _conv_grads(1, params, shape)
        two = _conv_grads(2, params, shape)
        again = _conv_grads(2, params, shape)
    finally:
        parallel.POOL.resize(size)
        numba.set_num_threads(kernel_threads)
    for a, b in zip(two[:2] + tuple(two[2]), again[:2] + tuple(again[2])):
        np.testing.assert_array_equal(a, b)  # same bits from run to run
    for a, b in zip(one[:2] + tuple(one[2]), two[:2] + tuple(two[2])):
        # NOTE: 1 and 2 threads sum the images in another order: float32 rounding.
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_fused_sgd_update_matches_the_general_path():
    from caffepy.solvers import SGDSolver, Solver

    text = """
    base_lr: 0.1 momentum: 0.9 weight_decay: 0.01 lr_policy: "fixed" max_iter: 10
    net_param {
      layer { name: "d" type: "DummyData" top: "x" top: "t"
        dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 2 }
          data_filler { type: "gaussian" } data_filler { type: "gaussian" } } }
      layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y"
        param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
        inner_product_param { num_output: 2 weight_filler { type: "gaussian" } } }
      layer { name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "t" top: "l" }
    }"""
    from google.protobuf import text_format

    from caffepy import rng
    from caffepy.proto import caffe_pb2

    param = text_format.Parse(text, caffe_pb2.SolverParameter())
    runs = []
    for general in (False, True):
        rng.set_random_seed(3)
        solver = SGDSolver(param)
        if general:
            solver.update_param = lambda i, r, s=solver: Solver.update_param(s, i, r)
        solver.step(5)
        runs.append(
            [b.data.copy() for b in solver.net.learnable_params]
            + [h.copy() for h in solver.history]
        )
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "kernel,stride,pad,width",
    [
        (3, 2, 0, 17),
        (2, 2, 0, 16),
        (3, 1, 1, 13),
        (3, 2, 1, 21),
    ],
)
def test_max_pooling_wide_path_matches_caffe(kernel, stride, pad, width):
    from caffepy.kernels.pooling import max_pool_forward

    gen = np.random.default_rng(2)
    # small integers: many ties (the first maximum wins), and a few NaNs (skipped)
    x = gen.integers(-3, 3, (2, 3, 9, width)).astype(np.float32)
    x[0, 0, 2, 5] = np.nan
    ref, mask = naive.pooling_layer(
        x, "MAX", (kernel, kernel), (pad, pad), (stride, stride)
    )
    top = np.empty(ref.shape, np.float32)
    arg = np.empty(ref.shape, np.int32)
    max_pool_forward(x, kernel, kernel, pad, pad, stride, stride, top, arg)
    np.testing.assert_array_equal(top, ref.astype(np.float32))
    np.testing.assert_array_equal(arg, mask.astype(np.int32))
