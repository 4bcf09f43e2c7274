"""im2col / col2im over any number of spatial axes (Caffe's ``im2col_nd_cpu``).

The 1-D and 2-D convolutions keep the tuned kernels of :mod:`caffepy.kernels.im2col`;
these serve 3-D and higher convolutions (5-D and larger blobs). The column layout
is the same, ``col[(c, k_0, ..., k_{d-1}), n, o_0, ..., o_{d-1}]``: rows are the
input channel and the kernel offset (row-major over the kernel axes), columns are
the images and the output positions.

Geometry, per spatial axis ``a``::

    out[a] = (in[a] + 2*pad[a] - (dilation[a]*(kernel[a]-1) + 1)) // stride[a] + 1
    i_a    = o_a*stride[a] - pad[a] + k_a*dilation[a]   (out of range reads 0)

The geometry arguments are int64 arrays of one entry per spatial axis.
"""

import numpy as np

from caffepy.kernels.config import njit, pjit, prange


@njit
def _kernel_offsets(row, kernel, pad, dilation, off):
    """off[a] = k_a*dilation[a] - pad[a] for the kernel offset ``row`` (row-major)."""
    rem = row
    for a in range(kernel.shape[0] - 1, -1, -1):
        k = rem % kernel[a]
        rem //= kernel[a]
        off[a] = k * dilation[a] - pad[a]


@njit
def _outer_base(q, in_sp, out_sp, stride, off):
    """The flat input offset of the outer output position q (every axis but the
    last), or -1 when one of its input coordinates falls in the padding."""
    nd = in_sp.shape[0]
    rem = q
    base = 0
    mult = 1
    for a in range(nd - 2, -1, -1):
        o = rem % out_sp[a]
        rem //= out_sp[a]
        i = o * stride[a] + off[a]
        if i < 0 or i >= in_sp[a]:
            return -1
        mult *= in_sp[a + 1]
        base += i * mult
    return base


@pjit
def im2col_nd(x, in_sp, out_sp, kernel, pad, stride, dilation, col):
    """Unfold the patches of a batch into columns.

    Args:
        x: (N, C, *in_sp) input, C-contiguous.
        in_sp, out_sp, kernel, pad, stride, dilation: int64 (d,) geometry.
        col: (C*prod(kernel), N, *out_sp), C-contiguous, overwritten.
    """
    nd = in_sp.shape[0]
    n_img, chans = x.shape[0], x.shape[1]
    xf = x.reshape(x.size)
    cf = col.reshape(col.size)
    ksize = 1
    npos = 1
    isize = 1
    for a in range(nd):
        ksize *= kernel[a]
        npos *= out_sp[a]
        isize *= in_sp[a]
    last_out, last_in = out_sp[nd - 1], in_sp[nd - 1]
    s_last = stride[nd - 1]
    n_outer = npos // last_out
    zero = xf.dtype.type(0)
    for r in prange(chans * ksize):
        c = r // ksize
        off = np.empty(nd, np.int64)
        _kernel_offsets(r - c * ksize, kernel, pad, dilation, off)
        o_last = off[nd - 1]
        for n in range(n_img):
            xbase = (n * chans + c) * isize
            cbase = (r * n_img + n) * npos
            for q in range(n_outer):
                obase = cbase + q * last_out
                base = _outer_base(q, in_sp, out_sp, stride, off)
                if base < 0:
                    for o in range(last_out):
                        cf[obase + o] = zero
                    continue
                for o in range(last_out):
                    i = o * s_last + o_last
                    if i < 0 or i >= last_in:
                        cf[obase + o] = zero
                    else:
                        cf[obase + o] = xf[xbase + base + i]


@pjit
def col2im_nd(col, in_sp, out_sp, kernel, pad, stride, dilation, x):
    """Fold columns back into images, summing overlapping patches (the adjoint of
    :func:`im2col_nd`); entries that fall in the padding are dropped.

    Args:
        col: (C*prod(kernel), N, *out_sp) columns, C-contiguous.
        in_sp, out_sp, kernel, pad, stride, dilation: int64 (d,) geometry.
        x: (N, C, *in_sp), C-contiguous, overwritten.
    """
    nd = in_sp.shape[0]
    n_img, chans = x.shape[0], x.shape[1]
    xf = x.reshape(x.size)
    cf = col.reshape(col.size)
    ksize = 1
    npos = 1
    isize = 1
    for a in range(nd):
        ksize *= kernel[a]
        npos *= out_sp[a]
        isize *= in_sp[a]
    last_out, last_in = out_sp[nd - 1], in_sp[nd - 1]
    s_last = stride[nd - 1]
    n_outer = npos // last_out
    zero = xf.dtype.type(0)
    # NOTE: one channel per parallel task: a channel's rows only write that
    # channel's planes, so no two threads add into one element, and each element
    # receives its terms in the same order on every run.
    for c in prange(chans):
        for n in range(n_img):
            xbase = (n * chans + c) * isize
            for i in range(isize):
                xf[xbase + i] = zero
        off = np.empty(nd, np.int64)
        for kr in range(ksize):
            r = c * ksize + kr
            _kernel_offsets(kr, kernel, pad, dilation, off)
            o_last = off[nd - 1]
            for n in range(n_img):
                xbase = (n * chans + c) * isize
                cbase = (r * n_img + n) * npos
                for q in range(n_outer):
                    base = _outer_base(q, in_sp, out_sp, stride, off)
                    if base < 0:
                        continue
                    obase = cbase + q * last_out
                    for o in range(last_out):
                        i = o * s_last + o_last
                        if 0 <= i < last_in:
                            xf[xbase + base + i] += cf[obase + o]


__all__ = ["col2im_nd", "im2col_nd"]
