"""HingeLoss: the one-vs-all hinge (L1) or squared hinge (L2) loss."""

from __future__ import annotations

from caffepy import backend
from caffepy.errors import LayerError
from caffepy.layer import LossLayer
from caffepy.layers.loss.base import check_labels, per_item_reshape
from caffepy.registry import register_layer

# HingeLossParameter.Norm
_L1, _L2 = 1, 2


@register_layer("HingeLoss")
class HingeLossLayer(LossLayer):
    """One-vs-all hinge loss with t = +1 for the true class, -1 otherwise.

    L1 (default): loss = sum max(0, 1 - t s) / N; L2: sum max(0, 1 - t s)^2 / N.

    Parameters: hinge_loss_param.norm (L1 default, or L2).
    Bottoms: scores (N, ...) flattened to (N, C); labels (N).
    Gradient: L1: -t [1 - t s > 0]; L2: -2 t max(0, 1 - t s); times loss_weight / N.
    """

    uses_ops = ("check_labels", "hinge_loss_backward", "hinge_loss_forward")

    exact_num_bottom = 2

    def setup(self, bottom, top):
        self.norm = self.layer_param.hinge_loss_param.norm
        if self.norm not in (_L1, _L2):
            raise LayerError(self, f"unknown norm {self.norm}; expected L1 or L2")

    def reshape(self, bottom, top):
        per_item_reshape(self, bottom, top, "scores")

    def _margin(self, ops):
        """max(0, 1 - t s), (N, C) (kept from forward for backward)."""
        return self.workspace(ops).get("margin", (self.num, self.dim), self.dtype)

    def forward(self, bottom, top):
        ops = backend.ops()
        s = ops.data(bottom[0]).reshape(self.num, self.dim)
        labels = ops.data(bottom[1])
        check_labels(self, ops, labels, self.dim)
        ops.hinge_loss_forward(
            s, labels, self.norm, self._margin(ops), ops.mutable_data(top[0])
        )

    def backward(self, top, propagate_down, bottom):
        if propagate_down[1]:
            raise LayerError(self, "cannot back-propagate to the label input")
        if not propagate_down[0]:
            return
        ops = backend.ops()
        dx = ops.mutable_diff(bottom[0]).reshape(self.num, self.dim)
        ops.hinge_loss_backward(
            self._margin(ops), ops.data(bottom[1]), self.norm, ops.diff(top[0]), dx
        )
