"""The row-major -> column-major mapping of the direct libcublas GEMMs
(caffepy/backend/cuda/cublas.py), checked on the CPU: each planned call is run
by a NumPy column-major GEMM that reads the buffers as cuBLAS would."""

import numpy as np
import pytest

from caffepy.backend.cuda import cublas


def _strides(a):
    return tuple(s // a.itemsize for s in a.strides)


def _run_plan(a, a_base, b, b_base, c):
    """c = a @ b through the planned calls on the flat base buffers."""
    calls = cublas.plan_matmul(
        a.shape, _strides(a), b.shape, _strides(b), c.shape, _strides(c)
    )
    flat_c = c.reshape(-1)
    for call in calls:
        cublas.reference_gemm(call, b_base.reshape(-1), a_base.reshape(-1), flat_c)
    return calls


def _base_and_view(gen, shape, transpose):
    """(contiguous base, view of ``shape``): a swapaxes view when ``transpose``."""
    if not transpose:
        base = gen.normal(size=shape).astype(np.float32)
        return base, base
    tshape = shape[:-2] + (shape[-1], shape[-2])
    base = gen.normal(size=tshape).astype(np.float32)
    return base, base.swapaxes(-1, -2)


CASES = [
    # (a view's shape, a is a swapaxes view, b's, b is one, c's shape)
    ((5, 3), False, (3, 4), False, (5, 4)),  # inner product forward x @ w.T ...
    ((5, 3), False, (3, 4), True, (5, 4)),  # ... with w (4, 3): w.T is col-major
    ((5, 3), True, (3, 4), False, (5, 4)),  # x.T @ dy
    ((5, 4), True, (4, 3), True, (5, 3)),
    ((1, 6, 4), False, (2, 1, 4, 7), False, (2, 1, 6, 7)),  # conv fwd, group 1
    ((2, 3, 4), False, (5, 2, 4, 6), False, (5, 2, 3, 6)),  # conv fwd, group 2
    ((2, 4, 3), True, (5, 2, 3, 6), False, (5, 2, 4, 6)),  # w^T @ dy (dcol)
    ((5, 2, 3, 6), False, (5, 2, 6, 4), True, (5, 2, 3, 4)),  # dy @ col^T
    ((1, 1), False, (1, 1), False, (1, 1)),
    ((1, 3), False, (3, 1), False, (1, 1)),
]


@pytest.mark.parametrize("a_shape,a_t,b_shape,b_t,c_shape", CASES)
def test_plan_equals_numpy_matmul(a_shape, a_t, b_shape, b_t, c_shape):
    gen = np.random.default_rng(1701)
    a_base, a = _base_and_view(gen, a_shape, a_t)
    b_base, b = _base_and_view(gen, b_shape, b_t)
    c = np.full(c_shape, np.nan, np.float32)
    _run_plan(a, a_base, b, b_base, c)
    np.testing.assert_allclose(c, np.matmul(a, b), rtol=1e-5, atol=1e-6)


def test_row_major_operands_are_op_n_and_swapped():
    # C (m, n) = A (m, k) B (k, n) is C^T = B^T A^T for column-major cuBLAS
    (call,) = cublas.plan_matmul((2, 3), (3, 1), (3, 4), (4, 1), (2, 4), (4, 1))
    assert (call.trans_x, call.trans_y) == (cublas.OP_N, cublas.OP_N)
    assert (call.m, call.n, call.k) == (4, 2, 3)
    assert (call.ldx, call.ldy, call.ldc) == (4, 3, 4)
    # a transposed (column-major) A is op T
    (call,) = cublas.plan_matmul((2, 3), (1, 2), (3, 4), (4, 1), (2, 4), (4, 1))
    assert call.trans_y == cublas.OP_T and call.ldy == 2


def test_group_broadcast_makes_one_batched_call_per_group():
    w, col, y = (2, 3, 4), (5, 2, 4, 6), (5, 2, 3, 6)
    calls = cublas.plan_matmul(w, (12, 4, 1), col, (48, 24, 6, 1), y, (36, 18, 6, 1))
    assert len(calls) == 2
    assert all(c.batch == 5 and c.stride_y == 0 for c in calls)  # w broadcast


@pytest.mark.parametrize(
    "args",
    [
        ((2, 3), (3, 1), (4, 5), (5, 1), (2, 5), (5, 1)),  # k mismatch
        ((2, 3), (3, 1), (3, 4), (4, 1), (2, 4), (1, 2)),  # c column-major
        ((2, 3), (6, 2), (3, 4), (4, 1), (2, 4), (4, 1)),  # a strided twice
    ],
)
def test_bad_shapes_and_layouts_are_refused(args):
    with pytest.raises(ValueError, match="cublas matmul"):
        cublas.plan_matmul(*args)


def test_tf32_is_off_unless_asked(monkeypatch):
    monkeypatch.delenv("CAFFEPY_TF32", raising=False)
    assert not cublas.tf32_enabled()
    monkeypatch.setenv("CAFFEPY_TF32", "1")
    assert cublas.tf32_enabled()


def test_simulator_never_routes_to_libcublas(monkeypatch):
    from caffepy.backend.cuda import graph, memory

    if not memory.simulated():
        pytest.skip("a real GPU: the routing is checked by tools/gpu_graph_check.py")
    monkeypatch.setenv("CAFFEPY_CUBLAS_DIRECT", "1")
    monkeypatch.setattr(graph, "_direct_cublas_env", None)
    monkeypatch.setattr(graph, "_capturing", True)
    assert not graph.direct_cublas()
