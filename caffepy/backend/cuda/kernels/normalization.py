"""LRN across channels and BatchNorm channel reductions (Caffe's ``lrn_layer.cu``,
``batch_norm_layer.cu``)."""

from __future__ import annotations

import math

from caffepy.backend.cuda.kernels.launch import cuda


@cuda.jit
def lrn_across_forward(n, x, channels, plane, size, alpha_over_n, k, beta, scale, y):
    """scale = k + alpha/n * sum of x^2 over the window of ``size`` channels around
    c; y = x * scale^-beta. One thread per (image, pixel), sliding over channels.

    Args:
        n: num * plane. x, scale, y: flat (num, channels, plane).
    """
    start = cuda.grid(1)
    pre = (size - 1) // 2
    for t in range(start, n, cuda.gridsize(1)):
        img = t // plane
        p = t % plane
        base = img * channels * plane + p
        for c in range(channels):
            acc = x[base] * 0
            for cc in range(max(c - pre, 0), min(c - pre + size, channels)):
                v = x[base + cc * plane]
                acc += v * v
            s = k + alpha_over_n * acc
            scale[base + c * plane] = s
            y[base + c * plane] = x[base + c * plane] * math.pow(s, -beta)


@cuda.jit
def lrn_across_backward(n, x, y, scale, dy, channels, plane, size, coeff, beta, dx):
    """dx = dy * scale^-beta - coeff * x * sum_window(dy * y / scale), with
    coeff = 2 * alpha * beta / size. One thread per (image, pixel)."""
    start = cuda.grid(1)
    post = size - 1 - (size - 1) // 2
    for t in range(start, n, cuda.gridsize(1)):
        img = t // plane
        p = t % plane
        base = img * channels * plane + p
        for c in range(channels):
            acc = x[base] * 0
            for cc in range(max(c - post, 0), min(c + (size - 1) // 2 + 1, channels)):
                q = base + cc * plane
                acc += dy[q] * y[q] / scale[q]
            q = base + c * plane
            dx[q] = dy[q] * math.pow(scale[q], -beta) - coeff * x[q] * acc


@cuda.jit
def channel_sums(n, a, b, num, channels, spatial, out_sum, out_dot):
    """out_sum[c] = sum a[:, c, :]; out_dot[c] = sum a*b[:, c, :] (b may be None-like:
    pass a to get sums of squares). One thread per channel.

    Args:
        n: channels. a, b: flat (num, channels, spatial).
    """
    start = cuda.grid(1)
    for c in range(start, n, cuda.gridsize(1)):
        s = a[0] * 0
        d = a[0] * 0
        for i in range(num):
            base = (i * channels + c) * spatial
            for j in range(spatial):
                v = a[base + j]
                s += v
                d += v * b[base + j]
        out_sum[c] = s
        out_dot[c] = d


@cuda.jit
def channel_affine(n, x, scale, bias, channels, spatial, y):
    """y[:, c, :] = x * scale[c] + bias[c] (y may be x)."""
    start = cuda.grid(1)
    for i in range(start, n, cuda.gridsize(1)):
        c = (i // spatial) % channels
        y[i] = x[i] * scale[c] + bias[c]
