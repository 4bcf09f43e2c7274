"""Normalization ops on the CPU: BatchNorm, Scale/Bias broadcasts and reductions,
LRN and MVN, over the Numba kernels of :mod:`caffepy.kernels.normalization`
and :mod:`caffepy.kernels.lrn`.

NOTE: every expression here is the one the layers used before the op boundary,
in the same order of floating-point operations, so results are bit-identical.
"""

from __future__ import annotations

import numpy as np

from caffepy.backend.base import Array
from caffepy.kernels import lrn as L
from caffepy.kernels import normalization as K


def _lrn_view(a: Array, within: bool) -> Array:
    """(N*C, H, W) planes within a channel, (N, C, H*W) across channels."""
    n, c, h, w = a.shape
    return a.reshape(n * c, h, w) if within else a.reshape(n, c, h * w)


class NormalizationOps:
    """The normalization family of :class:`~caffepy.backend.base.Ops` on host
    arrays."""

    # -- BatchNorm -------------------------------------------------------------
    def batch_norm_forward_train(
        self,
        x: Array,
        eps: float,
        y: Array,
        xnorm: Array,
        mean: Array,
        var: Array,
        std: Array,
    ) -> None:
        K.bn_forward_train(x, eps, y, xnorm, mean, var, std)

    def batch_norm_update_stats(
        self,
        mean: Array,
        var: Array,
        moving_average_fraction: float,
        correction: float,
        mean_sum: Array,
        var_sum: Array,
        norm: Array,
    ) -> None:
        maf = moving_average_fraction
        norm *= maf
        norm += 1
        mean_sum *= maf
        mean_sum += mean
        var_sum *= maf
        var_sum += correction * var

    def batch_norm_global_stats(
        self,
        mean_sum: Array,
        var_sum: Array,
        norm: Array,
        eps: float,
        mean: Array,
        var: Array,
        std: Array,
    ) -> None:
        s = float(norm.reshape(-1)[0])
        factor = 0.0 if s == 0 else 1.0 / s
        np.multiply(mean_sum, factor, out=mean)
        np.multiply(var_sum, factor, out=var)
        np.add(var, eps, out=std)
        np.sqrt(std, out=std)

    def batch_norm_forward_global(
        self, x: Array, mean: Array, std: Array, y: Array
    ) -> None:
        K.bn_global_forward(x, mean, std, y)

    def batch_norm_backward_train(
        self, dy: Array, xnorm: Array, std: Array, dx: Array
    ) -> None:
        K.bn_backward_train(dy, xnorm, std, dx)

    def batch_norm_backward_global(self, dy: Array, std: Array, dx: Array) -> None:
        np.divide(dy, std[:, None], out=dx)

    # -- BatchNorm with the in-place Scale after it ------------------------------
    def batch_norm_scale_forward_train(
        self,
        x: Array,
        eps: float,
        scale: Array,
        bias: Array,
        y: Array,
        xnorm: Array,
        mean: Array,
        var: Array,
        std: Array,
    ) -> None:
        K.bn_scale_forward_train(x, eps, scale, bias, y, xnorm, mean, var, std)

    def batch_norm_scale_forward_global(
        self,
        x: Array,
        mean: Array,
        std: Array,
        scale: Array,
        bias: Array,
        xnorm: Array | None,
        y: Array,
    ) -> None:
        keep = xnorm is not None
        K.bn_scale_forward_global(
            x, mean, std, scale, bias, keep, xnorm if keep else y, y
        )

    def batch_norm_scale_backward_train(
        self,
        dy: Array,
        xnorm: Array,
        scale: Array,
        std: Array,
        dx: Array,
        sum_dy: Array,
        sum_dyx: Array,
    ) -> None:
        K.bn_scale_backward_train(dy, xnorm, scale, std, dx, sum_dy, sum_dyx)

    # -- Scale and Bias ----------------------------------------------------------
    def channel_affine(
        self, x: Array, scale: Array | None, bias: Array | None, y: Array
    ) -> None:
        # the kernel takes both vectors; an unused one is a same-typed stand-in
        stand_in = scale if scale is not None else bias
        if stand_in is None:
            np.copyto(y, x)
            return
        K.channel_affine(
            x,
            stand_in if scale is None else scale,
            stand_in if bias is None else bias,
            scale is not None,
            bias is not None,
            y,
        )

    def channel_sums(
        self, a: Array, b: Array | None, out_sum: Array, out_dot: Array | None
    ) -> None:
        K.channel_reduce(
            a,
            a if b is None else b,
            out_sum,
            np.empty_like(out_sum) if out_dot is None else out_dot,
        )

    # -- LRN ---------------------------------------------------------------------
    def lrn_forward(
        self,
        x: Array,
        size: int,
        alpha: float,
        beta: float,
        k: float,
        within: bool,
        scale: Array,
        y: Array,
    ) -> None:
        x3, s3, y3 = (_lrn_view(a, within) for a in (x, scale, y))
        if within:
            L.lrn_within_forward(x3, size, alpha, beta, s3, y3)
        else:
            L.lrn_across_forward(x3, size, alpha / size, k, beta, s3, y3)

    def lrn_backward(
        self,
        x: Array,
        y: Array,
        scale: Array,
        dy: Array,
        size: int,
        alpha: float,
        beta: float,
        within: bool,
        dx: Array,
    ) -> None:
        x3, y3, s3, dy3, dx3 = (_lrn_view(a, within) for a in (x, y, scale, dy, dx))
        if within:
            L.lrn_within_backward(x3, y3, s3, dy3, size, alpha, beta, dx3)
        else:
            coeff = 2.0 * alpha * beta / size
            L.lrn_across_backward(x3, y3, s3, dy3, size, coeff, beta, dx3)

    # -- MVN ---------------------------------------------------------------------
    def mvn_forward(
        self, x: Array, normalize_variance: bool, eps: float, y: Array, std: Array
    ) -> None:
        mean = x.mean(axis=1, keepdims=True)
        np.subtract(x, mean, out=y)
        if normalize_variance:
            np.square(y).mean(axis=1, keepdims=True, out=std)
            np.sqrt(std, out=std)
            std += eps
            y /= std

    def mvn_backward(
        self, y: Array, dy: Array, std: Array, normalize_variance: bool, dx: Array
    ) -> None:
        mean_dy = dy.mean(axis=1, keepdims=True)
        if not normalize_variance:
            np.subtract(dy, mean_dy, out=dx)
            return
        mean_dyy = (dy * y).mean(axis=1, keepdims=True)
        corr = y * mean_dyy
        corr += mean_dy
        np.subtract(dy, corr, out=dx)
        dx /= std
