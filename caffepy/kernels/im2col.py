"""im2col / col2im over a whole batch, and the batch transposes around the GEMMs.

Convolution is lowered to one GEMM per group over the *batched* column matrix
(Caffe does one GEMM per image; one large GEMM keeps the BLAS busy). The column
layout is ``col[(c, ki, kj), n, oy, ox]``: rows are the input channel and kernel
offset (so the rows of one group are contiguous), columns are the images and
output positions. For a convolution with weights ``W`` of shape
(M, C*kh*kw) the output is then ``W @ col`` of shape (M, N*oh*ow), which
:func:`swap01` turns into NCHW.

Geometry (2-D; N-D convolutions are mapped onto it by the layers)::

    oh = (H + 2*ph - (dh*(kh-1) + 1)) // sh + 1
    iy = oy*sh - ph + ki*dh          (ix likewise); out-of-range iy/ix read 0
"""

import numpy as np
from numba import uint64 as u64

from caffepy.kernels.config import njit, pjit, prange


@njit(inline="always")
def _valid_range(pad, k_off, stride, size, out_size):
    """Output positions o in [lo, hi) with 0 <= o*stride - pad + k_off < size."""
    off = k_off - pad
    if off >= 0:
        lo = 0
    else:
        lo = (-off + stride - 1) // stride
    last = size - 1 - off
    if last < 0:
        hi = 0
    else:
        hi = last // stride + 1
    hi = min(hi, out_size)
    lo = min(lo, hi)
    return lo, hi


@njit(inline="always")
def axis_ranges(pad, dilation, stride, size, out_size, kernel):
    """Per kernel offset k, the output range [lo[k], hi[k]) reading inside the input."""
    lo = np.empty(kernel, np.int64)
    hi = np.empty(kernel, np.int64)
    for k in range(kernel):
        lo[k], hi[k] = _valid_range(pad, k * dilation, stride, size, out_size)
    return lo, hi


@njit(inline="always")
def valid_ranges(kh, kw, ph, pw, sh, sw, dh, dw, height, width, oh, ow):
    """(ylo, yhi, xlo, xhi): per kernel row / column offset, the output rows /
    columns whose taps read inside the input."""
    ylo, yhi = axis_ranges(ph, dh, sh, height, oh, kh)
    xlo, xhi = axis_ranges(pw, dw, sw, width, ow, kw)
    return ylo, yhi, xlo, xhi


# NOTE: the serial building blocks below take flat arrays and scalar dimensions
# (the callers reshape once, outside their parallel loops): reshaping inside
# them, or passing tuples, made the copies measurably slower.
# Flat indices are unsigned (each one is >= 0): Numba then skips its
# negative-index wraparound, and the row copies compile to vector loads and
# stores instead of scatters (measured 1.5-3.5x faster).
@njit(inline="always")
def im2col_planes(
    xf,
    n_img,
    chans,
    height,
    width,
    oh,
    ow,
    kh,
    kw,
    ph,
    pw,
    sh,
    sw,
    dh,
    dw,
    ylo,
    yhi,
    xlo,
    xhi,
    t0,
    t1,
    cf,
):
    """im2col of the (channel, image) planes t in [t0, t1), t = c * N + n.

    Args:
        xf: the (N, C, H, W) input, flat.
        n_img, chans, height, width, oh, ow: N, C, H, W and the output size.
        kh, kw, ph, pw, sh, sw, dh, dw: kernel size, padding, stride, dilation.
        ylo, yhi, xlo, xhi: :func:`valid_ranges` of the geometry.
        t0, t1: the planes to unfold.
        cf: the (C*kh*kw, N, oh, ow) columns, flat; the planes' parts are
            overwritten (padding reads as 0).
    """
    npos = oh * ow
    zero = xf.dtype.type(0)
    ustride = u64(sw)
    for t in range(t0, t1):
        c = t // n_img
        n = t - c * n_img
        xbase = (n * chans + c) * height * width
        for ki in range(kh):
            oy_lo, oy_hi = ylo[ki], yhi[ki]
            for kj in range(kw):
                ox_lo, ox_hi = xlo[kj], xhi[kj]
                base = (((c * kh + ki) * kw + kj) * n_img + n) * npos
                head = u64(base)
                for k in range(oy_lo * ow):
                    cf[head + u64(k)] = zero
                tail = u64(base + oy_hi * ow)
                for k in range((oh - oy_hi) * ow):
                    cf[tail + u64(k)] = zero
                nv = ox_hi - ox_lo
                for oy in range(oy_lo, oy_hi):
                    ob = base + oy * ow
                    row = u64(ob)
                    for k in range(ox_lo):
                        cf[row + u64(k)] = zero
                    o = u64(ob + ox_lo)
                    iy = oy * sh - ph + ki * dh
                    i = u64(xbase + iy * width + ox_lo * sw + kj * dw - pw)
                    if sw == 1:
                        for k in range(nv):
                            uk = u64(k)
                            cf[o + uk] = xf[i + uk]
                    else:
                        for k in range(nv):
                            uk = u64(k)
                            cf[o + uk] = xf[i + uk * ustride]
                    rt = u64(ob + ox_hi)
                    for k in range(ow - ox_hi):
                        cf[rt + u64(k)] = zero


@njit(inline="always")
def col2im_planes(
    cf,
    n_img,
    chans,
    height,
    width,
    oh,
    ow,
    kh,
    kw,
    ph,
    pw,
    sh,
    sw,
    dh,
    dw,
    ylo,
    yhi,
    xlo,
    xhi,
    t0,
    t1,
    xf,
):
    """col2im of the (channel, image) planes t in [t0, t1), t = c * N + n.

    Args:
        cf: the (C*kh*kw, N, oh, ow) columns, flat.
        n_img, chans, height, width, oh, ow: N, C, H, W and the output size.
        kh, kw, ph, pw, sh, sw, dh, dw: kernel size, padding, stride, dilation.
        ylo, yhi, xlo, xhi: :func:`valid_ranges` of the geometry.
        t0, t1: the planes to fold.
        xf: the (N, C, H, W) output, flat; the planes are overwritten (padding
            positions are dropped).
    """
    npos = oh * ow
    zero = xf.dtype.type(0)
    ustride = u64(sw)
    for t in range(t0, t1):
        c = t // n_img
        n = t - c * n_img
        xbase = (n * chans + c) * height * width
        xb = u64(xbase)
        for k in range(height * width):
            xf[xb + u64(k)] = zero
        for ki in range(kh):
            oy_lo, oy_hi = ylo[ki], yhi[ki]
            for kj in range(kw):
                ox_lo, ox_hi = xlo[kj], xhi[kj]
                base = (((c * kh + ki) * kw + kj) * n_img + n) * npos
                nv = ox_hi - ox_lo
                for oy in range(oy_lo, oy_hi):
                    o = u64(base + oy * ow + ox_lo)
                    iy = oy * sh - ph + ki * dh
                    i = u64(xbase + iy * width + ox_lo * sw + kj * dw - pw)
                    if sw == 1:
                        for k in range(nv):
                            uk = u64(k)
                            xf[i + uk] += cf[o + uk]
                    else:
                        for k in range(nv):
                            uk = u64(k)
                            xf[i + uk * ustride] += cf[o + uk]


@njit(inline="always")
def swap01_rows(sf, na, nb, npos, bias, t0, t1, df):
    """dst[b, a, :] = src[a, b, :] (+ bias[a]) for the rows t = b * A + a in
    [t0, t1).

    Args:
        sf: the (A, B, P) input, flat.
        na, nb, npos: A, B, P.
        bias: (A,) added to every element of row a, or an empty array for none.
        t0, t1: the rows to move.
        df: the (B, A, P) output, flat; the rows are overwritten.
    """
    has_bias = bias.shape[0] > 0
    for t in range(t0, t1):
        b = t // na
        a = t - b * na
        s = u64((a * nb + b) * npos)
        d = u64(t * npos)
        if has_bias:
            v = bias[a]
            for p in range(npos):
                up = u64(p)
                df[d + up] = sf[s + up] + v
        else:
            for p in range(npos):
                up = u64(p)
                df[d + up] = sf[s + up]


#: Blocks the parallel wrappers cut their planes or rows into.
_BLOCKS = 64


@pjit
def im2col(x, kh, kw, ph, pw, sh, sw, dh, dw, col):
    """Unfold image patches of a batch into columns (in parallel).

    Args:
        x: (N, C, H, W) input, C-contiguous.
        kh, kw, ph, pw, sh, sw, dh, dw: kernel size, padding, stride, dilation.
        col: (C*kh*kw, N, oh, ow) output, C-contiguous, overwritten (padding
            reads as 0).
    """
    n_img, chans, height, width = x.shape
    oh, ow = col.shape[2], col.shape[3]
    ylo, yhi, xlo, xhi = valid_ranges(
        kh, kw, ph, pw, sh, sw, dh, dw, height, width, oh, ow
    )
    xf = x.reshape(x.size)
    cf = col.reshape(col.size)
    planes = n_img * chans
    blocks = min(planes, _BLOCKS)
    for b in prange(blocks):
        im2col_planes(
            xf,
            n_img,
            chans,
            height,
            width,
            oh,
            ow,
            kh,
            kw,
            ph,
            pw,
            sh,
            sw,
            dh,
            dw,
            ylo,
            yhi,
            xlo,
            xhi,
            b * planes // blocks,
            (b + 1) * planes // blocks,
            cf,
        )


@pjit
def col2im(col, kh, kw, ph, pw, sh, sw, dh, dw, img):
    """Fold columns back into images, summing overlapping patches (im2col's
    adjoint), in parallel.

    Args:
        col: (C*kh*kw, N, oh, ow) columns, C-contiguous.
        kh, kw, ph, pw, sh, sw, dh, dw: kernel size, padding, stride, dilation.
        img: (N, C, H, W) output, C-contiguous, overwritten; padding positions
            are dropped.
    """
    # NOTE: a task owns whole (image, channel) planes, so no two threads add into
    # the same element.
    n_img, chans, height, width = img.shape
    oh, ow = col.shape[2], col.shape[3]
    ylo, yhi, xlo, xhi = valid_ranges(
        kh, kw, ph, pw, sh, sw, dh, dw, height, width, oh, ow
    )
    xf = img.reshape(img.size)
    cf = col.reshape(col.size)
    planes = n_img * chans
    blocks = min(planes, _BLOCKS)
    for b in prange(blocks):
        col2im_planes(
            cf,
            n_img,
            chans,
            height,
            width,
            oh,
            ow,
            kh,
            kw,
            ph,
            pw,
            sh,
            sw,
            dh,
            dw,
            ylo,
            yhi,
            xlo,
            xhi,
            b * planes // blocks,
            (b + 1) * planes // blocks,
            xf,
        )


@pjit
def swap01(src, bias, dst):
    """dst[b, a, :] = src[a, b, :] (+ bias[a]): (A, B, P) -> (B, A, P), in parallel.

    Moves a GEMM result (channels, images, positions) to NCHW and back.

    Args:
        src: (A, B, P) input, C-contiguous.
        bias: (A,) added to every element of row a, or an empty array for none.
        dst: (B, A, P) output, C-contiguous, overwritten.
    """
    na, nb, npos = src.shape
    sf = src.reshape(src.size)
    df = dst.reshape(dst.size)
    rows = na * nb
    blocks = min(rows, _BLOCKS)
    for b in prange(blocks):
        swap01_rows(
            sf, na, nb, npos, bias, b * rows // blocks, (b + 1) * rows // blocks, df
        )


@pjit
def add_bias(y, bias):
    """y[a, :] += bias[a] on an (A, P) array.

    Args:
        y: (A, P) array, updated in place.
        bias: (A,) values.
    """
    na, npos = y.shape
    for a in prange(na):
        v = bias[a]
        row = y[a]
        for p in range(npos):
            row[p] += v


def conv_out_size(size, kernel, pad, stride, dilation):
    """Caffe's convolution output size (<= 0: kernel larger than the padded input)."""
    extent = dilation * (kernel - 1) + 1
    return (size + 2 * pad - extent) // stride + 1


def deconv_out_size(size, kernel, pad, stride, dilation):
    """Caffe's deconvolution output size: convolution's input size for ``size``."""
    extent = dilation * (kernel - 1) + 1
    return stride * (size - 1) + extent - 2 * pad


__all__ = [
    "add_bias",
    "axis_ranges",
    "col2im",
    "col2im_planes",
    "im2col_planes",
    "swap01_rows",
    "conv_out_size",
    "deconv_out_size",
    "im2col",
    "swap01",
]
