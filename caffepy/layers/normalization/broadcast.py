"""How Scale and Bias broadcast a parameter over their first bottom, and the
per-channel sums of their gradients."""

from __future__ import annotations

import numpy as np

from caffepy.backend.base import Array, Ops
from caffepy.blob import Blob
from caffepy.errors import LayerError, ShapeError
from caffepy.layer import Layer, canonical_axis


def param_shape(
    layer: Layer, bottom: Blob, axis: int, num_axes: int, what: str
) -> tuple[int, ...]:
    """Shape of a Scale/Bias parameter covering ``num_axes`` axes from ``axis``."""
    axis = canonical_axis(layer, bottom, axis)
    if num_axes < -1:
        raise LayerError(
            layer,
            f"num_axes must be >= 0, or -1 to extend to the end of bottom[0]; got "
            f"{num_axes}",
        )
    if num_axes >= 0 and bottom.num_axes < axis + num_axes:
        raise LayerError(
            layer,
            f"{what} of {num_axes} axes from axis {axis} extends past bottom[0]'s "
            f"shape {bottom.shape}",
        )
    end = None if num_axes == -1 else axis + num_axes
    return tuple(bottom.shape[axis:end])


def broadcast_geometry(
    layer: Layer, bottom: Blob, param: Blob, axis: int, what: str
) -> tuple[int, int, int]:
    """(outer, dim, inner) of broadcasting ``param`` over ``bottom`` from ``axis``.

    As Caffe, a scalar (0-axis) parameter is applied with axis 0.
    """
    axis = 0 if param.num_axes == 0 else canonical_axis(layer, bottom, axis)
    if bottom.shape[axis : axis + param.num_axes] != param.shape:
        raise ShapeError(
            layer,
            f"{what} of shape {param.shape} does not match bottom[0] of shape "
            f"{bottom.shape} from axis {axis}",
        )
    return (
        bottom.count_range(0, axis),
        param.count,
        bottom.count_range(axis + param.num_axes),
    )


def channel_sums(
    layer: Layer, ops: Ops, a3: Array, b3: Array | None
) -> tuple[Array, Array]:
    """(sum of a3, sum of a3 * b3) per d of (O, D, I) arrays, in the layer's
    float64 workspace buffers."""
    ws = layer.workspace(ops)
    dim = a3.shape[1]
    sums = ws.get("sum", (dim,), np.float64), ws.get("dot", (dim,), np.float64)
    ops.channel_sums(a3, b3, *sums)
    return sums


def as1d(array: Array) -> Array:
    """A flat view of a contiguous array."""
    return array.reshape(-1)
