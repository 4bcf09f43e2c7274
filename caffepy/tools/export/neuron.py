"""Element-wise (neuron) layers as ONNX operators.

Caffe's formulas, and the ONNX expression of each:

- ReLU ``max(x, 0) + negative_slope * min(x, 0)``: ``Relu`` or ``LeakyRelu``.
- Sigmoid, TanH, AbsVal: ``Sigmoid``, ``Tanh``, ``Abs``.
- BNLL ``log(1 + exp(x))``: ``Softplus``.
- ELU ``x > 0 ? x : alpha (exp(x) - 1)``: ``Elu``.
- PReLU with a slope per channel (or one, ``channel_shared``): ``PRelu``.
- Swish ``x sigmoid(beta x)``: ``Mul(x, Sigmoid(beta x))``.
- Clip ``min(max(x, min), max)``: ``Clip``.
- Threshold ``x > threshold ? 1 : 0``: ``Greater`` then ``Cast``.
- Power ``(shift + scale x) ^ power``: ``Mul``/``Add``/``Pow`` as needed.
- Exp ``base ^ (shift + scale x)`` = ``base^shift * exp(ln(base) scale x)``.
- Log ``log_base(shift + scale x)`` = ``ln(shift + scale x) / ln(base)``.
- Dropout: Caffe's dropout is inverted, so at inference it is the identity:
  removed, or an ONNX ``Dropout`` node when asked (``--keep-dropout``).
"""

from __future__ import annotations

import math

import numpy as np

from caffepy.tools.export.convert import LayerView, converts

_SIMPLE = {"Sigmoid": "Sigmoid", "TanH": "Tanh", "AbsVal": "Abs", "BNLL": "Softplus"}


@converts(*_SIMPLE)
def simple(v: LayerView) -> None:
    v.g.node(_SIMPLE[v.type], [v.x()], v.out())


@converts("ReLU")
def relu(v: LayerView) -> None:
    slope = float(v.param.relu_param.negative_slope)
    if slope == 0.0:
        v.g.node("Relu", [v.x()], v.out())
    else:
        v.g.node("LeakyRelu", [v.x()], v.out(), alpha=slope)


@converts("ELU")
def elu(v: LayerView) -> None:
    v.g.node("Elu", [v.x()], v.out(), alpha=float(v.param.elu_param.alpha))


@converts("PReLU")
def prelu(v: LayerView) -> None:
    # NOTE: PRelu broadcasts the slope from the right; Caffe's is per channel
    # (axis 1), so it becomes (C, 1, ..., 1).
    slope = v.layer.blobs[0]
    ndim = len(v.bottom_shapes[0])
    shape = (slope.count,) + (1,) * max(ndim - 2, 0) if slope.count > 1 else (1,)
    v.g.node("PRelu", [v.x(), v.weight(0, "slope", shape)], v.out())


@converts("Swish")
def swish(v: LayerView) -> None:
    x = v.x()
    s = v.g.node("Sigmoid", [v.g.scaled(x, float(v.param.swish_param.beta))])
    v.g.node("Mul", [x, s], v.out())


@converts("Clip")
def clip(v: LayerView) -> None:
    p = v.param.clip_param
    lo, hi = v.g.const(p.min, "min"), v.g.const(p.max, "max")
    v.g.node("Clip", [v.x(), lo, hi], v.out())


@converts("Threshold")
def threshold(v: LayerView) -> None:
    t = v.g.const(v.param.threshold_param.threshold, "threshold")
    above = v.g.node("Greater", [v.x(), t])
    v.g.node("Cast", [above], v.out(), to=v.g.onnx.TensorProto.FLOAT)


@converts("Power")
def power(v: LayerView) -> None:
    p = v.param.power_param
    y = v.g.scaled(v.x(), float(p.scale), float(p.shift))
    if float(p.power) != 1.0:
        y = v.g.node("Pow", [y, v.g.const(p.power, "power")])
    _finish(v, y)


def _log_base(base: float) -> float:
    return 1.0 if base == -1.0 else math.log(base)


@converts("Exp")
def exp(v: LayerView) -> None:
    p = v.param.exp_param
    ln_base = _log_base(float(p.base))
    y = v.g.node("Exp", [v.g.scaled(v.x(), ln_base * float(p.scale))])
    if float(p.shift) != 0.0:
        outer = float(np.exp(np.float64(ln_base) * float(p.shift)))
        y = v.g.node("Mul", [y, v.g.const(outer, "outer_scale")])
    _finish(v, y)


@converts("Log")
def log(v: LayerView) -> None:
    p = v.param.log_param
    y = v.g.node("Log", [v.g.scaled(v.x(), float(p.scale), float(p.shift))])
    _finish(v, v.g.scaled(y, 1.0 / _log_base(float(p.base))))


@converts("Dropout")
def dropout(v: LayerView) -> None:
    if not v.options.keep_dropout:
        v.g.alias(v.top[0], v.x())
        v.notes.append("identity at inference")
        return
    ratio = v.g.const(v.param.dropout_param.dropout_ratio, "ratio")
    v.g.node("Dropout", [v.x(), ratio], v.out())


def _finish(v: LayerView, value: str) -> None:
    """Make ``value`` top 0 (an Identity when no node computed it, as for
    ``power: 1, scale: 1, shift: 0``)."""
    if value == v.x():
        v.g.node("Identity", [value], v.out())
    else:
        v.g.rename(value, v.out())
