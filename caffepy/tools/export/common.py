"""Common layers as ONNX operators: Concat, Slice, Split, Crop, Reshape,
Flatten, Eltwise, Softmax, ArgMax, Reduction, Tile, Silence.

Shapes use ONNX's Reshape rules so the batch axis stays dynamic: 0 copies the
input's dim at the same index (Caffe's 0 in ``reshape_param`` means the same,
at the same index), -1 is inferred. Dims Caffe moves to another index are
written as the numbers the built net computed.
"""

from __future__ import annotations

import numpy as np

from caffepy.tools.export.convert import LayerView, converts


@converts("Split")
def split(v: LayerView) -> None:
    value = v.x()
    for top in v.top:
        v.g.alias(top, value)


@converts("Silence")
def silence(v: LayerView) -> None:
    """Nothing to compute: a silenced blob is simply not an output."""


@converts("Concat")
def concat(v: LayerView) -> None:
    axis = int(v.layer.axis)
    v.g.node("Concat", [v.x(i) for i in range(len(v.bottom))], v.out(), axis=axis)


@converts("Slice")
def slice_(v: LayerView) -> None:
    axis = int(v.layer.axis)
    sizes = [shape[axis] for shape in v.top_shapes]
    outs = [v.out(i) for i in range(len(v.top))]
    if len(outs) == 1:
        v.g.node("Identity", [v.x()], outs)
        return
    v.g.node("Split", [v.x(), v.g.ints(sizes, "split")], outs, axis=axis)


@converts("Crop")
def crop(v: LayerView) -> None:
    # the built layer holds one slice per axis: Caffe's offsets and the
    # reference's sizes from crop_param.axis on
    slices = v.layer.slices
    axes = [
        i
        for i in range(len(slices))
        if slices[i].start != 0 or slices[i].stop != v.bottom_shapes[0][i]
    ]
    if not axes:
        v.g.node("Identity", [v.x()], v.out())
        return
    g = v.g
    starts = g.ints([slices[i].start for i in axes], "starts")
    ends = g.ints([slices[i].stop for i in axes], "ends")
    g.node("Slice", [v.x(), starts, ends, g.ints(axes, "axes")], v.out())


@converts("Reshape")
def reshape(v: LayerView) -> None:
    layer = v.layer
    n = len(v.bottom_shapes[0])
    start = layer.axis_param if layer.axis_param >= 0 else n + layer.axis_param + 1
    end = n if layer.num_axes_param == -1 else start + layer.num_axes_param
    dims = list(layer.dims)
    target = [0] * start + dims
    # the axes after the replaced range: 0 where they keep their index
    for j, d in enumerate(v.bottom_shapes[0][end:]):
        target.append(0 if len(target) == end + j else int(d))
    v.g.reshape(v.x(), target, v.out())


@converts("Flatten")
def flatten(v: LayerView) -> None:
    n = len(v.bottom_shapes[0])
    p = v.param.flatten_param
    start = p.axis + n if p.axis < 0 else p.axis
    end = p.end_axis + n if p.end_axis < 0 else p.end_axis
    target = [0] * start + [-1] + [int(d) for d in v.bottom_shapes[0][end + 1 :]]
    v.g.reshape(v.x(), target, v.out())


@converts("Eltwise")
def eltwise(v: LayerView) -> None:
    layer, g = v.layer, v.g
    P = type(v.param.eltwise_param)
    xs = [v.x(i) for i in range(len(v.bottom))]
    if layer.op == P.PROD:
        op = "Mul"
    elif layer.op == P.MAX:
        g.node("Max", xs, v.out())
        return
    else:
        op = "Add"
        xs = [g.scaled(x, float(c)) for x, c in zip(xs, layer.coeff)]
    if len(xs) == 1:
        g.node("Identity", xs, v.out())
        return
    # Caffe accumulates bottom by bottom, left to right
    acc = xs[0]
    for i, x in enumerate(xs[1:], start=2):
        acc = g.node(op, [acc, x], v.out() if i == len(xs) else None)


@converts("Softmax")
def softmax(v: LayerView) -> None:
    v.g.node("Softmax", [v.x()], v.out(), axis=int(v.layer.axis))


@converts("ArgMax")
def argmax(v: LayerView) -> None:
    layer, g = v.layer, v.g
    k = g.ints([layer.top_k], "k")
    float_ = g.onnx.TensorProto.FLOAT
    if layer.has_axis:
        values, idx = g.temp("values"), g.temp("indices")
        g.node("TopK", [v.x(), k], [values, idx], axis=int(layer.axis))
        if layer.out_max_val:
            g.rename(values, v.out())
        else:
            g.node("Cast", [idx], v.out(), to=float_)
        return
    # NOTE: without an axis Caffe searches each sample's whole (C, H, W) and
    # writes (N, 1, k) indices, or (N, 2, k) indices then values.
    flat = g.node("Flatten", [v.x()], axis=1)
    values, idx = g.temp("values"), g.temp("indices")
    g.node("TopK", [flat, k], [values, idx], axis=1)
    y = g.node("Cast", [idx], to=float_)
    if layer.out_max_val:
        y = g.node("Concat", [g.unsqueeze(y, [1]), g.unsqueeze(values, [1])], axis=1)
    g.reshape(y, [-1] + list(v.top_shapes[0][1:]), v.out())


_REDUCTIONS = {"SUM": "ReduceSum", "ASUM": "ReduceL1", "SUMSQ": "ReduceSumSquare"}


@converts("Reduction")
def reduction(v: LayerView) -> None:
    layer, g = v.layer, v.g
    P = type(v.param.reduction_param)
    name = P.ReductionOp.Name(layer.op)
    axes = list(range(int(layer.axis), len(v.bottom_shapes[0])))
    op = _REDUCTIONS.get(name, "ReduceMean")
    coeff = float(layer.coeff)
    y = g.reduce(op, v.x(), axes, keepdims=False, out=None if coeff != 1 else v.out())
    if coeff != 1.0:
        g.node("Mul", [y, g.const(np.float32(coeff), "coeff")], v.out())


@converts("Tile")
def tile(v: LayerView) -> None:
    repeats = [1] * len(v.bottom_shapes[0])
    repeats[int(v.layer.axis)] = int(v.layer.tiles)
    v.g.node("Tile", [v.x(), v.g.ints(repeats, "repeats")], v.out())
