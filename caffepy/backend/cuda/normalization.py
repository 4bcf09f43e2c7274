"""Normalization ops on the device: BatchNorm as per-channel reductions and
broadcasts (float64 sums, as the CPU kernels), LRN and the Scale/Bias channel
passes as numba.cuda kernels, MVN as the CPU backend's NumPy passes (dispatched
to CuPy for device arrays)."""

from __future__ import annotations

import numpy as np

from caffepy.backend.base import Array
from caffepy.backend.cpu.normalization import NormalizationOps
from caffepy.backend.interface.normalization import NormalizationInterface


def _k():
    from caffepy.backend.cuda.kernels import normalization, vision
    from caffepy.backend.cuda.kernels.launch import launch

    return normalization, vision, launch


def _c(v: Array) -> Array:
    """(C,) as (1, C, 1) for broadcasting over (N, C, S)."""
    return v.reshape(1, -1, 1)


class CudaNormalizationOps(NormalizationOps, NormalizationInterface):
    """Mixin of :class:`~caffepy.backend.cuda.CudaOps`: the normalization ops."""

    # -- BatchNorm -----------------------------------------------------------------
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
        xp = self.xp
        num, _, inner = x.shape
        m = num * inner
        if m == 0:
            mean[...] = 0
            var[...] = 0
            std[...] = np.sqrt(eps)
            return
        # NOTE: shifted moments in float64 (as the CPU kernel) so that
        # E[d^2] - E[d]^2 does not cancel catastrophically.
        shift = x[0, :, 0].astype(np.float64)
        d = x.astype(np.float64) - _c(shift)
        dm = d.sum(axis=(0, 2)) / m
        v = (d * d).sum(axis=(0, 2)) / m - dm * dm
        mean[...] = shift + dm
        var[...] = xp.maximum(v, 0.0)
        std[...] = xp.sqrt(var.astype(np.float64) + eps)
        xp.subtract(x, _c(mean), out=xnorm)
        xnorm /= _c(std)
        self.copy(xnorm, y)

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
        xp = self.xp
        s = norm.reshape(-1)[:1]
        # NOTE: on the device: no scalar comes back to the host.
        factor = xp.where(s == 0, 0.0, 1.0 / xp.where(s == 0, 1.0, s))
        xp.multiply(mean_sum, factor, out=mean, casting="unsafe")
        xp.multiply(var_sum, factor, out=var, casting="unsafe")
        xp.add(var, eps, out=std, casting="unsafe")
        xp.sqrt(std, out=std)

    def batch_norm_forward_global(
        self, x: Array, mean: Array, std: Array, y: Array
    ) -> None:
        self.xp.subtract(x, _c(mean), out=y)
        y /= _c(std)

    def batch_norm_backward_train(
        self, dy: Array, xnorm: Array, std: Array, dx: Array
    ) -> None:
        num, _, inner = dy.shape
        m = num * inner
        a = (dy.sum(axis=(0, 2), dtype=np.float64) / m).astype(dy.dtype)
        b = ((dy * xnorm).sum(axis=(0, 2), dtype=np.float64) / m).astype(dy.dtype)
        corr = xnorm * _c(b)
        corr += _c(a)
        self.xp.subtract(dy, corr, out=dx)
        dx /= _c(std)

    # -- Scale and Bias ------------------------------------------------------------
    def channel_affine(
        self, x: Array, scale: Array | None, bias: Array | None, y: Array
    ) -> None:
        xp = self.xp
        if scale is None and bias is None:
            self.copy(x, y)
        elif bias is None:
            xp.multiply(x, _c(scale), out=y)
        elif scale is None:
            xp.add(x, _c(bias), out=y)
        else:
            normalization, _, launch = _k()
            _, dim, inner = x.shape
            launch(normalization.channel_affine, x.size, x.reshape(-1), scale, bias,
                   dim, inner, y.reshape(-1))  # fmt: skip

    def channel_sums(
        self, a: Array, b: Array | None, out_sum: Array, out_dot: Array | None
    ) -> None:
        a.sum(axis=(0, 2), dtype=np.float64, out=out_sum)
        if out_dot is not None and b is not None:
            (a * b).sum(axis=(0, 2), dtype=np.float64, out=out_dot)

    # -- LRN -----------------------------------------------------------------------
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
        normalization, vision, launch = _k()
        n, c, h, w = x.shape
        t = x.dtype.type
        if within:
            # NOTE: Caffe's graph: AVE pooling of x^2 over n x n (stride 1, pad
            # (n - 1) / 2, so every window divides by n^2), then 1 + alpha * it.
            pad = (size - 1) // 2
            sq = x * x
            launch(vision.ave_pool_forward, x.size, sq.reshape(-1), h, w, h, w,
                   size, size, pad, pad, 1, 1, scale.reshape(-1))  # fmt: skip
            scale *= t(alpha)
            scale += t(1)
        else:
            launch(normalization.lrn_across_forward, n * h * w, x.reshape(-1), c,
                   h * w, size, t(alpha / size), t(k), t(beta), scale.reshape(-1),
                   y.reshape(-1))  # fmt: skip
            return
        self.xp.power(scale, t(-beta), out=y)
        y *= x

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
        normalization, vision, launch = _k()
        n, c, h, w = x.shape
        t = x.dtype.type
        if not within:
            coeff = t(2.0 * alpha * beta / size)
            launch(normalization.lrn_across_backward, n * h * w, x.reshape(-1),
                   y.reshape(-1), scale.reshape(-1), dy.reshape(-1), c, h * w, size,
                   coeff, t(beta), dx.reshape(-1))  # fmt: skip
            return
        pad = (size - 1) // 2
        ratio = dy * y
        ratio /= scale
        # the window sums divided by n^2 (AVE pooling's backward)
        acc = self.xp.empty_like(x)
        launch(vision.ave_pool_backward, x.size, ratio.reshape(-1), h, w, h, w,
               size, size, pad, pad, 1, 1, acc.reshape(-1))  # fmt: skip
        acc *= x
        acc *= t(2.0 * alpha * beta)
        first = self.xp.power(scale, t(-beta)) * dy
        self.xp.subtract(first, acc, out=dx)
