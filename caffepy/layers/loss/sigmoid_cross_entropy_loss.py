"""SigmoidCrossEntropyLoss: the cross entropy of sigmoid(x) against targets."""

from __future__ import annotations

import numpy as np

from caffepy import backend
from caffepy.errors import LayerError, ShapeError
from caffepy.layer import LossLayer
from caffepy.layers.loss.base import (
    BATCH_SIZE,
    get_ignore_label,
    normalization_mode,
    normalizer,
)
from caffepy.registry import register_layer


@register_layer("SigmoidCrossEntropyLoss")
class SigmoidCrossEntropyLossLayer(LossLayer):
    """Cross entropy of sigmoid(x) against targets t in [0, 1].

    loss = -sum_{valid} [x (t - [x >= 0]) - log(1 + exp(-|x|))] / normalizer
    (the overflow-free form of t log s(x) + (1 - t) log(1 - s(x))).

    Parameters: loss_param.ignore_label (a target whose int() equals it is
    skipped); loss_param.normalization — when neither normalization nor the
    legacy normalize is given the default is BATCH_SIZE (N = shape[0]), unlike
    SoftmaxWithLoss.

    Bottoms: scores x and targets t of the same count. Gradient:
    (sigmoid(x) - t) * loss_weight / normalizer, 0 where ignored.
    """

    uses_ops = (
        "sigmoid_cross_entropy_loss_backward",
        "sigmoid_cross_entropy_loss_forward",
    )

    exact_num_bottom = 2

    def setup(self, bottom, top):
        self.ignore_label = get_ignore_label(self)
        self.mode = normalization_mode(self, BATCH_SIZE)

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        if bottom[0].count != bottom[1].count:
            raise ShapeError(
                self,
                f"scores {bottom[0].shape} and targets {bottom[1].shape} must have "
                "the same count",
            )
        self.outer = bottom[0].shape[0] if bottom[0].num_axes else 1
        self.inner = bottom[0].count // max(self.outer, 1)

    def forward(self, bottom, top):
        ops = backend.ops()
        norm = self.workspace(ops).get("norm", (1,), np.float64)
        divisor = normalizer(self.mode, self.outer, self.inner, self.ignore_label)
        ops.sigmoid_cross_entropy_loss_forward(
            ops.data(bottom[0]),
            ops.data(bottom[1]),
            self.ignore_label,
            divisor,
            ops.mutable_data(top[0]),
            norm,
        )

    def backward(self, top, propagate_down, bottom):
        if propagate_down[1]:
            raise LayerError(self, "cannot back-propagate to the label (target) input")
        if not propagate_down[0]:
            return
        ops = backend.ops()
        norm = self.workspace(ops).get("norm", (1,), np.float64)
        ops.sigmoid_cross_entropy_loss_backward(
            ops.data(bottom[0]),
            ops.data(bottom[1]),
            self.ignore_label,
            norm,
            ops.diff(top[0]),
            ops.mutable_diff(bottom[0]),
        )
