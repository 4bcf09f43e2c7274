"""Softmax and the losses on the device.

Softmax and SoftmaxWithLoss are numba.cuda kernels whose divisor stays on the
device (``norm``), so a training iteration reads back only the displayed loss;
the loss's sums (up to 4096 positions) and the backward's scaling are fused into
the kernels (three launches forward, one backward).
Euclidean, MultinomialLogistic and Hinge are xp expressions; the rest
(Infogain, SigmoidCrossEntropy, Contrastive, Accuracy) are the CPU backend's
NumPy passes, which NumPy hands to CuPy for device arrays.
"""

from __future__ import annotations

import numpy as np

from caffepy.backend.base import Array
from caffepy.backend.cpu.loss import LOG_THRESHOLD, LossOps
from caffepy.backend.interface.loss import LossInterface

_L1 = 1
# NOTE: up to this many positions (outer * inner) the forward's sums run in one
# single-thread launch (float64); beyond, CuPy's parallel reductions.
_FUSED_FINISH_MAX = 4096


def _k():
    from caffepy.backend.cuda.kernels import softmax
    from caffepy.backend.cuda.kernels.launch import launch

    return softmax, launch


class CudaLossOps(LossOps, LossInterface):
    """Mixin of :class:`~caffepy.backend.cuda.CudaOps`: softmax and the losses."""

    def softmax_forward(self, x: Array, y: Array) -> None:
        softmax, launch = _k()
        outer, c, inner = x.shape
        launch(softmax.softmax_forward, outer * inner, x.reshape(-1), c, inner,
               y.reshape(-1))  # fmt: skip

    def softmax_backward(self, y: Array, dy: Array, dx: Array) -> None:
        softmax, launch = _k()
        outer, c, inner = y.shape
        launch(softmax.softmax_backward, outer * inner, y.reshape(-1), dy.reshape(-1),
               c, inner, dx.reshape(-1))  # fmt: skip

    def check_labels(
        self, labels: Array, num_classes: int, ignore_label: int | None
    ) -> float | None:
        # NOTE: as Caffe's GPU code, no check (it would read the labels back).
        return None

    def softmax_loss_forward(
        self,
        prob: Array,
        labels: Array,
        ignore_label: int | None,
        normalizer: float | None,
        loss: Array,
        norm: Array,
    ) -> None:
        softmax, launch = _k()
        outer, c, inner = prob.shape
        n = outer * inner
        per = self.xp.empty((n,), prob.dtype)
        counts = self.xp.empty((n,), prob.dtype)
        has_ignore = ignore_label is not None
        launch(softmax.softmax_loss_forward, n, prob.reshape(-1), labels.reshape(-1),
               c, inner, has_ignore, ignore_label if has_ignore else 0, per,
               counts)  # fmt: skip
        if n <= _FUSED_FINISH_MAX and loss.size == 1:
            launch(softmax.softmax_loss_finish, 1, per, counts, normalizer is None,
                   float(normalizer or 0.0), loss.reshape(-1), norm.reshape(-1))  # fmt: skip
            return
        if normalizer is None:
            self.xp.maximum(counts.sum(dtype=np.float64), 1.0, out=norm[:1])
        else:
            norm[...] = normalizer
        loss[...] = per.sum() / norm[0]

    def softmax_loss_backward(
        self,
        prob: Array,
        labels: Array,
        ignore_label: int | None,
        norm: Array,
        loss_weight: Array,
        dx: Array,
    ) -> None:
        softmax, launch = _k()
        outer, c, inner = prob.shape
        has_ignore = ignore_label is not None
        launch(softmax.softmax_loss_backward_scaled, outer * inner, prob.reshape(-1),
               labels.reshape(-1), c, inner, has_ignore,
               ignore_label if has_ignore else 0, loss_weight.reshape(-1),
               norm.reshape(-1), dx.reshape(-1))  # fmt: skip

    def euclidean_loss_forward(
        self, a: Array, b: Array, num: int, d: Array, loss: Array
    ) -> None:
        self.xp.subtract(a, b, out=d)
        loss[...] = self.xp.dot(d, d) / num / 2

    def euclidean_loss_backward(
        self, d: Array, loss_weight: Array, sign: float, num: int, dx: Array
    ) -> None:
        self.xp.multiply(d, (loss_weight * (sign / num)).astype(dx.dtype), out=dx)

    def multinomial_logistic_loss_forward(
        self, prob: Array, labels: Array, loss: Array
    ) -> None:
        xp = self.xp
        num = prob.shape[0]
        lab = labels.reshape(-1).astype(np.intp)
        pl = xp.maximum(prob[xp.arange(num), lab], prob.dtype.type(LOG_THRESHOLD))
        loss[...] = -xp.log(pl).sum() / num

    def multinomial_logistic_loss_backward(
        self, prob: Array, labels: Array, loss_weight: Array, dx: Array
    ) -> None:
        xp = self.xp
        num = prob.shape[0]
        rows, lab = xp.arange(num), labels.reshape(-1).astype(np.intp)
        pl = xp.maximum(prob[rows, lab], prob.dtype.type(LOG_THRESHOLD))
        dx[...] = 0
        dx[rows, lab] = (-loss_weight / num / pl).astype(dx.dtype)

    def hinge_loss_forward(
        self, scores: Array, labels: Array, norm_type: int, margin: Array, loss: Array
    ) -> None:
        xp = self.xp
        num = scores.shape[0]
        idx = (xp.arange(num), labels.reshape(-1).astype(np.intp))
        m = margin
        m[...] = scores
        m[idx] *= -1
        m += 1
        xp.maximum(m, 0, out=m)
        total = m.sum() if norm_type == _L1 else (m * m).sum()
        loss[...] = total / num

    def hinge_loss_backward(
        self,
        margin: Array,
        labels: Array,
        norm_type: int,
        loss_weight: Array,
        dx: Array,
    ) -> None:
        xp = self.xp
        num = margin.shape[0]
        idx = (xp.arange(num), labels.reshape(-1).astype(np.intp))
        if norm_type == _L1:
            xp.sign(margin, out=dx)
            scale = loss_weight / num
        else:
            dx[...] = margin
            scale = 2.0 * loss_weight / num
        dx[idx] *= -1
        dx *= scale.astype(dx.dtype)
