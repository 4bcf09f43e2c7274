"""Max and average pooling over (N, C, H, W) batches, Caffe's exact window rules.

For output position (py, px) the window starts at ``hs = py*sh - ph`` (likewise
``ws``):

- MAX: the window is clipped to the input, ``[max(hs, 0), min(hs + kh, H))``;
  the first strictly greater element wins (NaNs are skipped, as Caffe's ``>``),
  starting from ``-FLT_MAX`` with argmax -1.
- AVE: the divisor is the window clipped to the *padded* input,
  ``(min(hs + kh, H + ph) - hs) * (min(ws + kw, W + pw) - ws)``, taken before the
  window is clipped to the unpadded input for the sum (so padding counts, but
  the part of a ceil-mode window beyond the padding does not).

Every kernel runs one task per (image, channel) plane, max and average pooling
per block of planes (:func:`caffepy.kernels.tasks.launch`).
"""

import numpy as np
from numba import uint64 as u64

from caffepy.kernels.config import njit, pjit, prange
from caffepy.kernels.neuron import rectify
from caffepy.kernels.tasks import blocks as _blocks
from caffepy.kernels.tasks import launch

#: Blocks of (image, channel) planes a max or average pooling pass is cut into
#: (the tasks of :func:`caffepy.kernels.tasks.launch`).
_BLOCKS = 64

#: Caffe starts every max from -FLT_MAX, for float and double alike.
_NEG_FLT_MAX = -float(np.finfo(np.float32).max)


def max_pool_forward(x, kh, kw, ph, pw, sh, sw, top, argmax, relu=False, slope=0.0):
    """Max pooling.

    Args:
        x: (N, C, H, W) input, C-contiguous.
        kh, kw, ph, pw, sh, sw: kernel size, padding, stride.
        top: (N, C, PH, PW) output, C-contiguous, overwritten.
        argmax: (N, C, PH, PW) int32 output: flat index y*W + x of each maximum in
            its input plane (-1 for a window with no element above -FLT_MAX).
        relu, slope: an in-place ReLU of negative slope ``slope`` follows
            (applied to each top plane as it is written; the argmax is the
            pooling's).
    """
    blocks = _blocks(x.shape[0] * x.shape[1], top.size * kh * kw, _BLOCKS)
    args = (x, kh, kw, ph, pw, sh, sw, top, argmax, bool(relu), float(slope), blocks)
    launch(_max_forward_task, args, blocks)


@njit
def _max_forward_task(
    x, kh, kw, ph, pw, sh, sw, top, argmax, relu, slope, blocks, b, _
):  # fmt: skip
    """Planes [b*NC/blocks, (b+1)*NC/blocks) of :func:`max_pool_forward`."""
    n_img, chans, height, width = x.shape
    out_h, out_w = top.shape[2], top.shape[3]
    neg = x.dtype.type(_NEG_FLT_MAX)
    xf = x.reshape(x.size)
    tf = top.reshape(top.size)
    af = argmax.reshape(argmax.size)
    usw = u64(sw)
    # NOTE: flat unsigned indices skip Numba's negative-index checks (see
    # kernels/im2col.py); four windows of a row are scanned at once, since each
    # running maximum is a chain of dependent compares and four chains keep the
    # core busy (together measured 1.7-2.2x faster). Visiting order and ties
    # (the first strictly greater element wins) are Caffe's.
    planes = n_img * chans
    for t in range(b * planes // blocks, (b + 1) * planes // blocks):
        xb = t * height * width
        ob = t * out_h * out_w
        for py in range(out_h):
            hs = py * sh - ph
            he = min(hs + kh, height)
            hs = max(hs, 0)
            orow = ob + py * out_w
            px = 0
            while px < out_w:
                ws = px * sw - pw
                if px + 3 < out_w and ws >= 0 and ws + 3 * sw + kw <= width:
                    b0 = b1 = b2 = b3 = neg
                    w0 = w1 = w2 = w3 = -1
                    for y in range(hs, he):
                        for xx in range(ws, ws + kw):
                            i = y * width + xx
                            ui = u64(xb + i)
                            v = xf[ui]
                            if v > b0:
                                b0, w0 = v, i
                            v = xf[ui + usw]
                            if v > b1:
                                b1, w1 = v, i + sw
                            v = xf[ui + 2 * usw]
                            if v > b2:
                                b2, w2 = v, i + 2 * sw
                            v = xf[ui + 3 * usw]
                            if v > b3:
                                b3, w3 = v, i + 3 * sw
                    o = u64(orow + px)
                    tf[o], tf[o + u64(1)], tf[o + u64(2)], tf[o + u64(3)] = (
                        b0,
                        b1,
                        b2,
                        b3,
                    )
                    af[o], af[o + u64(1)], af[o + u64(2)], af[o + u64(3)] = (
                        w0,
                        w1,
                        w2,
                        w3,
                    )
                    px += 4
                    continue
                we = min(ws + kw, width)
                ws = max(ws, 0)
                best = neg
                where = -1
                for y in range(hs, he):
                    for xx in range(ws, we):
                        i = y * width + xx
                        v = xf[u64(xb + i)]
                        if v > best:
                            best = v
                            where = i
                tf[u64(orow + px)] = best
                af[u64(orow + px)] = where
                px += 1
        if relu:
            rectify(tf, ob, ob + out_h * out_w, slope)


def max_pool_backward(top_diff, argmax, bottom_diff):
    """Route each top gradient to its argmax (summing where windows share one).

    Args:
        top_diff: (N, C, PH, PW) gradient of the top, C-contiguous.
        argmax: (N, C, PH, PW) int32 from :func:`max_pool_forward`.
        bottom_diff: (N, C, H, W) output, C-contiguous, overwritten.
    """
    blocks = _blocks(top_diff.shape[0] * top_diff.shape[1], bottom_diff.size, _BLOCKS)
    launch(_max_backward_task, (top_diff, argmax, bottom_diff, blocks), blocks)


@njit
def _max_backward_task(top_diff, argmax, bottom_diff, blocks, b, _):
    """Planes [b*NC/blocks, (b+1)*NC/blocks) of :func:`max_pool_backward`."""
    n_img, chans, height, width = bottom_diff.shape
    out_h, out_w = top_diff.shape[2], top_diff.shape[3]
    plane, oplane = height * width, out_h * out_w
    df = bottom_diff.reshape(bottom_diff.size)
    sf = top_diff.reshape(top_diff.size)
    af = argmax.reshape(argmax.size)
    zero = df.dtype.type(0)
    planes = n_img * chans
    for t in range(b * planes // blocks, (b + 1) * planes // blocks):
        xb = u64(t * plane)
        ob = u64(t * oplane)
        for i in range(plane):
            df[xb + u64(i)] = zero
        for i in range(oplane):
            k = af[ob + u64(i)]
            if k >= 0:
                df[xb + u64(k)] += sf[ob + u64(i)]


def ave_pool_forward(x, kh, kw, ph, pw, sh, sw, top, relu=False, slope=0.0):
    """Average pooling with Caffe's divisor (see the module docstring).

    Args:
        x: (N, C, H, W) input, C-contiguous.
        kh, kw, ph, pw, sh, sw: kernel size, padding, stride.
        top: (N, C, PH, PW) output, C-contiguous, overwritten.
        relu, slope: as :func:`max_pool_forward`'s.
    """
    blocks = _blocks(x.shape[0] * x.shape[1], top.size * kh * kw, _BLOCKS)
    args = (x, kh, kw, ph, pw, sh, sw, top, bool(relu), float(slope), blocks)
    launch(_ave_forward_task, args, blocks)


@njit
def _ave_forward_task(x, kh, kw, ph, pw, sh, sw, top, relu, slope, blocks, b, _):
    """Planes [b*NC/blocks, (b+1)*NC/blocks) of :func:`ave_pool_forward`."""
    n_img, chans, height, width = x.shape
    out_h, out_w = top.shape[2], top.shape[3]
    xf = x.reshape(x.size)
    tf = top.reshape(top.size)
    zero = x.dtype.type(0)
    usw = u64(sw)
    # NOTE: flat unsigned indices and four windows at once, as in max pooling;
    # each sum still adds its window in Caffe's order.
    planes = n_img * chans
    for t in range(b * planes // blocks, (b + 1) * planes // blocks):
        xb = t * height * width
        ob = t * out_h * out_w
        for py in range(out_h):
            hs = py * sh - ph
            he = min(hs + kh, height + ph)
            y0, y1 = max(hs, 0), min(he, height)
            orow = ob + py * out_w
            px = 0
            while px < out_w:
                ws = px * sw - pw
                if px + 3 < out_w and ws >= 0 and ws + 3 * sw + kw <= width:
                    # four whole windows: the divisor is the full kernel area,
                    # clipped only by the padding below (he)
                    a0 = a1 = a2 = a3 = zero
                    for y in range(y0, y1):
                        for xx in range(ws, ws + kw):
                            ui = u64(xb + y * width + xx)
                            a0 += xf[ui]
                            a1 += xf[ui + usw]
                            a2 += xf[ui + 2 * usw]
                            a3 += xf[ui + 3 * usw]
                    size = x.dtype.type((he - hs) * kw)
                    o = u64(orow + px)
                    tf[o], tf[o + u64(1)] = a0 / size, a1 / size
                    tf[o + u64(2)], tf[o + u64(3)] = a2 / size, a3 / size
                    px += 4
                    continue
                we = min(ws + kw, width + pw)
                pool_size = (he - hs) * (we - ws)
                acc = zero
                for y in range(y0, y1):
                    for xx in range(max(ws, 0), min(we, width)):
                        acc += xf[u64(xb + y * width + xx)]
                # NOTE: divide in the data's dtype (float / int in Caffe), no float64.
                tf[u64(orow + px)] = acc / x.dtype.type(pool_size)
                px += 1
        if relu:
            rectify(tf, ob, ob + out_h * out_w, slope)


def ave_pool_backward(top_diff, kh, kw, ph, pw, sh, sw, bottom_diff):
    """Spread each top gradient evenly (1/pool_size) over its window.

    Args:
        top_diff: (N, C, PH, PW) gradient of the top, C-contiguous.
        kh, kw, ph, pw, sh, sw: kernel size, padding, stride.
        bottom_diff: (N, C, H, W) output, C-contiguous, overwritten.
    """
    planes = top_diff.shape[0] * top_diff.shape[1]
    blocks = _blocks(planes, top_diff.size * kh * kw, _BLOCKS)
    launch(
        _ave_backward_task,
        (top_diff, kh, kw, ph, pw, sh, sw, bottom_diff, blocks),
        blocks,
    )


@njit
def _ave_backward_task(top_diff, kh, kw, ph, pw, sh, sw, bottom_diff, blocks, b, _):
    """Planes [b*NC/blocks, (b+1)*NC/blocks) of :func:`ave_pool_backward`."""
    n_img, chans, height, width = bottom_diff.shape
    out_h, out_w = top_diff.shape[2], top_diff.shape[3]
    sf = top_diff.reshape(top_diff.size)
    df = bottom_diff.reshape(bottom_diff.size)
    zero = df.dtype.type(0)
    planes = n_img * chans
    for t in range(b * planes // blocks, (b + 1) * planes // blocks):
        xb = t * height * width
        ob = t * out_h * out_w
        for i in range(height * width):
            df[u64(xb + i)] = zero
        for py in range(out_h):
            hs = py * sh - ph
            he = min(hs + kh, height + ph)
            y0, y1 = max(hs, 0), min(he, height)
            for px in range(out_w):
                ws = px * sw - pw
                we = min(ws + kw, width + pw)
                g = sf[u64(ob + py * out_w + px)] / df.dtype.type((he - hs) * (we - ws))
                x0, x1 = max(ws, 0), min(we, width)
                for y in range(y0, y1):
                    base = xb + y * width
                    for xx in range(x1 - x0):
                        df[u64(base + x0 + xx)] += g


# ----------------------------------------------------------------------------
# Stochastic pooling (Caffe's StoPoolForwardTrain / StoPoolForwardTest CUDA
# kernels; its CPU code has none). The windows ignore padding (Caffe refuses a
# pad with STOCHASTIC): ``[py*sh, min(py*sh + kh, H))``, likewise for x.
# ----------------------------------------------------------------------------
#: Caffe's TEST-phase sum starts from FLT_MIN (so an all-zero window gives 0).
_FLT_MIN = float(np.finfo(np.float32).tiny)


@pjit
def stochastic_pool_forward_train(x, kh, kw, sh, sw, rand, top, index):
    """Sample one element per window with probability proportional to its value.

    With ``s`` the window's sum and ``u = rand[...]``, the sampled element is the
    first whose running sum (in window order: rows, then columns) reaches
    ``u * s``, as Caffe's GPU kernel.

    Args:
        x: (N, C, H, W) non-negative input, C-contiguous.
        kh, kw, sh, sw: kernel size and stride.
        rand: (N, C, PH, PW) uniform draws in [0, 1).
        top: (N, C, PH, PW) output, overwritten with the sampled values.
        index: (N, C, PH, PW) int32, overwritten with the sampled element's flat
            index ``h * W + w`` into its input plane.
    """
    n_img, chans, height, width = x.shape
    out_h, out_w = top.shape[2], top.shape[3]
    for t in prange(n_img * chans):
        n = t // chans
        c = t - n * chans
        plane = x[n, c]
        for py in range(out_h):
            y0 = py * sh
            y1 = min(y0 + kh, height)
            for px in range(out_w):
                x0 = px * sw
                x1 = min(x0 + kw, width)
                total = plane.dtype.type(0)
                for yy in range(y0, y1):
                    for xx in range(x0, x1):
                        total += plane[yy, xx]
                thres = np.float32(rand[n, c, py, px] * total)
                # NOTE: should no running sum reach the threshold (negative
                # inputs), the last element of the window is taken.
                pick = (y1 - 1) * width + x1 - 1
                run = plane.dtype.type(0)
                found = False
                for yy in range(y0, y1):
                    for xx in range(x0, x1):
                        run += plane[yy, xx]
                        if run >= thres:
                            pick = yy * width + xx
                            found = True
                            break
                    if found:
                        break
                index[n, c, py, px] = pick
                top[n, c, py, px] = plane[pick // width, pick % width]


@pjit
def stochastic_pool_forward_test(x, kh, kw, sh, sw, top):
    """The probability-weighted average of each window: ``sum(x^2) / sum(x)``,
    the sum starting from FLT_MIN (as Caffe's GPU kernel).

    Args:
        x: (N, C, H, W) non-negative input, C-contiguous.
        kh, kw, sh, sw: kernel size and stride.
        top: (N, C, PH, PW) output, overwritten.
    """
    n_img, chans, height, width = x.shape
    out_h, out_w = top.shape[2], top.shape[3]
    for t in prange(n_img * chans):
        n = t // chans
        c = t - n * chans
        plane = x[n, c]
        for py in range(out_h):
            y0 = py * sh
            y1 = min(y0 + kh, height)
            for px in range(out_w):
                x0 = px * sw
                x1 = min(x0 + kw, width)
                total = plane.dtype.type(_FLT_MIN)
                squares = plane.dtype.type(0)
                for yy in range(y0, y1):
                    for xx in range(x0, x1):
                        v = plane[yy, xx]
                        total += v
                        squares += v * v
                top[n, c, py, px] = squares / total


@pjit
def stochastic_pool_backward_test(x, top_diff, kh, kw, sh, sw, bottom_diff):
    """Gradient of :func:`stochastic_pool_forward_test`:
    ``d/dx_i [Q / S] = (2 x_i S - Q) / S^2`` (Q = sum x^2, S = FLT_MIN + sum x),
    summed over the windows holding x_i. Computed in float64.

    Args:
        x: (N, C, H, W) the forward's input, C-contiguous.
        top_diff: (N, C, PH, PW) gradient of the top.
        kh, kw, sh, sw: kernel size and stride.
        bottom_diff: (N, C, H, W) output, overwritten.
    """
    n_img, chans, height, width = x.shape
    out_h, out_w = top_diff.shape[2], top_diff.shape[3]
    for t in prange(n_img * chans):
        n = t // chans
        c = t - n * chans
        plane = x[n, c]
        dplane = bottom_diff[n, c]
        dplane[:, :] = 0
        for py in range(out_h):
            y0 = py * sh
            y1 = min(y0 + kh, height)
            for px in range(out_w):
                x0 = px * sw
                x1 = min(x0 + kw, width)
                total = _FLT_MIN
                squares = 0.0
                for yy in range(y0, y1):
                    for xx in range(x0, x1):
                        v = float(plane[yy, xx])
                        total += v
                        squares += v * v
                g = float(top_diff[n, c, py, px]) / (total * total)
                for yy in range(y0, y1):
                    for xx in range(x0, x1):
                        v = float(plane[yy, xx])
                        dplane[yy, xx] += g * (2.0 * v * total - squares)
