"""Tile: repeat a block of axes along one axis."""

from __future__ import annotations

from caffepy import backend
from caffepy.errors import LayerError
from caffepy.layer import Layer, canonical_axis
from caffepy.registry import register_layer


@register_layer("Tile")
class TileLayer(Layer):
    """Repeat the block of axes from ``axis`` on ``tiles`` times.

    Parameters (``tile_param``): axis (default 1), tiles (required, > 0).

    Top shape: the bottom's with shape[axis] * tiles.
    Gradient: the sum of the tiled copies of the top diff.
    """

    uses_ops = ("data", "diff", "mutable_data", "mutable_diff")

    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        if top[0] is bottom[0]:
            raise LayerError(self, "Tile cannot work in place (top == bottom)")
        p = self.layer_param.tile_param
        self.tiles = int(p.tiles)
        if self.tiles <= 0:
            raise LayerError(self, f"tiles must be positive, got {self.tiles}")
        self._axis_param = p.axis

    def reshape(self, bottom, top):
        b = bottom[0]
        self.axis = axis = canonical_axis(self, b, self._axis_param)
        self.outer, self.inner = b.count_range(0, axis), b.count_range(axis)
        top[0].reshape(
            b.shape[:axis] + (b.shape[axis] * self.tiles,) + b.shape[axis + 1 :]
        )

    def forward(self, bottom, top):
        ops = backend.ops()
        x = ops.data(bottom[0]).reshape(self.outer, 1, self.inner)
        y = ops.mutable_data(top[0]).reshape(self.outer, self.tiles, self.inner)
        y[...] = x

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            ops = backend.ops()
            dy = ops.diff(top[0]).reshape(self.outer, self.tiles, self.inner)
            dx = ops.mutable_diff(bottom[0]).reshape(self.outer, self.inner)
            ops.xp.sum(dy, axis=1, out=dx)
