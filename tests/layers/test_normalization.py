"""Normalization layers (BatchNorm, Scale, Bias, LRN, MVN): forward against
PyTorch / tests.naive, gradients, in place, parameter errors."""

import numpy as np
import pytest

from caffepy import TEST, TRAIN
from caffepy.blob import Blob
from caffepy.errors import LayerError, ShapeError
from caffepy.testing import (
    GradientChecker,
    layer_from_text,
    lazy_module,
    make_blobs,
)
from tests import naive

torch = lazy_module("torch")  # forward oracle: imported on first call
F = torch.nn.functional

DTYPES = [np.float32, np.float64]


def f32(v):
    """A prototxt float as the layer sees it (proto floats are float32)."""
    return float(np.float32(v))


def _tol(dtype):
    if dtype == np.float32:
        return {"rtol": 1e-5, "atol": 1e-6}
    return {"rtol": 1e-11, "atol": 1e-12}


def _blob(shape=(), dtype=np.float64, data=None):
    b = Blob(shape, dtype)
    if data is not None:
        b.data[...] = data
    return b


def _build(text, bottom, top, phase=TEST, dtype=np.float64):
    layer = layer_from_text(text, phase, dtype)
    layer.SetUp(bottom, top)
    return layer


def _run_pair(text, x_list, phase, dy, params=None):
    """Forward + backward out of place and in place (top[0] is bottom[0]).

    Returns [(top data, bottom diffs, param diffs, param data)] for both.
    """
    from caffepy import rng

    out = []
    for in_place in (False, True):
        rng.set_random_seed(3)  # the same filler draws for both layers
        bottom = [_blob(x.shape, data=x) for x in x_list]
        top = [bottom[0]] if in_place else [_blob()]
        layer = _build(text, bottom, top, phase)
        if params is not None:
            for blob, value in zip(layer.blobs, params):
                blob.data[...] = value
        layer.Forward(bottom, top)
        y = top[0].data.copy()
        top[0].diff[...] = dy
        layer.Backward(top, [True] * len(bottom), bottom)
        out.append(
            (
                y,
                [b.diff.copy() for b in bottom],
                [b.diff.copy() for b in layer.blobs],
                [b.data.copy() for b in layer.blobs],
            )
        )
    return out


def _assert_pair_equal(pair, rtol=1e-13):
    (y0, dx0, dp0, p0), (y1, dx1, dp1, p1) = pair
    np.testing.assert_allclose(y1, y0, rtol=rtol, atol=1e-15)
    for a, b in zip(dx0 + dp0 + p0, dx1 + dp1 + p1):
        np.testing.assert_allclose(b, a, rtol=rtol, atol=1e-14)


def _numeric_bottom_gradient(layer, bottom, top, step=1e-6):
    """Central differences of sum(R * top) w.r.t. bottom[0] (parameters untouched)."""
    layer.Forward(bottom, top)
    weights = np.random.default_rng(11).standard_normal(top[0].shape)
    top[0].diff[...] = weights
    layer.Backward(top, [True], bottom)
    analytic = bottom[0].diff.copy()
    flat = bottom[0].data.reshape(-1)
    numeric = np.zeros(flat.size)
    for k in range(flat.size):
        v = flat[k]
        flat[k] = v + step
        layer.Forward(bottom, top)
        plus = float(np.sum(weights * top[0].data))
        flat[k] = v - step
        layer.Forward(bottom, top)
        minus = float(np.sum(weights * top[0].data))
        flat[k] = v
        numeric[k] = (plus - minus) / (2 * step)
    return analytic.reshape(-1), numeric


# -- BatchNorm -------------------------------------------------------------------
BN_SHAPES = [(4, 3, 5, 6), (6, 4), (3, 4, 5), (5, 2, 2, 1, 3)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BN_SHAPES)
def test_batchnorm_train_forward_matches_torch(shape, dtype):
    bottom, top = make_blobs(shape, dtype=dtype, low=-2, high=3), [_blob((), dtype)]
    layer = _build(
        'type: "BatchNorm" batch_norm_param { moving_average_fraction: 0.9 '
        "eps: 0.001 }",
        bottom,
        top,
        TRAIN,
        dtype,
    )
    assert [b.shape for b in layer.blobs] == [(shape[1],), (shape[1],), (1,)]
    assert layer.param_propagate_down == [False, False, False]
    stats = [
        np.array([0.5, -1.0, 2.0, 0.1][: shape[1]]),
        np.array([1.5, 0.3, 2.0, 0.7][: shape[1]]),
        np.array([2.0]),
    ]
    for blob, value in zip(layer.blobs, stats):
        blob.data[...] = value
    layer.Forward(bottom, top)
    x = torch.from_numpy(bottom[0].data.astype(np.float64))
    want = F.batch_norm(x, None, None, training=True, eps=f32(0.001)).numpy()
    np.testing.assert_allclose(top[0].data, want, **_tol(dtype))
    y_naive, mean, var = naive.batch_norm_layer(bottom[0].data, eps=f32(0.001))
    np.testing.assert_allclose(top[0].data, y_naive, **_tol(dtype))
    # Caffe's moving-average update, unbiased variance in the stored sum
    m = bottom[0].count // shape[1]
    maf = f32(0.9)
    np.testing.assert_allclose(layer.blobs[2].data, [2.0 * maf + 1], **_tol(dtype))
    np.testing.assert_allclose(
        layer.blobs[0].data, stats[0] * maf + mean, **_tol(dtype)
    )
    np.testing.assert_allclose(
        layer.blobs[1].data, stats[1] * maf + m / (m - 1) * var, **_tol(dtype)
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 4)])
def test_batchnorm_global_stats_forward(shape, dtype):
    bottom, top = make_blobs(shape, dtype=dtype), [_blob((), dtype)]
    layer = _build('type: "BatchNorm"', bottom, top, TEST, dtype)
    c = shape[1]
    sums = [np.linspace(-1, 1, c) * 3, np.linspace(0.5, 2, c) * 3, [3.0]]
    for blob, value in zip(layer.blobs, sums):
        blob.data[...] = value
    layer.Forward(bottom, top)
    mean, var = sums[0] / 3.0, sums[1] / 3.0
    want, _, _ = naive.batch_norm_layer(bottom[0].data, f32(1e-5), mean, var)
    np.testing.assert_allclose(top[0].data, want, **_tol(dtype))
    x = torch.from_numpy(bottom[0].data.astype(np.float64))
    want = F.batch_norm(x, torch.tensor(mean), torch.tensor(var), eps=f32(1e-5))
    np.testing.assert_allclose(top[0].data, want.numpy(), **_tol(dtype))
    # the statistics are not touched in TEST
    np.testing.assert_array_equal(layer.blobs[2].data, [3.0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_statistics_of_offset_data_are_accurate(dtype):
    # a large mean next to a unit variance: a naive E[x^2] - E[x]^2 in the data's
    # precision would lose the variance
    shape = (16, 2, 9, 13)
    x = 1000.0 + np.random.default_rng(5).standard_normal(shape)
    bottom, top = [_blob(shape, dtype, x)], [_blob((), dtype)]
    layer = _build(
        'type: "BatchNorm" batch_norm_param { moving_average_fraction: 0 }',
        bottom,
        top,
        TRAIN,
        dtype,
    )
    layer.Forward(bottom, top)
    x = bottom[0].data.astype(np.float64)
    m = x.size // 2
    np.testing.assert_allclose(layer.blobs[0].data, x.mean(axis=(0, 2, 3)), rtol=1e-7)
    np.testing.assert_allclose(
        layer.blobs[1].data, x.var(axis=(0, 2, 3)) * m / (m - 1), rtol=1e-5
    )
    want, _, _ = naive.batch_norm_layer(x, f32(1e-5))
    np.testing.assert_allclose(top[0].data, want, rtol=1e-4, atol=1e-4)


def test_batchnorm_zero_normaliser_means_zero_statistics():
    bottom, top = make_blobs((2, 3, 2)), [_blob()]
    layer = _build(
        'type: "BatchNorm" batch_norm_param { eps: 0.25 }', bottom, top, TEST
    )
    layer.blobs[0].data[...] = 5.0  # ignored: blobs[2] == 0 scales them by 0
    layer.Forward(bottom, top)
    np.testing.assert_allclose(top[0].data, bottom[0].data / 0.5)


def test_batchnorm_explicit_use_global_stats_overrides_phase():
    bottom, top = make_blobs((4, 2, 3)), [_blob()]
    layer = _build(
        'type: "BatchNorm" batch_norm_param { use_global_stats: true }',
        bottom,
        top,
        TRAIN,
    )
    layer.blobs[2].data[...] = 1.0
    layer.blobs[1].data[...] = 1.0
    layer.Forward(bottom, top)
    np.testing.assert_allclose(top[0].data, bottom[0].data / np.sqrt(1 + f32(1e-5)))
    np.testing.assert_array_equal(layer.blobs[2].data, [1.0])
    layer = _build(
        'type: "BatchNorm" batch_norm_param { use_global_stats: false }',
        bottom,
        top,
        TEST,
    )
    layer.Forward(bottom, top)
    np.testing.assert_allclose(top[0].data.mean(axis=(0, 2)), 0, atol=1e-12)
    np.testing.assert_array_equal(layer.blobs[2].data, [1.0])  # 0 * maf + 1


@pytest.mark.parametrize("shape", [(3, 2, 2, 2), (5, 3), (2, 2, 3, 4)])
def test_batchnorm_train_gradient(shape):
    bottom, top = make_blobs(shape), [_blob()]
    layer = layer_from_text('type: "BatchNorm"', TRAIN, np.float64)
    # NOTE: sum(y^2) is constant under batch normalisation, so check one top
    # element at a time (Caffe's exhaustive check for BatchNorm).
    GradientChecker(1e-4, 1e-5).check_gradient_exhaustive(layer, bottom, top)
    for blob in layer.blobs:
        assert not blob.diff.any()


@pytest.mark.parametrize("shape", [(2, 3, 2, 2), (4, 3)])
def test_batchnorm_global_stats_gradient(shape):
    bottom, top = make_blobs(shape), [_blob()]
    layer = _build(
        'type: "BatchNorm" batch_norm_param { eps: 0.01 }', bottom, top, TEST
    )
    layer.blobs[0].data[...] = [0.2, -0.3, 0.1]
    layer.blobs[1].data[...] = [0.5, 1.2, 2.0]
    layer.blobs[2].data[...] = 0.8
    analytic, numeric = _numeric_bottom_gradient(layer, bottom, top)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-7, atol=1e-9)
    std = np.sqrt(np.array([0.5, 1.2, 2.0]) / 0.8 + f32(0.01))
    np.testing.assert_allclose(
        bottom[0].diff, top[0].diff / std.reshape((1, 3) + (1,) * (len(shape) - 2))
    )


@pytest.mark.parametrize("phase", [TRAIN, TEST])
def test_batchnorm_in_place(phase):
    shape = (3, 2, 4)
    x = make_blobs(shape)[0].data.copy()
    dy = np.random.default_rng(1).standard_normal(shape)
    stats = [np.array([0.1, -0.2]), np.array([0.4, 0.9]), np.array([1.5])]
    _assert_pair_equal(_run_pair('type: "BatchNorm"', [x], phase, dy, stats))


def test_batchnorm_errors():
    with pytest.raises(
        LayerError, match=r"lr_mult 1\.0; BatchNorm statistics cannot be learned"
    ):
        _build(
            'type: "BatchNorm" param { lr_mult: 0 } param { lr_mult: 1 }',
            make_blobs((2, 3)),
            [_blob()],
        )
    _build(
        'type: "BatchNorm" param { lr_mult: 0 } param { lr_mult: 0 } '
        "param { lr_mult: 0 }",
        make_blobs((2, 3)),
        [_blob()],
    )
    layer = _build('type: "BatchNorm"', make_blobs((2, 3, 4)), [_blob()])
    with pytest.raises(ShapeError, match=r"\(2, 4, 4\).*3 channels"):
        layer.Forward(make_blobs((2, 4, 4)), [_blob()])
    with pytest.raises(LayerError, match="eps must be >= 0"):
        _build(
            'type: "BatchNorm" batch_norm_param { eps: -1 }',
            make_blobs((2, 3)),
            [_blob()],
        )


# -- Scale and Bias ----------------------------------------------------------------
# (prototxt, bottom shapes, expected param shapes, axis used by the oracle)
SCALE = {
    "channel_bias": (
        (
            'type: "Scale" scale_param { bias_term: true filler { type: '
            '"uniform" min: 0.5 max: 1.5 } bias_filler { type: "gaussian" '
            "std: 0.5 } }"
        ),
        [(2, 3, 4, 5)],
        [(3,), (3,)],
        1,
    ),
    "bottom_scale": (
        (
            'type: "Scale" scale_param { axis: 0 bias_term: true '
            'bias_filler { type: "uniform" min: -1 max: 1 } }'
        ),
        [(2, 3, 4, 5), (2, 3)],
        [(2, 3)],
        0,
    ),
    "two_axes": (
        (
            'type: "Scale" scale_param { axis: 2 num_axes: 2 filler { type: '
            '"uniform" min: -1.5 max: 1.5 } }'
        ),
        [(2, 3, 4, 5)],
        [(4, 5)],
        2,
    ),
    "scalar": (
        (
            'type: "Scale" scale_param { num_axes: 0 bias_term: true filler { '
            'type: "uniform" min: 0.5 max: 2 } bias_filler { type: "uniform" '
            "min: -1 max: 1 } }"
        ),
        [(3, 4)],
        [(), ()],
        1,
    ),
    "to_end": (
        (
            'type: "Scale" scale_param { axis: -2 num_axes: -1 filler { type: '
            '"gaussian" } }'
        ),
        [(2, 3, 4)],
        [(3, 4)],
        1,
    ),
    "bottom_scale_mid": (
        'type: "Scale" scale_param { axis: 1 }',
        [(2, 3, 4, 5), (3, 4)],
        [],
        1,
    ),
    "wide_ip": (
        'type: "Scale" scale_param { bias_term: true filler { type: "gaussian" } '
        'bias_filler { type: "gaussian" } }',
        [(3, 70)],
        [(70,), (70,)],
        1,
    ),
    "ip_output": (
        (
            'type: "Scale" scale_param { bias_term: true filler { type: '
            '"gaussian" } bias_filler { type: "gaussian" } }'
        ),
        [(6, 4)],
        [(4,), (4,)],
        1,
    ),
}
BIAS = {
    "channel": (
        'type: "Bias" bias_param { filler { type: "gaussian" std: 0.7 } }',
        [(2, 3, 4, 5)],
        [(3,)],
        1,
    ),
    "bottom_bias": (
        'type: "Bias" bias_param { axis: 0 }',
        [(2, 3, 4, 5), (2, 3)],
        [],
        0,
    ),
    "two_axes": (
        (
            'type: "Bias" bias_param { axis: 2 num_axes: 2 filler { type: '
            '"uniform" min: -1 max: 1 } }'
        ),
        [(2, 3, 4, 5)],
        [(4, 5)],
        2,
    ),
    "scalar": (
        'type: "Bias" bias_param { num_axes: 0 filler { type: "gaussian" } }',
        [(3, 4)],
        [()],
        1,
    ),
}


def _affine_oracle(kind, layer, bottom):
    """Expected output from tests.naive.scale_layer and a torch broadcast."""
    _text, _shapes, _, axis = (SCALE if kind == "Scale" else BIAS)[layer.name]
    x = bottom[0].data.astype(np.float64)
    blobs = [b.data.astype(np.float64) for b in layer.blobs]
    if kind == "Scale":
        scale = bottom[1].data.astype(np.float64) if len(bottom) > 1 else blobs.pop(0)
        bias = blobs[0] if blobs else None
    else:
        scale = None
        bias = bottom[1].data.astype(np.float64) if len(bottom) > 1 else blobs[0]
    want = naive.scale_layer(x, scale, bias, axis)
    # torch broadcasting as a second oracle
    param = scale if scale is not None else bias
    nd = np.ndim(param)
    ax = 0 if nd == 0 else axis % x.ndim
    shape = (1,) * ax + np.shape(param) + (1,) * (x.ndim - ax - nd)
    t = torch.from_numpy(x)
    if scale is not None:
        t = t * torch.from_numpy(np.asarray(scale)).reshape(shape)
    if bias is not None:
        t = t + torch.from_numpy(np.asarray(bias)).reshape(shape)
    np.testing.assert_allclose(t.numpy(), want, rtol=1e-14)
    return want


def _affine_blobs(shapes, dtype):
    return make_blobs(*shapes, dtype=dtype, low=-1.5, high=1.5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "kind, name",
    [("Scale", n) for n in sorted(SCALE)] + [("Bias", n) for n in sorted(BIAS)],
)
def test_affine_forward(kind, name, dtype):
    text, shapes, param_shapes, _ = (SCALE if kind == "Scale" else BIAS)[name]
    bottom, top = _affine_blobs(shapes, dtype), [_blob((), dtype)]
    layer = _build(f'name: "{name}" ' + text, bottom, top, dtype=dtype)
    assert [b.shape for b in layer.blobs] == param_shapes
    layer.Forward(bottom, top)
    assert top[0].shape == shapes[0] and top[0].data.dtype == dtype
    np.testing.assert_allclose(
        top[0].data, _affine_oracle(kind, layer, bottom), **_tol(dtype)
    )


AFFINE_CASES = [("Scale", n) for n in sorted(SCALE)] + [
    ("Bias", n) for n in sorted(BIAS)
]


@pytest.mark.parametrize("kind, name", AFFINE_CASES)
def test_affine_gradient(kind, name):
    text, shapes, _, _ = (SCALE if kind == "Scale" else BIAS)[name]
    bottom, top = _affine_blobs(shapes, np.float64), [_blob()]
    layer = layer_from_text(text, TEST, np.float64)
    GradientChecker(1e-4, 1e-5).check_gradient(layer, bottom, top)


def _affine_autograd(kind, name, xs, params, dy):
    """Top and gradients (bottoms, then params) from torch autograd."""
    _, _, _, axis = (SCALE if kind == "Scale" else BIAS)[name]
    ts = [torch.tensor(v, requires_grad=True) for v in list(xs) + list(params)]
    # after x: the scale (second bottom or blob), then the bias (or just the bias)
    x, rest = ts[0], ts[1:]
    if kind == "Scale":
        scale, bias = rest[0], (rest[1] if len(rest) > 1 else None)
    else:
        scale, bias = None, rest[0]
    param = scale if scale is not None else bias
    nd = param.ndim
    ax = 0 if nd == 0 else axis % x.ndim
    shape = (1,) * ax + tuple(param.shape) + (1,) * (x.ndim - ax - nd)
    y = x
    if scale is not None:
        y = y * scale.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    y.backward(torch.from_numpy(dy))
    return y.detach().numpy(), [t.grad.numpy() for t in ts]


@pytest.mark.parametrize("kind, name", AFFINE_CASES)
def test_affine_in_place_and_accumulation(kind, name):
    text, shapes, _, _ = (SCALE if kind == "Scale" else BIAS)[name]
    xs = [b.data.copy() for b in _affine_blobs(shapes, np.float64)]
    dy = np.random.default_rng(6).standard_normal(shapes[0])
    pair = _run_pair(text, xs, TEST, dy)
    _assert_pair_equal(pair)
    y, dxs, dps, ps = pair[0]
    want_y, grads = _affine_autograd(kind, name, xs, ps, dy)
    np.testing.assert_allclose(y, want_y, rtol=1e-14)
    for got, want in zip(dxs + dps, grads):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
    # a second backward adds the parameter gradients again
    bottom = [_blob(x.shape, data=x) for x in xs]
    top = [_blob()]
    layer = _build(text, bottom, top)
    for blob, value in zip(layer.blobs, ps):
        blob.data[...] = value
    layer.Forward(bottom, top)
    for _ in range(2):
        top[0].diff[...] = dy
        layer.Backward(top, [True] * len(bottom), bottom)
    for blob, once in zip(layer.blobs, dps):
        np.testing.assert_allclose(blob.diff, 2 * once, rtol=1e-13)


def test_scale_default_fillers_and_frozen_scale():
    bottom, top = make_blobs((2, 3, 4)), [_blob()]
    layer = _build('type: "Scale" scale_param { bias_term: true }', bottom, top)
    np.testing.assert_array_equal(layer.blobs[0].data, 1.0)
    np.testing.assert_array_equal(layer.blobs[1].data, 0.0)
    layer.param_propagate_down = [False, True]
    layer.Forward(bottom, top)
    top[0].diff[...] = 1.0
    layer.Backward(top, [True], bottom)
    assert not layer.blobs[0].diff.any()
    np.testing.assert_allclose(layer.blobs[1].diff, 8.0)
    bias = _build('type: "Bias"', bottom, top)
    np.testing.assert_array_equal(bias.blobs[0].data, 0.0)


def test_scale_second_bottom_gets_assigned_gradient():
    bottom = make_blobs((2, 3, 4), (2, 3))
    top = [_blob()]
    layer = _build('type: "Scale" scale_param { axis: 0 }', bottom, top)
    assert not layer.blobs
    layer.Forward(bottom, top)
    top[0].diff[...] = 1.0
    bottom[1].diff[...] = 100.0  # stale: must be overwritten, not accumulated
    layer.Backward(top, [True, True], bottom)
    np.testing.assert_allclose(bottom[1].diff, bottom[0].data.sum(axis=2))
    np.testing.assert_allclose(
        bottom[0].diff, np.broadcast_to(bottom[1].data[:, :, None], (2, 3, 4))
    )


@pytest.mark.parametrize(
    "text, shapes, error, match",
    [
        (
            'type: "Scale" scale_param { num_axes: -2 }',
            [(2, 3)],
            LayerError,
            "num_axes must be >= 0.*-2",
        ),
        (
            'type: "Scale" scale_param { axis: 1 num_axes: 3 }',
            [(2, 3, 4)],
            LayerError,
            "extends past",
        ),
        (
            'type: "Scale" scale_param { axis: 5 }',
            [(2, 3, 4)],
            LayerError,
            "axis 5 is out of range",
        ),
        ('type: "Scale"', [(2, 3, 4), (4,)], ShapeError, r"\(4,\).*\(2, 3, 4\)"),
        ('type: "Bias" bias_param { num_axes: -3 }', [(2, 3)], LayerError, "num_axes"),
        (
            'type: "Bias" bias_param { axis: 2 }',
            [(2, 3, 4), (3,)],
            ShapeError,
            "does not match",
        ),
    ],
)
def test_affine_errors(text, shapes, error, match):
    with pytest.raises(error, match=match):
        bottom = make_blobs(*shapes)
        layer = _build(text, bottom, [_blob()])
        layer.Forward(bottom, [_blob()])


def test_scale_checks_blob_shape_on_reshape():
    bottom, top = make_blobs((2, 3, 4)), [_blob()]
    layer = _build('type: "Scale"', bottom, top)
    with pytest.raises(ShapeError, match=r"scale of shape \(3,\)"):
        layer.Forward(make_blobs((2, 5, 4)), top)


# -- LRN -------------------------------------------------------------------------
LRN = {
    "across": (
        'type: "LRN" lrn_param { local_size: 5 alpha: 0.1 beta: 0.75 k: 2 }',
        (2, 7, 3, 4),
        {"local_size": 5, "alpha": 0.1, "beta": 0.75, "k": 2.0},
    ),
    "within": (
        (
            'type: "LRN" lrn_param { local_size: 3 alpha: 0.2 beta: 0.6 k: 2 '
            "norm_region: WITHIN_CHANNEL }"
        ),
        (2, 2, 5, 6),
        {"local_size": 3, "alpha": 0.2, "beta": 0.6, "region": "WITHIN_CHANNEL"},
    ),
    "within5": (
        (
            'type: "LRN" lrn_param { local_size: 5 alpha: 1.5 beta: 0.9 '
            "norm_region: WITHIN_CHANNEL }"
        ),
        (1, 2, 3, 7),
        {"local_size": 5, "alpha": 1.5, "beta": 0.9, "region": "WITHIN_CHANNEL"},
    ),
    "default": ('type: "LRN"', (2, 6, 3, 3), {}),
    "size1": (
        'type: "LRN" lrn_param { local_size: 1 alpha: 2 beta: 0.5 }',
        (2, 3, 2, 2),
        {"local_size": 1, "alpha": 2.0, "beta": 0.5},
    ),
    "beta1": (
        'type: "LRN" lrn_param { local_size: 3 alpha: 0.5 beta: 1 k: 1.5 }',
        (2, 4, 2, 3),
        {"local_size": 3, "alpha": 0.5, "beta": 1.0, "k": 1.5},
    ),
}


def _lrn_kwargs(kw):
    return {k: f32(v) if isinstance(v, float) else v for k, v in kw.items()}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(LRN))
def test_lrn_forward(name, dtype):
    text, shape, kw = LRN[name]
    bottom, top = make_blobs(shape, dtype=dtype, low=-2, high=2), [_blob((), dtype)]
    layer = _build(text, bottom, top, dtype=dtype)
    layer.Forward(bottom, top)
    kw = _lrn_kwargs(kw)
    np.testing.assert_allclose(
        top[0].data, naive.lrn_layer(bottom[0].data, **kw), **_tol(dtype)
    )
    if kw.get("region", "ACROSS_CHANNELS") == "ACROSS_CHANNELS":
        x = torch.from_numpy(bottom[0].data.astype(np.float64))
        want = F.local_response_norm(
            x,
            kw.get("local_size", 5),
            kw.get("alpha", 1.0),
            kw.get("beta", 0.75),
            kw.get("k", 1.0),
        )
        np.testing.assert_allclose(top[0].data, want.numpy(), **_tol(dtype))


@pytest.mark.parametrize("name", sorted(LRN))
def test_lrn_gradient(name):
    text, shape, _ = LRN[name]
    bottom, top = make_blobs(shape, low=-2, high=2), [_blob()]
    layer = layer_from_text(text, TEST, np.float64)
    GradientChecker(1e-4, 1e-5).check_gradient(layer, bottom, top)


@pytest.mark.parametrize("name", ["across", "within"])
def test_lrn_in_place(name):
    text, shape, _ = LRN[name]
    x = make_blobs(shape, low=-2, high=2)[0].data.copy()
    dy = np.random.default_rng(8).standard_normal(shape)
    _assert_pair_equal(_run_pair(text, [x], TEST, dy))


def test_lrn_errors():
    with pytest.raises(LayerError, match="local_size must be odd, got 4"):
        _build(
            'type: "LRN" lrn_param { local_size: 4 }',
            make_blobs((2, 3, 4, 4)),
            [_blob()],
        )
    with pytest.raises(ShapeError, match=r"4-D.*\(2, 3, 4\)"):
        _build('type: "LRN"', make_blobs((2, 3, 4)), [_blob()])


# -- MVN -------------------------------------------------------------------------
MVN = {
    "default": ('type: "MVN"', {}),
    "mean_only": (
        'type: "MVN" mvn_param { normalize_variance: false }',
        {"normalize_variance": False},
    ),
    "across": (
        'type: "MVN" mvn_param { across_channels: true eps: 0.001 }',
        {"across_channels": True, "eps": f32(0.001)},
    ),
    "across_mean_only": (
        ('type: "MVN" mvn_param { across_channels: true normalize_variance: false }'),
        {"across_channels": True, "normalize_variance": False},
    ),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 2, 6)])
@pytest.mark.parametrize("name", sorted(MVN))
def test_mvn_forward(name, shape, dtype):
    text, kw = MVN[name]
    bottom, top = make_blobs(shape, dtype=dtype, low=-1, high=3), [_blob((), dtype)]
    layer = _build(text, bottom, top, dtype=dtype)
    layer.Forward(bottom, top)
    kw = dict(kw)
    kw.setdefault("eps", f32(1e-9))
    np.testing.assert_allclose(
        top[0].data, naive.mvn_layer(bottom[0].data, **kw), **_tol(dtype)
    )


@pytest.mark.parametrize("name", ["default", "mean_only", "across_mean_only"])
def test_mvn_gradient(name):
    bottom, top = make_blobs((2, 2, 2, 3)), [_blob()]
    layer = layer_from_text(MVN[name][0], TEST, np.float64)
    # NOTE: sum(y^2) is constant when normalising the variance: check per element.
    GradientChecker(1e-4, 1e-5).check_gradient_exhaustive(layer, bottom, top)


def test_mvn_gradient_across_channels():
    bottom, top = make_blobs((2, 2, 2, 3)), [_blob()]
    # Caffe's backward ignores eps in the std's derivative: exact for eps -> 0.
    layer = layer_from_text(
        'type: "MVN" mvn_param { across_channels: true }', TEST, np.float64
    )
    GradientChecker(1e-4, 1e-5).check_gradient_exhaustive(layer, bottom, top)


def test_mvn_in_place():
    x = make_blobs((2, 3, 4))[0].data.copy()
    dy = np.random.default_rng(8).standard_normal(x.shape)
    for text, _ in MVN.values():
        _assert_pair_equal(_run_pair(text, [x], TEST, dy))


# -- layer knowledge and the op boundary ------------------------------------------


@pytest.mark.parametrize(
    "text, count",
    [
        ('type: "BatchNorm"', 3),
        ('type: "Scale"', 1),
        ('type: "Scale" scale_param { bias_term: true }', 2),
        ('type: "Scale" bottom: "x" bottom: "s"', 0),
        ('type: "Scale" bottom: "x" bottom: "s" scale_param { bias_term: true }', 1),
        ('type: "Bias"', 1),
        ('type: "Bias" bottom: "x" bottom: "b"', 0),
        ('type: "LRN"', 0),
    ],
)
def test_param_blob_count(text, count):
    from google.protobuf import text_format

    from caffepy.proto import caffe_pb2
    from caffepy.registry import layer_class

    lp = text_format.Parse(text, caffe_pb2.LayerParameter())
    assert layer_class(lp.type).param_blob_count(lp) == count


def test_batchnorm_fixes_its_own_lr_mults():
    from caffepy.proto import caffe_pb2
    from caffepy.registry import layer_class

    lp = caffe_pb2.LayerParameter(type="BatchNorm")
    assert layer_class("BatchNorm").fixed_lr_mults(lp) == [0.0, 0.0, 0.0]
    assert layer_class("Scale").fixed_lr_mults(lp) is None


def test_cpu_normalization_ops_implement_the_interface():
    import inspect

    from caffepy.backend.base import Ops
    from caffepy.backend.cpu.normalization import NormalizationOps

    for name, fn in vars(NormalizationOps).items():
        if callable(fn) and not name.startswith("_"):
            want = inspect.signature(getattr(Ops, name))
            assert list(inspect.signature(fn).parameters) == list(want.parameters)
