"""Bias: add a broadcast bias."""

from __future__ import annotations

from typing import Any

from caffepy import backend
from caffepy.layer import Layer, want_param
from caffepy.layers.normalization.broadcast import (
    as1d,
    broadcast_geometry,
    channel_sums,
    param_shape,
)
from caffepy.registry import register_layer


@register_layer("Bias")
class BiasLayer(Layer):
    """Add a bias broadcast over the first bottom: ``y = x + b``.

    Parameters (``bias_param``):
        axis (1): first axis of x the bias covers (negative counts from the end).
        num_axes (1): axes covered by a learned bias; 0 = a scalar, -1 = every axis
            from ``axis`` on. Ignored with a second bottom (its shape decides).
        filler (constant 0): learned-bias initialisation.

    Bottoms: x, and optionally the bias itself as bottom[1] (then no blob).
    Top: x's shape (in place allowed).

    Gradient: ``dx = dy``; ``db = sum of dy`` over the repeated axes (accumulated
    into a learned bias, written into bottom[1].diff).
    """

    uses_ops = ("channel_affine", "channel_sums", "copy")

    min_num_bottom = 1
    max_num_bottom = 2
    exact_num_top = 1

    def setup(self, bottom, top):
        param = self.layer_param.bias_param
        self.axis = param.axis
        if len(bottom) == 1 and not self.blobs:
            shape = param_shape(self, bottom[0], param.axis, param.num_axes, "bias")
            self.new_blob(shape, param.filler)

    @classmethod
    def param_blob_count(cls, layer_param: Any) -> int:
        """The bias, unless it is bottom[1]."""
        return 0 if len(layer_param.bottom) > 1 else 1

    def _bias_blob(self, bottom):
        return bottom[1] if len(bottom) > 1 else self.blobs[0]

    def reshape(self, bottom, top):
        self.geom = broadcast_geometry(
            self, bottom[0], self._bias_blob(bottom), self.axis, "bias"
        )
        if top[0] is not bottom[0]:
            top[0].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        ops = backend.ops()
        x3 = ops.data(bottom[0]).reshape(self.geom)
        b = as1d(ops.data(self._bias_blob(bottom)))
        ops.channel_affine(x3, None, b, ops.mutable_data(top[0]).reshape(self.geom))

    def backward(self, top, propagate_down, bottom):
        ops = backend.ops()
        bias_is_param = len(bottom) == 1
        bias = self._bias_blob(bottom)
        if (bias_is_param and want_param(self, 0)) or (
            not bias_is_param and propagate_down[1]
        ):
            dy3 = ops.diff(top[0]).reshape(self.geom)
            sum_dy, _ = channel_sums(self, ops, dy3, None)
            dbias = ops.mutable_diff(bias)
            if bias_is_param:
                dbias += sum_dy.reshape(bias.shape)
            else:
                dbias[...] = sum_dy.reshape(bias.shape)
        if propagate_down[0] and top[0] is not bottom[0]:
            ops.copy(ops.diff(top[0]), ops.mutable_diff(bottom[0]))
