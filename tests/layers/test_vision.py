"""Tests of the vision layers: Convolution, Deconvolution, Pooling, InnerProduct, Embed.

Forward results are checked against PyTorch CPU and the loop references in
tests/naive.py (Caffe's own pooling rules); backward with the GradientChecker.
"""

import numpy as np
import pytest

from caffepy.blob import Blob
from caffepy.errors import LayerError, ShapeError
from caffepy.layer import TEST, TRAIN
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


def _tol(dtype):
    return (
        {"rtol": 1e-5, "atol": 1e-5}
        if dtype == np.float32
        else {"rtol": 1e-10, "atol": 1e-12}
    )


def _build(text, shapes, dtype=np.float64, ntop=None, phase=TEST, randomize=True):
    """Set up a layer on random bottoms; give its parameters random values."""
    layer = layer_from_text(text, phase, dtype)
    bottom = make_blobs(*shapes, dtype=dtype)
    top = [Blob((), dtype) for _ in range(ntop or len(shapes))]
    layer.SetUp(bottom, top)
    if randomize:
        gen = np.random.default_rng(7)
        for b in layer.blobs:
            b.data[...] = gen.uniform(-1, 1, b.shape)
    return layer, bottom, top


def _t(a):
    return torch.from_numpy(np.array(a, np.float64))


def _grad_check(layer, bottom, top, **kw):
    checker = GradientChecker(stepsize=1e-3, threshold=1e-4)
    checker.check_gradient(layer, bottom, top, **kw)


# ---------------------------------------------------------------------------
# Convolution
# ---------------------------------------------------------------------------
# (convolution_param text, bottom shape, torch conv2d kwargs)
CONV_CASES = {
    "square_pad_stride": (
        "num_output: 4 kernel_size: 3 pad: 1 stride: 2",
        (2, 3, 7, 9),
        {"stride": 2, "padding": 1},
    ),
    "rect_hw_fields": (
        (
            "num_output: 3 kernel_h: 3 kernel_w: 2 pad_h: 1 pad_w: 0 stride_h: 2 "
            "stride_w: 1"
        ),
        (2, 2, 8, 7),
        {"stride": (2, 1), "padding": (1, 0)},
    ),
    "group_dilation": (
        "num_output: 6 kernel_size: 3 group: 2 dilation: 2 pad: 2",
        (2, 4, 8, 9),
        {"padding": 2, "dilation": 2, "groups": 2},
    ),
    "per_axis_repeated": (
        (
            "num_output: 4 kernel_size: 2 kernel_size: 3 pad: 0 pad: 1 stride: 1 "
            "stride: 2 dilation: 2 dilation: 1 group: 4"
        ),
        (2, 4, 6, 7),
        {"stride": (1, 2), "padding": (0, 1), "dilation": (2, 1), "groups": 4},
    ),
    "no_bias": ("num_output: 3 kernel_size: 2 bias_term: false", (2, 3, 5, 4), {}),
    "one_by_one_group": (
        "num_output: 6 kernel_size: 1 group: 3",
        (2, 3, 4, 5),
        {"groups": 3},
    ),
    "one_by_one_stride": (
        "num_output: 2 kernel_size: 1 stride: 2",
        (2, 3, 5, 5),
        {"stride": 2},
    ),
    "pad_stride_3": (
        "num_output: 2 kernel_size: 3 pad: 2 stride: 3",
        (1, 2, 7, 8),
        {"stride": 3, "padding": 2},
    ),
}


def _conv_text(params, kind="Convolution"):
    return f'name: "c" type: "{kind}" convolution_param {{ {params} }}'


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_convolution_forward_matches_torch(case, dtype):
    params, shape, kw = CONV_CASES[case]
    layer, bottom, top = _build(_conv_text(params), [shape], dtype)
    layer.Forward(bottom, top)
    bias = _t(layer.blobs[1].data) if len(layer.blobs) > 1 else None
    ref = F.conv2d(_t(bottom[0].data), _t(layer.blobs[0].data), bias, **kw).numpy()
    assert top[0].data.dtype == dtype
    assert top[0].shape == ref.shape
    np.testing.assert_allclose(top[0].data, ref, **_tol(dtype))


def test_convolution_forward_matches_naive():
    params, shape, _kw = CONV_CASES["group_dilation"]
    layer, bottom, top = _build(_conv_text(params), [shape])
    layer.Forward(bottom, top)
    ref = naive.convolution_layer(
        bottom[0].data,
        layer.blobs[0].data,
        layer.blobs[1].data,
        pad=(2, 2),
        dilation=(2, 2),
        group=2,
    )
    np.testing.assert_allclose(top[0].data, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_convolution_1d_matches_conv1d(dtype):
    layer, bottom, top = _build(
        _conv_text("num_output: 4 kernel_size: 3 pad: 1 stride: 2 group: 2"),
        [(2, 4, 11)],
        dtype,
    )
    layer.Forward(bottom, top)
    assert layer.blobs[0].shape == (4, 2, 3)
    ref = F.conv1d(
        _t(bottom[0].data),
        _t(layer.blobs[0].data),
        _t(layer.blobs[1].data),
        stride=2,
        padding=1,
        groups=2,
    ).numpy()
    np.testing.assert_allclose(top[0].data, ref, **_tol(dtype))


def test_convolution_axis_2_folds_leading_axes():
    layer, bottom, top = _build(
        _conv_text("num_output: 3 kernel_size: 2 axis: 2"), [(2, 3, 2, 5, 4)]
    )
    layer.Forward(bottom, top)
    assert top[0].shape == (2, 3, 3, 4, 3)
    x = bottom[0].data.reshape(6, 2, 5, 4)
    ref = F.conv2d(_t(x), _t(layer.blobs[0].data), _t(layer.blobs[1].data)).numpy()
    np.testing.assert_allclose(top[0].data, ref.reshape(2, 3, 3, 4, 3), rtol=1e-12)


def test_convolution_multiple_bottoms_share_weights():
    layer, bottom, top = _build(
        _conv_text("num_output: 2 kernel_size: 3 pad: 1"), [(2, 3, 5, 5), (2, 3, 5, 5)]
    )
    layer.Forward(bottom, top)
    for b, t in zip(bottom, top):
        ref = F.conv2d(
            _t(b.data), _t(layer.blobs[0].data), _t(layer.blobs[1].data), padding=1
        ).numpy()
        np.testing.assert_allclose(t.data, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_convolution_gradient(case):
    params, shape, _ = CONV_CASES[case]
    shape = (2, shape[1]) + tuple(min(d, 6) for d in shape[2:])
    layer, bottom, top = _build(_conv_text(params), [shape])
    _grad_check(layer, bottom, top)


@pytest.mark.parametrize(
    "params, shapes",
    [
        ("num_output: 2 kernel_size: 3 stride: 2 group: 2", [(2, 4, 7)]),
        ("num_output: 2 kernel_size: 2 pad: 1", [(1, 2, 3, 4), (1, 2, 3, 4)]),
    ],
)
def test_convolution_gradient_1d_and_two_bottoms(params, shapes):
    layer, bottom, top = _build(_conv_text(params), shapes)
    _grad_check(layer, bottom, top)


def test_convolution_backward_with_reused_columns_matches_torch():
    # Weight-only backward (bottom gradient not wanted) reuses forward's columns.
    layer, bottom, top = _build(
        _conv_text("num_output: 3 kernel_size: 3 stride: 2"), [(2, 2, 7, 6)]
    )
    layer.Forward(bottom, top)
    gen = np.random.default_rng(3)
    top[0].diff[...] = gen.standard_normal(top[0].shape)
    for b in layer.blobs:
        b.diff[...] = 0
    layer.Backward(top, [False], bottom)
    x = _t(bottom[0].data)
    w = _t(layer.blobs[0].data).requires_grad_()
    bias = _t(layer.blobs[1].data).requires_grad_()
    F.conv2d(x, w, bias, stride=2).backward(_t(top[0].diff))
    np.testing.assert_allclose(layer.blobs[0].diff, w.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(layer.blobs[1].diff, bias.grad.numpy(), rtol=1e-12)
    # A second backward (with the bottom gradient) accumulates the same again.
    layer.Backward(top, [True], bottom)
    np.testing.assert_allclose(layer.blobs[0].diff, 2 * w.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("kind", ["Convolution", "Deconvolution"])
def test_convolution_in_image_chunks(kind, monkeypatch):
    # A column buffer too small for the batch: the layer works a few images at a
    # time (here 2 of 3) with the same results and gradients.
    from caffepy.backend.cpu import conv as cpu_conv
    from caffepy.kernels import parallel

    params = "num_output: 4 kernel_size: 3 stride: 2 pad: 1 group: 2"
    # Columns per image: C_in*kh*kw rows by the conv-output positions (3x3 for the
    # convolution; for the deconvolution its 5x5 bottom).
    per_image = 4 * 9 * 9 if kind == "Convolution" else 4 * 9 * 25
    monkeypatch.setattr(cpu_conv, "COL_BUFFER_ELEMENTS", 2 * per_image)
    # (one thread: with more, the batch is also cut into chunks per thread)
    monkeypatch.setattr(parallel.POOL, "size", 1)
    layer, bottom, top = _build(_conv_text(params, kind), [(3, 4, 5, 5)])
    assert len(cpu_conv.image_chunks(layer.geom)) == 2
    layer.Forward(bottom, top)
    fn = F.conv2d if kind == "Convolution" else F.conv_transpose2d
    ref = fn(
        _t(bottom[0].data),
        _t(layer.blobs[0].data),
        _t(layer.blobs[1].data),
        stride=2,
        padding=1,
        groups=2,
    ).numpy()
    np.testing.assert_allclose(top[0].data, ref, rtol=1e-12, atol=1e-12)
    _grad_check(layer, bottom, top)


@pytest.mark.parametrize("pad", [0, 1, 2])
def test_convolution_gradient_on_winograd(pad, monkeypatch):
    # 3x3 convolutions of stride 1 run forward and the bottom gradient on
    # Winograd's F(2x2, 3x3) from 64 channels: forced here on a small layer.
    from caffepy.backend.cpu import conv as cpu_conv
    from caffepy.backend.cpu import conv_winograd
    from caffepy.kernels import blas

    if not blas.AVAILABLE:
        pytest.skip("numpy's BLAS is not callable from kernels")
    monkeypatch.setattr(conv_winograd, "ENABLED", True)
    monkeypatch.setattr(conv_winograd, "MIN_CHANNELS", 1)
    monkeypatch.setattr(conv_winograd, "MIN_POSITIONS", 1)
    params = f"num_output: 3 kernel_size: 3 pad: {pad}"
    layer, bottom, top = _build(_conv_text(params), [(2, 2, 5, 4)])
    assert cpu_conv.kernel_paths(layer.geom)[0] == "winograd"
    layer.Forward(bottom, top)
    ref = F.conv2d(
        _t(bottom[0].data), _t(layer.blobs[0].data), _t(layer.blobs[1].data),
        padding=pad,
    ).numpy()  # fmt: skip
    np.testing.assert_allclose(top[0].data, ref, rtol=1e-12, atol=1e-12)
    _grad_check(layer, bottom, top)


def test_convolution_respects_param_propagate_down():
    layer, bottom, top = _build(
        _conv_text("num_output: 2 kernel_size: 2"), [(1, 2, 4, 4)]
    )
    layer.param_propagate_down = [False, True]
    layer.Forward(bottom, top)
    top[0].diff[...] = 1.0
    layer.blobs[0].diff[...] = 5.0
    layer.blobs[1].diff[...] = 0.0
    layer.Backward(top, [False], bottom)
    assert np.all(layer.blobs[0].diff == 5.0)
    np.testing.assert_allclose(layer.blobs[1].diff, [9.0, 9.0])


def test_convolution_fillers_and_shapes():
    layer = layer_from_text(
        _conv_text(
            "num_output: 4 kernel_size: 3 group: 2 weight_filler { type: 'constant' "
            "value: 0.5 } bias_filler { type: 'constant' value: 2 }"
        )
    )
    bottom, top = make_blobs((1, 6, 5, 5)), [Blob()]
    layer.SetUp(bottom, top)
    assert layer.blobs[0].shape == (4, 3, 3, 3)
    assert np.all(layer.blobs[0].data == 0.5)
    assert layer.blobs[1].shape == (4,) and np.all(layer.blobs[1].data == 2)
    assert top[0].shape == (1, 4, 3, 3)


@pytest.mark.parametrize(
    "params, shape, error, match",
    [
        ("kernel_size: 3", (1, 2, 5, 5), LayerError, "num_output must be > 0"),
        (
            "num_output: 2 kernel_size: 3 group: 2",
            (1, 3, 5, 5),
            LayerError,
            r"input channels \(3\) must be a multiple of group \(2\)",
        ),
        (
            "num_output: 3 kernel_size: 3 group: 2",
            (1, 2, 5, 5),
            LayerError,
            r"num_output \(3\) must be a multiple of group",
        ),
        ("num_output: 2", (1, 2, 5, 5), LayerError, "kernel_size is required"),
        (
            "num_output: 2 kernel_size: 3 kernel_h: 3 kernel_w: 3",
            (1, 2, 5, 5),
            LayerError,
            "not both",
        ),
        (
            "num_output: 2 kernel_size: 1 kernel_size: 2 kernel_size: 3",
            (1, 2, 5, 5),
            LayerError,
            r"once per spatial axis \(2\), got 3",
        ),
        (
            "num_output: 2 kernel_size: 3 stride: 0",
            (1, 2, 5, 5),
            LayerError,
            r"stride must be >= 1, got \[0, 0\]",
        ),
        (
            "num_output: 2 kernel_h: 3 kernel_w: 0",
            (1, 2, 5, 5),
            LayerError,
            r"kernel size must be >= 1",
        ),
        (
            "num_output: 2 kernel_h: 3 kernel_w: 3",
            (1, 2, 5),
            LayerError,
            "only be used for 2-D",
        ),
        (
            "num_output: 2 kernel_size: 3 kernel_size: 3",
            (1, 2, 5, 5, 5),
            LayerError,
            r"once per spatial axis \(3\), got 2",
        ),
        (
            "num_output: 2 kernel_size: 3 axis: 4",
            (1, 2, 5, 5),
            LayerError,
            "axis 4 is out of range",
        ),
        ("num_output: 2 kernel_size: 7", (1, 2, 5, 5), ShapeError, "too small"),
    ],
)
def test_convolution_parameter_errors(params, shape, error, match):
    layer = layer_from_text(_conv_text(params))
    with pytest.raises(error, match=match):
        layer.SetUp(make_blobs(shape), [Blob()])


def test_convolution_reshape_errors():
    layer, _bottom, top = _build(
        _conv_text("num_output: 2 kernel_size: 3"), [(1, 2, 5, 5)]
    )
    with pytest.raises(ShapeError, match="3 channels"):
        layer.Forward(make_blobs((1, 3, 5, 5)), top)
    with pytest.raises(ShapeError, match="one shape"):
        layer.Forward(make_blobs((1, 2, 5, 5), (1, 2, 6, 5)), [Blob(), Blob()])


def test_convolution_rejects_wrong_given_weights():
    layer = layer_from_text(_conv_text("num_output: 2 kernel_size: 3"))
    layer.blobs.add_blob(2, 2, 2, 2)
    layer.blobs.add_blob(2)
    with pytest.raises(
        LayerError, match=r"shape \(2, 2, 2, 2\), expected \(2, 2, 3, 3\)"
    ):
        layer.SetUp(make_blobs((1, 2, 5, 5)), [Blob()])


# ---------------------------------------------------------------------------
# Deconvolution
# ---------------------------------------------------------------------------
DECONV_CASES = {
    "stride_pad_group": (
        "num_output: 6 kernel_size: 4 stride: 2 pad: 1 group: 2",
        (2, 4, 3, 4),
        {"stride": 2, "padding": 1, "groups": 2},
    ),
    "rect_dilation_no_bias": (
        (
            "num_output: 2 bias_term: false kernel_h: 3 kernel_w: 2 stride_h: 2 "
            "stride_w: 3 pad_h: 0 pad_w: 1 dilation: 2"
        ),
        (2, 3, 4, 3),
        {"stride": (2, 3), "padding": (0, 1), "dilation": 2},
    ),
    "one_by_one": ("num_output: 3 kernel_size: 1", (2, 2, 3, 4), {}),
    "stride_1": ("num_output: 2 kernel_size: 3 pad: 1", (1, 3, 4, 4), {"padding": 1}),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", sorted(DECONV_CASES))
def test_deconvolution_forward_matches_torch(case, dtype):
    params, shape, kw = DECONV_CASES[case]
    layer, bottom, top = _build(_conv_text(params, "Deconvolution"), [shape], dtype)
    layer.Forward(bottom, top)
    bias = _t(layer.blobs[1].data) if len(layer.blobs) > 1 else None
    ref = F.conv_transpose2d(
        _t(bottom[0].data), _t(layer.blobs[0].data), bias, **kw
    ).numpy()
    assert top[0].data.dtype == dtype
    assert top[0].shape == ref.shape
    np.testing.assert_allclose(top[0].data, ref, **_tol(dtype))


def test_deconvolution_forward_matches_naive():
    layer, bottom, top = _build(
        _conv_text(
            "num_output: 4 kernel_size: 3 stride: 2 pad: 1 group: 2 dilation: 2",
            "Deconvolution",
        ),
        [(2, 2, 3, 4)],
    )
    layer.Forward(bottom, top)
    assert layer.blobs[0].shape == (2, 2, 3, 3)
    ref = naive.deconvolution_layer(
        bottom[0].data,
        layer.blobs[0].data,
        layer.blobs[1].data,
        pad=(1, 1),
        stride=(2, 2),
        dilation=(2, 2),
        group=2,
    )
    np.testing.assert_allclose(top[0].data, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", sorted(DECONV_CASES))
def test_deconvolution_gradient(case):
    params, shape, _ = DECONV_CASES[case]
    layer, bottom, top = _build(_conv_text(params, "Deconvolution"), [shape])
    _grad_check(layer, bottom, top)


def test_deconvolution_too_small_output():
    layer = layer_from_text(
        _conv_text("num_output: 2 kernel_size: 2 pad: 1", "Deconvolution")
    )
    with pytest.raises(ShapeError, match="too small"):
        layer.SetUp(make_blobs((1, 2, 1, 1)), [Blob()])


# ---------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------
# (pooling_param text, bottom shape, naive kwargs, torch kwargs or None where
# PyTorch's rules differ from Caffe's)
POOL_CASES = {
    "max_pad_ceil": (
        "pool: MAX kernel_size: 3 stride: 2 pad: 1",
        (2, 3, 8, 10),
        {"method": "MAX", "kernel": (3, 3), "pad": (1, 1), "stride": (2, 2)},
        {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
    ),
    "ave_pad_ceil": (
        "pool: AVE kernel_size: 3 stride: 2 pad: 1",
        (2, 3, 8, 10),
        {"method": "AVE", "kernel": (3, 3), "pad": (1, 1), "stride": (2, 2)},
        {
            "kernel_size": 3,
            "stride": 2,
            "padding": 1,
            "ceil_mode": True,
            "count_include_pad": True,
        },
    ),
    "max_nopad_partial": (
        "pool: MAX kernel_size: 3 stride: 2",
        (2, 2, 8, 10),
        {"method": "MAX", "kernel": (3, 3), "stride": (2, 2)},
        {"kernel_size": 3, "stride": 2, "ceil_mode": True},
    ),
    "ave_nopad_partial": (
        "pool: AVE kernel_size: 3 stride: 2",
        (2, 2, 8, 10),
        {"method": "AVE", "kernel": (3, 3), "stride": (2, 2)},
        None,
    ),
    "max_clip_rule": (
        "pool: MAX kernel_size: 2 stride: 2 pad: 1",
        (2, 3, 5, 7),
        {"method": "MAX", "kernel": (2, 2), "pad": (1, 1), "stride": (2, 2)},
        {"kernel_size": 2, "stride": 2, "padding": 1, "ceil_mode": True},
    ),
    "ave_clip_rule": (
        "pool: AVE kernel_size: 2 stride: 2 pad: 1",
        (2, 3, 5, 7),
        {"method": "AVE", "kernel": (2, 2), "pad": (1, 1), "stride": (2, 2)},
        {
            "kernel_size": 2,
            "stride": 2,
            "padding": 1,
            "ceil_mode": True,
            "count_include_pad": True,
        },
    ),
    "max_global": (
        "pool: MAX global_pooling: true",
        (2, 4, 6, 5),
        {"method": "MAX", "global_pooling": True},
        {"kernel_size": (6, 5)},
    ),
    "ave_global": (
        "pool: AVE global_pooling: true",
        (2, 4, 6, 5),
        {"method": "AVE", "global_pooling": True},
        {"kernel_size": (6, 5)},
    ),
    "max_floor_rect": (
        (
            "pool: MAX kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 3 "
            "pad_h: 1 pad_w: 0 round_mode: FLOOR"
        ),
        (2, 3, 7, 9),
        {
            "method": "MAX",
            "kernel": (3, 2),
            "pad": (1, 0),
            "stride": (2, 3),
            "ceil_mode": False,
        },
        {"kernel_size": (3, 2), "stride": (2, 3), "padding": (1, 0)},
    ),
    "ave_floor_rect": (
        (
            "pool: AVE kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 3 "
            "pad_h: 1 pad_w: 0 round_mode: FLOOR"
        ),
        (2, 3, 7, 9),
        {
            "method": "AVE",
            "kernel": (3, 2),
            "pad": (1, 0),
            "stride": (2, 3),
            "ceil_mode": False,
        },
        {
            "kernel_size": (3, 2),
            "stride": (2, 3),
            "padding": (1, 0),
            "count_include_pad": True,
        },
    ),
    "ave_ceil_pad_past_edge": (
        "pool: AVE kernel_size: 3 stride: 2 pad: 1",
        (1, 2, 6, 6),
        {"method": "AVE", "kernel": (3, 3), "pad": (1, 1), "stride": (2, 2)},
        None,
    ),
    "max_default_stride": (
        "kernel_size: 2",
        (1, 2, 4, 5),
        {"method": "MAX", "kernel": (2, 2)},
        {"kernel_size": 2, "stride": 1, "ceil_mode": True},
    ),
}


def _pool_text(params):
    return f'name: "p" type: "Pooling" pooling_param {{ {params} }}'


def _torch_pool(x, method, kw):
    if method == "MAX":
        y, idx = F.max_pool2d(_t(x), return_indices=True, **kw)
        return y.numpy(), idx.numpy().astype(np.float64)
    return F.avg_pool2d(_t(x), **kw).numpy(), None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", sorted(POOL_CASES))
def test_pooling_forward_matches_naive_and_torch(case, dtype):
    params, shape, naive_kw, torch_kw = POOL_CASES[case]
    method = naive_kw["method"]
    ntop = 2 if method == "MAX" else 1
    layer, bottom, top = _build(_pool_text(params), [shape], dtype, ntop=ntop)
    layer.Forward(bottom, top)
    ref, mask = naive.pooling_layer(bottom[0].data, **naive_kw)
    assert top[0].data.dtype == dtype
    assert top[0].shape == ref.shape
    np.testing.assert_allclose(top[0].data, ref, **_tol(dtype))
    if mask is not None:
        np.testing.assert_array_equal(top[1].data, mask)
    if torch_kw is not None:
        tref, tmask = _torch_pool(bottom[0].data, method, torch_kw)
        np.testing.assert_allclose(top[0].data, tref, **_tol(dtype))
        if tmask is not None:
            np.testing.assert_array_equal(top[1].data, tmask)


def test_pooling_ave_divisor_counts_padding_but_not_overhang():
    # H = 6, k 3, s 2, pad 1, CEIL: windows start at -1, 1, 3, 5; the last one
    # covers rows 5..7 of which row 7 lies beyond H + pad = 7 (rows -1..6), so its
    # divisor is 2 rows (5, 6), and only row 5 holds data.
    layer, bottom, top = _build(
        _pool_text("pool: AVE kernel_size: 3 stride: 2 pad: 1"), [(1, 1, 6, 6)]
    )
    bottom[0].data[...] = 1.0
    layer.Forward(bottom, top)
    assert top[0].shape == (1, 1, 4, 4)
    y = top[0].data[0, 0]
    assert y[0, 0] == pytest.approx(4 / 9)  # 2x2 data in a padded 3x3 window
    assert y[1, 1] == pytest.approx(1.0)  # fully inside
    assert y[3, 3] == pytest.approx(1 / 4)  # 1x1 data, divisor 2x2
    assert y[1, 3] == pytest.approx(3 / 6)  # 3x1 data, divisor 3x2


def test_pooling_clip_rule_shape():
    # H = 5, k 2, s 2, pad 1: ceil((5 + 2 - 2) / 2) + 1 = 4, but a 4th window would
    # start at 5 = H + pad, outside the padded input, so Caffe keeps 3.
    _layer, _bottom, top = _build(
        _pool_text("kernel_size: 2 stride: 2 pad: 1"), [(1, 1, 5, 7)]
    )
    assert top[0].shape == (1, 1, 3, 4)


def _distinct_values(blob, gen=None):
    """Well separated values, so a max never flips under the numeric step."""
    gen = gen or np.random.default_rng(11)
    vals = gen.permutation(blob.count) * 0.05 - blob.count * 0.025
    blob.data[...] = vals.reshape(blob.shape)


@pytest.mark.parametrize("case", sorted(POOL_CASES))
def test_pooling_gradient(case):
    params, shape, _naive_kw, _ = POOL_CASES[case]
    shape = (1, 2) + tuple(min(d, 7) for d in shape[2:])
    layer, bottom, top = _build(_pool_text(params), [shape])
    _distinct_values(bottom[0])
    _grad_check(layer, bottom, top)


def test_pooling_max_gradient_with_mask_top_and_backward_values():
    layer, bottom, top = _build(
        _pool_text("pool: MAX kernel_size: 3 stride: 2 pad: 1"), [(2, 2, 6, 7)], ntop=2
    )
    _distinct_values(bottom[0])
    _grad_check(layer, bottom, top)
    # Against torch's backward (windows overlap, so gradients add up).
    layer.Forward(bottom, top)
    gen = np.random.default_rng(5)
    top[0].diff[...] = gen.standard_normal(top[0].shape)
    layer.Backward(top, [True], bottom)
    x = _t(bottom[0].data).requires_grad_()
    F.max_pool2d(x, 3, 2, 1, ceil_mode=True).backward(_t(top[0].diff))
    np.testing.assert_allclose(bottom[0].diff, x.grad.numpy(), rtol=1e-12)


def test_pooling_ave_backward_matches_torch():
    params = "pool: AVE kernel_size: 3 stride: 2 pad: 1"
    layer, bottom, top = _build(_pool_text(params), [(2, 2, 8, 10)])
    layer.Forward(bottom, top)
    gen = np.random.default_rng(5)
    top[0].diff[...] = gen.standard_normal(top[0].shape)
    layer.Backward(top, [True], bottom)
    x = _t(bottom[0].data).requires_grad_()
    F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=True).backward(
        _t(top[0].diff)
    )
    np.testing.assert_allclose(bottom[0].diff, x.grad.numpy(), rtol=1e-12)


def test_pooling_max_float32_keeps_dtype_and_first_max_wins():
    layer, bottom, top = _build(
        _pool_text("kernel_size: 2 stride: 2"), [(1, 1, 2, 4)], np.float32, ntop=2
    )
    bottom[0].data[...] = [[1, 1, 0, 2], [1, 0, 2, 2]]
    layer.Forward(bottom, top)
    assert top[0].data.dtype == np.float32
    np.testing.assert_array_equal(top[0].data.ravel(), [1, 2])
    np.testing.assert_array_equal(top[1].data.ravel(), [0, 3])


@pytest.mark.parametrize(
    "params, ntop, shape, error, match",
    [
        (
            "pool: STOCHASTIC kernel_size: 2 pad: 1",
            1,
            (1, 1, 4, 4),
            LayerError,
            "padding is implemented only for MAX and AVE",
        ),
        (
            "kernel_size: 2 pad: 2",
            1,
            (1, 1, 4, 4),
            LayerError,
            r"pad \[2, 2\] must be smaller than the kernel",
        ),
        (
            "global_pooling: true kernel_size: 2",
            1,
            (1, 1, 4, 4),
            LayerError,
            "global_pooling takes the kernel",
        ),
        (
            "global_pooling: true stride: 2",
            1,
            (1, 1, 4, 4),
            LayerError,
            "pad 0 and stride 1",
        ),
        (
            "kernel_size: 2 kernel_h: 2 kernel_w: 2",
            1,
            (1, 1, 4, 4),
            LayerError,
            "kernel_size OR kernel_h and kernel_w, not both",
        ),
        ("kernel_h: 2", 1, (1, 1, 4, 4), LayerError, "both kernel_h and kernel_w"),
        ("stride: 1", 1, (1, 1, 4, 4), LayerError, "needs kernel_size"),
        (
            "kernel_size: 2 pad: 1 pad_h: 1 pad_w: 1",
            1,
            (1, 1, 4, 4),
            LayerError,
            "not both",
        ),
        ("kernel_size: 2 stride_h: 2", 1, (1, 1, 4, 4), LayerError, "together"),
        ("kernel_size: 2 stride: 0", 1, (1, 1, 4, 4), LayerError, "stride must be > 0"),
        ("pool: AVE kernel_size: 2", 2, (1, 1, 4, 4), LayerError, "only MAX pooling"),
        ("kernel_size: 2", 1, (1, 4, 4), ShapeError, "4 axes"),
        ("kernel_size: 5", 1, (1, 1, 3, 3), ShapeError, "smaller than the kernel"),
    ],
)
def test_pooling_parameter_errors(params, ntop, shape, error, match):
    layer = layer_from_text(_pool_text(params))
    with pytest.raises(error, match=match):
        layer.SetUp(make_blobs(shape), [Blob() for _ in range(ntop)])


# ---------------------------------------------------------------------------
# InnerProduct
# ---------------------------------------------------------------------------
IP_CASES = {
    "axis1": ("num_output: 7", (2, 3, 4, 5), 1),
    "axis2": ("num_output: 6 axis: 2", (3, 4, 5), 2),
    "transpose": ("num_output: 5 transpose: true", (4, 3, 2, 2), 1),
    "axis2_no_bias": ("num_output: 3 axis: 2 bias_term: false", (2, 3, 4, 5), 2),
    "negative_axis": (
        "num_output: 4 axis: -1 transpose: true bias_term: false",
        (2, 3, 5),
        2,
    ),
}


def _ip_text(params):
    return f'name: "ip" type: "InnerProduct" inner_product_param {{ {params} }}'


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", sorted(IP_CASES))
def test_inner_product_forward_matches_torch(case, dtype):
    params, shape, axis = IP_CASES[case]
    layer, bottom, top = _build(_ip_text(params), [shape], dtype)
    layer.Forward(bottom, top)
    w = layer.blobs[0].data
    if "transpose: true" in params:
        w = w.T
    bias = _t(layer.blobs[1].data) if len(layer.blobs) > 1 else None
    x = bottom[0].data.reshape(int(np.prod(shape[:axis])), -1)
    ref = F.linear(_t(x), _t(w), bias).numpy().reshape(shape[:axis] + (-1,))
    assert top[0].data.dtype == dtype
    assert top[0].shape == ref.shape
    np.testing.assert_allclose(top[0].data, ref, **_tol(dtype))


@pytest.mark.parametrize("case", sorted(IP_CASES))
def test_inner_product_gradient(case):
    params, shape, _ = IP_CASES[case]
    layer, bottom, top = _build(_ip_text(params), [shape])
    _grad_check(layer, bottom, top)


def test_inner_product_weight_shapes_and_errors():
    layer, _, top = _build(_ip_text("num_output: 5 transpose: true"), [(2, 3, 4)])
    assert layer.blobs[0].shape == (12, 5) and layer.blobs[1].shape == (5,)
    with pytest.raises(
        ShapeError, match="K=15 from axis 1, but the weights expect K=12"
    ):
        layer.Forward(make_blobs((2, 3, 5)), top)
    with pytest.raises(LayerError, match="num_output must be > 0"):
        layer_from_text(_ip_text("axis: 1")).SetUp(make_blobs((2, 3)), [Blob()])
    with pytest.raises(LayerError, match="axis 3 is out of range"):
        layer_from_text(_ip_text("num_output: 2 axis: 3")).SetUp(
            make_blobs((2, 3)), [Blob()]
        )


# ---------------------------------------------------------------------------
# Embed
# ---------------------------------------------------------------------------
def _embed_text(params):
    return f'name: "e" type: "Embed" embed_param {{ {params} }}'


def _indices(shape, high, seed=3):
    idx = np.random.default_rng(seed).integers(0, high, shape)
    return idx


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_embed_forward_matches_torch(dtype, bias):
    params = f"num_output: 4 input_dim: 5 bias_term: {str(bias).lower()}"
    layer, bottom, top = _build(_embed_text(params), [(3, 4)], dtype)
    idx = _indices((3, 4), 5)
    bottom[0].data[...] = idx
    layer.Forward(bottom, top)
    ref = F.embedding(torch.from_numpy(idx), _t(layer.blobs[0].data)).numpy()
    if bias:
        ref = ref + layer.blobs[1].data
    assert top[0].shape == (3, 4, 4)
    assert top[0].data.dtype == dtype
    np.testing.assert_allclose(top[0].data, ref, **_tol(dtype))


@pytest.mark.parametrize("bias", [True, False])
def test_embed_gradient_accumulates_repeated_indices(bias):
    params = f"num_output: 3 input_dim: 4 bias_term: {str(bias).lower()}"
    layer, bottom, top = _build(_embed_text(params), [(2, 5)])
    bottom[0].data[...] = [[0, 1, 1, 3, 1], [3, 0, 2, 1, 1]]
    _grad_check(layer, bottom, top, check_bottom=[])
    # The same against torch's embedding backward.
    layer.Forward(bottom, top)
    gen = np.random.default_rng(9)
    top[0].diff[...] = gen.standard_normal(top[0].shape)
    for b in layer.blobs:
        b.diff[...] = 0
    layer.Backward(top, [False], bottom)
    w = _t(layer.blobs[0].data).requires_grad_()
    F.embedding(torch.from_numpy(bottom[0].data.astype(np.int64)), w).backward(
        _t(top[0].diff)
    )
    np.testing.assert_allclose(layer.blobs[0].diff, w.grad.numpy(), rtol=1e-12)


def test_embed_refuses_input_gradient():
    layer, bottom, top = _build(
        _embed_text("num_output: 2 input_dim: 3"), [(4,)], phase=TRAIN
    )
    assert layer.allow_force_backward(0) is False
    bottom[0].data[...] = [0, 1, 2, 1]
    layer.Forward(bottom, top)
    with pytest.raises(LayerError, match="cannot back-propagate to its index input"):
        layer.Backward(top, [True], bottom)


@pytest.mark.parametrize(
    "value, shown",
    [
        (1.5, "1.5"),
        (-1.0, "-1.0"),
        (3.0, "3.0"),
        (np.nan, "nan"),
    ],
)
def test_embed_rejects_bad_indices(value, shown):
    layer, bottom, top = _build(_embed_text("num_output: 2 input_dim: 3"), [(4,)])
    bottom[0].data[...] = [0, 1, value, 2]
    with pytest.raises(
        LayerError,
        match=rf"holds {shown} at flat position 2; "
        r"indices must be integers in \[0, "
        r"input_dim=3\)",
    ):
        layer.Forward(bottom, top)


@pytest.mark.parametrize(
    "params, match",
    [
        ("input_dim: 3", "num_output must be > 0"),
        ("num_output: 2", "input_dim must be > 0"),
    ],
)
def test_embed_parameter_errors(params, match):
    with pytest.raises(LayerError, match=match):
        layer_from_text(_embed_text(params)).SetUp(make_blobs((3,)), [Blob()])
