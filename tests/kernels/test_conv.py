"""The fused convolution and inner-product kernels (kernels/conv.py) against
PyTorch, on one and two threads, and the CPU backend's fallback path (numpy's
matmul from Python threads) for a numpy whose BLAS the kernels cannot call."""

import numpy as np
import pytest

from caffepy.kernels import blas, conv, inner_product
from caffepy.testing.oracle import lazy_module

pytestmark = pytest.mark.skipif(
    not blas.AVAILABLE, reason="numpy's BLAS is not callable from kernels"
)

torch = lazy_module("torch")  # oracle: imported on first call
F = torch.nn.functional


CASES = [  # (N, C, H, W), M, kernel, stride, pad, dilation, group, bias, nb
    ((5, 4, 7, 6), 6, 3, 1, 1, 1, 1, True, 2),
    ((3, 4, 9, 9), 4, 3, 2, 0, 2, 2, False, 1),
    ((4, 6, 5, 5), 3, 1, 1, 0, 1, 3, True, 3),
    ((1, 3, 8, 7), 5, 5, 1, 2, 1, 1, True, 1),
    ((2, 2, 6, 6), 4, 1, 1, 0, 1, 1, False, 2),
]


def _setup(case, dtype):
    shape, m, k, s, p, d, g, has_bias, nb = case
    gen = np.random.default_rng(4)
    x = gen.standard_normal(shape).astype(dtype)
    w = gen.standard_normal((m, shape[1] // g, k, k)).astype(dtype)
    b = gen.standard_normal(m).astype(dtype) if has_bias else np.empty(0, dtype)
    ref = F.conv2d(
        torch.from_numpy(x),
        torch.from_numpy(w),
        torch.from_numpy(b) if has_bias else None,
        s,
        p,
        d,
        g,
    )
    return x, w, b, ref, (k, k, p, p, s, s, d, d), g, nb


def _bufs(workers, x, m, out_shape, nb, k):
    rows = x.shape[1] * k * k
    npos = out_shape[2] * out_shape[3]
    return (
        np.zeros((workers, rows * nb * npos), x.dtype),
        np.zeros((workers, m * nb * npos), x.dtype),
    )


def _relu(ref, slope):
    """ref, or its ReLU of negative slope ``slope`` (None: no ReLU)."""
    ref = ref.numpy()
    return ref if slope is None else np.where(ref > 0, ref, ref * slope)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("slope", [None, 0.1])
def test_conv_forward(case, dtype, slope, threads):
    """The chunked and the one-image passes, with and without the fused ReLU."""
    x, w, b, ref, geom, g, nb = _setup(case, dtype)
    want = _relu(ref, slope)
    # no BatchNorm and Scale fused here (tests/net/test_fusion_relu.py)
    act = (np.empty((0, 0), dtype), np.empty(0, dtype), slope is not None, slope or 0.0)
    y = np.full(ref.shape, np.nan, dtype)
    colbuf, resbuf = _bufs(threads, x, w.shape[0], y.shape, nb, geom[0])
    conv.conv_forward(
        x,
        w.reshape(w.shape[0], -1),
        b,
        *act,
        *geom,
        g,
        nb,
        blas.gemm_address(dtype),
        blas.SET_LOCAL_THREADS,
        threads,
        np.zeros(1, np.int64),
        colbuf,
        resbuf,
        y,
    )
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol)
    if x.shape[0] == 1:  # one image spread over the threads
        y[...] = np.nan
        conv.conv_forward_wide(
            x,
            w.reshape(w.shape[0], -1),
            b,
            *act,
            *geom,
            g,
            blas.gemm_address(dtype),
            blas.SET_LOCAL_THREADS,
            threads,
            colbuf[0],
            y,
        )
        np.testing.assert_allclose(y, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("case", CASES)
def test_conv_backward(case, threads):
    dtype = np.float64
    x, w, b, ref, geom, g, nb = _setup(case, dtype)
    gen = np.random.default_rng(8)
    dy = gen.standard_normal(ref.shape)
    xt = torch.from_numpy(x).requires_grad_()
    wt = torch.from_numpy(w).requires_grad_()
    bt = torch.from_numpy(b).requires_grad_() if b.size else None
    k, _, p, _, s, _, d, _ = geom
    F.conv2d(xt, wt, bt, s, p, d, g).backward(torch.from_numpy(dy))
    m = w.shape[0]
    n_chunks = -(-x.shape[0] // nb)
    n_groups = min(n_chunks, 4 * threads) if threads > 1 else 1
    kg, mg = w[0].size, m // g
    wacc = np.full((n_groups, g, kg, mg), np.nan)
    bacc = np.full((n_groups, m), np.nan)
    dx = np.full(x.shape, np.nan)
    colbuf, resbuf = _bufs(threads, x, m, dy.shape, nb, k)
    conv.conv_backward(
        x,
        dy,
        w.reshape(m, -1),
        True,
        b.size > 0,
        True,
        *geom,
        g,
        nb,
        n_groups,
        blas.gemm_address(dtype),
        blas.SET_LOCAL_THREADS,
        threads,
        np.zeros(1, np.int64),
        colbuf,
        resbuf,
        wacc,
        bacc,
        dx,
    )
    dw = wacc.sum(axis=0).transpose(0, 2, 1).reshape(w.shape)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dw, wt.grad.numpy(), rtol=1e-10, atol=1e-10)
    if bt is not None:
        np.testing.assert_allclose(bacc.sum(axis=0), bt.grad.numpy(), rtol=1e-10)


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("rows", [1, 5])
@pytest.mark.parametrize("slope", [None, 0.0, 0.3])
def test_inner_product(rows, transpose, slope, threads):
    gen = np.random.default_rng(1)
    x = gen.standard_normal((rows, 7))
    w_nk = gen.standard_normal((9, 7))
    w = np.ascontiguousarray(w_nk.T) if transpose else w_nk
    b = gen.standard_normal(9)
    y = np.full((rows, 9), np.nan)
    counter = np.zeros(1, np.int64)
    inner_product.ip_forward(
        x,
        w,
        transpose,
        b,
        slope is not None,
        slope or 0.0,
        3,
        blas.DGEMM,
        blas.DGEMV,
        blas.SET_LOCAL_THREADS,
        threads,
        counter,
        y,
    )
    want = x @ w_nk.T + b
    if slope is not None:
        want = np.where(want > 0, want, want * slope)
    np.testing.assert_allclose(y, want, rtol=1e-12)
    dy = gen.standard_normal((rows, 9))
    dw = np.ones_like(w)  # accumulated into
    dx = np.full(x.shape, np.nan)
    inner_product.ip_backward(
        x,
        dy,
        w,
        transpose,
        True,
        True,
        4,
        3,
        blas.DGEMM,
        blas.SET_LOCAL_THREADS,
        threads,
        counter,
        dw,
        dx,
    )
    grad = dy.T @ x
    np.testing.assert_allclose(dw, 1 + (grad.T if transpose else grad), rtol=1e-12)
    np.testing.assert_allclose(dx, dy @ w_nk, rtol=1e-12)


@pytest.mark.parametrize(
    "layer",
    [
        'type: "Convolution" convolution_param { num_output: 4 kernel_size: 3 pad: 1 '
        'group: 2 weight_filler { type: "gaussian" } bias_filler { type: "gaussian" } }',
        'type: "InnerProduct" inner_product_param { num_output: 300 '
        'weight_filler { type: "gaussian" } bias_filler { type: "gaussian" } }',
    ],
)
def test_fallback_path_gives_the_same_results(layer, monkeypatch):
    from caffepy.testing import layer_from_text, make_blobs

    def run():
        lay = layer_from_text(f'name: "l" {layer}', 0, np.float64)
        bottom = make_blobs((6, 4, 8, 8), dtype=np.float64)
        bottom[0].data[...] = np.random.default_rng(3).standard_normal((6, 4, 8, 8))
        top = make_blobs((), dtype=np.float64)
        lay.SetUp(bottom, top)
        for blob in lay.blobs:
            blob.data[...] = np.random.default_rng(5).standard_normal(blob.shape)
            blob.diff[...] = 0
        lay.Forward(bottom, top)
        top[0].diff[...] = np.random.default_rng(6).standard_normal(top[0].shape)
        lay.Backward(top, [True], bottom)
        return [top[0].data.copy(), bottom[0].diff.copy()] + [
            b.diff.copy() for b in lay.blobs
        ]

    fused = run()
    monkeypatch.setattr(blas, "AVAILABLE", False)
    fallback = run()
    for a, b in zip(fused, fallback):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
