"""Neuron layers: forward against PyTorch / tests.naive, gradients, in place, errors."""

import json

import numpy as np
import pytest

from caffepy import TEST, TRAIN
from caffepy import rng as caffe_rng
from caffepy.blob import Blob
from caffepy.errors import LayerError, UnsupportedError
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
SHAPES = [(2, 3, 4, 5), (4, 6)]


def _tol(dtype):
    return (
        {"rtol": 2e-6, "atol": 2e-7}
        if dtype == np.float32
        else {"rtol": 1e-12, "atol": 1e-14}
    )


def _build(text, bottom, top, phase=TEST, dtype=np.float64):
    layer = layer_from_text(text, phase, dtype)
    layer.SetUp(bottom, top)
    return layer


def _away_from(x, points, margin=0.02):
    """Push values within ``margin`` of non-differentiable points off them."""
    for p in points:
        near = np.abs(x - p) < margin
        x[near] = p + np.where(x[near] >= p, margin, -margin)
    return x


def f32(v):
    """A prototxt float as the layer sees it (proto floats are float32)."""
    return float(np.float32(v))


# (prototxt, torch oracle, input range, kinks)
ELTWISE = {
    "relu": ('type: "ReLU"', F.relu, (-1, 1), [0.0]),
    "leaky": (
        'type: "ReLU" relu_param { negative_slope: 0.1 }',
        lambda x: F.leaky_relu(x, f32(0.1)),
        (-1, 1),
        [0.0],
    ),
    "relu_negslope": (
        'type: "ReLU" relu_param { negative_slope: -0.5 }',
        lambda x: torch.where(x > 0, x, -0.5 * x),
        (-1, 1),
        [0.0],
    ),
    "elu": (
        'type: "ELU" elu_param { alpha: 0.7 }',
        lambda x: F.elu(x, f32(0.7)),
        (-2, 2),
        [0.0],
    ),
    "elu_default": ('type: "ELU"', F.elu, (-2, 2), [0.0]),
    "sigmoid": ('type: "Sigmoid"', torch.sigmoid, (-4, 4), []),
    "tanh": ('type: "TanH"', torch.tanh, (-3, 3), []),
    "absval": ('type: "AbsVal"', torch.abs, (-1, 1), [0.0]),
    "bnll": ('type: "BNLL"', lambda x: F.softplus(x, threshold=100), (-10, 10), []),
    "power_sq": (
        'type: "Power" power_param { power: 2 scale: 0.5 shift: 1 }',
        lambda x: (1 + 0.5 * x) ** 2,
        (-1, 1),
        [],
    ),
    "power_sqrt": (
        'type: "Power" power_param { power: 0.5 scale: 2 shift: 3 }',
        lambda x: (3 + 2 * x) ** 0.5,
        (-0.95, 0.95),
        [],
    ),
    "power_neg": (
        'type: "Power" power_param { power: -1.5 shift: 2 }',
        lambda x: (2 + x) ** -1.5,
        (-1, 1),
        [],
    ),
    "power_lin": (
        'type: "Power" power_param { power: 1 scale: -1.5 shift: 0.2 }',
        lambda x: f32(0.2) - 1.5 * x,
        (-1, 1),
        [],
    ),
    "power_cube": (
        'type: "Power" power_param { power: 3 scale: 0.7 }',
        lambda x: (f32(0.7) * x) ** 3,
        (-1, 1),
        [],
    ),
    "power_const": (
        'type: "Power" power_param { power: 3 scale: 0 shift: 2 }',
        lambda x: torch.full_like(x, 8.0),
        (-1, 1),
        [],
    ),
    "power_zero": (
        'type: "Power" power_param { power: 0 scale: 2 }',
        lambda x: torch.ones_like(x),
        (-1, 1),
        [],
    ),
    "exp": (
        'type: "Exp" exp_param { base: 2 scale: 0.5 shift: -0.3 }',
        lambda x: 2.0 ** (f32(-0.3) + 0.5 * x),
        (-2, 2),
        [],
    ),
    "exp_default": ('type: "Exp"', torch.exp, (-2, 2), []),
    "exp_shift": (
        'type: "Exp" exp_param { scale: -1 shift: 0.5 }',
        lambda x: torch.exp(0.5 - x),
        (-2, 2),
        [],
    ),
    "log": (
        'type: "Log" log_param { base: 10 scale: 2 shift: 3 }',
        lambda x: torch.log10(3 + 2 * x),
        (-1, 1),
        [],
    ),
    "log_default": ('type: "Log"', torch.log, (0.1, 3), []),
    "log2": (
        'type: "Log" log_param { base: 2 scale: 0.5 }',
        lambda x: torch.log2(0.5 * x),
        (0.1, 3),
        [],
    ),
    "clip": (
        'type: "Clip" clip_param { min: -0.4 max: 0.6 }',
        lambda x: torch.clamp(x, f32(-0.4), f32(0.6)),
        (-1, 1),
        [-0.4, 0.6],
    ),
    "swish": (
        'type: "Swish" swish_param { beta: 1.5 }',
        lambda x: x * torch.sigmoid(1.5 * x),
        (-3, 3),
        [],
    ),
    "swish_default": ('type: "Swish"', F.silu, (-3, 3), []),
}


def _input(name, shape, dtype):
    _, _, (low, high), kinks = ELTWISE[name]
    x = np.random.default_rng(1701).uniform(low, high, shape)
    return _away_from(x, kinks).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", sorted(ELTWISE))
def test_eltwise_forward_matches_torch(name, shape, dtype):
    text, oracle, _, _ = ELTWISE[name]
    x = _input(name, shape, dtype)
    bottom, top = [Blob(shape, dtype)], [Blob((), dtype)]
    bottom[0].data[...] = x
    layer = _build(text, bottom, top, dtype=dtype)
    layer.Forward(bottom, top)
    assert top[0].shape == shape and top[0].data.dtype == dtype
    want = oracle(torch.from_numpy(x.astype(np.float64))).numpy()
    np.testing.assert_allclose(top[0].data, want, **_tol(dtype))


@pytest.mark.parametrize("name", sorted(ELTWISE))
def test_eltwise_gradient(name):
    text = ELTWISE[name][0]
    x = _input(name, (2, 3, 2, 3), np.float64)
    bottom, top = [Blob(x.shape, np.float64)], [Blob((), np.float64)]
    bottom[0].data[...] = x
    layer = layer_from_text(text, TEST, np.float64)
    GradientChecker(1e-4, 1e-5).check_gradient(layer, bottom, top)


@pytest.mark.parametrize("name", sorted(ELTWISE))
def test_eltwise_in_place_matches_out_of_place(name):
    text = ELTWISE[name][0]
    x = _input(name, (2, 3, 4, 5), np.float64)
    dy = np.random.default_rng(3).standard_normal(x.shape)
    results = []
    for in_place in (False, True):
        bottom = [Blob(x.shape, np.float64)]
        bottom[0].data[...] = x
        top = bottom if in_place else [Blob((), np.float64)]
        layer = _build(text, bottom, top)
        layer.Forward(bottom, top)
        y = top[0].data.copy()
        top[0].diff[...] = dy
        layer.Backward(top, [True], bottom)
        results.append((y, bottom[0].diff.copy()))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_relu_backward_uses_caffe_mask():
    # Caffe: x <= 0 takes the slope, so the gradient at exactly 0 is slope * dy.
    bottom, top = [Blob((3,), np.float64)], [Blob((), np.float64)]
    bottom[0].data[...] = [-1.0, 0.0, 2.0]
    layer = _build('type: "ReLU" relu_param { negative_slope: 0.25 }', bottom, top)
    layer.Forward(bottom, top)
    top[0].diff[...] = 1.0
    layer.Backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, [0.25, 0.25, 1.0])


def test_power_special_cases_have_constant_gradient():
    x = _input("power_const", (2, 3), np.float64)
    for text, want in [
        ('type: "Power" power_param { power: 3 scale: 0 shift: 2 }', 0.0),
        ('type: "Power" power_param { power: 1 scale: -1.5 shift: 0.2 }', -1.5),
    ]:
        bottom, top = [Blob(x.shape, np.float64)], [Blob((), np.float64)]
        bottom[0].data[...] = x
        layer = _build(text, bottom, top)
        layer.Forward(bottom, top)
        top[0].diff[...] = 2.0
        layer.Backward(top, [True], bottom)
        np.testing.assert_array_equal(bottom[0].diff, np.full(x.shape, 2 * want))


def test_power_gradient_finite_at_zero_base():
    # Caffe's diff_scale * y / base would give 0/0 here; the derivative is 0.
    bottom, top = [Blob((3,), np.float64)], [Blob((), np.float64)]
    bottom[0].data[...] = [0.0, 1.0, -2.0]
    layer = _build('type: "Power" power_param { power: 3 }', bottom, top)
    layer.Forward(bottom, top)
    top[0].diff[...] = 1.0
    layer.Backward(top, [True], bottom)
    np.testing.assert_allclose(bottom[0].diff, [0.0, 3.0, 12.0])


def test_threshold_forward_and_no_backward():
    x = np.array([[-1.0, 0.3, 0.30001, 2.0]])
    for dtype in DTYPES:
        bottom, top = [Blob(x.shape, dtype)], [Blob((), dtype)]
        bottom[0].data[...] = x
        layer = _build(
            'type: "Threshold" threshold_param { threshold: 0.3 }',
            bottom,
            top,
            dtype=dtype,
        )
        layer.Forward(bottom, top)
        want = (torch.from_numpy(x.astype(dtype)) > 0.3).numpy().astype(dtype)
        np.testing.assert_array_equal(top[0].data, want)
    layer.Backward(top, [False], bottom)  # nothing asked: fine
    with pytest.raises(UnsupportedError, match="Threshold layer"):
        layer.Backward(top, [True], bottom)
    # default threshold 0
    bottom[0].data[...] = [[-1.0, 0.0, 1e-9, 5.0]]
    layer = _build('type: "Threshold"', bottom, top, dtype=np.float64)
    layer.Forward(bottom, top)
    np.testing.assert_array_equal(top[0].data, [[0, 0, 1, 1]])


def test_bnll_is_stable_for_large_inputs():
    bottom, top = [Blob((4,), np.float64)], [Blob((), np.float64)]
    bottom[0].data[...] = [-800.0, -60.0, 60.0, 800.0]
    layer = _build('type: "BNLL"', bottom, top)
    layer.Forward(bottom, top)
    np.testing.assert_allclose(
        top[0].data, [0.0, np.exp(-60.0), 60.0, 800.0], rtol=1e-12, atol=1e-300
    )
    top[0].diff[...] = 1.0
    layer.Backward(top, [True], bottom)
    assert np.all(np.isfinite(bottom[0].diff))
    np.testing.assert_allclose(
        bottom[0].diff, [0.0, np.exp(-60.0), 1.0, 1.0], atol=1e-300, rtol=1e-12
    )


# -- PReLU -----------------------------------------------------------------------
PRELU = {
    "channel": (
        ('type: "PReLU" prelu_param { filler { type: "uniform" min: -0.3 max: 0.6 } }'),
        (3,),
    ),
    "shared": (
        (
            'type: "PReLU" prelu_param { channel_shared: true filler { type: '
            '"uniform" min: 0.1 max: 0.5 } }'
        ),
        (),
    ),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (2, 3, 4), (5, 3)])
@pytest.mark.parametrize("mode", sorted(PRELU))
def test_prelu_forward_matches_torch(mode, shape, dtype):
    text, slope_shape = PRELU[mode]
    bottom, top = make_blobs(shape, dtype=dtype), [Blob((), dtype)]
    layer = _build(text, bottom, top, dtype=dtype)
    assert layer.blobs[0].shape == slope_shape
    layer.Forward(bottom, top)
    x = torch.from_numpy(bottom[0].data.astype(np.float64))
    w = torch.from_numpy(layer.blobs[0].data.astype(np.float64)).reshape(-1)
    np.testing.assert_allclose(top[0].data, F.prelu(x, w).numpy(), **_tol(dtype))
    np.testing.assert_allclose(
        top[0].data,
        naive.prelu_layer(bottom[0].data, layer.blobs[0].data),
        **_tol(dtype),
    )


def test_prelu_default_filler_is_quarter():
    bottom, top = make_blobs((2, 4, 3)), [Blob((), np.float64)]
    layer = _build('type: "PReLU"', bottom, top)
    np.testing.assert_array_equal(layer.blobs[0].data, np.full(4, 0.25))


@pytest.mark.parametrize("mode", sorted(PRELU))
def test_prelu_gradient(mode):
    bottom, top = make_blobs((2, 3, 2, 3)), [Blob((), np.float64)]
    _away_from(bottom[0].data, [0.0])
    layer = layer_from_text(PRELU[mode][0], TEST, np.float64)
    GradientChecker(1e-4, 1e-5).check_gradient(layer, bottom, top)


@pytest.mark.parametrize("mode", sorted(PRELU))
def test_prelu_slope_gradient_accumulates_and_in_place(mode):
    shape = (2, 3, 4, 5)
    x = make_blobs(shape, seed=5)[0].data.copy()
    dy = np.random.default_rng(9).standard_normal(shape)
    out = []
    for in_place in (False, True):
        caffe_rng.set_random_seed(7)
        bottom = [Blob(shape, np.float64)]
        bottom[0].data[...] = x
        top = bottom if in_place else [Blob((), np.float64)]
        layer = _build(PRELU[mode][0], bottom, top)
        layer.Forward(bottom, top)
        y = top[0].data.copy()
        for _ in range(2):  # twice: the slope gradient must accumulate
            top[0].diff[...] = dy
            layer.Backward(top, [True], bottom)
        out.append(
            (
                y,
                bottom[0].diff.copy(),
                layer.blobs[0].diff.copy(),
                layer.blobs[0].data.copy(),
            )
        )
    (y0, dx0, ds0, a), (y1, dx1, ds1, _) = out
    np.testing.assert_array_equal(y0, y1)
    np.testing.assert_array_equal(dx0, dx1)
    np.testing.assert_allclose(ds0, ds1, rtol=1e-13)
    per_channel = (dy * x * (x <= 0)).sum(axis=(0, 2, 3))
    want = 2 * (per_channel.sum() if mode == "shared" else per_channel)
    np.testing.assert_allclose(ds0, want, rtol=1e-12)
    slope = a if mode == "shared" else a[None, :, None, None]
    np.testing.assert_allclose(dx0, np.where(x > 0, dy, slope * dy), rtol=1e-13)


def test_prelu_no_slope_gradient_when_frozen():
    bottom, top = make_blobs((2, 3, 4)), [Blob((), np.float64)]
    layer = _build('type: "PReLU"', bottom, top)
    layer.param_propagate_down = [False]
    layer.Forward(bottom, top)
    top[0].diff[...] = 1.0
    layer.Backward(top, [True], bottom)
    assert not layer.blobs[0].diff.any()


def test_prelu_errors():
    with pytest.raises(LayerError, match="at least 2 axes"):
        _build('type: "PReLU"', make_blobs((5,)), [Blob((), np.float64)])
    layer = _build('type: "PReLU"', make_blobs((2, 3, 4)), [Blob((), np.float64)])
    with pytest.raises(LayerError, match="3 channel"):
        layer.Forward(make_blobs((2, 4, 4)), [Blob((), np.float64)])


# -- Dropout ---------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_test_phase_is_identity(dtype):
    bottom, top = make_blobs((2, 3, 4, 5), dtype=dtype), [Blob((), dtype)]
    layer = _build(
        'type: "Dropout" dropout_param { dropout_ratio: 0.3 }',
        bottom,
        top,
        phase=TEST,
        dtype=dtype,
    )
    layer.Forward(bottom, top)
    np.testing.assert_array_equal(top[0].data, bottom[0].data)
    top[0].diff[...] = 3.0
    layer.Backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, 3.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ratio", [0.3, 0.5])
def test_dropout_train_statistics(ratio, dtype):
    n = 200000
    bottom, top = [Blob((n,), dtype)], [Blob((), dtype)]
    bottom[0].data[...] = 1.0
    text = f'type: "Dropout" dropout_param {{ dropout_ratio: {ratio} }}'
    layer = _build(text, bottom, top, phase=TRAIN, dtype=dtype)
    layer.Forward(bottom, top)
    y = top[0].data.copy()
    assert y.dtype == dtype
    zero = np.mean(y == 0)
    sigma = np.sqrt(ratio * (1 - ratio) / n)
    assert abs(zero - ratio) < 5 * sigma
    kept = y[y != 0]
    np.testing.assert_allclose(kept, 1 / (1 - f32(ratio)), **_tol(dtype))
    # backward: the same mask and scale
    dy = np.random.default_rng(2).standard_normal(n).astype(dtype)
    top[0].diff[...] = dy
    layer.Backward(top, [True], bottom)
    np.testing.assert_allclose(bottom[0].diff, dy * y, **_tol(dtype))
    # a new mask every forward
    layer.Forward(bottom, top)
    assert not np.array_equal(top[0].data, y)


def test_dropout_matches_caffe_train_phase_stats(golden):
    meta = json.loads((golden / "layers" / "dropout.json").read_text())
    stats = meta["train_phase_stats"]
    n, ratio = stats["n_elements"], stats["dropout_ratio"]
    bottom, top = [Blob((n,), np.float32)], [Blob((), np.float32)]
    bottom[0].data[...] = 1.0
    text = f'type: "Dropout" dropout_param {{ dropout_ratio: {ratio} }}'
    layer = _build(text, bottom, top, phase=TRAIN, dtype=np.float32)
    layer.Forward(bottom, top)
    y = top[0].data
    sigma = np.sqrt(ratio * (1 - ratio) / n)
    assert abs(np.mean(y == 0) - stats["zero_fraction"]) < 7 * sigma
    kept = y[y != 0]
    assert (
        stats["kept_scale_min"] <= kept.min() <= kept.max() <= stats["kept_scale_max"]
    )
    np.testing.assert_allclose(
        kept, stats["expected_scale_1_over_1_minus_ratio"], rtol=1e-7
    )
    assert stats["backward_equals_top_diff_times_mask_times_scale"]


def test_dropout_mask_comes_from_caffepy_rng_and_in_place():
    shape = (3, 4, 5)
    x = make_blobs(shape)[0].data.copy()
    dy = np.random.default_rng(4).standard_normal(shape)
    out = []
    for in_place in (False, True, False):
        caffe_rng.set_random_seed(42)
        bottom = [Blob(shape, np.float64)]
        bottom[0].data[...] = x
        top = bottom if in_place else [Blob((), np.float64)]
        layer = _build('type: "Dropout"', bottom, top, phase=TRAIN)
        layer.Forward(bottom, top)
        y = top[0].data.copy()
        top[0].diff[...] = dy
        layer.Backward(top, [True], bottom)
        out.append((y, bottom[0].diff.copy()))
    for y, dx in out[1:]:
        np.testing.assert_array_equal(y, out[0][0])
        np.testing.assert_array_equal(dx, out[0][1])
    y = out[0][0]
    assert set(np.unique(np.round(y[x != 0] / x[x != 0], 12))) <= {0.0, 2.0}


def test_dropout_gradient_train():
    bottom, top = make_blobs((2, 3, 2, 3)), [Blob((), np.float64)]
    layer = layer_from_text(
        'type: "Dropout" dropout_param { dropout_ratio: 0.4 }', TRAIN, np.float64
    )
    GradientChecker(1e-4, 1e-5).check_gradient(layer, bottom, top)


def test_dropout_scale_train_false():
    from caffepy.proto import caffe_pb2

    if "scale_train" not in caffe_pb2.DropoutParameter.DESCRIPTOR.fields_by_name:
        pytest.skip("this schema has no dropout_param.scale_train (BVLC's has none)")
    text = 'type: "Dropout" dropout_param { dropout_ratio: 0.25 scale_train: false }'
    bottom, top = [Blob((10000,), np.float64)], [Blob((), np.float64)]
    bottom[0].data[...] = 1.0
    layer = _build(text, bottom, top, phase=TRAIN)
    layer.Forward(bottom, top)
    assert set(np.unique(top[0].data)) == {0.0, 1.0}
    layer = _build(text, bottom, top, phase=TEST)
    layer.Forward(bottom, top)
    np.testing.assert_allclose(top[0].data, 0.75)


# -- parameter errors ------------------------------------------------------------
@pytest.mark.parametrize(
    "text, match",
    [
        (
            'type: "Dropout" dropout_param { dropout_ratio: 1.0 }',
            "dropout_ratio.*got 1",
        ),
        ('type: "Dropout" dropout_param { dropout_ratio: -0.1 }', "dropout_ratio"),
        ('type: "Exp" exp_param { base: -2 }', "base must be strictly positive.*-2"),
        ('type: "Exp" exp_param { base: 0 }', "base must be strictly positive"),
        ('type: "Log" log_param { base: 0 }', "base must be strictly positive"),
        ('type: "Log" log_param { base: 1 }', "base 1"),
        ('type: "Clip" clip_param { min: 1 max: 0 }', r"min \(1.0\) must be <= max"),
        ('type: "Clip" clip_param { min: 1 }', "missing max"),
    ],
)
def test_parameter_errors(text, match):
    with pytest.raises(LayerError, match=match):
        _build(text, make_blobs((2, 3)), [Blob((), np.float64)])


def test_error_names_layer():
    with pytest.raises(LayerError, match="Dropout layer 'drop'"):
        _build(
            'name: "drop" type: "Dropout" dropout_param { dropout_ratio: 2 }',
            make_blobs((2, 3)),
            [Blob((), np.float64)],
        )


# -- layer knowledge and the op boundary ------------------------------------------


@pytest.mark.parametrize(
    "type_name, count", [("PReLU", 1), ("ReLU", 0), ("Dropout", 0)]
)
def test_param_blob_count(type_name, count):
    from caffepy.proto import caffe_pb2
    from caffepy.registry import layer_class

    lp = caffe_pb2.LayerParameter(type=type_name)
    assert layer_class(type_name).param_blob_count(lp) == count


def test_cpu_neuron_ops_implement_the_interface():
    import inspect

    from caffepy.backend.base import Ops
    from caffepy.backend.cpu.neuron import NeuronOps

    for name, fn in vars(NeuronOps).items():
        if callable(fn) and not name.startswith("_"):
            want = inspect.signature(getattr(Ops, name))
            assert list(inspect.signature(fn).parameters) == list(want.parameters)
