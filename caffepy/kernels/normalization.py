"""Kernels for BatchNorm and Scale/Bias (LRN: :mod:`caffepy.kernels.lrn`).

Arrays are viewed as (outer, channels, inner) blocks — (N, C, H*W) for
BatchNorm, (outer, scale_dim, inner) for Scale and Bias. Reductions accumulate in float64 and store in the output's
dtype. Every kernel is safe when its output aliases its input (in-place layers):
each element is read before it is written and never read again afterwards, and
the reductions of a channel finish before any of its elements is written.
"""

import math

import numpy as np

from caffepy.kernels.config import njit, pjit, prange

# NOTE: without fastmath LLVM keeps a float reduction in program order, one
# dependent add after another. These row sums add eight elements as a balanced
# tree in the data's dtype (independent, so they vectorise) and accumulate the
# eight-element partial sums in float64: the rounding error stays a few ulps of
# the dtype whatever the row length. Rows shorter than _ROW use plain loops (a
# slice per element would cost more than the sum).
_ROW = 8


@njit
def _row_moments(a, shift):
    """(sum(a - shift), sum((a - shift)^2)) over a 1-D array."""
    size = a.size
    s = 0.0
    q = 0.0
    i = 0
    while i + 8 <= size:
        d0 = a[i] - shift
        d1 = a[i + 1] - shift
        d2 = a[i + 2] - shift
        d3 = a[i + 3] - shift
        d4 = a[i + 4] - shift
        d5 = a[i + 5] - shift
        d6 = a[i + 6] - shift
        d7 = a[i + 7] - shift
        s += ((d0 + d1) + (d2 + d3)) + ((d4 + d5) + (d6 + d7))
        q += ((d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)) + (
            (d4 * d4 + d5 * d5) + (d6 * d6 + d7 * d7)
        )
        i += 8
    while i < size:
        d0 = a[i] - shift
        s += d0
        q += d0 * d0
        i += 1
    return s, q


@njit
def _row_sum_dot(a, b):
    """(sum(a), sum(a * b)) over 1-D arrays."""
    size = a.size
    s = 0.0
    q = 0.0
    i = 0
    while i + 8 <= size:
        a0, a1, a2, a3 = a[i], a[i + 1], a[i + 2], a[i + 3]
        a4, a5, a6, a7 = a[i + 4], a[i + 5], a[i + 6], a[i + 7]
        s += ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))
        q += ((a0 * b[i] + a1 * b[i + 1]) + (a2 * b[i + 2] + a3 * b[i + 3])) + (
            (a4 * b[i + 4] + a5 * b[i + 5]) + (a6 * b[i + 6] + a7 * b[i + 7])
        )
        i += 8
    while i < size:
        s += a[i]
        q += a[i] * b[i]
        i += 1
    return s, q


# NOTE: the element loops write a separate row first and copy it after: when the
# output aliases the input (in-place layers) LLVM's overlap check would otherwise
# fall back to a scalar loop.
@njit
def _row_normalize(x, mu, sd, y, xnorm):
    """xnorm = (x - mu) / sd, then y = xnorm, over 1-D rows (y may be x)."""
    for i in range(x.size):
        xnorm[i] = (x[i] - mu) / sd
    for i in range(x.size):
        y[i] = xnorm[i]


@njit
def _row_bn_grad(dy, xnorm, a, b, sd, tmp, dx):
    """dx = (dy - a - b * xnorm) / sd over 1-D rows (dx may be dy; tmp a scratch)."""
    for i in range(dy.size):
        tmp[i] = (dy[i] - a - b * xnorm[i]) / sd
    for i in range(dy.size):
        dx[i] = tmp[i]


@njit
def _channel_moments(x, c, shift):
    """_row_moments over x[:, c, :] of an (N, C, S) array."""
    num, _, inner = x.shape
    s = 0.0
    q = 0.0
    if inner >= _ROW:
        for n in range(num):
            s1, q1 = _row_moments(x[n, c], shift)
            s += s1
            q += q1
    else:
        for n in range(num):
            for i in range(inner):
                d = x[n, c, i] - shift
                s += d
                q += d * d
    return s, q


@njit
def _channel_sum_dot(a, b, c):
    """_row_sum_dot over a[:, c, :] and b[:, c, :] of (N, C, S) arrays."""
    num, _, inner = a.shape
    s = 0.0
    q = 0.0
    if inner >= _ROW:
        for n in range(num):
            s1, q1 = _row_sum_dot(a[n, c], b[n, c])
            s += s1
            q += q1
    else:
        for n in range(num):
            for i in range(inner):
                s += a[n, c, i]
                q += a[n, c, i] * b[n, c, i]
    return s, q


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
        if m == 0:
            mean[c] = 0.0
            var[c] = 0.0
            std[c] = math.sqrt(eps)
            continue
        # NOTE: one pass for both moments, of x minus one of its own values, so
        # E[d^2] - E[d]^2 does not cancel catastrophically (float64 sums).
        shift = x[0, c, 0]
        s, q = _channel_moments(x, c, shift)
        dm = s / m
        mean[c] = shift + dm
        v = q / m - dm * dm
        var[c] = v if v > 0.0 else 0.0
        std[c] = math.sqrt(var[c] + eps)
        mu = mean[c]
        sd = std[c]
        if inner >= _ROW:
            for n in range(num):
                _row_normalize(x[n, c], mu, sd, y[n, c], xnorm[n, c])
        else:
            for n in range(num):
                for i in range(inner):
                    v = (x[n, c, i] - mu) / sd
                    y[n, c, i] = v
                    xnorm[n, c, i] = v


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
        sum_dy, sum_dyx = _channel_sum_dot(dy, xnorm, c)
        # in the data's dtype, so the element loop does not widen to float64
        a = dx.dtype.type(sum_dy / m)
        b = dx.dtype.type(sum_dyx / m)
        sd = std[c]
        if inner >= _ROW:
            tmp = np.empty(inner, dx.dtype)
            for n in range(num):
                _row_bn_grad(dy[n, c], xnorm[n, c], a, b, sd, tmp, dx[n, c])
        else:
            for n in range(num):
                for i in range(inner):
                    dx[n, c, i] = (dy[n, c, i] - a - b * xnorm[n, c, i]) / sd


@pjit
def bn_global_forward(x, mean, std, y):
    """``y = (x - mean[d]) / std[d]`` over (O, D, I) arrays, in one parallel pass
    (BatchNorm with the stored statistics; Caffe's subtract, then divide).

    Args:
        x: (O, D, I) input.
        mean, std: (D,) statistics.
        y: (O, D, I) output (may be ``x``), overwritten.
    """
    outer, dim, inner = x.shape
    for t in prange(outer * dim):
        o = t // dim
        d = t - o * dim
        m = mean[d]
        sd = std[d]
        xr = x[o, d]
        yr = y[o, d]
        for i in range(inner):
            yr[i] = (xr[i] - m) / sd


@njit
def _affine_row(x, a, b, use_scale, use_bias, y):
    """y = x * a + b over a 1-D row (scalars a, b)."""
    if use_scale and use_bias:
        for i in range(x.size):
            y[i] = x[i] * a + b
    elif use_scale:
        for i in range(x.size):
            y[i] = x[i] * a
    elif use_bias:
        for i in range(x.size):
            y[i] = x[i] + b
    else:
        for i in range(x.size):
            y[i] = x[i]


@njit
def _affine_cols(x, scale, bias, use_scale, use_bias, y):
    """y = x * scale + bias elementwise over 1-D rows of length dim."""
    if use_scale and use_bias:
        for d in range(x.size):
            y[d] = x[d] * scale[d] + bias[d]
    elif use_scale:
        for d in range(x.size):
            y[d] = x[d] * scale[d]
    elif use_bias:
        for d in range(x.size):
            y[d] = x[d] + bias[d]
    else:
        for d in range(x.size):
            y[d] = x[d]


@pjit
def channel_affine(x, scale, bias, use_scale, use_bias, y):
    """``y = x * scale[d] + bias[d]`` broadcast over (outer, dim, inner).

    Args:
        x: (O, D, I) input.
        scale, bias: (D,) factors and offsets (either may be a dummy of the same
            length and dtype when unused).
        use_scale, use_bias: which of them to apply.
        y: (O, D, I) output (may be ``x``), overwritten.
    """
    outer, dim, inner = x.shape
    if inner == 1:
        # e.g. (N, C) after InnerProduct: rows over d are the contiguous ones
        x2 = x.reshape((outer, dim))
        y2 = y.reshape((outer, dim))
        for o in prange(outer):
            _affine_cols(x2[o], scale, bias, use_scale, use_bias, y2[o])
    else:
        for t in prange(outer * dim):
            o = t // dim
            d = t - o * dim
            _affine_row(x[o, d], scale[d], bias[d], use_scale, use_bias, y[o, d])


@pjit
def channel_reduce(a, b, out_sum, out_dot):
    """Sums over o, i of (O, D, I) arrays: ``out_sum[d] = sum a``,
    ``out_dot[d] = sum a * b`` (the bias and scale gradients in one pass).

    Args:
        a, b: (O, D, I) arrays.
        out_sum, out_dot: (D,) float64 outputs, overwritten.
    """
    outer, dim, inner = a.shape
    if inner == 1:
        # e.g. (N, C) after InnerProduct: sum down the columns, blocks of columns
        # per task so the inner loop runs along contiguous rows
        a2 = a.reshape((outer, dim))
        b2 = b.reshape((outer, dim))
        for blk in prange((dim + 63) // 64):
            lo = blk * 64
            width = min(64, dim - lo)
            acc_s = np.zeros(64)
            acc_q = np.zeros(64)
            for o in range(outer):
                ra = a2[o, lo : lo + width]
                rb = b2[o, lo : lo + width]
                for j in range(width):
                    acc_s[j] += ra[j]
                    acc_q[j] += ra[j] * rb[j]
            for j in range(width):
                out_sum[lo + j] = acc_s[j]
                out_dot[lo + j] = acc_q[j]
    else:
        for d in prange(dim):
            s, q = _channel_sum_dot(a, b, d)
            out_sum[d] = s
            out_dot[d] = q


# -- BatchNorm followed by an in-place Scale (fused by the Net) --------------------
# NOTE: each value is computed by the same float operations, in the same order,
# as bn_forward_train/bn_global_forward then channel_affine (forward), and
# channel_reduce then channel_affine then bn_backward_train (backward), so the
# results are bit-identical; the fusion only saves passes over memory.
@njit
def _row_normalize_affine(x, mu, sd, a, b, xnorm, y):
    """xnorm = (x - mu) / sd, then y = xnorm * a + b, over 1-D rows (y may be x)."""
    for i in range(x.size):
        xnorm[i] = (x[i] - mu) / sd
    for i in range(x.size):
        y[i] = xnorm[i] * a + b


@pjit
def bn_scale_forward_train(x, eps, scale, bias, y, xnorm, mean, var, std):
    """:func:`bn_forward_train` followed by ``y = xnorm * scale[c] + bias[c]``
    (BatchNorm and the in-place Scale after it, in one pass over the output).

    Args:
        x: (N, C, S) input.
        eps: added to the variance.
        scale, bias: (C,) the Scale layer's parameters.
        y: (N, C, S) output (may be ``x``), overwritten.
        xnorm: (N, C, S) output, the normalised input (kept for backward).
        mean, var, std: (C,) outputs.
    """
    num, chans, inner = x.shape
    m = num * inner
    for c in prange(chans):
        if m == 0:
            mean[c] = 0.0
            var[c] = 0.0
            std[c] = math.sqrt(eps)
            continue
        shift = x[0, c, 0]
        s, q = _channel_moments(x, c, shift)
        dm = s / m
        mean[c] = shift + dm
        v = q / m - dm * dm
        var[c] = v if v > 0.0 else 0.0
        std[c] = math.sqrt(var[c] + eps)
        mu = mean[c]
        sd = std[c]
        a = scale[c]
        b = bias[c]
        if inner >= _ROW:
            for n in range(num):
                _row_normalize_affine(x[n, c], mu, sd, a, b, xnorm[n, c], y[n, c])
        else:
            for n in range(num):
                for i in range(inner):
                    v = (x[n, c, i] - mu) / sd
                    xnorm[n, c, i] = v
                    y[n, c, i] = v * a + b


@pjit
def bn_scale_forward_global(x, mean, std, scale, bias, keep, xnorm, y):
    """``y = (x - mean[c]) / std[c] * scale[c] + bias[c]`` over (N, C, S) arrays
    (BatchNorm with stored statistics and the in-place Scale after it).

    Args:
        x: (N, C, S) input.
        mean, std: (C,) statistics.
        scale, bias: (C,) the Scale layer's parameters.
        keep: whether to write ``xnorm``.
        xnorm: (N, C, S) output, the normalised input (written when ``keep``).
        y: (N, C, S) output (may be ``x``), overwritten.
    """
    num, chans, inner = x.shape
    for t in prange(num * chans):
        n = t // chans
        c = t - n * chans
        mu = mean[c]
        sd = std[c]
        a = scale[c]
        b = bias[c]
        xr = x[n, c]
        yr = y[n, c]
        if keep:
            _row_normalize_affine(xr, mu, sd, a, b, xnorm[n, c], yr)
        else:
            for i in range(inner):
                yr[i] = (xr[i] - mu) / sd * a + b


@njit
def _row_sums_scaled(dy, a, xn):
    """(sum(dy), sum(dy * xn), sum(dy * a), sum((dy * a) * xn)) over 1-D rows,
    each added as :func:`_row_sum_dot` adds it."""
    size = dy.size
    s1 = 0.0
    q1 = 0.0
    s2 = 0.0
    q2 = 0.0
    i = 0
    while i + 8 <= size:
        d0, d1, d2, d3 = dy[i], dy[i + 1], dy[i + 2], dy[i + 3]
        d4, d5, d6, d7 = dy[i + 4], dy[i + 5], dy[i + 6], dy[i + 7]
        x0, x1, x2, x3 = xn[i], xn[i + 1], xn[i + 2], xn[i + 3]
        x4, x5, x6, x7 = xn[i + 4], xn[i + 5], xn[i + 6], xn[i + 7]
        s1 += ((d0 + d1) + (d2 + d3)) + ((d4 + d5) + (d6 + d7))
        q1 += ((d0 * x0 + d1 * x1) + (d2 * x2 + d3 * x3)) + (
            (d4 * x4 + d5 * x5) + (d6 * x6 + d7 * x7)
        )
        e0, e1, e2, e3 = d0 * a, d1 * a, d2 * a, d3 * a
        e4, e5, e6, e7 = d4 * a, d5 * a, d6 * a, d7 * a
        s2 += ((e0 + e1) + (e2 + e3)) + ((e4 + e5) + (e6 + e7))
        q2 += ((e0 * x0 + e1 * x1) + (e2 * x2 + e3 * x3)) + (
            (e4 * x4 + e5 * x5) + (e6 * x6 + e7 * x7)
        )
        i += 8
    while i < size:
        d0 = dy[i]
        e0 = d0 * a
        s1 += d0
        q1 += d0 * xn[i]
        s2 += e0
        q2 += e0 * xn[i]
        i += 1
    return s1, q1, s2, q2


@njit
def _row_bn_scale_grad(dy, scale, xnorm, a, b, sd, tmp, dx):
    """dx = (dy * scale - a - b * xnorm) / sd over 1-D rows (dx may be dy)."""
    for i in range(dy.size):
        tmp[i] = (dy[i] * scale - a - b * xnorm[i]) / sd
    for i in range(dy.size):
        dx[i] = tmp[i]


@pjit
def bn_scale_backward_train(dy, xnorm, scale, std, dx, sum_dy, sum_dyx):
    """Backward of an in-place Scale then of the BatchNorm before it (batch
    statistics), in two passes instead of four.

    The Scale's ``sum_dy = sum dy``, ``sum_dyx = sum dy * xnorm`` (its bias and
    scale gradients), then with ``g = dy * scale[c]``:
    ``dx = (g - mean(g) - mean(g * xnorm) * xnorm) / std``, means over n, s.

    Args:
        dy: (N, C, S) gradient of the Scale's top.
        xnorm: (N, C, S) normalised input from the forward pass.
        scale: (C,) the Scale layer's scale.
        std: (C,) from the forward pass.
        dx: (N, C, S) output (may be ``dy``), overwritten.
        sum_dy, sum_dyx: (C,) float64 outputs, overwritten.
    """
    num, chans, inner = dy.shape
    m = num * inner
    for c in prange(chans):
        a = scale[c]
        s1 = 0.0
        q1 = 0.0
        s2 = 0.0
        q2 = 0.0
        if inner >= _ROW:
            for n in range(num):
                t1, t2, t3, t4 = _row_sums_scaled(dy[n, c], a, xnorm[n, c])
                s1 += t1
                q1 += t2
                s2 += t3
                q2 += t4
        else:
            for n in range(num):
                for i in range(inner):
                    d = dy[n, c, i]
                    e = d * a
                    s1 += d
                    q1 += d * xnorm[n, c, i]
                    s2 += e
                    q2 += e * xnorm[n, c, i]
        sum_dy[c] = s1
        sum_dyx[c] = q1
        ma = dx.dtype.type(s2 / m)
        mb = dx.dtype.type(q2 / m)
        sd = std[c]
        if inner >= _ROW:
            tmp = np.empty(inner, dx.dtype)
            for n in range(num):
                _row_bn_scale_grad(dy[n, c], a, xnorm[n, c], ma, mb, sd, tmp, dx[n, c])
        else:
            for n in range(num):
                for i in range(inner):
                    dx[n, c, i] = (dy[n, c, i] * a - ma - mb * xnorm[n, c, i]) / sd
