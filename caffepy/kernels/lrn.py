"""Kernels for LRN (Caffe's local response normalisation), across channels on
(N, C, H*W) views and within channels on (N*C, H, W) views. Every kernel is
safe when its output aliases its input.
"""

import math

import numpy as np

from caffepy.kernels.config import njit, pjit, prange


@njit
def _neg_pow(s, beta):
    """s ** -beta, with sqrt-based fast paths for the usual betas (0.75: AlexNet,
    CaffeNet, CIFAR-10 full; 0.5; 1) -- pow costs ten times a sqrt."""
    if beta == 0.75:
        r = math.sqrt(s)
        return 1.0 / (r * math.sqrt(r))
    if beta == 0.5:
        return 1.0 / math.sqrt(s)
    if beta == 1.0:
        return 1.0 / s
    return s**-beta


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
                y[n, c, s] = x[n, c, s] * _neg_pow(scale[n, c, s], beta)


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
                    dy[n, c, s] * _neg_pow(scale[n, c, s], beta)
                    - coeff * x[n, c, s] * acc[s]
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
                y[p, h, w] = x[p, h, w] * _neg_pow(scale[p, h, w], beta)


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
                    dy[p, h, w] * _neg_pow(scale[p, h, w], beta)
                    - coeff * x[p, h, w] * box[h, w]
                )
