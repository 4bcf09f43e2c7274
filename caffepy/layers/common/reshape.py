"""Flatten and Reshape: a top whose data is the bottom's memory with a new shape."""

from __future__ import annotations

import numpy as np

from caffepy import backend
from caffepy.errors import LayerError, ShapeError
from caffepy.layer import Layer, canonical_axis
from caffepy.registry import register_layer


def alias_top(top, bottom, shape: tuple[int, ...]) -> None:
    """Give ``top`` the shape ``shape`` and ``bottom``'s data memory (no copy).

    The diff stays the top's own, so backward still assigns the bottom diff
    explicitly. Called from ``reshape`` (every forward), so a bottom that was
    reallocated by a reshape is re-aliased before it is read.
    """
    top.reshape(shape)
    top.share_data(bottom)


class _ViewLayer(Layer):
    """Base of Flatten/Reshape: top data is the bottom's with a new shape."""

    exact_num_bottom = 1
    exact_num_top = 1

    def _no_in_place(self, bottom, top):
        if top[0] is bottom[0]:
            raise LayerError(self, f"{self.type} cannot work in place (top == bottom)")

    def forward(self, bottom, top):
        pass  # top data is the bottom's memory (see reshape)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            ops = backend.ops()
            dy = ops.diff(top[0]).reshape(bottom[0].shape)
            ops.copy(dy, ops.mutable_diff(bottom[0]))


@register_layer("Flatten")
class FlattenLayer(_ViewLayer):
    """Merge axes [axis, end_axis] into one.

    Parameters (``flatten_param``): axis (default 1), end_axis (default -1);
    negative values count from the end.

    Top shape: shape[:axis] + (prod(shape[axis:end_axis+1]),) + shape[end_axis+1:].
    Top data shares the bottom's memory; the gradient is the top diff reshaped.
    """

    uses_ops = ("copy",)

    def setup(self, bottom, top):
        self._no_in_place(bottom, top)
        self.param = self.layer_param.flatten_param

    def reshape(self, bottom, top):
        b = bottom[0]
        start = canonical_axis(self, b, self.param.axis)
        end = canonical_axis(self, b, self.param.end_axis, "end_axis")
        if end < start:
            raise LayerError(
                self,
                f"end_axis {self.param.end_axis} comes before axis {self.param.axis} "
                f"for bottom shape {b.shape}",
            )
        shape = b.shape[:start] + (b.count_range(start, end + 1),) + b.shape[end + 1 :]
        alias_top(top[0], b, shape)


@register_layer("Reshape")
class ReshapeLayer(_ViewLayer):
    """Change the shape of a blob without changing its data.

    Parameters (``reshape_param``):
        shape: the new dims for the replaced range; 0 copies the bottom's dim at
            that position, -1 (at most once) is inferred from the count.
        axis (default 0), num_axes (default -1 = to the end): the range of bottom
            axes replaced (axis may be negative: -1 is after the last axis).

    Top data is a view of the bottom; the gradient is the top diff reshaped.
    """

    uses_ops = ("copy",)

    def setup(self, bottom, top):
        self._no_in_place(bottom, top)
        p = self.layer_param.reshape_param
        self.dims = [int(d) for d in p.shape.dim]
        self.copy_axes = [i for i, d in enumerate(self.dims) if d == 0]
        inferred = [i for i, d in enumerate(self.dims) if d == -1]
        bad = [d for d in self.dims if d < -1]
        if bad:
            raise LayerError(self, f"shape dim {bad[0]} is invalid; dims must be >= -1")
        if len(inferred) > 1:
            raise LayerError(
                self,
                f"shape {self.dims} has {len(inferred)} dims of -1; at most one allowed",
            )
        self.inferred_axis = inferred[0] if inferred else None
        self.constant_count = int(
            np.prod([d for d in self.dims if d > 0], dtype=np.int64)
        )
        if p.num_axes < -1:
            raise LayerError(self, f"num_axes {p.num_axes} is invalid; expected >= -1")
        self.axis_param, self.num_axes_param = int(p.axis), int(p.num_axes)

    def reshape(self, bottom, top):
        b = bottom[0]
        n = b.num_axes
        start = self.axis_param if self.axis_param >= 0 else n + self.axis_param + 1
        if not 0 <= start <= n:
            raise LayerError(
                self,
                f"axis {self.axis_param} is out of range for bottom shape {b.shape}",
            )
        end = n if self.num_axes_param == -1 else start + self.num_axes_param
        if end > n:
            raise LayerError(
                self,
                f"axis {self.axis_param} + num_axes {self.num_axes_param} is beyond the "
                f"{n} axes of bottom shape {b.shape}",
            )
        shape = list(b.shape[:start]) + list(self.dims) + list(b.shape[end:])
        for i in self.copy_axes:
            if start + i >= n:
                raise LayerError(
                    self,
                    f"shape dim {i} is 0 (copy) but bottom shape {b.shape} has no axis "
                    f"{start + i}",
                )
            shape[start + i] = b.shape[start + i]
        if self.inferred_axis is not None:
            explicit = (
                self.constant_count * b.count_range(0, start) * b.count_range(end)
            )
            for i in self.copy_axes:
                explicit *= b.shape[start + i]
            if explicit == 0 or b.count % explicit:
                raise ShapeError(
                    self,
                    f"cannot infer the -1 dim of shape {self.dims} from bottom shape "
                    f"{b.shape} (count {b.count} is not a multiple of {explicit})",
                )
            shape[start + self.inferred_axis] = b.count // explicit
        count = int(np.prod(shape, dtype=np.int64))
        if count != b.count:
            raise ShapeError(
                self,
                f"new shape {tuple(shape)} ({count} elements) does not match bottom shape "
                f"{b.shape} ({b.count} elements)",
            )
        alias_top(top[0], b, tuple(shape))
