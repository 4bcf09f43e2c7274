"""im2col/col2im and pooling kernels (Caffe's ``im2col.cu``, ``pooling_layer.cu``).

Images are one (C, H, W) plane set per call of im2col/col2im; pooling runs on
(N, C, H, W) flat arrays. Geometry follows Caffe: pooled sizes rounded up, the
last window clipped, average divisor counting the padding inside the bounds.
"""

from __future__ import annotations

from caffepy.backend.cuda.kernels.launch import cuda

_NEG_FLT_MAX = -3.402823466e38


@cuda.jit
def im2col(
    n, img, channels, height, width, kh, kw, ph, pw, sh, sw, dh, dw, oh, ow, col
):
    """col[(c, ky, kx), (y, x)] = img[c, y*sh - ph + ky*dh, x*sw - pw + kx*dw] (0 outside).

    Args:
        n: channels * oh * ow (one thread per (c, y, x)).
        img: flat (C*H*W) input.
        col: flat (C*kh*kw, oh*ow) output, written.
    """
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for index in range(start, n, step):
        x_out = index % ow
        t = index // ow
        y_out = t % oh
        c = t // oh
        y_in0 = y_out * sh - ph
        x_in0 = x_out * sw - pw
        row0 = c * kh * kw
        for i in range(kh):
            y = y_in0 + i * dh
            for j in range(kw):
                x = x_in0 + j * dw
                v = img[0] * 0
                if 0 <= y < height and 0 <= x < width:
                    v = img[(c * height + y) * width + x]
                col[((row0 + i * kw + j) * oh + y_out) * ow + x_out] = v


@cuda.jit
def col2im(
    n, col, channels, height, width, kh, kw, ph, pw, sh, sw, dh, dw, oh, ow, img
):
    """img[c, y, x] = sum of the col entries that im2col read from it.

    Args:
        n: channels * height * width (one thread per image element: no atomics).
        col: flat (C*kh*kw, oh*ow) input.
        img: flat (C*H*W) output, written.
    """
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for index in range(start, n, step):
        x = index % width + pw
        y = (index // width) % height + ph
        c = index // (width * height)
        acc = col[0] * 0
        for i in range(kh):
            yk = y - i * dh
            if yk < 0 or yk % sh != 0:
                continue
            y_out = yk // sh
            if y_out >= oh:
                continue
            for j in range(kw):
                xk = x - j * dw
                if xk < 0 or xk % sw != 0:
                    continue
                x_out = xk // sw
                if x_out >= ow:
                    continue
                acc += col[(((c * kh + i) * kw + j) * oh + y_out) * ow + x_out]
        img[index] = acc


@cuda.jit
def max_pool_forward(n, x, height, width, oh, ow, kh, kw, ph, pw, sh, sw, top, argmax):
    """Max over each window; argmax = flat y*W + x in the plane (-1: none).

    Args:
        n: N*C*oh*ow.
        x: flat (N*C*H*W) input. top: flat (N*C*oh*ow) output. argmax: int32, same.
    """
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for index in range(start, n, step):
        px = index % ow
        py = (index // ow) % oh
        plane = index // (ow * oh)
        hs = py * sh - ph
        ws = px * sw - pw
        he = min(hs + kh, height)
        we = min(ws + kw, width)
        hs = max(hs, 0)
        ws = max(ws, 0)
        base = plane * height * width
        best = x[0] * 0 + _NEG_FLT_MAX
        where = -1
        for y in range(hs, he):
            for xx in range(ws, we):
                v = x[base + y * width + xx]
                if v > best:
                    best = v
                    where = y * width + xx
        top[index] = best
        argmax[index] = where


@cuda.jit
def max_pool_backward(
    n, top_diff, argmax, height, width, oh, ow, kh, kw, ph, pw, sh, sw, bottom_diff
):
    """bottom_diff[i] = sum of top_diff over the windows whose argmax is i.

    Args:
        n: N*C*H*W (one thread per bottom element, gathering).
    """
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for index in range(start, n, step):
        w = index % width
        h = (index // width) % height
        plane = index // (width * height)
        phs = 0 if h + ph < kh else (h + ph - kh) // sh + 1
        phe = min((h + ph) // sh + 1, oh)
        pws = 0 if w + pw < kw else (w + pw - kw) // sw + 1
        pwe = min((w + pw) // sw + 1, ow)
        acc = top_diff[0] * 0
        me = h * width + w
        obase = plane * oh * ow
        for py in range(phs, phe):
            for px in range(pws, pwe):
                o = obase + py * ow + px
                if argmax[o] == me:
                    acc += top_diff[o]
        bottom_diff[index] = acc


@cuda.jit
def ave_pool_forward(n, x, height, width, oh, ow, kh, kw, ph, pw, sh, sw, top):
    """Window sums divided by the window size clipped to the padded bounds."""
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for index in range(start, n, step):
        px = index % ow
        py = (index // ow) % oh
        plane = index // (ow * oh)
        hs = py * sh - ph
        ws = px * sw - pw
        he = min(hs + kh, height + ph)
        we = min(ws + kw, width + pw)
        pool_size = (he - hs) * (we - ws)
        hs = max(hs, 0)
        ws = max(ws, 0)
        he = min(he, height)
        we = min(we, width)
        base = plane * height * width
        acc = x[0] * 0
        for y in range(hs, he):
            for xx in range(ws, we):
                acc += x[base + y * width + xx]
        top[index] = acc / pool_size


@cuda.jit
def ave_pool_backward(
    n, top_diff, height, width, oh, ow, kh, kw, ph, pw, sh, sw, bottom_diff
):
    """bottom_diff[i] = sum over the windows covering i of top_diff / pool_size."""
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for index in range(start, n, step):
        w = index % width + pw
        h = (index // width) % height + ph
        plane = index // (width * height)
        phs = 0 if h < kh else (h - kh) // sh + 1
        phe = min(h // sh + 1, oh)
        pws = 0 if w < kw else (w - kw) // sw + 1
        pwe = min(w // sw + 1, ow)
        acc = top_diff[0] * 0
        obase = plane * oh * ow
        for py in range(phs, phe):
            for px in range(pws, pwe):
                hs = py * sh - ph
                ws = px * sw - pw
                he = min(hs + kh, height + ph)
                we = min(ws + kw, width + pw)
                acc += top_diff[obase + py * ow + px] / ((he - hs) * (we - ws))
        bottom_diff[index] = acc


@cuda.jit
def im2col_batch(
    n, img, channels, height, width, kh, kw, ph, pw, sh, sw, dh, dw, oh, ow, col
):
    """:func:`im2col` of a whole batch: one thread per (image, c, y, x).

    Args:
        n: num * channels * oh * ow.
        img: flat (num, C, H, W) input.
        col: flat (num, C*kh*kw, oh*ow) output, written.
    """
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    per = channels * oh * ow
    for index in range(start, n, step):
        b = index // per
        r = index % per
        x_out = r % ow
        t = r // ow
        y_out = t % oh
        c = t // oh
        y_in0 = y_out * sh - ph
        x_in0 = x_out * sw - pw
        src = (b * channels + c) * height * width
        dst = (b * channels * kh * kw + c * kh * kw) * oh * ow + y_out * ow + x_out
        for i in range(kh):
            y = y_in0 + i * dh
            for j in range(kw):
                x = x_in0 + j * dw
                v = img[0] * 0
                if 0 <= y < height and 0 <= x < width:
                    v = img[src + y * width + x]
                col[dst + (i * kw + j) * oh * ow] = v


@cuda.jit
def col2im_batch(
    n, col, channels, height, width, kh, kw, ph, pw, sh, sw, dh, dw, oh, ow, img
):
    """:func:`col2im` of a whole batch: one thread per (image, c, y, x) of the
    output, gathering (no atomics).

    Args:
        n: num * channels * height * width.
        col: flat (num, C*kh*kw, oh*ow) input.
        img: flat (num, C, H, W) output, written.
    """
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    plane = height * width
    for index in range(start, n, step):
        x = index % width + pw
        y = (index // width) % height + ph
        bc = index // plane
        c = bc % channels
        b = bc // channels
        base = (b * channels * kh * kw + c * kh * kw) * oh * ow
        acc = col[0] * 0
        for i in range(kh):
            yk = y - i * dh
            if yk < 0 or yk % sh != 0:
                continue
            y_out = yk // sh
            if y_out >= oh:
                continue
            for j in range(kw):
                xk = x - j * dw
                if xk < 0 or xk % sw != 0:
                    continue
                x_out = xk // sw
                if x_out >= ow:
                    continue
                acc += col[base + (i * kw + j) * oh * ow + y_out * ow + x_out]
        img[index] = acc
