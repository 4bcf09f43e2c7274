"""InfogainLoss: a softmax cross entropy weighted by an infogain matrix."""

from __future__ import annotations

import numpy as np

from caffepy import backend
from caffepy.errors import CaffepyError, LayerError, ShapeError
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


@register_layer("InfogainLoss")
class InfogainLossLayer(LossLayer):
    """Infogain loss: a softmax of the scores weighted by an infogain matrix H.

    loss = -sum_{valid positions} sum_l H[label, l] * log(max(p_l, 1e-20))
    / normalizer, with p = softmax(bottom[0]) over ``infogain_loss_param.axis``
    (H = identity gives SoftmaxWithLoss).

    Parameters:
        infogain_loss_param.source: a binaryproto holding H (C x C; path relative
            to the working directory), used when there is no third bottom;
        infogain_loss_param.axis (default 1): the class axis;
        loss_param.ignore_label; loss_param.normalization (default VALID; the
            deprecated ``normalize`` is refused, as Caffe).

    Bottoms: scores, labels, optional H (C*C values). Tops: loss; optional prob.
    Gradient: (p_l * sum_k H[label, k] - H[label, l]) * loss_weight / normalizer;
    none to the labels or H.
    """

    uses_ops = (
        "check_labels",
        "copy",
        "from_host",
        "infogain_loss_backward",
        "infogain_loss_forward",
        "softmax_forward",
    )

    max_num_bottom = 3
    max_num_top = 2

    def setup(self, bottom, top):
        lp = self.layer_param.loss_param
        if lp.HasField("normalize"):
            raise LayerError(
                self, "loss_param normalize is deprecated here; use normalization"
            )
        self.ignore_label = get_ignore_label(self)
        self.mode = normalization_mode(self, VALID)
        ip = self.layer_param.infogain_loss_param
        self._axis_param = ip.axis
        self._H = None
        self._H_on = None  # (ops, the file's H on that device)
        if len(bottom) < 3:
            if not ip.source:
                raise LayerError(
                    self,
                    "needs the infogain matrix: a third bottom or "
                    "infogain_loss_param.source",
                )
            from caffepy.io.blobproto import read_binaryproto

            try:
                self._H = np.asarray(read_binaryproto(ip.source), self.dtype)
            except CaffepyError as err:  # a missing or malformed file: name the layer
                raise LayerError(self, str(err)) from None

    def allow_force_backward(self, bottom_index):
        return bottom_index == 0

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.axis, self.outer, self.C, self.inner = label_geometry(
            self, bottom, self._axis_param, "score"
        )
        shape, size = (
            (self._H.shape, self._H.size)
            if len(bottom) < 3
            else (bottom[2].shape, bottom[2].count)
        )
        if size != self.C * self.C:
            raise ShapeError(
                self,
                f"infogain matrix has shape {shape} ({size} values); expected "
                f"{self.C} x {self.C} for scores of shape {bottom[0].shape}",
            )
        if len(top) > 1:
            top[1].reshape(bottom[0].shape)

    def _matrix(self, ops, bottom):
        """H as a (C, C) array on ``ops``'s device."""
        if len(bottom) == 3:
            return ops.data(bottom[2]).reshape(self.C, self.C)
        if self._H_on is None or self._H_on[0] is not ops:
            self._H_on = (ops, ops.from_host(self._H))
        return self._H_on[1].reshape(self.C, self.C)

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
        ops.infogain_loss_forward(
            prob,
            labels,
            self._matrix(ops, bottom),
            self.ignore_label,
            divisor,
            ops.mutable_data(top[0]),
            norm,
        )
        if len(top) > 1:
            ops.copy(prob.reshape(top[1].shape), ops.mutable_data(top[1]))

    def backward(self, top, propagate_down, bottom):
        if len(propagate_down) > 1 and propagate_down[1]:
            raise LayerError(self, "cannot back-propagate to the label input")
        if len(propagate_down) > 2 and propagate_down[2]:
            raise LayerError(self, "cannot back-propagate to the infogain matrix input")
        if not propagate_down[0]:
            return
        ops = backend.ops()
        prob, norm = self._work(ops)
        ops.infogain_loss_backward(
            prob,
            ops.data(bottom[1]),
            self._matrix(ops, bottom),
            self.ignore_label,
            norm,
            ops.diff(top[0]),
            ops.mutable_diff(bottom[0]).reshape(prob.shape),
        )
