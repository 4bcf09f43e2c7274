"""Convolution with row-stride 1 as kh shifted GEMMs over width-only columns.

For a convolution whose vertical stride is 1, the columns need not unfold the
kernel rows: with *row columns* ``rc[(c, kj), r, ox]`` (input row r - ph of
channel c, read at kernel column kj; ``r`` in [0, oh + (kh-1)*dh)), the
output is::

    y[o, oy, ox] = sum_ki  Wr[ki][o, (c, kj)] * rc[(c, kj), oy + ki*dh, ox]

and for a fixed ki the (c, kj) x (oy, ox) operand is ``rc`` shifted by
``ki*dh*ow`` elements with the same leading dimension: one GEMM per kernel
row, accumulating into the output, on columns kh times smaller than im2col's.
Weight gradients are the same GEMMs transposed (one per kernel row), and the
bottom gradient scatters W^T dy into shifted (overlapping) views of a zeroed
row-column buffer, folded back along the width only.

Work is per image (so no transposes to or from NCHW): the kernel threads take
images from a shared counter, each in a task run by
:func:`caffepy.kernels.tasks.launch`. Weight and bias gradients are summed per
contiguous group of images, in image order, into each group's own array (the
caller adds the groups in order): the same bits from run to run.

Weights are passed rearranged as ``wr`` (kh, M, K/G/kh), ``wr[ki, o, (c, kj)]
= w[o, c, ki, kj]`` (:func:`rearrange`). ``gemm``, ``local``, ``workers``,
``counter``: as in :mod:`caffepy.kernels.conv`.
"""

from numba import uint64 as u64

from caffepy.kernels.blas import fetch_add, set_local_threads
from caffepy.kernels.blas import gemm as _gemm
from caffepy.kernels.config import njit
from caffepy.kernels.conv import _row_sums
from caffepy.kernels.im2col import axis_ranges
from caffepy.kernels.neuron import finish_channel
from caffepy.kernels.tasks import launch

_NT, _T = 111, 112  # CblasNoTrans, CblasTrans


@njit
def rearrange(w, kh, kw, wr):
    """wr[ki, o, c*kw + kj] = w[o, (c*kh + ki)*kw + kj]; w (M, Cg*kh*kw)."""
    m_out, kdim = w.shape
    cg = kdim // (kh * kw)
    for ki in range(kh):
        for o in range(m_out):
            for c in range(cg):
                for kj in range(kw):
                    wr[ki, o, c * kw + kj] = w[o, (c * kh + ki) * kw + kj]


@njit
def unrearrange_add(wacc, kh, kw, dw):
    """dw[g*M/G + o, (c*kh + ki)*kw + kj] += wacc[ki, g, c*kw + kj, o]: one group
    of images' transposed gradient (as :func:`backward` writes it) added to the
    (M, C/G*kh*kw) weight diff."""
    groups, mg = wacc.shape[1], wacc.shape[3]
    cg = dw.shape[1] // (kh * kw)
    for g in range(groups):
        for o in range(mg):
            for c in range(cg):
                for ki in range(kh):
                    for kj in range(kw):
                        dw[g * mg + o, (c * kh + ki) * kw + kj] += wacc[
                            ki, g, c * kw + kj, o
                        ]


@njit(inline="always")
def _im2row(
    xf, xbase, chans, height, width, r0, hr, ow, kw, ph, pw, sw, dw, xlo, xhi, rf
):  # fmt: skip
    """Row columns of one image, rows [r0, r0 + hr): rf[(c, kj), r, ox] =
    x[c, r0 + r - ph, ox*sw + kj*dw - pw] (0 outside the image)."""
    zero = xf.dtype.type(0)
    ustride = u64(sw)
    for c in range(chans):
        cb = xbase + c * height * width
        for kj in range(kw):
            ox_lo, ox_hi = xlo[kj], xhi[kj]
            nv = ox_hi - ox_lo
            base = (c * kw + kj) * hr * ow
            for r in range(hr):
                row = u64(base + r * ow)
                sy = r0 + r - ph
                if sy < 0 or sy >= height:
                    for k in range(ow):
                        rf[row + u64(k)] = zero
                    continue
                for k in range(ox_lo):
                    rf[row + u64(k)] = zero
                o = row + u64(ox_lo)
                i = u64(cb + sy * width + ox_lo * sw + kj * dw - pw)
                if sw == 1:
                    for k in range(nv):
                        uk = u64(k)
                        rf[o + uk] = xf[i + uk]
                else:
                    for k in range(nv):
                        uk = u64(k)
                        rf[o + uk] = xf[i + uk * ustride]
                for k in range(ox_hi, ow):
                    rf[row + u64(k)] = zero


@njit(inline="always")
def _row2im(rf, xbase, chans, height, width, hr, ow, kw, ph, pw, sw, dw, xlo, xhi, xf):
    """Fold row columns of one image back (the adjoint of _im2row): the image's
    planes are overwritten."""
    zero = xf.dtype.type(0)
    ustride = u64(sw)
    xb = u64(xbase)
    for k in range(chans * height * width):
        xf[xb + u64(k)] = zero
    for c in range(chans):
        cb = xbase + c * height * width
        for kj in range(kw):
            ox_lo, ox_hi = xlo[kj], xhi[kj]
            nv = ox_hi - ox_lo
            base = (c * kw + kj) * hr * ow
            for sy in range(height):
                o = u64(base + (sy + ph) * ow + ox_lo)
                i = u64(cb + sy * width + ox_lo * sw + kj * dw - pw)
                if sw == 1:
                    for k in range(nv):
                        uk = u64(k)
                        xf[i + uk] += rf[o + uk]
                else:
                    for k in range(nv):
                        uk = u64(k)
                        xf[i + uk * ustride] += rf[o + uk]


def forward(
    x, wr, bias, affine, keep, relu, slope, kh, kw, ph, pw, sw, dh, dw, groups,
    bands, gemm,
    local, workers, counter, rowbuf, y,
):  # fmt: skip
    """y = conv(x, w) + bias for a convolution of vertical stride 1.

    Each image is cut into ``bands`` bands of output rows, one task each (more
    than one spreads a small batch, as deploy's batch of one, over the threads):
    a band's row columns hold its own rows plus the (kh-1)*dh below them. Every
    output element is the same sum of the same products whatever the bands.

    Args:
        x: (N, C, H, W) input, C-contiguous.
        wr: (kh, M, C/G*kw) rearranged weights (:func:`rearrange`).
        bias: (M,) or empty.
        affine, keep, relu, slope: the layers fused after the convolution,
            applied to each band as it is written (see :func:`conv.conv_forward`).
        kh, kw, ph, pw, sw, dh, dw: kernel size, padding, horizontal stride,
            dilation (the vertical stride is 1).
        groups: G.
        bands: bands of output rows per image (1 .. oh).
        gemm, local, workers, counter: see the module docstring.
        rowbuf: (workers, >= C*kw*hr*ow) scratch, hr = oh + (kh-1)*dh.
        y: (N, M, oh, ow) output, C-contiguous, overwritten.
    """
    counter[0] = 0
    args = (x, wr, bias, affine, keep, relu, slope, kh, kw, ph, pw, sw, dh, dw)
    args = args + (groups, bands, gemm, local, counter)
    # NOTE: no more tasks than (image, band) pairs: one runs on the calling thread
    launch(_forward_task, args + (rowbuf, y), min(workers, x.shape[0] * bands), local)


@njit
def _forward_task(
    x, wr, bias, affine, keep, relu, slope, kh, kw, ph, pw, sw, dh, dw, groups,
    bands, gemm,
    local, counter, rowbuf, y, _, tid,
):  # fmt: skip
    """One kernel thread's part of :func:`forward`: (image, band) tasks from the
    counter."""
    n_img, chans, height, width = x.shape
    m_out, oh, ow = y.shape[1], y.shape[2], y.shape[3]
    npos = oh * ow
    kg = (chans // groups) * kw
    mg = m_out // groups
    xlo, xhi = axis_ranges(pw, dw, sw, width, ow, kw)
    xf = x.reshape(x.size)
    yf = y.reshape(y.size)
    isz = x.itemsize
    one = x.dtype.type(1)
    zero = x.dtype.type(0)
    plane = chans * height * width
    set_local_threads(local, 1)
    rf = rowbuf[tid]
    while True:
        j = fetch_add(counter, 1)
        if j >= n_img * bands:
            break
        n = j // bands
        oy0 = (j - n * bands) * oh // bands
        oy1 = (j - n * bands + 1) * oh // bands
        hr = oy1 - oy0 + (kh - 1) * dh
        ldr = hr * ow
        cols = (oy1 - oy0) * ow
        _im2row(
            xf, n * plane, chans, height, width, oy0, hr, ow, kw, ph, pw, sw, dw,
            xlo, xhi, rf,
        )  # fmt: skip
        yb = n * m_out * npos + oy0 * ow
        yaddr = yf.ctypes.data + yb * isz
        for g in range(groups):
            for ki in range(kh):
                _gemm(
                    gemm, _NT, _NT, mg, cols, kg, one,
                    wr.ctypes.data + ((ki * m_out + g * mg) * kg) * isz, kg,
                    rf.ctypes.data + (g * kg * ldr + ki * dh * ow) * isz, ldr,
                    zero if ki == 0 else one,
                    yaddr + g * mg * npos * isz, npos,
                )  # fmt: skip
        if bias.shape[0] > 0:
            for o in range(m_out):
                v = bias[o]
                base = u64(yb + o * npos)
                for p in range(cols):
                    yf[base + u64(p)] += v
        if relu or affine.shape[0] > 0:
            kf = keep.reshape(keep.size)
            for o in range(m_out):
                at = yb + o * npos
                finish_channel(yf, at, at + cols, o, affine, kf, relu, slope)


def backward(
    x, dy, wr, want_w, want_b, want_x, kh, kw, ph, pw, sw, dh, dw, groups,
    n_groups, gemm, local, workers, counter, rowbuf, drowbuf, wacc, bacc, dx,
):  # fmt: skip
    """Gradients of a convolution of vertical stride 1, image by image, summed
    per contiguous group of images.

    Args:
        x: (N, C, H, W) forward input; dy: (N, M, oh, ow) top gradient.
        wr: (kh, M, C/G*kw) rearranged weights (read when want_x).
        want_w, want_b, want_x: which gradients to compute.
        kh, kw, ph, pw, sw, dh, dw, groups: as :func:`forward`.
        n_groups: the images are cut into this many contiguous groups.
        gemm, local, workers, counter: see the module docstring.
        rowbuf, drowbuf: (workers, >= C*kw*hr*ow) scratch.
        wacc: (n_groups, kh, G, C/G*kw, M/G) output: each group of images'
            weight gradient, transposed, per kernel row and weight group.
        bacc: (n_groups, M) float64 output: each group's bias gradient.
        dx: (N, C, H, W) bottom gradient, overwritten when want_x.
    """
    counter[0] = 0
    args = (x, dy, wr, want_w, want_b, want_x, kh, kw, ph, pw, sw, dh, dw, groups)
    args += (n_groups, gemm, local, counter, rowbuf, drowbuf, wacc, bacc, dx)
    launch(_backward_task, args, workers, local)


@njit
def _backward_task(
    x, dy, wr, want_w, want_b, want_x, kh, kw, ph, pw, sw, dh, dw, groups,
    n_groups, gemm, local, counter, rowbuf, drowbuf, wacc, bacc, dx, _, tid,
):  # fmt: skip
    """One kernel thread's part of :func:`backward`: groups of images from the
    counter."""
    n_img, chans, height, width = x.shape
    m_out, oh, ow = dy.shape[1], dy.shape[2], dy.shape[3]
    npos = oh * ow
    hr = oh + (kh - 1) * dh
    ldr = hr * ow
    kg = (chans // groups) * kw
    mg = m_out // groups
    xlo, xhi = axis_ranges(pw, dw, sw, width, ow, kw)
    xf = x.reshape(x.size)
    dyf = dy.reshape(dy.size)
    dxf = dx.reshape(dx.size)
    isz = x.itemsize
    one = x.dtype.type(1)
    zero = x.dtype.type(0)
    plane = chans * height * width
    rows = chans * kw * ldr
    set_local_threads(local, 1)
    rf = rowbuf[tid]
    df = drowbuf[tid]
    while True:
        q = fetch_add(counter, 1)
        if q >= n_groups:
            break
        if want_b:
            for o in range(m_out):
                bacc[q, o] = 0.0
        n_first = q * n_img // n_groups
        for n in range(n_first, (q + 1) * n_img // n_groups):
            dyc = dyf[n * m_out * npos : (n + 1) * m_out * npos]
            if want_b:
                _row_sums(dyc, m_out, npos, bacc, q)
            if want_w:
                _im2row(
                    xf, n * plane, chans, height, width, 0, hr, ow, kw, ph, pw,
                    sw, dw, xlo, xhi, rf,
                )  # fmt: skip
                beta = zero if n == n_first else one
                for g in range(groups):
                    for ki in range(kh):
                        _gemm(
                            gemm, _NT, _T, kg, mg, npos, one,
                            rf.ctypes.data + (g * kg * ldr + ki * dh * ow) * isz,
                            ldr,
                            dyc.ctypes.data + g * mg * npos * isz, npos,
                            beta,
                            wacc[q, ki, g].ctypes.data, mg,
                        )  # fmt: skip
            if want_x:
                for k in range(rows):
                    df[u64(k)] = zero
                for g in range(groups):
                    for ki in range(kh):
                        _gemm(
                            gemm, _T, _NT, kg, npos, mg, one,
                            wr.ctypes.data + ((ki * m_out + g * mg) * kg) * isz,
                            kg,
                            dyc.ctypes.data + g * mg * npos * isz, npos,
                            one,
                            df.ctypes.data + (g * kg * ldr + ki * dh * ow) * isz,
                            ldr,
                        )  # fmt: skip
                _row2im(
                    df, n * plane, chans, height, width, hr, ow, kw, ph, pw,
                    sw, dw, xlo, xhi, dxf,
                )  # fmt: skip


__all__ = [
    "backward",
    "forward",
    "rearrange",
    "unrearrange_add",
]
