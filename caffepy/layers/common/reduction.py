"""Reduction: sum, absolute sum, sum of squares or mean over trailing axes."""

from __future__ import annotations

from caffepy import backend
from caffepy.errors import LayerError
from caffepy.layer import Layer, canonical_axis
from caffepy.registry import register_layer

# ReductionParameter.ReductionOp
_R_SUM, _R_ASUM, _R_SUMSQ, _R_MEAN = 1, 2, 3, 4


@register_layer("Reduction")
class ReductionLayer(Layer):
    """Reduce all axes from ``axis`` on to one number per leading index.

    Parameters (``reduction_param``):
        operation: SUM (default), ASUM (sum |x|), SUMSQ (sum x^2), MEAN.
        axis (default 0: everything, a 0-d top); coeff (default 1) scales the result.

    Top shape: bottom shape[:axis].
    Gradient: coeff * dy * (1, sign(x), 2x, 1/dim) for SUM, ASUM, SUMSQ, MEAN.
    """

    uses_ops = ("reduction_backward", "reduction_forward")

    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.reduction_param
        self.op, self.coeff = p.operation, float(p.coeff)
        if self.op not in (_R_SUM, _R_ASUM, _R_SUMSQ, _R_MEAN):
            raise LayerError(self, f"unknown operation {self.op}")
        self._axis_param = p.axis

    def reshape(self, bottom, top):
        b = bottom[0]
        self.axis = axis = canonical_axis(self, b, self._axis_param)
        self.num, self.dim = b.count_range(0, axis), b.count_range(axis)
        top[0].reshape(b.shape[:axis])

    def forward(self, bottom, top):
        ops = backend.ops()
        x = ops.data(bottom[0]).reshape(self.num, self.dim)
        ops.reduction_forward(x, self.op, self.coeff, ops.mutable_data(top[0]))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        ops = backend.ops()
        x = ops.data(bottom[0]).reshape(self.num, self.dim)
        dy = ops.diff(top[0]).reshape(self.num)
        dx = ops.mutable_diff(bottom[0]).reshape(self.num, self.dim)
        ops.reduction_backward(x, dy, self.op, self.coeff, dx)
