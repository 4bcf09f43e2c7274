"""Softmax and the loss layers' ops on the CPU.

Vectorised NumPy over (outer, channels, inner) views, in the float operations
and order of Caffe's CPU code (and of the layers these came from); Softmax runs
on a Numba kernel (:mod:`caffepy.kernels.softmax`), its sums in channel order. Temporaries live only inside an op; what a backward
needs again (divisors, differences, margins) is in the caller's arrays.
"""

from __future__ import annotations

import numpy as np

from caffepy.backend.base import Array
from caffepy.kernels import softmax as _softmax

#: Caffe's floor inside log() for SoftmaxWithLoss (FLT_MIN, also for double nets).
FLT_MIN = float(np.finfo(np.float32).tiny)
#: Caffe's kLOG_THRESHOLD (MultinomialLogisticLoss, InfogainLoss).
LOG_THRESHOLD = 1e-20

_L1 = 1


def _labels(raw: Array, ignore_label: int | None) -> tuple[Array, Array | None]:
    """Labels as ints (``static_cast<int>``) with ignored positions set to 0 (safe
    to index with), and the mask of the valid ones (None: no ignore_label)."""
    lab = raw.astype(np.intp)
    if ignore_label is None:
        return lab, None
    valid = lab != ignore_label
    return np.where(valid, lab, 0), valid


def _divide(
    loss: Array, normalizer: float | None, valid: Array | None, norm: Array
) -> Array:
    """loss / divisor, the divisor stored in ``norm``.

    NOTE: max(1, count) as Caffe, so a batch with every label ignored gives a zero
    loss and gradient instead of NaN.
    """
    if normalizer is None:
        assert valid is not None  # a count-based divisor needs an ignore_label
        normalizer = float(max(1, int(valid.sum())))
    norm[0] = normalizer
    return loss / normalizer


class LossOps:
    """Mixin of :class:`~caffepy.backend.cpu.CpuOps`: softmax and the losses."""

    # -- softmax -----------------------------------------------------------------
    def softmax_forward(self, x: Array, y: Array) -> None:
        # NOTE: the channel max is subtracted, which keeps exp() in (0, 1]: no
        # overflow, and the largest term is exactly 1 so the sum is never below 1.
        if x.size and x.flags.c_contiguous and y.flags.c_contiguous:
            _softmax.softmax_forward(x, y)
            return
        m = x.max(axis=1, keepdims=True)
        np.subtract(x, m, out=y)
        np.exp(y, out=y)
        y /= y.sum(axis=1, keepdims=True)

    def softmax_backward(self, y: Array, dy: Array, dx: Array) -> None:
        if y.size and all(a.flags.c_contiguous for a in (y, dy, dx)):
            _softmax.softmax_backward(y, dy, dx)
            return
        s = np.einsum("ocj,ocj->oj", dy, y)[:, None, :]
        np.subtract(dy, s, out=dx)
        dx *= y

    def check_labels(
        self, labels: Array, num_classes: int, ignore_label: int | None
    ) -> float | None:
        lab, _ = _labels(labels, ignore_label)
        bad = (lab < 0) | (lab >= num_classes)
        if not bad.any():
            return None
        return float(labels.reshape(-1)[np.flatnonzero(bad.reshape(-1))[0]])

    # -- softmax losses ------------------------------------------------------------
    def softmax_loss_forward(
        self,
        prob: Array,
        labels: Array,
        ignore_label: int | None,
        normalizer: float | None,
        loss: Array,
        norm: Array,
    ) -> None:
        outer, _, inner = prob.shape
        lab, valid = _labels(labels, ignore_label)
        p_label = np.take_along_axis(prob, lab.reshape(outer, 1, inner), axis=1)
        logp = np.log(np.maximum(p_label, prob.dtype.type(FLT_MIN)))
        if valid is None:
            total = -logp.sum()
        else:
            total = -logp[valid.reshape(outer, 1, inner)].sum()
        loss[...] = _divide(total, normalizer, valid, norm)

    def softmax_loss_backward(
        self,
        prob: Array,
        labels: Array,
        ignore_label: int | None,
        norm: Array,
        loss_weight: Array,
        dx: Array,
    ) -> None:
        outer, _, inner = prob.shape
        lab, valid = _labels(labels, ignore_label)
        lab = lab.reshape(outer, 1, inner)
        dx[...] = prob
        np.put_along_axis(dx, lab, np.take_along_axis(prob, lab, axis=1) - 1, axis=1)
        if valid is not None:
            dx *= valid.reshape(outer, 1, inner)
        dx *= dx.dtype.type(float(loss_weight) / float(norm[0]))

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
        outer, _, inner = prob.shape
        lab, valid = _labels(labels, ignore_label)
        logp = np.log(np.maximum(prob, prob.dtype.type(LOG_THRESHOLD)))
        # rows H[label] laid out as (outer, C, inner) to meet logp
        w = np.moveaxis(H[lab.reshape(outer, inner)], -1, 1)
        per_pos = -(w * logp).sum(axis=1)
        if valid is None:
            total = per_pos.sum()
        else:
            total = per_pos[valid.reshape(outer, inner)].sum()
        loss[...] = _divide(total, normalizer, valid, norm)

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
        outer, _, inner = prob.shape
        lab, valid = _labels(labels, ignore_label)
        rows = H[lab.reshape(outer, inner)]  # (outer, inner, C)
        row_sum = rows.sum(axis=-1)[:, None, :]
        np.multiply(prob, row_sum, out=dx)
        dx -= np.moveaxis(rows, -1, 1)
        if valid is not None:
            dx *= valid.reshape(outer, 1, inner)
        dx *= dx.dtype.type(float(loss_weight) / float(norm[0]))

    # -- other losses --------------------------------------------------------------
    def multinomial_logistic_loss_forward(
        self, prob: Array, labels: Array, loss: Array
    ) -> None:
        num = prob.shape[0]
        lab = labels.reshape(-1).astype(np.intp)
        pl = np.maximum(prob[np.arange(num), lab], prob.dtype.type(LOG_THRESHOLD))
        loss[...] = -np.log(pl).sum() / num

    def multinomial_logistic_loss_backward(
        self, prob: Array, labels: Array, loss_weight: Array, dx: Array
    ) -> None:
        num = prob.shape[0]
        rows, lab = np.arange(num), labels.reshape(-1).astype(np.intp)
        pl = np.maximum(prob[rows, lab], prob.dtype.type(LOG_THRESHOLD))
        dx[...] = 0
        dx[rows, lab] = -float(loss_weight) / num / pl

    def sigmoid_cross_entropy_loss_forward(
        self,
        x: Array,
        t: Array,
        ignore_label: int | None,
        normalizer: float | None,
        loss: Array,
        norm: Array,
    ) -> None:
        t = t.reshape(x.shape)
        pos = (x >= 0).astype(x.dtype)
        per = x * (t - pos) - np.log1p(np.exp(-np.abs(x)))
        if ignore_label is None:
            valid, total = None, -per.sum()
        else:
            valid = t.astype(np.intp) != ignore_label
            total = -per[valid].sum()
        loss[...] = _divide(total, normalizer, valid, norm)

    def sigmoid_cross_entropy_loss_backward(
        self,
        x: Array,
        t: Array,
        ignore_label: int | None,
        norm: Array,
        loss_weight: Array,
        dx: Array,
    ) -> None:
        t = t.reshape(x.shape)
        # NOTE: sigmoid as 0.5 * (1 + tanh(x / 2)): no exp overflow for large |x|.
        np.multiply(x, 0.5, out=dx)
        np.tanh(dx, out=dx)
        dx *= 0.5
        dx += 0.5
        dx -= t
        if ignore_label is not None:
            dx *= t.astype(np.intp) != ignore_label
        dx *= dx.dtype.type(float(loss_weight) / float(norm[0]))

    def euclidean_loss_forward(
        self, a: Array, b: Array, num: int, d: Array, loss: Array
    ) -> None:
        np.subtract(a, b, out=d)
        loss[...] = np.dot(d, d) / num / 2

    def euclidean_loss_backward(
        self, d: Array, loss_weight: Array, sign: float, num: int, dx: Array
    ) -> None:
        alpha = float(loss_weight) / num
        np.multiply(d, dx.dtype.type(sign * alpha), out=dx)

    def hinge_loss_forward(
        self, scores: Array, labels: Array, norm_type: int, margin: Array, loss: Array
    ) -> None:
        num = scores.shape[0]
        idx = (np.arange(num), labels.reshape(-1).astype(np.intp))
        m = margin
        m[...] = scores
        m[idx] *= -1
        m += 1
        np.maximum(m, 0, out=m)  # m = max(0, 1 - t s)
        total = m.sum() if norm_type == _L1 else np.einsum("ij,ij->", m, m)
        loss[...] = total / num

    def hinge_loss_backward(
        self,
        margin: Array,
        labels: Array,
        norm_type: int,
        loss_weight: Array,
        dx: Array,
    ) -> None:
        num = margin.shape[0]
        idx = (np.arange(num), labels.reshape(-1).astype(np.intp))
        if norm_type == _L1:
            np.sign(margin, out=dx)
            scale = float(loss_weight) / num
        else:
            dx[...] = margin
            scale = 2.0 * float(loss_weight) / num
        dx[idx] *= -1
        dx *= dx.dtype.type(scale)

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
        np.subtract(a, b, out=d)
        dist_sq[...] = dsq = np.einsum("ij,ij->i", d, d)
        sim = similar.reshape(-1).astype(np.intp) != 0
        m = d.dtype.type(margin)
        if legacy:
            dis = np.maximum(m - dsq, 0)
        else:
            dis = np.maximum(m - np.sqrt(dsq), 0) ** 2
        total = np.where(sim, dsq, dis).sum()
        loss[...] = total / a.shape[0] / 2

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
        t = d.dtype.type
        m = t(margin)
        if legacy:
            mdist = m - dist_sq
            beta = np.where(mdist > 0, -1.0, 0.0)
        else:
            dist = np.sqrt(dist_sq)
            mdist = m - dist
            # NOTE: 1e-4 keeps the gradient finite for coincident pairs (d = 0).
            beta = np.where(mdist > 0, -mdist / (dist + t(1e-4)), 0.0)
        sim = similar.reshape(-1).astype(np.intp) != 0
        coef = np.where(sim, 1.0, beta).astype(d.dtype)[:, None]
        alpha = float(loss_weight) / d.shape[0]
        np.multiply(d, coef, out=dx)
        dx *= t(sign * alpha)

    # -- accuracy ------------------------------------------------------------------
    def accuracy_forward(
        self,
        scores: Array,
        labels: Array,
        top_k: int,
        ignore_label: int | None,
        accuracy: Array,
        per_class: Array | None,
    ) -> None:
        outer, C, inner = scores.shape
        lab, valid = _labels(labels, ignore_label)
        lab = lab.reshape(outer, 1, inner)
        true = np.take_along_axis(scores, lab, axis=1)
        # classes scoring >= the true class, minus the true class itself
        better = (scores >= true).sum(axis=1) - 1
        correct = better < top_k
        if valid is not None:
            valid = valid.reshape(correct.shape)
            correct &= valid
            count = int(valid.sum())
        else:
            count = correct.size
        accuracy[...] = correct.sum() / count if count else 0.0
        if per_class is not None:
            labs = lab.reshape(correct.shape)
            sel = labs if valid is None else labs[valid]
            nums = np.bincount(sel.reshape(-1), minlength=C)
            hits = np.bincount(labs[correct].reshape(-1), minlength=C)
            with np.errstate(invalid="ignore", divide="ignore"):
                per = np.where(nums > 0, hits / np.maximum(nums, 1), 0.0)
            per_class[...] = per
