"""Softmax and the loss ops (and Accuracy).

Softmax works on (outer, channels, inner) views: the class axis in the
middle. Labels are the label blob's float array (``outer * inner`` values,
any shape), read as Caffe's ``static_cast<int>`` (truncation). A loss op
writes the 0-d ``loss`` array (the top's data) and, where the divisor may
depend on the data, the divisor it used into ``norm`` (a (1,) float64 work
array), which the backward op reads back: nothing leaves the device.
``loss_weight`` is the loss top's 0-d diff (Net writes the weight there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from caffepy.backend.interface.memory import MemoryInterface

if TYPE_CHECKING:
    from caffepy.backend.base import Array


class LossInterface(MemoryInterface):
    """The loss ops of :class:`~caffepy.backend.base.Ops` (declarations only)."""

    def softmax_forward(self, x: Array, y: Array) -> None:
        """y = exp(x - max) / sum(exp(x - max)) over axis 1.

        Args:
            x: (outer, channels, inner) input.
            y: (outer, channels, inner) output, assigned; may be ``x``. Computed
                in the arrays' float type, as Caffe.
        """
        raise NotImplementedError

    def softmax_backward(self, y: Array, dy: Array, dx: Array) -> None:
        """dx = y * (dy - sum_c(dy * y)) on (outer, channels, inner) arrays.

        ``dx`` is assigned and may be ``dy``; ``y`` is the forward's output.
        """
        raise NotImplementedError

    def check_labels(
        self, labels: Array, num_classes: int, ignore_label: int | None
    ) -> float | None:
        """The first label outside [0, num_classes) that is not ``ignore_label``,
        or None when every label is valid (a backend may skip the check and
        return None, as Caffe's GPU code does)."""
        raise NotImplementedError

    def softmax_loss_forward(
        self,
        prob: Array,
        labels: Array,
        ignore_label: int | None,
        normalizer: float | None,
        loss: Array,
        norm: Array,
    ) -> None:
        """loss = -sum_valid log(max(prob[label], FLT_MIN)) / divisor.

        Args:
            prob: (outer, C, inner) softmax output.
            labels: outer * inner labels in [0, C) or ``ignore_label``.
            ignore_label: positions with this label are skipped (None: none).
            normalizer: the divisor, or None for the number of non-ignored
                positions (at least 1; Caffe's VALID with an ignore_label).
            loss: 0-d output, assigned.
            norm: (1,) float64, assigned the divisor used.
        """
        raise NotImplementedError

    def softmax_loss_backward(
        self,
        prob: Array,
        labels: Array,
        ignore_label: int | None,
        norm: Array,
        loss_weight: Array,
        dx: Array,
    ) -> None:
        """dx = (prob - onehot(label)) * loss_weight / norm, 0 at ignored positions.

        ``prob``, ``dx``: (outer, C, inner); ``dx`` is assigned.
        """
        raise NotImplementedError

    def infogain_loss_forward(
        self,
        prob: Array,
        labels: Array,
        H: Array,
        ignore_label: int | None,
        normalizer: float | None,
        loss: Array,
        norm: Array,
    ) -> None:
        """loss = -sum_valid sum_l H[label, l] log(max(prob_l, 1e-20)) / divisor.

        ``prob`` (outer, C, inner), ``H`` (C, C); the rest as
        :meth:`softmax_loss_forward`.
        """
        raise NotImplementedError

    def infogain_loss_backward(
        self,
        prob: Array,
        labels: Array,
        H: Array,
        ignore_label: int | None,
        norm: Array,
        loss_weight: Array,
        dx: Array,
    ) -> None:
        """dx[:, l] = (prob_l sum_k H[label, k] - H[label, l]) * loss_weight / norm
        (0 at ignored positions); ``dx`` (outer, C, inner) is assigned."""
        raise NotImplementedError

    def multinomial_logistic_loss_forward(
        self, prob: Array, labels: Array, loss: Array
    ) -> None:
        """loss = -sum_n log(max(prob[n, label_n], 1e-20)) / N; ``prob`` (N, D)."""
        raise NotImplementedError

    def multinomial_logistic_loss_backward(
        self, prob: Array, labels: Array, loss_weight: Array, dx: Array
    ) -> None:
        """dx = -loss_weight / (N max(prob, 1e-20)) at the labels, 0 elsewhere;
        ``prob``, ``dx`` (N, D), ``dx`` assigned."""
        raise NotImplementedError

    def sigmoid_cross_entropy_loss_forward(
        self,
        x: Array,
        t: Array,
        ignore_label: int | None,
        normalizer: float | None,
        loss: Array,
        norm: Array,
    ) -> None:
        """loss = -sum_valid [x (t - [x >= 0]) - log(1 + exp(-|x|))] / divisor.

        Args:
            x: scores, any shape; t: targets of x's count (a target whose int
                equals ``ignore_label`` is skipped).
            normalizer, loss, norm: as :meth:`softmax_loss_forward`.
        """
        raise NotImplementedError

    def sigmoid_cross_entropy_loss_backward(
        self,
        x: Array,
        t: Array,
        ignore_label: int | None,
        norm: Array,
        loss_weight: Array,
        dx: Array,
    ) -> None:
        """dx = (sigmoid(x) - t) * loss_weight / norm, 0 where ignored; ``dx`` of
        x's shape, assigned."""
        raise NotImplementedError

    def euclidean_loss_forward(
        self, a: Array, b: Array, num: int, d: Array, loss: Array
    ) -> None:
        """d = a - b (flat, kept for backward); loss = d.d / num / 2."""
        raise NotImplementedError

    def euclidean_loss_backward(
        self, d: Array, loss_weight: Array, sign: float, num: int, dx: Array
    ) -> None:
        """dx = d * sign * loss_weight / num (flat, assigned)."""
        raise NotImplementedError

    def hinge_loss_forward(
        self, scores: Array, labels: Array, norm_type: int, margin: Array, loss: Array
    ) -> None:
        """margin = max(0, 1 - t s) with t = +1 at the label, -1 elsewhere (N, D),
        kept for backward; loss = sum(margin) / N (L1, ``norm_type`` 1) or
        sum(margin^2) / N (L2, 2)."""
        raise NotImplementedError

    def hinge_loss_backward(
        self,
        margin: Array,
        labels: Array,
        norm_type: int,
        loss_weight: Array,
        dx: Array,
    ) -> None:
        """dx = -t [margin > 0] (L1) or -2 t margin (L2), times loss_weight / N;
        (N, D), assigned."""
        raise NotImplementedError

    def contrastive_loss_forward(
        self,
        a: Array,
        b: Array,
        similar: Array,
        margin: float,
        legacy: bool,
        d: Array,
        dist_sq: Array,
        loss: Array,
    ) -> None:
        """Contrastive loss of pairs (a_n, b_n), (N, D) each.

        d = a - b (N, D) and dist_sq = |d_n|^2 (N,) are assigned and kept for
        backward; loss = sum_n [y_n dist_sq_n + (1 - y_n) m_n] / (2 N) with
        y_n = int(similar_n) != 0 and m_n = max(margin - |d_n|, 0)^2
        (legacy: max(margin - dist_sq_n, 0)).
        """
        raise NotImplementedError

    def contrastive_loss_backward(
        self,
        d: Array,
        dist_sq: Array,
        similar: Array,
        margin: float,
        legacy: bool,
        loss_weight: Array,
        sign: float,
        dx: Array,
    ) -> None:
        """dx = sign * c_n * d * loss_weight / N, c_n = 1 for similar pairs, else
        -(margin - |d_n|) / (|d_n| + 1e-4) where positive (legacy: -1), else 0.
        ``dx`` (N, D), assigned."""
        raise NotImplementedError

    def accuracy_forward(
        self,
        scores: Array,
        labels: Array,
        top_k: int,
        ignore_label: int | None,
        accuracy: Array,
        per_class: Array | None,
    ) -> None:
        """Top-k accuracy of (outer, C, inner) scores: a position is correct when
        fewer than top_k other classes score at least as high as its label.

        ``accuracy`` (0-d) is assigned the fraction of correct non-ignored
        positions (0 when there are none); ``per_class`` (C,), when wanted, the
        fraction per label class (0 for a class without labels).
        """
        raise NotImplementedError
