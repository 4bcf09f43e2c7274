"""Vision layers as ONNX operators: Convolution, Deconvolution, Pooling,
InnerProduct, Embed.

Pooling is where Caffe and ONNX differ. Caffe's output size is
``ceil((H + 2 pad - k) / stride) + 1`` (or floor with ``round_mode: FLOOR``),
less one when padding is used and the last window would start at or past
``H + pad``. An average divides by the window clipped to ``[-pad, H + pad)``,
so padding inside that range counts and the part a ceil-mode window hangs past
it does not. The converter reads the output size from the built net and:

- MAX: ``ceil_mode=1`` with Caffe's pads where ONNX's ceil size agrees,
  otherwise ``ceil_mode=0`` with the end pads that give Caffe's size (max ignores
  padding either way).
- AVE: when no window hangs past ``H + pad``, ``count_include_pad`` with Caffe's
  pads; otherwise the input is zero-padded by ``pad`` with ``Pad`` and pooled
  with end pads that ``count_include_pad=0`` leaves out of the divisor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from caffepy.tools.export.convert import LayerView, converts


def _conv_attrs(v: LayerView) -> dict:
    layer = v.layer
    if layer.axis != 1:
        raise v.unsupported(
            f"ONNX convolves over axis 1 (channels); this layer uses axis {layer.axis}"
        )
    return {
        "kernel_shape": list(layer.kernel),
        "strides": list(layer.stride),
        "pads": list(layer.pad) * 2,
        "dilations": list(layer.dilation),
        "group": int(layer.group),
    }


@converts("Convolution", "Deconvolution")
def convolution(v: LayerView) -> None:
    attrs = _conv_attrs(v)
    op = "Conv" if v.type == "Convolution" else "ConvTranspose"
    # NOTE: Caffe's Deconvolution weights are (C_in, C_out / group, k...), which
    # is ConvTranspose's layout; its output size s (H - 1) + d (k - 1) + 1 - 2 p
    # is ConvTranspose's with symmetric pads and no output_padding.
    params = [v.weight(0, "weight")]
    if v.layer.bias_term:
        params.append(v.weight(1, "bias"))
    for i in range(len(v.bottom)):
        v.g.node(op, [v.x(i), *params], v.out(i), **attrs)


@converts("InnerProduct")
def inner_product(v: LayerView) -> None:
    layer = v.layer
    axis = int(layer.axis)
    x2d = v.x()
    if len(v.bottom_shapes[0]) != 2 or axis != 1:
        x2d = v.g.node("Flatten", [x2d], axis=axis)
    params = [v.weight(0, "weight")]
    if layer.bias_term:
        params.append(v.weight(1, "bias"))
    # NOTE: W is (N, K), or (K, N) with transpose: true.
    trans_b = 0 if layer.transpose else 1
    shape = v.top_shapes[0]
    if axis == 1:
        v.g.node("Gemm", [x2d, *params], v.out(), transB=trans_b)
        return
    y2d = v.g.node("Gemm", [x2d, *params], transB=trans_b)
    # the leading axes come back; the batch axis is inferred (-1)
    target = [-1, *shape[1:]] if axis > 0 else list(shape)
    v.g.reshape(y2d, target, v.out())


@converts("Embed")
def embed(v: LayerView) -> None:
    # NOTE: Caffe reads the indices as floats holding integers; Cast truncates,
    # as Caffe's static_cast<int> does.
    idx = v.g.node("Cast", [v.x()], to=v.g.onnx.TensorProto.INT64)
    y = v.g.node("Gather", [v.weight(0, "weight"), idx], axis=0)
    if v.layer.bias_term:
        v.g.node("Add", [y, v.weight(1, "bias")], v.out())
    else:
        v.g.rename(y, v.out())


# -- pooling --------------------------------------------------------------------------
def _end_pads(
    size: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    pad: Sequence[int],
    pooled: Sequence[int],
) -> list[int]:
    """The end pad that makes floor-mode pooling give ``pooled`` windows, the
    last one starting where Caffe's does: ``(pooled - 1) stride + k - H - pad``
    (never negative: a smaller end pad is the same window count)."""
    return [
        max((o - 1) * s + k - h - p, 0)
        for h, k, s, p, o in zip(size, kernel, stride, pad, pooled)
    ]


def _ceil_size(h: int, k: int, s: int, p: int) -> int:
    return -(-(h + 2 * p - k) // s) + 1


@converts("Pooling")
def pooling(v: LayerView) -> None:
    layer = v.layer
    is_max = bool(layer.is_max)
    if layer.global_pooling:
        op = "GlobalMaxPool" if is_max else "GlobalAveragePool"
        v.g.node(op, [v.x()], v.out())
        if len(v.top) > 1:
            raise v.unsupported("global pooling with a mask top")
        return
    size = v.bottom_shapes[0][2:]
    pooled = v.top_shapes[0][2:]
    kernel, stride, pad = list(layer.kernel), list(layer.stride), list(layer.pad)
    for h, s, p, o in zip(size, stride, pad, pooled):
        if (o - 1) * s >= h + p:
            raise v.unsupported(
                f"its last window starts at {(o - 1) * s - p}, past the input's "
                f"{h} rows/columns (Caffe pools nothing there); a kernel of "
                f"{kernel} with stride {stride} skips input"
            )
    end = _end_pads(size, kernel, stride, pad, pooled)
    attrs: dict[str, Any] = {"kernel_shape": kernel, "strides": stride}
    x = v.x()
    if is_max:
        ceil = [_ceil_size(h, k, s, p) for h, k, s, p in zip(size, kernel, stride, pad)]
        if list(pooled) == ceil and all(e > p for e, p in zip(end, pad)):
            attrs.update(pads=pad * 2, ceil_mode=1)
        else:
            attrs.update(pads=pad + end)
        _max_pool(v, x, attrs)
        return
    if all(e <= p for e, p in zip(end, pad)):
        attrs.update(pads=pad + end, count_include_pad=int(any(pad)))
    else:
        if any(pad):
            zeros = [0, 0] + pad
            x = v.g.node("Pad", [x, v.g.ints(zeros * 2, "pads")], mode="constant")
        attrs.update(pads=[0, 0] + [max(e - p, 0) for e, p in zip(end, pad)])
        attrs["count_include_pad"] = 0
    v.g.node("AveragePool", [x], v.out(), **attrs)


def _max_pool(v: LayerView, x: str, attrs: dict) -> None:
    if len(v.top) == 1:
        v.g.node("MaxPool", [x], v.out(), **attrs)
        return
    # NOTE: ONNX's indices run over the whole tensor ((n C + c) H + h) W + w;
    # Caffe's mask is the index within one H x W plane, stored as a float.
    y, idx = v.out(0), v.g.temp("indices")
    v.g.node("MaxPool", [x], [y, idx], **attrs)
    h, w = v.bottom_shapes[0][2:]
    plane = v.g.node("Mod", [idx, v.g.const(h * w, "plane", "int64")])
    v.g.node("Cast", [plane], v.out(1), to=v.g.onnx.TensorProto.FLOAT)
