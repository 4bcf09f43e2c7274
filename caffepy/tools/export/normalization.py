"""Normalization layers as ONNX operators: BatchNorm, Scale, Bias, LRN, MVN.

- BatchNorm stores sums of the mean and variance and their normaliser ``s`` (the
  third blob): the statistics are ``blob / s``, and 0 when ``s`` is 0, as Caffe.
  With global statistics (TEST) it is ``BatchNormalization`` with a unit scale
  and zero bias; with batch statistics (``use_global_stats: false``) a
  ``ReduceMean`` subgraph over every axis but the channels.
- Scale and Bias broadcast their parameter over ``axis .. axis + num_axes``:
  the parameter gets trailing unit axes so ONNX's right-aligned broadcasting
  lines it up (a scalar parameter broadcasts as it is).
- LRN ACROSS_CHANNELS is ONNX ``LRN`` (both divide alpha by the window size and
  centre a window of odd size). WITHIN_CHANNEL is Caffe's own subgraph: the
  square averaged over a ``local_size`` square (padding counted, always the full
  window), then ``x * (1 + alpha * avg) ^ -beta`` (Caffe uses 1 there, not k).
- MVN: ``(x - mean) / (std + eps)`` per sample (and channel unless
  ``across_channels``), the variance as ``mean((x - mean)^2)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from caffepy.tools.export.convert import LayerView, converts


@converts("BatchNorm")
def batch_norm(v: LayerView) -> None:
    layer, x = v.layer, v.x()
    ndim = len(v.bottom_shapes[0])
    if ndim < 2:
        raise v.unsupported(f"a bottom of shape {v.bottom_shapes[0]} (needs N, C, ...)")
    if not layer.use_global_stats:
        _batch_stats_norm(v, x, ndim)
        return
    s = float(np.asarray(layer.blobs[2].data).reshape(-1)[0])
    factor = 0.0 if s == 0 else 1.0 / s
    mean = np.asarray(layer.blobs[0].data, np.float32) * np.float32(factor)
    var = np.asarray(layer.blobs[1].data, np.float32) * np.float32(factor)
    c = mean.size
    g = v.g
    inputs = [
        x,
        g.const(np.ones(c), "scale"),
        g.const(np.zeros(c), "bias"),
        g.const(mean, "mean"),
        g.const(var, "var"),
    ]
    g.node("BatchNormalization", inputs, v.out(), epsilon=float(layer.eps))


def _batch_stats_norm(v: LayerView, x: str, ndim: int) -> None:
    g = v.g
    axes = [0] + list(range(2, ndim))
    mean = g.reduce("ReduceMean", x, axes, keepdims=True)
    centred = g.node("Sub", [x, mean])
    var = g.reduce("ReduceMean", g.node("Mul", [centred, centred]), axes, True)
    std = g.node("Sqrt", [g.node("Add", [var, g.const(v.layer.eps, "eps")])])
    g.node("Div", [centred, std], v.out())


def _broadcastable(v: LayerView, value: str, pshape: Sequence[int], axis: int) -> str:
    """``value`` (a parameter of shape ``pshape`` applied from ``axis``) with the
    trailing unit axes that line it up with bottom[0]."""
    if not len(pshape):
        return value
    trailing = len(v.bottom_shapes[0]) - axis - len(pshape)
    if trailing <= 0:
        return value
    axes = range(len(pshape), len(pshape) + trailing)
    return v.g.unsqueeze(value, list(axes))


def _param_value(v: LayerView, j: int, purpose: str, axis: int) -> str:
    """Parameter blob ``j`` with trailing unit axes from ``axis``."""
    shape = tuple(v.layer.blobs[j].shape)
    if len(shape):
        trailing = len(v.bottom_shapes[0]) - axis - len(shape)
        shape = shape + (1,) * max(trailing, 0)
    return v.weight(j, purpose, shape)


@converts("Scale")
def scale(v: LayerView) -> None:
    layer = v.layer
    axis = v.axis(int(layer.axis))
    if len(v.bottom) > 1:
        pshape = v.bottom_shapes[1]
        s = _broadcastable(v, v.x(1), pshape, axis)
    else:
        s = _param_value(v, 0, "scale", axis)
    if layer.bias_id is None:
        v.g.node("Mul", [v.x(), s], v.out())
        return
    y = v.g.node("Mul", [v.x(), s])
    v.g.node("Add", [y, _param_value(v, layer.bias_id, "bias", axis)], v.out())


@converts("Bias")
def bias(v: LayerView) -> None:
    axis = v.axis(int(v.layer.axis))
    if len(v.bottom) > 1:
        b = _broadcastable(v, v.x(1), v.bottom_shapes[1], axis)
    else:
        b = _param_value(v, 0, "bias", axis)
    v.g.node("Add", [v.x(), b], v.out())


@converts("LRN")
def lrn(v: LayerView) -> None:
    layer, g = v.layer, v.g
    if not layer.within:
        g.node(
            "LRN",
            [v.x()],
            v.out(),
            size=int(layer.size),
            alpha=float(layer.alpha),
            beta=float(layer.beta),
            bias=float(layer.k),
        )
        return
    x, size = v.x(), int(layer.size)
    pad = (size - 1) // 2
    sq = g.node("Mul", [x, x])
    # NOTE: stride 1 and pad (size - 1) / 2 on an odd size: every window is
    # inside [-pad, H + pad), so Caffe divides by size^2 everywhere.
    avg = g.node(
        "AveragePool",
        [sq],
        kernel_shape=[size, size],
        strides=[1, 1],
        pads=[pad] * 4,
        count_include_pad=1,
    )
    base = g.scaled(avg, float(layer.alpha), 1.0)
    factor = g.node("Pow", [base, g.const(-float(layer.beta), "power")])
    g.node("Mul", [x, factor], v.out())


@converts("MVN")
def mvn(v: LayerView) -> None:
    layer, g, x = v.layer, v.g, v.x()
    ndim = len(v.bottom_shapes[0])
    first = 1 if layer.across_channels or ndim < 2 else 2
    axes = list(range(first, ndim))
    if not axes:
        raise v.unsupported(f"a bottom of shape {v.bottom_shapes[0]}")
    centred = g.node("Sub", [x, g.reduce("ReduceMean", x, axes, keepdims=True)])
    if not layer.normalize_variance:
        g.rename(centred, v.out())
        return
    var = g.reduce("ReduceMean", g.node("Mul", [centred, centred]), axes, True)
    std = g.node("Add", [g.node("Sqrt", [var]), g.const(layer.eps, "eps")])
    g.node("Div", [centred, std], v.out())
