"""MVN: mean-variance normalisation per sample (and channel)."""

from __future__ import annotations

from caffepy import backend
from caffepy.backend.base import Array, Ops
from caffepy.errors import ShapeError
from caffepy.layer import Layer
from caffepy.registry import register_layer


@register_layer("MVN")
class MVNLayer(Layer):
    """Mean-variance normalisation per sample and channel (or per sample).

    ``y = (x - mean) / (std + eps)`` with mean and (biased) std over H, W of each
    (n, c), or over C, H, W of each n with ``across_channels``.
    NOTE: eps is added to the standard deviation, not the variance, as Caffe.

    Parameters (``mvn_param``):
        normalize_variance (true): divide by the std (else only subtract the mean).
        across_channels (false): statistics over every axis after 0.
        eps (1e-9).

    Bottom: (N, C, ...) or (N,). Top: same shape (in place allowed).

    Gradient (Caffe's): ``dx = (dy - mean(dy) - mean(dy * y) * y) / (std + eps)``,
    or ``dx = dy - mean(dy)`` without variance normalisation.
    NOTE: like Caffe this treats eps as 0 in the std's own derivative, so with a
    large eps it is close to, not exactly, the derivative of the forward.
    """

    uses_ops = ("mvn_backward", "mvn_forward")

    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        param = self.layer_param.mvn_param
        self.normalize_variance = bool(param.normalize_variance)
        self.across_channels = bool(param.across_channels)
        self.eps = float(param.eps)

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        if not shape:
            raise ShapeError(self, "needs a bottom with at least 1 axis, got a scalar")
        if top[0] is not bottom[0]:
            top[0].reshape(shape)
        num = shape[0]
        if not self.across_channels and len(shape) > 1:
            num *= shape[1]
        self.num = num

    def _view(self, array: Array) -> Array:
        """(R, M) rows: one per sample (and channel)."""
        return array.reshape(self.num, -1) if self.num else array.reshape(0, 1)

    def _std(self, ops: Ops) -> Array:
        """The (R, 1) standard deviations (+ eps) of the last forward."""
        return self.workspace(ops).get("std", (self.num, 1), self.dtype)

    def forward(self, bottom, top):
        ops = backend.ops()
        x2 = self._view(ops.data(bottom[0]))
        y2 = self._view(ops.mutable_data(top[0]))
        norm = self.normalize_variance
        ops.mvn_forward(x2, norm, self.eps, y2, self._std(ops))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        ops = backend.ops()
        y2, dy2 = self._view(ops.data(top[0])), self._view(ops.diff(top[0]))
        dx2 = self._view(ops.mutable_diff(bottom[0]))
        norm = self.normalize_variance
        ops.mvn_backward(y2, dy2, self._std(ops), norm, dx2)
