"""Kernels for BatchNorm, Scale/Bias and LRN.

Arrays are viewed as (outer, channels, inner) blocks — (N, C, H*W) for
BatchNorm, (outer, scale_dim, inner) for Scale and Bias — or (N, C, H*W) and
(N*C, H, W) for LRN. Reductions accumulate in float64 and store in the output's
dtype. Every kernel is safe when its output aliases its input (in-place layers):
each element is read before it is written and never read again afterwards, and
the reductions of a channel finish before any of its elements is written.
"""

import math

import numpy as np

from caffepy.kernels.config import njit, pjit, prange


# NOTE: without fastmath LLVM keeps a float reduction in program order, one add
# after another; eight independent partial sums break that dependency chain so the
# loop runs at memory speed. The rounding differs from a sequential sum only in
# the last bits of a float64 accumulator.
@njit
def _row_sum(a):
    """Sum of a 1-D array (float64 accumulators)."""
    size = a.size
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    i = 0
    while i + 8 <= size:
        s0 += a[i]
        s1 += a[i + 1]
        s2 += a[i + 2]
        s3 += a[i + 3]
        s4 += a[i + 4]
        s5 += a[i + 5]
        s6 += a[i + 6]
        s7 += a[i + 7]
        i += 8
    while i < size:
        s0 += a[i]
        i += 1
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@njit
def _row_sq_dev(a, mu):
    """Sum of (a - mu)^2 over a 1-D array, the difference in a's dtype."""
    size = a.size
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    i = 0
    while i + 8 <= size:
        d0 = a[i] - mu
        d1 = a[i + 1] - mu
        d2 = a[i + 2] - mu
        d3 = a[i + 3] - mu
        d4 = a[i + 4] - mu
        d5 = a[i + 5] - mu
        d6 = a[i + 6] - mu
        d7 = a[i + 7] - mu
        s0 += d0 * d0
        s1 += d1 * d1
        s2 += d2 * d2
        s3 += d3 * d3
        s4 += d4 * d4
        s5 += d5 * d5
        s6 += d6 * d6
        s7 += d7 * d7
        i += 8
    while i < size:
        d0 = a[i] - mu
        s0 += d0 * d0
        i += 1
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@njit
def _row_dot(a, b):
    """Sum of a * b over 1-D arrays (products in their dtype, float64 sums)."""
    size = a.size
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    i = 0
    while i + 8 <= size:
        s0 += a[i] * b[i]
        s1 += a[i + 1] * b[i + 1]
        s2 += a[i + 2] * b[i + 2]
        s3 += a[i + 3] * b[i + 3]
        s4 += a[i + 4] * b[i + 4]
        s5 += a[i + 5] * b[i + 5]
        s6 += a[i + 6] * b[i + 6]
        s7 += a[i + 7] * b[i + 7]
        i += 8
    while i < size:
        s0 += a[i] * b[i]
        i += 1
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@pjit
def bn_forward_train(x, eps, y, xnorm, mean, var, std):
    """Batch normalisation with the batch's own statistics (Caffe's TRAIN pass).

    Per channel c: ``mean = E[x]``, ``var = E[(x - mean)^2]`` (biased),
    ``std = sqrt(var + eps)``, ``y = (x - mean) / std``.

    Args:
        x: (N, C, S) input.
        eps: added to the variance.
        y: (N, C, S) output (may be ``x``), overwritten.
        xnorm: (N, C, S) output, a copy of ``y`` kept for backward.
        mean, var, std: (C,) outputs.
    """
    num, chans, inner = x.shape
    m = num * inner
    for c in prange(chans):
        acc = 0.0
        for n in range(num):
            acc += _row_sum(x[n, c])
        mean[c] = acc / m
        mu = mean[c]
        acc = 0.0
        for n in range(num):
            acc += _row_sq_dev(x[n, c], mu)
        var[c] = acc / m
        std[c] = math.sqrt(var[c] + eps)
        sd = std[c]
        for n in range(num):
            for s in range(inner):
                v = (x[n, c, s] - mu) / sd
                y[n, c, s] = v
                xnorm[n, c, s] = v


@pjit
def bn_backward_train(dy, xnorm, std, dx):
    """Gradient of batch normalisation through the batch statistics.

    ``dx = (dy - mean(dy) - mean(dy * xnorm) * xnorm) / std``, means over n, s.

    Args:
        dy: (N, C, S) gradient of the top.
        xnorm: (N, C, S) normalised input from the forward pass.
        std: (C,) from the forward pass.
        dx: (N, C, S) output (may be ``dy``), overwritten.
    """
    num, chans, inner = dy.shape
    m = num * inner
    for c in prange(chans):
        sum_dy = 0.0
        sum_dyx = 0.0
        for n in range(num):
            sum_dy += _row_sum(dy[n, c])
            sum_dyx += _row_dot(dy[n, c], xnorm[n, c])
        a = sum_dy / m
        b = sum_dyx / m
        sd = std[c]
        for n in range(num):
            for s in range(inner):
                dx[n, c, s] = (dy[n, c, s] - a - b * xnorm[n, c, s]) / sd


@pjit
def channel_affine(x, scale, bias, use_scale, use_bias, y):
    """``y = x * scale[d] + bias[d]`` broadcast over (outer, dim, inner).

    Args:
        x: (O, D, I) input.
        scale, bias: (D,) factors and offsets (either may be a dummy of the same
            dtype when unused).
        use_scale, use_bias: which of them to apply.
        y: (O, D, I) output (may be ``x``), overwritten.
    """
    outer, dim, inner = x.shape
    for t in prange(outer * dim):
        o = t // dim
        d = t - o * dim
        if use_scale and use_bias:
            a = scale[d]
            b = bias[d]
            for i in range(inner):
                y[o, d, i] = x[o, d, i] * a + b
        elif use_scale:
            a = scale[d]
            for i in range(inner):
                y[o, d, i] = x[o, d, i] * a
        elif use_bias:
            b = bias[d]
            for i in range(inner):
                y[o, d, i] = x[o, d, i] + b
        else:
            for i in range(inner):
                y[o, d, i] = x[o, d, i]


@pjit
def channel_reduce(a, b, use_b, out):
    """``out[d] = sum over o, i of a * b`` (or of ``a`` alone) on (O, D, I) arrays.

    Args:
        a: (O, D, I) array.
        b: (O, D, I) array, multiplied in when ``use_b``.
        use_b: whether to sum products rather than ``a``.
        out: (D,) float64 output, overwritten.
    """
    outer, dim, inner = a.shape
    for d in prange(dim):
        acc = 0.0
        if use_b:
            for o in range(outer):
                acc += _row_dot(a[o, d], b[o, d])
        else:
            for o in range(outer):
                acc += _row_sum(a[o, d])
        out[d] = acc


@pjit
def lrn_across_forward(x, size, alpha_over_n, k, beta, scale, y):
    """LRN across channels: ``y = x * (k + alpha/n * sum_window x^2) ^ -beta``.

    The window of channel c is [c - (n-1)/2, c + (n-1)/2] clipped to [0, C)
    (Caffe's zero padding).

    Args:
        x: (N, C, S) input (not aliased by ``y``).
        size: the odd window size n.
        alpha_over_n, k, beta: the formula's constants.
        scale: (N, C, S) output, ``k + alpha/n * sum``, kept for backward.
        y: (N, C, S) output, overwritten.
    """
    num, chans, inner = x.shape
    pre = (size - 1) // 2
    for n in prange(num):
        acc = np.empty(inner, np.float64)
        for c in range(chans):
            acc[:] = 0.0
            for cc in range(max(c - pre, 0), min(c + pre + 1, chans)):
                for s in range(inner):
                    v = x[n, cc, s]
                    acc[s] += v * v
            for s in range(inner):
                scale[n, c, s] = k + alpha_over_n * acc[s]
                y[n, c, s] = x[n, c, s] * scale[n, c, s] ** -beta


@pjit
def lrn_across_backward(x, y, scale, dy, size, coeff, beta, dx):
    """Gradient of LRN across channels.

    ``dx = dy * scale^-beta - coeff * x * sum_window(dy * y / scale)`` with
    ``coeff = 2 * alpha * beta / n`` and the same (symmetric) window.

    Args:
        x, y, scale: (N, C, S) input, output and scale of the forward pass.
        dy: (N, C, S) gradient of the top.
        size: the odd window size n.
        coeff, beta: the formula's constants.
        dx: (N, C, S) output (may be ``dy``), overwritten.
    """
    num, chans, inner = x.shape
    pre = (size - 1) // 2
    for n in prange(num):
        ratio = np.empty((chans, inner), np.float64)
        acc = np.empty(inner, np.float64)
        for c in range(chans):
            for s in range(inner):
                ratio[c, s] = dy[n, c, s] * y[n, c, s] / scale[n, c, s]
        for c in range(chans):
            acc[:] = 0.0
            for cc in range(max(c - pre, 0), min(c + pre + 1, chans)):
                for s in range(inner):
                    acc[s] += ratio[cc, s]
            for s in range(inner):
                dx[n, c, s] = (
                    dy[n, c, s] * scale[n, c, s] ** -beta - coeff * x[n, c, s] * acc[s]
                )


@njit
def _box_sum(src, pre, tmp, out):
    """out[h, w] = sum of src over [h-pre, h+pre] x [w-pre, w+pre], clipped."""
    height, width = src.shape
    for h in range(height):
        for w in range(width):
            acc = 0.0
            for ww in range(max(w - pre, 0), min(w + pre + 1, width)):
                acc += src[h, ww]
            tmp[h, w] = acc
    for h in range(height):
        for w in range(width):
            acc = 0.0
            for hh in range(max(h - pre, 0), min(h + pre + 1, height)):
                acc += tmp[hh, w]
            out[h, w] = acc


@pjit
def lrn_within_forward(x, size, alpha, beta, scale, y):
    """LRN within a channel, as Caffe's split/power/AVE-pool/power/product graph.

    ``scale = 1 + alpha * (sum over the n x n window of x^2) / (n * n)`` (the AVE
    pooling with pad (n-1)/2 and stride 1 divides by n * n everywhere, the window
    being clipped to the image for the sum), ``y = x * scale ^ -beta``.

    Args:
        x: (P, H, W) planes (P = N * C).
        size: the odd window size n.
        alpha, beta: the formula's constants.
        scale: (P, H, W) output, kept for backward.
        y: (P, H, W) output (may be ``x``), overwritten.
    """
    planes, height, width = x.shape
    pre = (size - 1) // 2
    area = size * size
    for p in prange(planes):
        sq = np.empty((height, width), np.float64)
        tmp = np.empty((height, width), np.float64)
        box = np.empty((height, width), np.float64)
        for h in range(height):
            for w in range(width):
                v = x[p, h, w]
                sq[h, w] = v * v
        _box_sum(sq, pre, tmp, box)
        for h in range(height):
            for w in range(width):
                scale[p, h, w] = 1.0 + alpha * (box[h, w] / area)
                y[p, h, w] = x[p, h, w] * scale[p, h, w] ** -beta


@pjit
def lrn_within_backward(x, y, scale, dy, size, alpha, beta, dx):
    """Gradient of LRN within a channel (back through the same graph).

    ``dx = dy * scale^-beta - 2 * alpha * beta / (n * n) * x * box(dy * y / scale)``.

    Args:
        x, y, scale: (P, H, W) input, output and scale of the forward pass.
        dy: (P, H, W) gradient of the top.
        size: the odd window size n.
        alpha, beta: the formula's constants.
        dx: (P, H, W) output (may be ``dy``), overwritten.
    """
    planes, height, width = x.shape
    pre = (size - 1) // 2
    coeff = 2.0 * alpha * beta / (size * size)
    for p in prange(planes):
        ratio = np.empty((height, width), np.float64)
        tmp = np.empty((height, width), np.float64)
        box = np.empty((height, width), np.float64)
        for h in range(height):
            for w in range(width):
                ratio[h, w] = dy[p, h, w] * y[p, h, w] / scale[p, h, w]
        _box_sum(ratio, pre, tmp, box)
        for h in range(height):
            for w in range(width):
                dx[p, h, w] = (
                    dy[p, h, w] * scale[p, h, w] ** -beta
                    - coeff * x[p, h, w] * box[h, w]
                )
