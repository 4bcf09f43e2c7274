"""Loss layers (SoftmaxWithLoss, SigmoidCrossEntropyLoss, EuclideanLoss,
HingeLoss, MultinomialLogisticLoss, InfogainLoss, ContrastiveLoss) and Accuracy.

A loss top is a 0-d blob. The Net writes the loss weight into its diff before
backward, so every backward scales its gradient by ``float(top[0].diff)``.
Labels are stored as floats and read as Caffe does (``static_cast<int>``:
truncation toward zero). All computation is vectorised NumPy over
(outer, channels, inner) views; no per-element Python loops.
"""

import numpy as np

from caffepy.errors import CaffepyError, LayerError, ShapeError, UnsupportedError
from caffepy.layer import Layer, LossLayer, canonical_axis
from caffepy.layers.common import softmax3
from caffepy.registry import register_layer

# LossParameter.NormalizationMode
FULL, VALID, BATCH_SIZE, NONE = 0, 1, 2, 3
_NORM_NAMES = {FULL: "FULL", VALID: "VALID", BATCH_SIZE: "BATCH_SIZE", NONE: "NONE"}

#: Caffe's floor inside log() for SoftmaxWithLoss (FLT_MIN, also for double nets).
FLT_MIN = float(np.finfo(np.float32).tiny)
#: Caffe's kLOG_THRESHOLD (MultinomialLogisticLoss, InfogainLoss).
LOG_THRESHOLD = 1e-20


def normalization_mode(layer, default=VALID):
    """Caffe's rule: ``normalization`` if given, else legacy ``normalize``
    (true -> VALID, false -> BATCH_SIZE), else ``default``."""
    lp = layer.layer_param.loss_param
    if lp.HasField("normalization"):
        mode = lp.normalization
    elif lp.HasField("normalize"):
        mode = VALID if lp.normalize else BATCH_SIZE
    else:
        mode = default
    if mode not in _NORM_NAMES:
        raise LayerError(layer, f"unknown normalization mode {mode}")
    return mode


def normalizer(mode, outer, inner, valid_count):
    """Caffe's ``get_normalizer``; ``valid_count`` None means no ignore_label.

    NOTE: max(1, .) as Caffe, so a batch with every label ignored gives a zero
    loss and gradient instead of NaN.
    """
    if mode == FULL:
        n = outer * inner
    elif mode == VALID:
        n = outer * inner if valid_count is None else valid_count
    elif mode == BATCH_SIZE:
        n = outer
    else:
        n = 1
    return float(max(1, n))


def read_labels(layer, label_blob, num_classes, ignore_label=None):
    """Labels as ints (truncated as static_cast<int>), checked against the classes.

    Returns (labels, valid) where valid is None when no ignore_label is set and
    labels are clipped to 0 at ignored positions (safe to index with).
    """
    raw = label_blob.data
    lab = raw.astype(np.intp)
    valid = None
    if ignore_label is not None:
        valid = lab != ignore_label
        lab = np.where(valid, lab, 0)
    bad = (lab < 0) | (lab >= num_classes)
    if bad.any():
        value = raw.reshape(-1)[np.flatnonzero(bad.reshape(-1))[0]]
        raise LayerError(
            layer,
            f"label {value:g} is out of range: expected an integer in [0, "
            f"{num_classes})"
            + ("" if ignore_label is None else f" or the ignore_label {ignore_label}"),
        )
    return lab, valid


def _ignore_label(layer):
    lp = layer.layer_param.loss_param
    return int(lp.ignore_label) if lp.HasField("ignore_label") else None


def _loss_weight(top):
    return float(top[0].diff)


def _label_geometry(layer, bottom, axis_param, what):
    """(axis, outer, channels, inner) of bottom[0]; the label count must be outer*inner."""
    axis = canonical_axis(layer, bottom[0], axis_param)
    outer = bottom[0].count_range(0, axis)
    inner = bottom[0].count_range(axis + 1)
    if outer * inner != bottom[1].count:
        raise ShapeError(
            layer,
            f"{what} bottom shape {bottom[0].shape} needs {outer * inner} labels "
            f"(one per position outside axis {axis}) but the label bottom has shape "
            f"{bottom[1].shape} ({bottom[1].count})",
        )
    return axis, outer, bottom[0].shape[axis], inner


# -- softmax losses ---------------------------------------------------------------------------

def _per_item_reshape(layer, bottom, top, what):
    """LossLayer.reshape plus one label per item: sets ``layer.num`` and ``layer.dim``
    (predictions flattened to (num, dim))."""
    LossLayer.reshape(layer, bottom, top)
    layer.num = bottom[0].shape[0] if bottom[0].num_axes else 1
    if bottom[1].count != layer.num:
        raise ShapeError(
            layer,
            f"needs one label per item: {what} {bottom[0].shape}, labels "
            f"{bottom[1].shape}",
        )
    layer.dim = bottom[0].count // max(layer.num, 1)

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

    max_num_top = 2

    def setup(self, bottom, top):
        self.ignore_label = _ignore_label(self)
        self.mode = normalization_mode(self, VALID)
        self._axis_param = self.layer_param.softmax_param.axis
        self._prob = np.zeros(0, self.dtype)

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.axis, self.outer, self.C, self.inner = _label_geometry(
            self, bottom, self._axis_param, "score"
        )
        if self._prob.size < bottom[0].count:
            self._prob = np.zeros(bottom[0].count, self.dtype)
        if len(top) > 1:
            top[1].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        g = (self.outer, self.C, self.inner)
        p = softmax3(
            bottom[0].data.reshape(g), self._prob[: bottom[0].count].reshape(g)
        )
        lab, valid = read_labels(self, bottom[1], self.C, self.ignore_label)
        lab = lab.reshape(self.outer, 1, self.inner)
        p_label = np.take_along_axis(p, lab, axis=1)
        logp = np.log(np.maximum(p_label, self.dtype.type(FLT_MIN)))
        if valid is None:
            loss, count = -logp.sum(), None
        else:
            valid = valid.reshape(self.outer, 1, self.inner)
            loss, count = -logp[valid].sum(), int(valid.sum())
        self._norm = normalizer(self.mode, self.outer, self.inner, count)
        self._lab, self._valid, self._p_label = lab, valid, p_label
        top[0].data[...] = loss / self._norm
        if len(top) > 1:
            top[1].data[...] = p.reshape(top[1].shape)

    def backward(self, top, propagate_down, bottom):
        if len(propagate_down) > 1 and propagate_down[1]:
            raise LayerError(self, "cannot back-propagate to the label input")
        if not propagate_down[0]:
            return
        g = (self.outer, self.C, self.inner)
        dx = bottom[0].diff.reshape(g)
        dx[...] = self._prob[: bottom[0].count].reshape(g)
        np.put_along_axis(dx, self._lab, self._p_label - 1, axis=1)
        if self._valid is not None:
            dx *= self._valid
        dx *= self.dtype.type(_loss_weight(top) / self._norm)


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

    max_num_bottom = 3
    max_num_top = 2

    def setup(self, bottom, top):
        lp = self.layer_param.loss_param
        if lp.HasField("normalize"):
            raise LayerError(
                self, "loss_param normalize is deprecated here; use normalization"
            )
        self.ignore_label = _ignore_label(self)
        self.mode = normalization_mode(self, VALID)
        ip = self.layer_param.infogain_loss_param
        self._axis_param = ip.axis
        self._H = None
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
        self._prob = np.zeros(0, self.dtype)

    def allow_force_backward(self, bottom_index):
        return bottom_index == 0

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.axis, self.outer, self.C, self.inner = _label_geometry(
            self, bottom, self._axis_param, "score"
        )
        H = self._H if len(bottom) < 3 else bottom[2].data
        if H.size != self.C * self.C:
            raise ShapeError(
                self,
                f"infogain matrix has shape {H.shape} ({H.size} values); expected "
                f"{self.C} x {self.C} for scores of shape {bottom[0].shape}",
            )
        if self._prob.size < bottom[0].count:
            self._prob = np.zeros(bottom[0].count, self.dtype)
        if len(top) > 1:
            top[1].reshape(bottom[0].shape)

    def _matrix(self, bottom):
        H = self._H if len(bottom) < 3 else bottom[2].data
        return H.reshape(self.C, self.C)

    def forward(self, bottom, top):
        g = (self.outer, self.C, self.inner)
        p = softmax3(
            bottom[0].data.reshape(g), self._prob[: bottom[0].count].reshape(g)
        )
        lab, valid = read_labels(self, bottom[1], self.C, self.ignore_label)
        lab = lab.reshape(self.outer, self.inner)
        H = self._matrix(bottom)
        logp = np.log(np.maximum(p, self.dtype.type(LOG_THRESHOLD)))
        # rows H[label] laid out as (outer, C, inner) to meet logp
        w = np.moveaxis(H[lab], -1, 1)
        per_pos = -(w * logp).sum(axis=1)
        if valid is None:
            loss, count = per_pos.sum(), None
        else:
            valid = valid.reshape(self.outer, self.inner)
            loss, count = per_pos[valid].sum(), int(valid.sum())
        self._norm = normalizer(self.mode, self.outer, self.inner, count)
        self._lab, self._valid = lab, valid
        top[0].data[...] = loss / self._norm
        if len(top) > 1:
            top[1].data[...] = p.reshape(top[1].shape)

    def backward(self, top, propagate_down, bottom):
        if len(propagate_down) > 1 and propagate_down[1]:
            raise LayerError(self, "cannot back-propagate to the label input")
        if len(propagate_down) > 2 and propagate_down[2]:
            raise LayerError(self, "cannot back-propagate to the infogain matrix input")
        if not propagate_down[0]:
            return
        g = (self.outer, self.C, self.inner)
        H = self._matrix(bottom)
        p = self._prob[: bottom[0].count].reshape(g)
        rows = H[self._lab]  # (outer, inner, C)
        row_sum = rows.sum(axis=-1)[:, None, :]
        dx = bottom[0].diff.reshape(g)
        np.multiply(p, row_sum, out=dx)
        dx -= np.moveaxis(rows, -1, 1)
        if self._valid is not None:
            dx *= self._valid[:, None, :]
        dx *= self.dtype.type(_loss_weight(top) / self._norm)


@register_layer("MultinomialLogisticLoss")
class MultinomialLogisticLossLayer(LossLayer):
    """Negative log likelihood of probabilities (e.g. a Softmax output).

    loss = -sum_n log(max(p[n, label_n], 1e-20)) / N.

    Bottoms: probabilities (N, C, ...) flattened to (N, count/N); labels (N).
    Gradient: -loss_weight / (N * max(p, 1e-20)) at the label, 0 elsewhere.
    """

    exact_num_bottom = 2

    def reshape(self, bottom, top):
        _per_item_reshape(self, bottom, top, "probabilities")

    def forward(self, bottom, top):
        p = bottom[0].data.reshape(self.num, self.dim)
        lab, _ = read_labels(self, bottom[1], self.dim)
        self._lab = lab.reshape(-1)
        pl = np.maximum(
            p[np.arange(self.num), self._lab], self.dtype.type(LOG_THRESHOLD)
        )
        self._pl = pl
        top[0].data[...] = -np.log(pl).sum() / self.num

    def backward(self, top, propagate_down, bottom):
        if propagate_down[1]:
            raise LayerError(self, "cannot back-propagate to the label input")
        if not propagate_down[0]:
            return
        dx = bottom[0].diff.reshape(self.num, self.dim)
        dx[...] = 0
        dx[np.arange(self.num), self._lab] = -_loss_weight(top) / self.num / self._pl


# -- other losses ---------------------------------------------------------------------------
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

    exact_num_bottom = 2

    def setup(self, bottom, top):
        self.ignore_label = _ignore_label(self)
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
        x = bottom[0].data
        t = bottom[1].data.reshape(x.shape)
        pos = (x >= 0).astype(x.dtype)
        per = x * (t - pos) - np.log1p(np.exp(-np.abs(x)))
        if self.ignore_label is None:
            self._valid, count = None, None
            loss = -per.sum()
        else:
            valid = t.astype(np.intp) != self.ignore_label
            self._valid, count = valid, int(valid.sum())
            loss = -per[valid].sum()
        self._norm = normalizer(self.mode, self.outer, self.inner, count)
        top[0].data[...] = loss / self._norm

    def backward(self, top, propagate_down, bottom):
        if propagate_down[1]:
            raise LayerError(self, "cannot back-propagate to the label (target) input")
        if not propagate_down[0]:
            return
        x = bottom[0].data
        dx = bottom[0].diff
        # NOTE: sigmoid as 0.5 * (1 + tanh(x / 2)): no exp overflow for large |x|.
        np.multiply(x, 0.5, out=dx)
        np.tanh(dx, out=dx)
        dx *= 0.5
        dx += 0.5
        dx -= bottom[1].data.reshape(x.shape)
        if self._valid is not None:
            dx *= self._valid
        dx *= self.dtype.type(_loss_weight(top) / self._norm)


@register_layer("EuclideanLoss")
class EuclideanLossLayer(LossLayer):
    """loss = sum((a - b)^2) / (2 N), N = shape[0].

    Bottoms: a and b with equal shape[0] and count. Both receive gradients:
    da = (a - b) * loss_weight / N, db = -da.
    """

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

    def forward(self, bottom, top):
        a = bottom[0].data.reshape(-1)
        self._d = d = a - bottom[1].data.reshape(-1)
        top[0].data[...] = np.dot(d, d) / self.num / 2

    def backward(self, top, propagate_down, bottom):
        alpha = _loss_weight(top) / self.num
        for i, sign in ((0, 1.0), (1, -1.0)):
            if propagate_down[i]:
                np.multiply(
                    self._d,
                    self.dtype.type(sign * alpha),
                    out=bottom[i].diff.reshape(-1),
                )


_L1, _L2 = 1, 2


@register_layer("HingeLoss")
class HingeLossLayer(LossLayer):
    """One-vs-all hinge loss with t = +1 for the true class, -1 otherwise.

    L1 (default): loss = sum max(0, 1 - t s) / N; L2: sum max(0, 1 - t s)^2 / N.

    Parameters: hinge_loss_param.norm (L1 default, or L2).
    Bottoms: scores (N, ...) flattened to (N, C); labels (N).
    Gradient: L1: -t [1 - t s > 0]; L2: -2 t max(0, 1 - t s); times loss_weight / N.
    """

    exact_num_bottom = 2

    def setup(self, bottom, top):
        self.norm = self.layer_param.hinge_loss_param.norm
        if self.norm not in (_L1, _L2):
            raise LayerError(self, f"unknown norm {self.norm}; expected L1 or L2")

    def reshape(self, bottom, top):
        _per_item_reshape(self, bottom, top, "scores")

    def forward(self, bottom, top):
        s = bottom[0].data.reshape(self.num, self.dim)
        lab, _ = read_labels(self, bottom[1], self.dim)
        rows = np.arange(self.num)
        self._idx = (rows, lab.reshape(-1))
        m = s.copy()
        m[self._idx] *= -1
        m += 1
        np.maximum(m, 0, out=m)  # m = max(0, 1 - t s)
        self._margin = m
        loss = m.sum() if self.norm == _L1 else np.einsum("ij,ij->", m, m)
        top[0].data[...] = loss / self.num

    def backward(self, top, propagate_down, bottom):
        if propagate_down[1]:
            raise LayerError(self, "cannot back-propagate to the label input")
        if not propagate_down[0]:
            return
        dx = bottom[0].diff.reshape(self.num, self.dim)
        if self.norm == _L1:
            np.sign(self._margin, out=dx)
            scale = _loss_weight(top) / self.num
        else:
            dx[...] = self._margin
            scale = 2.0 * _loss_weight(top) / self.num
        dx[self._idx] *= -1
        dx *= self.dtype.type(scale)


@register_layer("ContrastiveLoss")
class ContrastiveLossLayer(LossLayer):
    """Contrastive loss on pairs (a_n, b_n) with similarity labels y_n.

    d_n = ||a_n - b_n||; loss = sum_n [y_n d_n^2 + (1 - y_n) m(d_n)] / (2 N) with
    m(d) = max(margin - d, 0)^2, or max(margin - d^2, 0) when legacy_version.
    y_n is int(label) != 0.

    Parameters (``contrastive_loss_param``): margin (default 1.0),
    legacy_version (default false).

    Bottoms: a (N, ...), b (same shape), y (N). Gradient to a (b: negated):
    similar: (a - b) w / N; dissimilar with positive margin term:
    -(margin - d)/(d + 1e-4) (a - b) w / N (legacy: -(a - b) w / N); w = loss_weight.
    """

    exact_num_bottom = 3

    def setup(self, bottom, top):
        p = self.layer_param.contrastive_loss_param
        self.margin, self.legacy = float(p.margin), p.legacy_version

    def allow_force_backward(self, bottom_index):
        return bottom_index != 2

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        if bottom[0].shape != bottom[1].shape:
            raise ShapeError(
                self,
                f"the two inputs must have the same shape: {bottom[0].shape} vs "
                f"{bottom[1].shape}",
            )
        self.num = bottom[0].shape[0] if bottom[0].num_axes else 1
        if bottom[2].count != self.num:
            raise ShapeError(
                self,
                f"needs one similarity label per pair: inputs {bottom[0].shape}, "
                f"labels {bottom[2].shape}",
            )

    def forward(self, bottom, top):
        a = bottom[0].data.reshape(self.num, -1)
        self._d = d = a - bottom[1].data.reshape(self.num, -1)
        self._dist_sq = dsq = np.einsum("ij,ij->i", d, d)
        self._similar = sim = bottom[2].data.reshape(-1).astype(np.intp) != 0
        m = self.dtype.type(self.margin)
        if self.legacy:
            dis = np.maximum(m - dsq, 0)
        else:
            dis = np.maximum(m - np.sqrt(dsq), 0) ** 2
        loss = np.where(sim, dsq, dis).sum()
        top[0].data[...] = loss / self.num / 2

    def backward(self, top, propagate_down, bottom):
        if propagate_down[2]:
            raise LayerError(self, "cannot back-propagate to the label input")
        m = self.dtype.type(self.margin)
        if self.legacy:
            mdist = m - self._dist_sq
            beta = np.where(mdist > 0, -1.0, 0.0)
        else:
            dist = np.sqrt(self._dist_sq)
            mdist = m - dist
            # NOTE: 1e-4 keeps the gradient finite for coincident pairs (d = 0).
            beta = np.where(mdist > 0, -mdist / (dist + self.dtype.type(1e-4)), 0.0)
        coef = np.where(self._similar, 1.0, beta).astype(self.dtype)[:, None]
        alpha = _loss_weight(top) / self.num
        for i, sign in ((0, 1.0), (1, -1.0)):
            if propagate_down[i]:
                dx = bottom[i].diff.reshape(self.num, -1)
                np.multiply(self._d, coef, out=dx)
                dx *= self.dtype.type(sign * alpha)


# -- accuracy (not a loss) ---------------------------------------------------------------------------
@register_layer("Accuracy")
class AccuracyLayer(Layer):
    """Top-k classification accuracy (not a loss: no loss weight, forward only).

    A position counts as correct when fewer than top_k OTHER classes score at
    least as high as the true class (BVLC Caffe 1.0's rule: a tie with the true
    class counts against it).

    Parameters (``accuracy_param``): top_k (default 1), axis (default 1, the class
    axis), ignore_label (unset).

    Bottoms: scores (..., C, ...) and labels (outer*inner). Tops: accuracy (0-d);
    optional per-class accuracy (C,) (0 for a class with no labels).
    Backward is refused (Caffe: not implemented).
    """

    exact_num_bottom = 2
    min_num_top = 1
    max_num_top = 2

    def setup(self, bottom, top):
        p = self.layer_param.accuracy_param
        self.top_k = int(p.top_k)
        self.ignore_label = int(p.ignore_label) if p.HasField("ignore_label") else None
        self._axis_param = p.axis

    def allow_force_backward(self, bottom_index):
        return False

    def reshape(self, bottom, top):
        self.axis, self.outer, self.C, self.inner = _label_geometry(
            self, bottom, self._axis_param, "score"
        )
        if self.top_k > self.C:
            raise LayerError(
                self,
                f"top_k {self.top_k} exceeds the {self.C} classes of scores "
                f"{bottom[0].shape}",
            )
        top[0].reshape(())
        if len(top) > 1:
            top[1].reshape(self.C)

    def forward(self, bottom, top):
        x = bottom[0].data.reshape(self.outer, self.C, self.inner)
        lab, valid = read_labels(self, bottom[1], self.C, self.ignore_label)
        lab = lab.reshape(self.outer, 1, self.inner)
        true = np.take_along_axis(x, lab, axis=1)
        # classes scoring >= the true class, minus the true class itself
        better = (x >= true).sum(axis=1) - 1
        correct = better < self.top_k
        if valid is not None:
            valid = valid.reshape(correct.shape)
            correct &= valid
            count = int(valid.sum())
        else:
            count = correct.size
        top[0].data[...] = correct.sum() / count if count else 0.0
        if len(top) > 1:
            labs = lab.reshape(correct.shape)
            sel = labs if valid is None else labs[valid]
            nums = np.bincount(sel.reshape(-1), minlength=self.C)
            hits = np.bincount(labs[correct].reshape(-1), minlength=self.C)
            with np.errstate(invalid="ignore", divide="ignore"):
                per = np.where(nums > 0, hits / np.maximum(nums, 1), 0.0)
            top[1].data[...] = per

    def backward(self, top, propagate_down, bottom):
        if any(propagate_down):
            raise UnsupportedError(
                f"{self.type} layer '{self.name}' is not differentiable: it cannot "
                "back-propagate to its bottoms"
            )
