"""Softmax over one axis."""

from __future__ import annotations

from caffepy import backend
from caffepy.layer import Layer, canonical_axis
from caffepy.registry import register_layer


def _three(blob, axis: int) -> tuple[int, int, int]:
    """(outer, channels, inner) geometry of a blob around ``axis``."""
    return blob.count_range(0, axis), blob.shape[axis], blob.count_range(axis + 1)


@register_layer("Softmax")
class SoftmaxLayer(Layer):
    """y = exp(x - max) / sum(exp(x - max)) over one axis.

    Parameters (``softmax_param``): axis (default 1; negative counts from the end).

    Bottom: any shape. Top: same shape. In-place safe.
    Gradient: dx = y * (dy - sum_axis(dy * y)).
    """

    uses_ops = ("softmax_backward", "softmax_forward")

    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        self._axis_param = self.layer_param.softmax_param.axis

    def reshape(self, bottom, top):
        self.axis = canonical_axis(self, bottom[0], self._axis_param)
        if top[0] is not bottom[0]:
            top[0].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        ops = backend.ops()
        g = _three(bottom[0], self.axis)
        x = ops.data(bottom[0]).reshape(g)
        ops.softmax_forward(x, ops.mutable_data(top[0]).reshape(g))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        ops = backend.ops()
        g = _three(bottom[0], self.axis)
        y = ops.data(top[0]).reshape(g)
        dy = ops.diff(top[0]).reshape(g)
        ops.softmax_backward(y, dy, ops.mutable_diff(bottom[0]).reshape(g))
