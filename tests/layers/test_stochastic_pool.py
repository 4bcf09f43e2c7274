"""Pooling with ``pool: STOCHASTIC`` (Caffe's GPU kernels StoPoolForwardTrain /
StoPoolForwardTest / StoPoolBackward; BVLC's CPU code aborts).

TEST: the weighted average against a naive loop, and a gradient check. TRAIN: the
sampling frequencies against the values' proportions, the top equal to the
sampled element, the gradient routed to it, and the draws from caffepy's RNG.
"""

import numpy as np
import pytest

import caffepy
from caffepy.blob import Blob
from caffepy.layer import TEST, TRAIN
from caffepy.testing import GradientChecker, layer_from_text

FLT_MIN = float(np.finfo(np.float32).tiny)


def _layer(params, x, phase, dtype=np.float64):
    text = f'name: "p" type: "Pooling" pooling_param {{ pool: STOCHASTIC {params} }}'
    layer = layer_from_text(text, phase, dtype)
    bottom, top = [Blob(x.shape, dtype)], [Blob((), dtype)]
    bottom[0].data[...] = x
    layer.SetUp(bottom, top)
    return layer, bottom, top


def _windows(shape, kh, kw, sh, sw):
    """Caffe's windows (no padding, ceil rounding, clipped): (py, px, ys, xs)."""
    h, w = shape[-2:]
    oh = -(-(h - kh) // sh) + 1
    ow = -(-(w - kw) // sw) + 1
    for py in range(oh):
        for px in range(ow):
            ys = slice(py * sh, min(py * sh + kh, h))
            xs = slice(px * sw, min(px * sw + kw, w))
            yield py, px, ys, xs


def _naive_test(x, kh, kw, sh, sw):
    wins = list(_windows(x.shape, kh, kw, sh, sw))
    oh, ow = wins[-1][0] + 1, wins[-1][1] + 1
    out = np.zeros(x.shape[:2] + (oh, ow))
    for n, c in np.ndindex(*x.shape[:2]):
        for py, px, ys, xs in wins:
            win = x[n, c, ys, xs].astype(np.float64)
            out[n, c, py, px] = np.sum(win**2) / (FLT_MIN + np.sum(win))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "params, shape, geom",
    [
        ("kernel_size: 2 stride: 2", (2, 3, 4, 6), (2, 2, 2, 2)),
        ("kernel_size: 3 stride: 2", (1, 2, 6, 7), (3, 3, 2, 2)),  # ceil overhang
        ("kernel_h: 2 kernel_w: 3 stride_h: 1 stride_w: 2", (1, 1, 4, 5), (2, 3, 1, 2)),
    ],
)  # fmt: skip
def test_stochastic_test_phase_is_the_weighted_average(params, shape, geom, dtype):
    x = np.random.default_rng(0).uniform(0, 2, shape)
    x[0, 0, : geom[0], : geom[1]] = 0  # an all-zero window: 0 (sum from FLT_MIN)
    layer, bottom, top = _layer(params, x, TEST, dtype)
    layer.Forward(bottom, top)
    want = _naive_test(bottom[0].data, *geom)
    assert top[0].shape == want.shape
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(top[0].data, want, rtol=tol, atol=tol)
    assert top[0].data[0, 0, 0, 0] == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stochastic_test_phase_gradient(dtype):
    x = np.random.default_rng(1).uniform(0.5, 1.5, (2, 2, 5, 6))
    layer, bottom, top = _layer("kernel_size: 3 stride: 2", x, TEST, dtype)
    step, threshold = (1e-2, 1e-2) if dtype == np.float32 else (1e-3, 1e-4)
    GradientChecker(step, threshold).check_gradient(layer, bottom, top)


def test_stochastic_train_samples_in_proportion_to_the_values():
    """One 2x2 window with values 1, 2, 3, 4 repeated over 40000 planes: each
    element is drawn with probability v / 10."""
    caffepy.set_random_seed(1701)
    x = np.tile(np.array([[1.0, 2.0], [3.0, 4.0]]), (4000, 10, 1, 1))
    layer, bottom, top = _layer("kernel_size: 2 stride: 2", x, TRAIN, np.float32)
    layer.Forward(bottom, top)
    values, counts = np.unique(top[0].data, return_counts=True)
    np.testing.assert_array_equal(values, [1, 2, 3, 4])
    freq = counts / counts.sum()
    # 40000 draws: the standard error of each frequency is below 0.0025.
    np.testing.assert_allclose(freq, [0.1, 0.2, 0.3, 0.4], atol=0.01)


def test_stochastic_train_top_and_gradient_follow_the_sample():
    caffepy.set_random_seed(3)
    gen = np.random.default_rng(2)
    x = gen.uniform(0, 1, (2, 3, 7, 7))
    x[0, 0, 2:4, 2:4] = 0  # a zero never gets sampled but from an all-zero window
    layer, bottom, top = _layer("kernel_size: 3 stride: 2", x, TRAIN)
    layer.Forward(bottom, top)
    y = top[0].data.copy()
    dy = gen.standard_normal(y.shape)
    top[0].diff[...] = dy
    layer.Backward(top, [True], bottom)
    dx = bottom[0].diff
    # Each window's top is one of its elements; the gradient of the whole is
    # the top diffs added at the elements those values came from.
    want = np.zeros_like(x)
    for n, c in np.ndindex(2, 3):
        for py, px, ys, xs in _windows(x.shape, 3, 3, 2, 2):
            win = x[n, c, ys, xs]
            hits = np.argwhere(win == y[n, c, py, px])
            assert len(hits) == 1
            assert win[tuple(hits[0])] > 0
            want[n, c, ys.start + hits[0][0], xs.start + hits[0][1]] += dy[n, c, py, px]
    np.testing.assert_allclose(dx, want, rtol=1e-12)


def test_stochastic_train_draws_from_caffepy_rng():
    x = np.random.default_rng(4).uniform(0, 1, (2, 2, 6, 6))
    layer, bottom, top = _layer("kernel_size: 2 stride: 2", x, TRAIN)
    runs = []
    for _ in range(2):
        caffepy.set_random_seed(11)
        layer.Forward(bottom, top)
        runs.append(top[0].data.copy())
    layer.Forward(bottom, top)  # the generator moved on: other samples
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], top[0].data)
