"""Convolutions of vertical stride 1 as shifted GEMMs over row columns
(kernels/conv_rows.py, through the CPU backend) against PyTorch, on one and two
threads."""

import numpy as np
import pytest

from caffepy.backend.base import ConvGeometry
from caffepy.backend.cpu import CpuOps
from caffepy.backend.cpu import conv as cpu_conv
from caffepy.backend.cpu import conv_rows as cpu_rows
from caffepy.kernels import blas
from caffepy.testing.oracle import lazy_module

pytestmark = pytest.mark.skipif(
    not blas.AVAILABLE, reason="numpy's BLAS is not callable from kernels"
)

torch = lazy_module("torch")  # oracle: imported on first call
F = torch.nn.functional


@pytest.fixture
def rows_always(monkeypatch):
    monkeypatch.setattr(cpu_rows, "ROWS_MIN_POSITIONS", 1)
    monkeypatch.setattr(cpu_rows, "ROWS_MIN_INNER", 1)


CASES = [  # (N, C, H, W), M, (kh, kw), (ph, pw), width stride, (dh, dw), group
    ((3, 4, 9, 11), 6, (3, 3), (1, 1), 1, (1, 1), 1),
    ((5, 6, 8, 7), 4, (5, 3), (2, 0), 2, (1, 1), 2),
    ((2, 4, 10, 10), 4, (3, 3), (2, 2), 1, (2, 2), 1),
    ((4, 3, 12, 12), 8, (5, 5), (2, 2), 1, (1, 1), 1),
    ((2, 4, 6, 9), 6, (2, 4), (0, 3), 3, (1, 2), 2),
    ((1, 4, 7, 7), 6, (3, 3), (1, 1), 1, (1, 1), 1),
]


def _geom(case):
    shape, m, (kh, kw), (ph, pw), sw, (dh, dw), g = case
    n, c, h, w = shape
    oh = h + 2 * ph - (dh * (kh - 1) + 1) + 1
    ow = (w + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    return ConvGeometry(n, c, m, (h, w), (oh, ow), (kh, kw), (ph, pw), (1, sw),
                        (dh, dw), g)  # fmt: skip


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_rows_forward_backward_match_torch(case, dtype, threads, rows_always):
    geom = _geom(case)
    assert cpu_rows.use_rows(geom) == (geom.num > 1 or threads == 1)
    gen = np.random.default_rng(5)
    shape, m, kernel, pad, sw, dil, g = case
    x = gen.standard_normal(shape).astype(dtype)
    w = gen.standard_normal((m, shape[1] // g) + kernel).astype(dtype)
    b = gen.standard_normal(m).astype(dtype)
    xt = torch.from_numpy(x).requires_grad_()
    wt = torch.from_numpy(w).requires_grad_()
    bt = torch.from_numpy(b).requires_grad_()
    ref = F.conv2d(xt, wt, bt, (1, sw), pad, dil, g)
    dy = gen.standard_normal(tuple(ref.shape)).astype(dtype)
    ref.backward(torch.from_numpy(dy))
    ws = CpuOps().workspace()
    y = np.full(tuple(ref.shape), np.nan, dtype)
    cpu_conv.conv_forward(x, w, b, geom, y, ws)
    dw = np.full_like(w, 0.5)  # gradients accumulate into the diffs
    db = np.full_like(b, 0.25)
    dx = np.full_like(x, np.nan)
    cpu_conv.conv_backward(x, dy, w, geom, dw, db, dx, ws)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(y, ref.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(dw, wt.grad.numpy() + 0.5, rtol=tol, atol=tol)
    np.testing.assert_allclose(db, bt.grad.numpy() + 0.25, rtol=tol, atol=tol)


def test_rows_backward_is_deterministic(threads, rows_always):
    case = CASES[0]
    geom = _geom(case)
    gen = np.random.default_rng(6)
    x = gen.standard_normal(case[0]).astype(np.float32)
    w = gen.standard_normal((6, 4, 3, 3)).astype(np.float32)
    dy = gen.standard_normal((3, 6) + geom.out_spatial).astype(np.float32)
    runs = []
    for _ in range(3):
        dw, db = np.zeros_like(w), np.zeros(6, np.float32)
        cpu_conv.conv_backward(x, dy, w, geom, dw, db, None, CpuOps().workspace())
        runs.append((dw, db))
    for dw, db in runs[1:]:
        assert np.array_equal(dw, runs[0][0]) and np.array_equal(db, runs[0][1])


def test_rows_chosen_by_shape():
    quick_conv2 = ConvGeometry(100, 32, 32, (16, 16), (16, 16), (5, 5), (2, 2),
                               (1, 1), (1, 1), 1)  # fmt: skip
    quick_conv1 = ConvGeometry(100, 3, 32, (32, 32), (32, 32), (5, 5), (2, 2),
                               (1, 1), (1, 1), 1)  # fmt: skip
    strided = ConvGeometry(8, 64, 64, (56, 56), (28, 28), (3, 3), (1, 1),
                           (2, 2), (1, 1), 1)  # fmt: skip
    big_rgb = ConvGeometry(8, 3, 64, (64, 64), (64, 64), (3, 3), (1, 1),
                           (1, 1), (1, 1), 1)  # fmt: skip
    assert cpu_rows.use_rows(quick_conv2)
    # 3 input channels: K is small, but 32x32 positions are few enough
    assert cpu_rows.use_rows(quick_conv1)
    assert not cpu_rows.use_rows(big_rgb)  # K small and 4096 positions
    assert not cpu_rows.use_rows(strided)
    for geom in (quick_conv2, quick_conv1, big_rgb, strided):
        want = "rows" if cpu_rows.use_rows(geom) else "fused"
        assert cpu_conv.kernel_paths(geom) == (want, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [c for c in CASES if c[0][0] > 1] + [CASES[5]])
def test_rows_forward_in_bands_matches_torch(case, dtype, threads):
    # one image cut into 1 .. oh bands of output rows (deploy's batch of one)
    shape, m, kernel, pad, sw, dil, g = case
    case = ((1,) + shape[1:],) + case[1:]
    geom = _geom(case)
    gen = np.random.default_rng(7)
    x = gen.standard_normal(case[0]).astype(dtype)
    w = gen.standard_normal((m, shape[1] // g) + kernel).astype(dtype)
    b = gen.standard_normal(m).astype(dtype)
    ref = F.conv2d(*map(torch.from_numpy, (x, w, b)), (1, sw), pad, dil, g).numpy()
    ws = CpuOps().workspace()
    tol = 1e-4 if dtype == np.float32 else 1e-10
    for bands in range(1, geom.out_spatial[0] + 1):
        y = np.full(ref.shape, np.nan, dtype)
        cpu_rows.forward(x, w, b, geom, y, ws, bands=bands)
        np.testing.assert_allclose(y, ref, rtol=tol, atol=tol, err_msg=f"{bands=}")
    y = np.full(ref.shape, np.nan, dtype)
    cpu_conv.conv_forward(x, w, b, geom, y, ws)
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol)


def test_rows_chosen_for_one_image():
    def one(c, hw, m, k):
        return ConvGeometry(1, c, m, (hw, hw), (hw, hw), (k, k), (k // 2, k // 2),
                            (1, 1), (1, 1), 1)  # fmt: skip

    assert cpu_rows.use_rows_one(one(3, 32, 32, 5))  # CIFAR10-quick's conv1
    assert cpu_rows.use_rows_one(one(32, 16, 32, 5))  # its conv2
    assert cpu_rows.use_rows_one(one(64, 224, 64, 3))  # VGG-16's conv1_2
    assert not cpu_rows.use_rows_one(one(3, 224, 64, 3))  # VGG-16's conv1_1
    assert not cpu_rows.use_rows_one(one(512, 14, 512, 3))  # VGG-16's conv5
