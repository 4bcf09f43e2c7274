"""LRN: local response normalisation across or within channels."""

from __future__ import annotations

from typing import Any

from caffepy import backend
from caffepy.backend.base import Array, Ops
from caffepy.errors import LayerError, ShapeError
from caffepy.layer import Layer
from caffepy.registry import register_layer


@register_layer("LRN")
class LRNLayer(Layer):
    """Local response normalisation (Caffe's LRN).

    ACROSS_CHANNELS: ``y = x * (k + alpha/n * sum x^2) ^ -beta`` over the n
    channels centred on each one (zero-padded at the ends).

    WITHIN_CHANNEL: ``y = x * (1 + alpha/n^2 * sum x^2) ^ -beta`` over the n x n
    window centred on each position (``k`` is ignored). Caffe builds it from
    square -> AVE pooling (pad (n-1)/2, stride 1) -> power -> product, so the
    window is clipped to the image for the sum while the divisor stays n * n;
    the numbers here are that graph's.

    Parameters (``lrn_param``):
        local_size (5): n, odd. alpha (1). beta (0.75). k (1).
        norm_region (ACROSS_CHANNELS).

    Bottom: (N, C, H, W). Top: same shape.

    Gradient: ``dx = dy * scale^-beta - 2*alpha*beta/n * x * sum_window(dy*y/scale)``
    across channels; with ``n^2`` in place of ``n`` and the n x n window within.
    """

    uses_ops = ("lrn_backward", "lrn_forward")

    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        param = self.layer_param.lrn_param
        self.size = int(param.local_size)
        if self.size % 2 != 1:
            raise LayerError(self, f"local_size must be odd, got {self.size}")
        self.alpha = float(param.alpha)
        self.beta = float(param.beta)
        self.k = float(param.k)
        self.within = param.norm_region == param.WITHIN_CHANNEL

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        if len(shape) != 4:
            raise ShapeError(
                self, f"needs a 4-D bottom (num, channels, height, width), got {shape}"
            )
        if top[0] is not bottom[0]:
            top[0].reshape(shape)

    def _input(self, ops: Ops, bottom: list, top: list) -> Array:
        """The forward's input: the workspace's copy when computing in place."""
        if top[0] is bottom[0]:
            return self.workspace(ops).get("x", bottom[0].shape, bottom[0].dtype)
        return ops.data(bottom[0])

    def _scale(self, ops: Ops, blob: Any) -> Array:
        """The normaliser of the last forward, kept for backward."""
        return self.workspace(ops).get("scale", blob.shape, blob.dtype)

    def forward(self, bottom, top):
        ops = backend.ops()
        if top[0] is bottom[0]:
            self.workspace(ops).keep("x", ops.data(bottom[0]))
        x = self._input(ops, bottom, top)
        scale, y = self._scale(ops, bottom[0]), ops.mutable_data(top[0])
        args = (self.size, self.alpha, self.beta, self.k, self.within)
        ops.lrn_forward(x, *args, scale, y)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        ops = backend.ops()
        x = self._input(ops, bottom, top)
        y, dy = ops.data(top[0]), ops.diff(top[0])
        scale, dx = self._scale(ops, top[0]), ops.mutable_diff(bottom[0])
        args = (self.size, self.alpha, self.beta, self.within)
        ops.lrn_backward(x, y, scale, dy, *args, dx)
