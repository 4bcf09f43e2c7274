"""Concat and Slice: join bottoms along one axis, or cut one bottom along it."""

from __future__ import annotations

import itertools

from caffepy import backend
from caffepy.errors import LayerError, ShapeError
from caffepy.layer import Layer, canonical_axis
from caffepy.registry import register_layer


def _axis_or_legacy(layer, bottom, param, legacy_name: str) -> int:
    """Resolve ``axis`` vs a deprecated non-negative alias (concat_dim, slice_dim)."""
    if param.HasField(legacy_name):
        if param.HasField("axis"):
            raise LayerError(layer, f"give either axis or {legacy_name}, not both")
        axis = int(getattr(param, legacy_name))
        if axis >= bottom.num_axes:
            raise LayerError(
                layer,
                f"{legacy_name} {axis} is out of range for a bottom of shape "
                f"{bottom.shape}",
            )
        return axis
    return canonical_axis(layer, bottom, param.axis)


def _pieces(axis: int, sizes: list[int]):
    """Index tuples of consecutive pieces of ``sizes`` along ``axis``."""
    lead = (slice(None),) * axis
    off = 0
    for n in sizes:
        yield lead + (slice(off, off + n),)
        off += n


@register_layer("Concat")
class ConcatLayer(Layer):
    """Concatenate bottoms along one axis.

    Parameters (``concat_param``): axis (default 1), or the deprecated concat_dim.

    Bottoms: one or more, equal shapes except along the axis. Top: their
    concatenation. Gradient: each bottom gets its slice of the top diff.
    """

    uses_ops = ("copy",)

    min_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        self.param = self.layer_param.concat_param

    def reshape(self, bottom, top):
        self.axis = axis = _axis_or_legacy(self, bottom[0], self.param, "concat_dim")
        ref = bottom[0].shape
        total = 0
        for i, b in enumerate(bottom):
            s = b.shape
            if (
                len(s) != len(ref)
                or s[:axis] != ref[:axis]
                or s[axis + 1 :] != ref[axis + 1 :]
            ):
                raise ShapeError(
                    self,
                    f"bottom[{i}] has shape {s} but bottom[0] has {ref}; all bottoms "
                    f"must have the same shape except along axis {axis}",
                )
            total += s[axis]
        top[0].reshape(ref[:axis] + (total,) + ref[axis + 1 :])

    def forward(self, bottom, top):
        ops = backend.ops()
        xs = [ops.data(b) for b in bottom]
        y = ops.mutable_data(top[0])
        if len(xs) == 1:
            ops.copy(xs[0], y)
        else:
            ops.xp.concatenate(xs, axis=self.axis, out=y)

    def backward(self, top, propagate_down, bottom):
        ops = backend.ops()
        dy = ops.diff(top[0])
        sizes = [b.shape[self.axis] for b in bottom]
        for b, pd, piece in zip(bottom, propagate_down, _pieces(self.axis, sizes)):
            if pd:
                ops.copy(dy[piece], ops.mutable_diff(b))


@register_layer("Slice")
class SliceLayer(Layer):
    """Split a bottom along one axis into several tops.

    Parameters (``slice_param``): axis (default 1) or the deprecated slice_dim;
    slice_point: increasing indices, one fewer than the tops; without them the
    axis is split evenly (its size must be a multiple of the number of tops).

    Gradient: the top diffs, concatenated back.
    """

    uses_ops = ("copy",)

    exact_num_bottom = 1
    min_num_top = 1

    def setup(self, bottom, top):
        self.param = self.layer_param.slice_param
        self.points = [int(p) for p in self.param.slice_point]
        if self.points and len(self.points) != len(top) - 1:
            raise LayerError(
                self,
                f"has {len(self.points)} slice_point values for {len(top)} tops; give "
                "one fewer than the tops, or none for an even split",
            )
        prev = 0
        for p in self.points:
            if p <= prev:
                raise LayerError(
                    self,
                    f"slice_point values {self.points} must be positive and increasing",
                )
            prev = p

    def reshape(self, bottom, top):
        self.axis = axis = _axis_or_legacy(self, bottom[0], self.param, "slice_dim")
        shape = bottom[0].shape
        dim = shape[axis]
        if self.points:
            if self.points[-1] > dim:
                raise ShapeError(
                    self,
                    f"slice_point {self.points[-1]} is beyond the size {dim} of axis "
                    f"{axis} of bottom shape {shape}",
                )
            bounds = [0] + self.points + [dim]
            sizes = [b - a for a, b in itertools.pairwise(bounds)]
        else:
            if dim % len(top):
                raise ShapeError(
                    self,
                    f"{len(top)} tops do not evenly divide axis {axis} (size {dim}) of "
                    f"bottom shape {shape}; give slice_point values",
                )
            sizes = [dim // len(top)] * len(top)
        self.sizes = sizes
        for t, n in zip(top, sizes):
            t.reshape(shape[:axis] + (n,) + shape[axis + 1 :])

    def forward(self, bottom, top):
        ops = backend.ops()
        x = ops.data(bottom[0])
        for t, piece in zip(top, _pieces(self.axis, self.sizes)):
            ops.copy(x[piece], ops.mutable_data(t))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        ops = backend.ops()
        dx = ops.mutable_diff(bottom[0])
        for t, piece in zip(top, _pieces(self.axis, self.sizes)):
            dx[piece] = ops.diff(t)
