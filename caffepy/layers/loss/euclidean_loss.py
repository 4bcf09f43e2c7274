"""EuclideanLoss: half the mean squared distance of two blobs."""

from __future__ import annotations

from caffepy import backend
from caffepy.errors import ShapeError
from caffepy.layer import LossLayer
from caffepy.registry import register_layer


@register_layer("EuclideanLoss")
class EuclideanLossLayer(LossLayer):
    """loss = sum((a - b)^2) / (2 N), N = shape[0].

    Bottoms: a and b with equal shape[0] and count. Both receive gradients:
    da = (a - b) * loss_weight / N, db = -da.
    """

    uses_ops = ("euclidean_loss_backward", "euclidean_loss_forward")

    exact_num_bottom = 2

    def allow_force_backward(self, bottom_index):
        return True

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        if bottom[0].count != bottom[1].count:
            raise ShapeError(
                self,
                f"bottoms must have the same count: {bottom[0].shape} vs "
                f"{bottom[1].shape}",
            )
        self.num = bottom[0].shape[0] if bottom[0].num_axes else 1

    def _diff(self, ops, bottom):
        """a - b, flat (kept from forward for backward)."""
        return self.workspace(ops).get("diff", (bottom[0].count,), self.dtype)

    def forward(self, bottom, top):
        ops = backend.ops()
        a = ops.data(bottom[0]).reshape(-1)
        b = ops.data(bottom[1]).reshape(-1)
        d = self._diff(ops, bottom)
        ops.euclidean_loss_forward(a, b, self.num, d, ops.mutable_data(top[0]))

    def backward(self, top, propagate_down, bottom):
        ops = backend.ops()
        d = self._diff(ops, bottom)
        for i, sign in ((0, 1.0), (1, -1.0)):
            if propagate_down[i]:
                dx = ops.mutable_diff(bottom[i]).reshape(-1)
                ops.euclidean_loss_backward(d, ops.diff(top[0]), sign, self.num, dx)
