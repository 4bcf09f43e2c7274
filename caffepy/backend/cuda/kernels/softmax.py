"""Softmax over the channel axis of (outer, C, inner) arrays, and SoftmaxWithLoss
(Caffe's ``softmax_layer.cu``, ``softmax_loss_layer.cu``)."""

from __future__ import annotations

import math

from caffepy.backend.cuda.kernels.launch import cuda

_FLT_MIN = 1.17549435e-38


@cuda.jit
def softmax_forward(n, x, channels, inner, y):
    """y[o, :, i] = exp(x - max) / sum(exp(x - max)); one thread per (o, i).

    Args:
        n: outer * inner.
        x: flat (outer, C, inner) input. y: output, same shape (may be x).
    """
    start = cuda.grid(1)
    for t in range(start, n, cuda.gridsize(1)):
        o = t // inner
        i = t % inner
        base = o * channels * inner + i
        m = x[base]
        for c in range(1, channels):
            v = x[base + c * inner]
            if v > m:
                m = v
        s = x[base] * 0
        for c in range(channels):
            e = math.exp(x[base + c * inner] - m)
            y[base + c * inner] = e
            s += e
        for c in range(channels):
            y[base + c * inner] = y[base + c * inner] / s


@cuda.jit
def softmax_backward(n, y, dy, channels, inner, dx):
    """dx = y * (dy - sum_c(dy * y)); one thread per (o, i)."""
    start = cuda.grid(1)
    for t in range(start, n, cuda.gridsize(1)):
        o = t // inner
        i = t % inner
        base = o * channels * inner + i
        dot = y[base] * 0
        for c in range(channels):
            dot += dy[base + c * inner] * y[base + c * inner]
        for c in range(channels):
            k = base + c * inner
            dx[k] = y[k] * (dy[k] - dot)


@cuda.jit
def softmax_loss_forward(
    n, prob, label, channels, inner, has_ignore, ignore_label, loss, counts
):
    """loss[t] = -log(max(prob[label], FLT_MIN)); counts[t] = 1 (0 if ignored).

    Args:
        n: outer * inner. label: flat (outer*inner) labels (float).
        loss, counts: flat (outer*inner) outputs, written.
    """
    start = cuda.grid(1)
    for t in range(start, n, cuda.gridsize(1)):
        o = t // inner
        i = t % inner
        lab = int(label[t])
        if has_ignore and lab == ignore_label:
            loss[t] = 0
            counts[t] = 0
        else:
            p = prob[(o * channels + lab) * inner + i]
            loss[t] = -math.log(max(p, _FLT_MIN))
            counts[t] = 1


@cuda.jit
def softmax_loss_backward(
    n, prob, label, channels, inner, has_ignore, ignore_label, scale, dx
):
    """dx = scale * (prob - onehot(label)); 0 for ignored positions."""
    start = cuda.grid(1)
    for t in range(start, n, cuda.gridsize(1)):
        o = t // inner
        i = t % inner
        lab = int(label[t])
        ignored = has_ignore and lab == ignore_label
        for c in range(channels):
            k = (o * channels + c) * inner + i
            if ignored:
                dx[k] = 0
            else:
                v = prob[k]
                if c == lab:
                    v = v - 1
                dx[k] = v * scale


@cuda.jit
def softmax_loss_finish(n, loss_per, counts, use_counts, normalizer, loss, norm):
    """loss[0] = sum(loss_per) / norm[0], with norm[0] = max(sum(counts), 1)
    (VALID normalisation) or ``normalizer``: the forward's reductions in one
    launch. One thread sums in float64 (launch with n = 1; for small outer*inner).

    Args:
        n: 1 (the single thread's loop covers the ``loss_per.size`` items).
        loss_per, counts: flat per-position losses and counts.
        loss: (1,) output; norm: (1,) float64 output, kept for backward.
    """
    if cuda.grid(1) == 0:
        total = 0.0
        valid = 0.0
        for t in range(loss_per.size):
            total += loss_per[t]
            valid += counts[t]
        d = max(valid, 1.0) if use_counts else normalizer
        norm[0] = d
        loss[0] = total / d


@cuda.jit
def softmax_loss_backward_scaled(
    n, prob, label, channels, inner, has_ignore, ignore_label, loss_weight, norm, dx
):
    """:func:`softmax_loss_backward` with scale = loss_weight[0] / norm[0] read on
    the device (one launch instead of four).

    NOTE: the product with the float64 scale is rounded to dx's type once; the
    separate passes rounded the scale first (a last-bit difference at most).
    """
    start = cuda.grid(1)
    scale = loss_weight[0] / norm[0]
    for t in range(start, n, cuda.gridsize(1)):
        o = t // inner
        i = t % inner
        lab = int(label[t])
        ignored = has_ignore and lab == ignore_label
        for c in range(channels):
            k = (o * channels + c) * inner + i
            if ignored:
                dx[k] = 0
            else:
                v = prob[k]
                if c == lab:
                    v = v - 1
                dx[k] = v * scale
