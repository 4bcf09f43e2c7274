"""BatchReindex, Filter, Parameter (caffepy/layers/common/) and SPP, Im2col
(caffepy/layers/vision/).

Forward against NumPy indexing and explicit loops (tests/naive.py for pooling);
backward with the GradientChecker; the Caffe golden cases are in
tests/test_golden_layers_2.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import caffepy
from caffepy import TEST
from caffepy.blob import Blob
from caffepy.errors import LayerError, ShapeError
from caffepy.layers.common.parameter import ParameterLayer
from caffepy.proto import caffe_pb2
from caffepy.testing import GradientChecker, layer_from_text, make_blobs
from tests import naive

DTYPES = [np.float32, np.float64]


def B(dtype=np.float64):
    return Blob((), dtype)


def _run(text, bottoms, ntop=1, dtype=np.float64):
    layer = layer_from_text(text, TEST, dtype)
    tops = [B(dtype) for _ in range(ntop)]
    layer.SetUp(bottoms, tops)
    layer.Forward(bottoms, tops)
    return layer, tops


def checker():
    return GradientChecker(stepsize=1e-3, threshold=1e-4)


# -- BatchReindex ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_reindex_forward(dtype):
    x, idx = make_blobs((5, 3, 2), (6,), dtype=dtype)
    idx.data[...] = [2, 0, 2, 4, 1, 2]
    _, (y,) = _run('type: "BatchReindex"', [x, idx], dtype=dtype)
    np.testing.assert_array_equal(y.data, x.data[[2, 0, 2, 4, 1, 2]])


def test_batch_reindex_gradient_sums_repeated_rows():
    x, idx = make_blobs((4, 2, 3), (5,))
    idx.data[...] = [3, 3, 0, 1, 3]  # row 2 is never selected
    layer = layer_from_text('type: "BatchReindex"')
    checker().check_gradient(layer, [x, idx], [B()], check_bottom=0)
    assert np.all(x.diff[2] == 0)


def test_batch_reindex_refuses_an_index_out_of_range():
    x, idx = make_blobs((3, 2), (2,))
    idx.data[...] = [1, 3]
    with pytest.raises(LayerError, match=r"index 3 at position 1 .* batch of 3"):
        _run('type: "BatchReindex"', [x, idx])


def test_batch_reindex_refuses_the_index_gradient():
    x, idx = make_blobs((3, 2), (2,))
    idx.data[...] = [0, 1]
    layer, (y,) = _run('type: "BatchReindex"', [x, idx])
    with pytest.raises(LayerError, match="index bottom"):
        layer.Backward([y], [True, True], [x, idx])


# -- Filter --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_filter_forward(dtype):
    a, b, sel = make_blobs((6, 3, 2), (6, 4), (6, 1, 1), dtype=dtype)
    sel.data[...] = np.array([1, 0, 0, 2, 0, -1]).reshape(6, 1, 1)
    layer = layer_from_text('type: "Filter"', TEST, dtype)
    tops = [B(dtype), B(dtype)]
    layer.SetUp([a, b, sel], tops)
    assert tops[0].shape == (6, 3, 2)  # Caffe: all N items until the first forward
    layer.Forward([a, b, sel], tops)
    keep = [0, 3, 5]
    np.testing.assert_array_equal(tops[0].data, a.data[keep])
    np.testing.assert_array_equal(tops[1].data, b.data[keep])


def test_filter_gradient():
    a, b, sel = make_blobs((5, 2, 2), (5, 3), (5,))
    sel.data[...] = [0, 1, 1, 0, 1]
    layer = layer_from_text('type: "Filter"')
    checker().check_gradient(layer, [a, b, sel], [B(), B()], check_bottom=[0, 1])
    assert np.all(a.diff[[0, 3]] == 0) and np.any(a.diff[[1, 2, 4]] != 0)


def test_filter_needs_one_top_per_filtered_bottom():
    with pytest.raises(LayerError, match="2 bottom.* got 1 top"):
        _run('type: "Filter"', make_blobs((3, 2), (3, 2), (3,)))


def test_filter_selector_must_be_a_column():
    with pytest.raises(ShapeError, match=r"\(N,\) or \(N, 1, ...\), got \(3, 2\)"):
        _run('type: "Filter"', make_blobs((3, 2), (3, 2)))


# -- Parameter -----------------------------------------------------------------------------
def test_parameter_top_is_the_blob():
    layer, (top,) = _run(
        'type: "Parameter" parameter_param { shape { dim: 2 dim: 3 } }', []
    )
    assert layer.blobs[0].shape == (2, 3)
    assert np.all(top.data == 0)  # Caffe: no filler, zeros
    layer.blobs[0].data[...] = 7
    top.diff[...] = 2
    np.testing.assert_array_equal(top.data, 7)
    np.testing.assert_array_equal(layer.blobs[0].diff, 2)


def test_parameter_gradient():
    layer = layer_from_text('type: "Parameter" parameter_param { shape { dim: 4 } }')
    layer.SetUp([], [B()])
    layer.blobs[0].data[...] = [0.5, -1.0, 2.0, 0.25]
    checker().check_gradient(layer, [], [B()], setup=False)


def test_parameter_blob_count():
    assert ParameterLayer.param_blob_count(caffe_pb2.LayerParameter()) == 1


def test_parameter_learns_in_a_net(tmp_path):
    net_file = tmp_path / "p.prototxt"
    net_file.write_text(
        'layer { name: "p" type: "Parameter" top: "p" '
        "parameter_param { shape { dim: 3 } } }\n"
        'layer { name: "t" type: "DummyData" top: "t" dummy_data_param { '
        'shape { dim: 3 } data_filler { type: "constant" value: 2 } } }\n'
        'layer { name: "loss" type: "EuclideanLoss" bottom: "p" bottom: "t" '
        'top: "loss" }\n'
    )
    net = caffepy.Net(str(net_file), caffepy.TRAIN)
    net.forward()
    net.clear_param_diffs()
    net.forward_backward()
    # EuclideanLoss: d/dp of ||p - t||^2 / (2 * 3) with p = 0, t = 2.
    np.testing.assert_allclose(net.params["p"][0].diff, [-2 / 3] * 3, rtol=1e-6)


# -- SPP -------------------------------------------------------------------------------------
def naive_spp(x, height, method):
    """Pool each level into 2^l x 2^l bins (Caffe's window: kernel = ceil(H /
    bins), pad = (kernel * bins - H + 1) // 2, stride = kernel), flatten, concat."""
    n, _, h, w = x.shape
    levels = []
    for level in range(height):
        bins = 2**level
        kh, kw = math.ceil(h / bins), math.ceil(w / bins)
        pad = ((kh * bins - h + 1) // 2, (kw * bins - w + 1) // 2)
        y, _ = naive.pooling_layer(x, method, (kh, kw), pad, (kh, kw))
        levels.append(y if height == 1 else y.reshape(n, -1))
    return levels[0] if height == 1 else np.concatenate(levels, axis=1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape, height, method",
    [((2, 3, 7, 9), 2, "MAX"), ((1, 2, 8, 10), 3, "AVE"), ((2, 2, 5, 6), 1, "MAX")],
)
def test_spp_forward(dtype, shape, height, method):
    (x,) = make_blobs(shape, dtype=dtype)
    text = f'type: "SPP" spp_param {{ pyramid_height: {height} pool: {method} }}'
    _, (y,) = _run(text, [x], dtype=dtype)
    want = naive_spp(x.data, height, method)
    assert y.shape == want.shape
    np.testing.assert_allclose(y.data, want, rtol=1e-6, atol=1e-7)


def test_spp_output_length_does_not_depend_on_the_input_size():
    (x,) = make_blobs((1, 2, 9, 11))
    layer, (y,) = _run('type: "SPP" spp_param { pyramid_height: 3 }', [x])
    assert y.shape == (1, 2 * (1 + 4 + 16))
    x.reshape((1, 2, 13, 8))
    x.data[...] = np.random.default_rng(1).uniform(size=x.shape)
    layer.Forward([x], [y])
    assert y.shape == (1, 2 * 21)
    np.testing.assert_allclose(y.data, naive_spp(x.data, 3, "MAX"), rtol=1e-12)


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("height", [1, 2])
def test_spp_gradient(method, height):
    (x,) = make_blobs((2, 2, 5, 6))
    text = f'type: "SPP" spp_param {{ pyramid_height: {height} pool: {method} }}'
    GradientChecker(1e-4, 1e-3).check_gradient(layer_from_text(text), [x], [B()])


def test_spp_needs_a_pyramid_height():
    with pytest.raises(LayerError, match="pyramid_height must be >= 1, got none"):
        _run('type: "SPP"', make_blobs((1, 1, 4, 4)))


# -- Im2col ----------------------------------------------------------------------------------
def naive_im2col(x, kernel, pad, stride, dilation):
    """Top (N, C*kh*kw, oh, ow): row (c*kh + i)*kw + j holds x[c] at the kernel
    offset (i, j) of each output position (0 in the padding)."""
    n, c, h, w = x.shape
    (kh, kw), (ph, pw), (sh, sw), (dh, dw) = kernel, pad, stride, dilation
    oh = (h + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    ow = (w + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    y = np.zeros((n, c * kh * kw, oh, ow))
    for ch in range(c):
        for i in range(kh):
            for j in range(kw):
                row = (ch * kh + i) * kw + j
                for a in range(oh):
                    for b in range(ow):
                        yy, xx = a * sh - ph + i * dh, b * sw - pw + j * dw
                        if 0 <= yy < h and 0 <= xx < w:
                            y[:, row, a, b] = x[:, ch, yy, xx]
    return y


IM2COL = [
    ("kernel_size: 3 pad: 1 stride: 2", (2, 3, 7, 8), (3, 3), (1, 1), (2, 2), (1, 1)),
    (
        "kernel_h: 2 kernel_w: 3 pad_h: 0 pad_w: 1 stride_h: 1 stride_w: 2 dilation: 2",
        (1, 2, 8, 9), (2, 3), (0, 1), (1, 2), (2, 2),
    ),
    ("kernel_size: 2 force_nd_im2col: true", (2, 2, 5, 6), (2, 2), (0, 0), (1, 1),
     (1, 1)),
]  # fmt: skip


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("params, shape, kernel, pad, stride, dilation", IM2COL)
def test_im2col_forward(dtype, params, shape, kernel, pad, stride, dilation):
    (x,) = make_blobs(shape, dtype=dtype)
    text = f'type: "Im2col" convolution_param {{ {params} }}'
    _, (y,) = _run(text, [x], dtype=dtype)
    want = naive_im2col(x.data, kernel, pad, stride, dilation)
    assert y.shape == want.shape
    np.testing.assert_array_equal(y.data, want.astype(dtype))


@pytest.mark.parametrize(
    "params", ["kernel_size: 3 pad: 1 stride: 2", "kernel_size: 2"]
)
def test_im2col_gradient(params):
    (x,) = make_blobs((2, 2, 4, 5))
    layer = layer_from_text(f'type: "Im2col" convolution_param {{ {params} }}')
    checker().check_gradient(layer, [x], [B()])


def test_im2col_needs_a_kernel():
    with pytest.raises(LayerError, match="kernel_size is required"):
        _run('type: "Im2col"', make_blobs((1, 1, 4, 4)))


def test_im2col_refuses_a_too_small_input():
    with pytest.raises(ShapeError, match="too small"):
        _run(
            'type: "Im2col" convolution_param { kernel_size: 5 }',
            make_blobs((1, 1, 3, 3)),
        )
