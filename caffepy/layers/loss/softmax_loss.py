"""SoftmaxWithLoss: softmax and the multinomial logistic loss, fused."""

from __future__ import annotations

import numpy as np

from caffepy import backend
from caffepy.errors import LayerError
from caffepy.layer import LossLayer
from caffepy.layers.loss.base import (
    VALID,
    check_labels,
    get_ignore_label,
    label_geometry,
    normalization_mode,
    normalizer,
)
from caffepy.registry import register_layer


@register_layer("SoftmaxWithLoss")
class SoftmaxWithLossLayer(LossLayer):
    """Softmax followed by the multinomial logistic loss (cross entropy), fused.

    loss = -sum_{valid positions} log(max(p[label], FLT_MIN)) / normalizer,
    p = softmax(scores) over ``softmax_param.axis``.

    Parameters:
        softmax_param.axis (default 1): the class axis.
        loss_param.ignore_label (unset): positions with this label contribute
            nothing and get zero gradient.
        loss_param.normalization (default VALID): VALID = #non-ignored positions,
            BATCH_SIZE = outer count, FULL = outer*inner, NONE = 1 (each at least
            1); the legacy ``normalize`` (true VALID, false BATCH_SIZE) applies
            when ``normalization`` is unset.

    Bottoms: scores (..., C, ...) and labels (outer*inner values in [0, C)).
    Tops: loss (0-d); optional prob (the softmax, same shape as the scores).
    Gradient: (p - onehot(label)) * loss_weight / normalizer; none to the labels.
    """

    uses_ops = (
        "check_labels",
        "copy",
        "softmax_forward",
        "softmax_loss_backward",
        "softmax_loss_forward",
    )

    max_num_top = 2

    def setup(self, bottom, top):
        self.ignore_label = get_ignore_label(self)
        self.mode = normalization_mode(self, VALID)
        self._axis_param = self.layer_param.softmax_param.axis

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.axis, self.outer, self.C, self.inner = label_geometry(
            self, bottom, self._axis_param, "score"
        )
        if len(top) > 1:
            top[1].reshape(bottom[0].shape)

    def _work(self, ops):
        """The softmax (outer, C, inner) and the divisor, kept for backward."""
        ws = self.workspace(ops)
        prob = ws.get("prob", (self.outer, self.C, self.inner), self.dtype)
        return prob, ws.get("norm", (1,), np.float64)

    def forward(self, bottom, top):
        ops = backend.ops()
        prob, norm = self._work(ops)
        ops.softmax_forward(ops.data(bottom[0]).reshape(prob.shape), prob)
        labels = ops.data(bottom[1])
        check_labels(self, ops, labels, self.C, self.ignore_label)
        divisor = normalizer(self.mode, self.outer, self.inner, self.ignore_label)
        loss = ops.mutable_data(top[0])
        ops.softmax_loss_forward(prob, labels, self.ignore_label, divisor, loss, norm)
        if len(top) > 1:
            ops.copy(prob.reshape(top[1].shape), ops.mutable_data(top[1]))

    def backward(self, top, propagate_down, bottom):
        if len(propagate_down) > 1 and propagate_down[1]:
            raise LayerError(self, "cannot back-propagate to the label input")
        if not propagate_down[0]:
            return
        ops = backend.ops()
        prob, norm = self._work(ops)
        dx = ops.mutable_diff(bottom[0]).reshape(prob.shape)
        ops.softmax_loss_backward(
            prob, ops.data(bottom[1]), self.ignore_label, norm, ops.diff(top[0]), dx
        )
