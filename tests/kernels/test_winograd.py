"""3x3 convolutions by Winograd's F(2x2, 3x3) (kernels/winograd.py, through the
CPU backend): forward against the direct loops of tests/naive.py, the bottom
gradient against PyTorch, on one and two threads, and the backend's choice."""

import numpy as np
import pytest

from caffepy.backend.base import ConvGeometry
from caffepy.backend.cpu import CpuOps, conv_winograd
from caffepy.backend.cpu import conv as cpu_conv
from caffepy.kernels import blas, winograd
from caffepy.testing.oracle import lazy_module
from tests import naive

torch = lazy_module("torch")  # oracle for the gradients: imported on first call

pytestmark = pytest.mark.skipif(
    not blas.AVAILABLE, reason="numpy's BLAS is not callable from kernels"
)


@pytest.fixture
def winograd_always(monkeypatch):
    monkeypatch.setattr(conv_winograd, "ENABLED", True)
    monkeypatch.setattr(conv_winograd, "MIN_CHANNELS", 1)
    monkeypatch.setattr(conv_winograd, "MIN_POSITIONS", 1)


def _geom(n, c, h, w, m, pad, kernel=3, stride=1, dilation=1, group=1):
    oh = (h + 2 * pad - (dilation * (kernel - 1) + 1)) // stride + 1
    ow = (w + 2 * pad - (dilation * (kernel - 1) + 1)) // stride + 1
    return ConvGeometry(n, c, m, (h, w), (oh, ow), (kernel,) * 2, (pad, pad),
                        (stride,) * 2, (dilation,) * 2, group)  # fmt: skip


CASES = [  # (N, C, H, W), M, pad, bias
    ((1, 3, 7, 9), 5, 1, True),  # odd output: the last tiles are cut
    ((2, 4, 8, 8), 3, 0, False),
    ((3, 5, 5, 6), 4, 2, True),  # padding wider than a tile's overlap
    ((2, 6, 1, 1), 7, 1, True),  # one pixel: every input read is padding
    ((4, 2, 3, 3), 2, 0, True),  # one output per image
    ((5, 3, 6, 5), 4, 1, True),  # three chunks of two images (conv_winograd.TILES)
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_forward_matches_the_direct_loops(case, dtype, threads, winograd_always,
                                          monkeypatch):  # fmt: skip
    shape, m, pad, with_bias = case
    geom = _geom(*shape, m, pad)
    tiles = -(-geom.out_spatial[0] // 2) * -(-geom.out_spatial[1] // 2)
    monkeypatch.setattr(conv_winograd, "TILES", 2 * tiles)
    assert cpu_conv.kernel_paths(geom)[0] == "winograd"
    gen = np.random.default_rng(3)
    x = gen.standard_normal(shape).astype(dtype)
    w = gen.standard_normal((m, shape[1], 3, 3)).astype(dtype)
    b = gen.standard_normal(m).astype(dtype) if with_bias else None
    ref = naive.convolution_layer(x, w, b, (pad, pad))
    y = np.full(ref.shape, np.nan, dtype)
    cpu_conv.conv_forward(x, w, b, geom, y, CpuOps().workspace())
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol * np.abs(ref).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_backward_data_matches_torch(case, dtype, threads, winograd_always):
    """dx by Winograd (the full correlation with the flipped, transposed
    kernels), dw and db by the other passes: as PyTorch's autograd."""
    shape, m, pad, _ = case
    geom = _geom(*shape, m, pad)
    gen = np.random.default_rng(7)
    x = gen.standard_normal(shape).astype(dtype)
    w = gen.standard_normal((m, shape[1], 3, 3)).astype(dtype)
    xt = torch.from_numpy(x).requires_grad_()
    wt = torch.from_numpy(w).requires_grad_()
    ref = torch.nn.functional.conv2d(xt, wt, None, 1, pad)
    dy = gen.standard_normal(tuple(ref.shape)).astype(dtype)
    ref.backward(torch.from_numpy(dy))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    ws = CpuOps().workspace()
    dx = np.full_like(x, np.nan)
    cpu_conv.conv_backward(x, dy, w, geom, None, None, dx, ws)  # dx alone
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=tol, atol=tol)
    dw, db, dx = np.full_like(w, 0.5), np.zeros(m, dtype), np.full_like(x, np.nan)
    cpu_conv.conv_backward(x, dy, w, geom, dw, db, dx, ws)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(dw, wt.grad.numpy() + 0.5, rtol=tol, atol=tol)
    np.testing.assert_allclose(db, dy.sum(axis=(0, 2, 3)), rtol=tol, atol=tol)


def test_weights_transform_is_g_w_gt():
    gen = np.random.default_rng(4)
    w = gen.standard_normal((3, 2, 3, 3))
    u = np.full((16, winograd.plane(6)), np.nan)
    winograd.transform_weights(w, 1, u)
    g = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    want = np.einsum("ij,ocjk,lk->iloc", g, w, g)  # (4, 4, O, C)
    np.testing.assert_allclose(u[:, :6].reshape(4, 4, 3, 2), want, rtol=1e-14)
    assert winograd.plane(512 * 512) * 4 % 4096 == 64  # rows off the 4 KiB sets


def test_wide_layers_match_the_direct_passes(threads):
    """VGG-like widths through the real thresholds: the same numbers as the
    im2col and row-column passes, to float32 rounding."""
    gen = np.random.default_rng(5)
    for n, c, h, m in ((1, 64, 12, 64), (4, 64, 6, 96)):
        geom = _geom(n, c, h, h, m, 1)
        assert cpu_conv.kernel_paths(geom)[0] == "winograd"
        x = gen.standard_normal((n, c, h, h)).astype(np.float32)
        w = (gen.standard_normal((m, c, 3, 3)) / 24).astype(np.float32)
        b = gen.standard_normal(m).astype(np.float32)
        y = np.empty((n, m, h, h), np.float32)
        cpu_conv.conv_forward(x, w, b, geom, y, CpuOps().workspace())
        ref = naive.convolution_layer(x, w, b, (1, 1))
        assert np.abs(y - ref).max() < 2e-6 * np.abs(ref).max()


def test_winograd_chosen_by_shape(monkeypatch):
    vgg = _geom(1, 512, 28, 28, 512, 1)
    resnet = _geom(32, 64, 56, 56, 64, 1)
    assert cpu_conv.kernel_paths(vgg)[0] == "winograd"
    assert cpu_conv.kernel_paths(resnet) == ("winograd", "rows")
    assert cpu_conv.kernel_paths(_geom(4, 512, 7, 7, 512, 1))[0] == "winograd"
    for geom in (
        _geom(100, 32, 16, 16, 32, 1),  # too few channels: slower
        _geom(2, 512, 7, 7, 512, 1),  # too few outputs for the weights' transform
        _geom(8, 64, 56, 56, 32, 1),
        _geom(8, 64, 56, 56, 64, 1, stride=2),
        _geom(8, 64, 56, 56, 64, 2, dilation=2),
        _geom(8, 64, 56, 56, 64, 1, group=2),
        _geom(8, 64, 56, 56, 64, 2, kernel=5),
    ):
        assert cpu_conv.kernel_paths(geom)[0] != "winograd", geom
    monkeypatch.setattr(conv_winograd, "ENABLED", False)  # CAFFEPY_WINOGRAD=0
    assert cpu_conv.kernel_paths(vgg)[0] != "winograd"
