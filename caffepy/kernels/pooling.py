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

Every kernel runs one task per (image, channel) plane.
"""

import numpy as np

from caffepy.kernels.config import pjit, prange

#: Caffe starts every max from -FLT_MAX, for float and double alike.
_NEG_FLT_MAX = -float(np.finfo(np.float32).max)


@pjit
def max_pool_forward(x, kh, kw, ph, pw, sh, sw, top, argmax):
    """Max pooling.

    Args:
        x: (N, C, H, W) input.
        kh, kw, ph, pw, sh, sw: kernel size, padding, stride.
        top: (N, C, PH, PW) output, overwritten.
        argmax: (N, C, PH, PW) int32 output: flat index y*W + x of each maximum in
            its input plane (-1 for a window with no element above -FLT_MAX).
    """
    n_img, chans, height, width = x.shape
    out_h, out_w = top.shape[2], top.shape[3]
    for t in prange(n_img * chans):
        n = t // chans
        c = t - n * chans
        src = x[n, c]
        dst = top[n, c]
        arg = argmax[n, c]
        for py in range(out_h):
            hs = py * sh - ph
            he = min(hs + kh, height)
            hs = max(hs, 0)
            for px in range(out_w):
                ws = px * sw - pw
                we = min(ws + kw, width)
                ws = max(ws, 0)
                best = src.dtype.type(_NEG_FLT_MAX)
                where = -1
                for y in range(hs, he):
                    for xx in range(ws, we):
                        v = src[y, xx]
                        if v > best:
                            best = v
                            where = y * width + xx
                dst[py, px] = best
                arg[py, px] = where


@pjit
def max_pool_backward(top_diff, argmax, bottom_diff):
    """Route each top gradient to its argmax (summing where windows share one).

    Args:
        top_diff: (N, C, PH, PW) gradient of the top.
        argmax: (N, C, PH, PW) int32 from :func:`max_pool_forward`.
        bottom_diff: (N, C, H, W) output, overwritten.
    """
    n_img, chans, height, width = bottom_diff.shape
    out_h, out_w = top_diff.shape[2], top_diff.shape[3]
    for t in prange(n_img * chans):
        n = t // chans
        c = t - n * chans
        dst = bottom_diff[n, c].reshape(height * width)
        src = top_diff[n, c]
        arg = argmax[n, c]
        for i in range(height * width):
            dst[i] = 0
        for py in range(out_h):
            for px in range(out_w):
                k = arg[py, px]
                if k >= 0:
                    dst[k] += src[py, px]


@pjit
def ave_pool_forward(x, kh, kw, ph, pw, sh, sw, top):
    """Average pooling with Caffe's divisor (see the module docstring).

    Args:
        x: (N, C, H, W) input.
        kh, kw, ph, pw, sh, sw: kernel size, padding, stride.
        top: (N, C, PH, PW) output, overwritten.
    """
    n_img, chans, height, width = x.shape
    out_h, out_w = top.shape[2], top.shape[3]
    for t in prange(n_img * chans):
        n = t // chans
        c = t - n * chans
        src = x[n, c]
        dst = top[n, c]
        for py in range(out_h):
            hs = py * sh - ph
            he = min(hs + kh, height + ph)
            for px in range(out_w):
                ws = px * sw - pw
                we = min(ws + kw, width + pw)
                pool_size = (he - hs) * (we - ws)
                acc = src.dtype.type(0)
                for y in range(max(hs, 0), min(he, height)):
                    for xx in range(max(ws, 0), min(we, width)):
                        acc += src[y, xx]
                # NOTE: divide in the data's dtype (float / int in Caffe), no float64.
                dst[py, px] = acc / src.dtype.type(pool_size)


@pjit
def ave_pool_backward(top_diff, kh, kw, ph, pw, sh, sw, bottom_diff):
    """Spread each top gradient evenly (1/pool_size) over its window.

    Args:
        top_diff: (N, C, PH, PW) gradient of the top.
        kh, kw, ph, pw, sh, sw: kernel size, padding, stride.
        bottom_diff: (N, C, H, W) output, overwritten.
    """
    n_img, chans, height, width = bottom_diff.shape
    out_h, out_w = top_diff.shape[2], top_diff.shape[3]
    for t in prange(n_img * chans):
        n = t // chans
        c = t - n * chans
        src = top_diff[n, c]
        dst = bottom_diff[n, c]
        for y in range(height):
            for xx in range(width):
                dst[y, xx] = 0
        for py in range(out_h):
            hs = py * sh - ph
            he = min(hs + kh, height + ph)
            for px in range(out_w):
                ws = px * sw - pw
                we = min(ws + kw, width + pw)
                g = src[py, px] / src.dtype.type((he - hs) * (we - ws))
                for y in range(max(hs, 0), min(he, height)):
                    for xx in range(max(ws, 0), min(we, width)):
                        dst[y, xx] += g
