"""Normalization ops: BatchNorm, LRN, MVN, the Scale/Bias reductions.

Arrays are float32 or float64 (one dtype per call) except where float64 is
named. Outputs may alias inputs where said (in-place layers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from caffepy.backend.interface.memory import MemoryInterface

if TYPE_CHECKING:
    from caffepy.backend.base import Array


class NormalizationInterface(MemoryInterface):
    """The normalization ops of :class:`~caffepy.backend.base.Ops` (declarations only)."""

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
        """BatchNorm with the batch's statistics (Caffe's TRAIN pass).

        Per channel: ``mean = E[x]``, ``var = E[(x - mean)^2]`` (biased),
        ``std = sqrt(var + eps)``, ``y = xnorm = (x - mean) / std``.

        Args:
            x: (N, C, S) input.
            eps: added to the variance.
            y: (N, C, S), assigned (may be ``x``).
            xnorm: (N, C, S), assigned a copy of ``y`` (kept for backward).
            mean, var, std: (C,), assigned.
        """
        raise NotImplementedError

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
        """Fold a batch's statistics into BatchNorm's stored sums, in place.

        ``norm = maf * norm + 1``, ``mean_sum = maf * mean_sum + mean``,
        ``var_sum = maf * var_sum + correction * var`` (maf the moving average
        fraction; correction m / (m - 1) makes the stored variance unbiased).
        ``mean``, ``var``, ``mean_sum``, ``var_sum``: (C,); ``norm``: (1,).
        """
        raise NotImplementedError

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
        """BatchNorm's stored statistics: ``mean = mean_sum / norm``, ``var =
        var_sum / norm`` (both 0 when norm is 0), ``std = sqrt(var + eps)``; all
        (C,) but ``norm`` (1,); ``mean``, ``var``, ``std`` assigned."""
        raise NotImplementedError

    def batch_norm_forward_global(
        self, x: Array, mean: Array, std: Array, y: Array
    ) -> None:
        """y = (x - mean[c]) / std[c] on (N, C, S) arrays (y may be x)."""
        raise NotImplementedError

    def batch_norm_backward_train(
        self, dy: Array, xnorm: Array, std: Array, dx: Array
    ) -> None:
        """dx = (dy - mean(dy) - mean(dy * xnorm) * xnorm) / std[c] on (N, C, S)
        arrays, means over n and s (dx may be dy)."""
        raise NotImplementedError

    def batch_norm_backward_global(self, dy: Array, std: Array, dx: Array) -> None:
        """dx = dy / std[c] on (N, C, S) arrays (dx may be dy)."""
        raise NotImplementedError

    # NOTE: the three BatchNorm + Scale ops below default to the separate ops
    # (the same numbers); the CPU backend runs each as one kernel.
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
        """:meth:`batch_norm_forward_train`, then ``y = xnorm * scale[c] +
        bias[c]`` (a BatchNorm and the in-place Scale after it); ``scale`` and
        ``bias`` are (C,); ``y`` may be ``x``."""
        self.batch_norm_forward_train(x, eps, y, xnorm, mean, var, std)
        self.channel_affine(y, scale, bias, y)

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
        """:meth:`batch_norm_forward_global` into ``xnorm`` (unless None), then
        ``y = xnorm * scale[c] + bias[c]``; ``y`` may be ``x``."""
        self.batch_norm_forward_global(x, mean, std, y)
        if xnorm is not None:
            self.copy(y, xnorm)
        self.channel_affine(y, scale, bias, y)

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
        """Backward of an in-place Scale, then of the BatchNorm before it (batch
        statistics): ``sum_dy = sum dy``, ``sum_dyx = sum dy * xnorm`` per
        channel ((C,) float64, assigned: the Scale's bias and scale gradients),
        then :meth:`batch_norm_backward_train` of ``dy * scale[c]`` into ``dx``
        (which may be ``dy``)."""
        self.channel_sums(dy, xnorm, sum_dy, sum_dyx)
        self.channel_affine(dy, scale, None, dx)
        self.batch_norm_backward_train(dx, xnorm, std, dx)

    def channel_affine(
        self, x: Array, scale: Array | None, bias: Array | None, y: Array
    ) -> None:
        """y = x * scale[d] + bias[d] on (O, D, I) arrays (Scale and Bias).

        ``scale`` and ``bias`` are (D,); ``None`` leaves that term out. ``y`` is
        assigned and may be ``x``.
        """
        raise NotImplementedError

    def channel_sums(
        self, a: Array, b: Array | None, out_sum: Array, out_dot: Array | None
    ) -> None:
        """Per-d sums over o and i of (O, D, I) arrays: ``out_sum = sum a`` and
        ``out_dot = sum a * b`` (the bias and scale gradients in one pass);
        outputs (D,) float64, assigned. ``b``/``out_dot`` may be None."""
        raise NotImplementedError

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
        """Local response normalisation of (N, C, H, W) arrays.

        Across channels: ``scale = k + alpha / n * sum x^2`` over the n channels
        centred on each (zero-padded); within a channel: ``scale = 1 + alpha / n^2
        * sum x^2`` over the n x n window, clipped to the image (Caffe's AVE
        pooling graph; ``k`` unused). Then ``y = x * scale ^ -beta``.

        Args:
            x: (N, C, H, W) input; not aliased by ``y``.
            size: the odd window size n.
            alpha, beta, k: the formula's constants.
            within: WITHIN_CHANNEL rather than ACROSS_CHANNELS.
            scale: (N, C, H, W), assigned (kept for backward).
            y: (N, C, H, W), assigned.
        """
        raise NotImplementedError

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
        """LRN's gradient: ``dx = dy * scale^-beta - 2 alpha beta / n' * x *
        sum_window(dy * y / scale)`` with n' = n across channels, n^2 within, on
        (N, C, H, W) arrays from the forward; ``dx`` assigned (may be ``dy``)."""
        raise NotImplementedError

    def mvn_forward(
        self, x: Array, normalize_variance: bool, eps: float, y: Array, std: Array
    ) -> None:
        """Mean-variance normalisation of the rows of (R, M) arrays.

        ``y = x - mean(x)``, then (with normalize_variance) ``std = sqrt(mean(y^2))
        + eps`` and ``y /= std``. ``y`` (may be ``x``) and ``std`` (R, 1) are
        assigned (``std`` only with normalize_variance).
        """
        raise NotImplementedError

    def mvn_backward(
        self, y: Array, dy: Array, std: Array, normalize_variance: bool, dx: Array
    ) -> None:
        """MVN's gradient (Caffe's) on (R, M) rows: ``dx = (dy - mean(dy) -
        mean(dy * y) * y) / std``, or ``dy - mean(dy)`` without variance
        normalisation; ``std`` (R, 1) from the forward; ``dx`` may be ``dy``."""
        raise NotImplementedError
