"""Convolution passes as single parallel Numba regions (inner product:
:mod:`caffepy.kernels.inner_product`).

Each pass cuts its work into tasks (chunks of images for a convolution, blocks
of outputs for an inner product). The kernel threads take tasks from a shared
counter until none is left, so a thread the OS delays does less instead of
holding the others up, and each runs im2col, its GEMMs (numpy's BLAS, one
thread each, through :mod:`caffepy.kernels.blas`) and the transposes on its
own chunk, in its own scratch row. One parallel region per layer pass means
one wake-up of the threads, not one per GEMM and kernel.

Layouts (as :mod:`caffepy.kernels.im2col`): a chunk of m images has columns
``col[(c, ki, kj), n, p]`` (K = C*kh*kw rows) and GEMM results
``res[o, n, p]``; weights are (G, M/G, K/G). A chunk of one image needs no
transposes: its column and result layouts are the image's own memory, so a
1x1 convolution of one image reads the bottom and writes the top directly.

Backward sums the weight gradient of each contiguous group of chunks into
that group's own array, in chunk order (the groups do not depend on which
thread runs them), and the caller adds the groups in order: the gradients
are the same bits from run to run.

Each pass is a serial task per kernel thread, run on the threads by
:func:`caffepy.kernels.tasks.launch` (so its large body is compiled once, not
once per module of Numba's parallel wrappers).

Every kernel takes ``gemm`` (:func:`caffepy.kernels.blas.gemm_address` of
the dtype), ``local`` (:data:`caffepy.kernels.blas.SET_LOCAL_THREADS`),
``workers`` (the number of kernel threads) and ``counter`` (an int64 array
of one element, scratch).
"""

from numba import uint64 as u64

from caffepy.kernels.blas import fetch_add, set_local_threads
from caffepy.kernels.blas import gemm as _gemm
from caffepy.kernels.config import njit
from caffepy.kernels.im2col import (
    col2im_planes,
    im2col_planes,
    swap01_rows,
    valid_ranges,
)
from caffepy.kernels.neuron import finish_channel
from caffepy.kernels.tasks import launch

_NT, _T = 111, 112  # CblasNoTrans, CblasTrans


@njit(inline="always")
def _row_sums(sf, rows, cols, acc, q):
    """acc[q, r] += sum of row r of the (rows, cols) flat array sf (float64)."""
    # NOTE: four running sums: one sum is a chain of dependent float adds (no
    # fastmath may reorder them), four keep the adder busy (measured 3x).
    for r in range(rows):
        s0 = s1 = s2 = s3 = 0.0
        base = u64(r * cols)
        quads = cols // 4
        for k in range(quads):
            i = base + u64(4 * k)
            s0 += sf[i]
            s1 += sf[i + u64(1)]
            s2 += sf[i + u64(2)]
            s3 += sf[i + u64(3)]
        for p in range(4 * quads, cols):
            s0 += sf[base + u64(p)]
        acc[q, r] += (s0 + s1) + (s2 + s3)


def conv_forward(
    x,
    w,
    bias,
    affine,
    keep,
    relu,
    slope,
    kh,
    kw,
    ph,
    pw,
    sh,
    sw,
    dh,
    dw,
    groups,
    nb,
    gemm,
    local,
    workers,
    counter,
    colbuf,
    resbuf,
    y,
):
    """y = conv(x, w) + bias, chunk by chunk of ``nb`` images.

    Args:
        x: (N, C, H, W) input, C-contiguous.
        w: (M, K/G) weights, C-contiguous.
        bias: (M,) or empty.
        affine, keep, relu, slope: the layers fused after the convolution,
            applied to each chunk's output as it is written: BatchNorm and Scale
            (``affine`` (4, M) or (0, M); ``keep`` (N, M, oh, ow) or empty, the
            normalised values) and a ReLU (see :func:`neuron.finish_channel`).
        kh, kw, ph, pw, sh, sw, dh, dw: kernel size, padding, stride, dilation.
        groups: G.
        nb: images per chunk.
        gemm, local, workers, counter: see the module docstring.
        colbuf: (workers, >= K*nb*P) scratch, one row per thread.
        resbuf: (workers, >= M*nb*P) scratch.
        y: (N, M, oh, ow) output, C-contiguous, overwritten.
    """
    counter[0] = 0
    args = (x, w, bias, affine, keep, relu, slope, kh, kw, ph, pw, sh, sw, dh, dw)
    args = args + (groups, nb)
    # NOTE: no more tasks than chunks: a single chunk runs on the calling thread
    tasks = min(workers, -(-x.shape[0] // nb))
    launch(
        _forward_task, args + (gemm, local, counter, colbuf, resbuf, y), tasks, local
    )


@njit
def _forward_task(
    x,
    w,
    bias,
    affine,
    keep,
    relu,
    slope,
    kh,
    kw,
    ph,
    pw,
    sh,
    sw,
    dh,
    dw,
    groups,
    nb,
    gemm,
    local,
    counter,
    colbuf,
    resbuf,
    y,
    _,
    tid,
):
    """One kernel thread's part of :func:`conv_forward`: chunks from the counter."""
    n_img, chans, height, width = x.shape
    m_out, oh, ow = y.shape[1], y.shape[2], y.shape[3]
    npos = oh * ow
    kdim = chans * kh * kw
    kg, mg = kdim // groups, m_out // groups
    one1 = kh == 1 and kw == 1 and ph == 0 and pw == 0 and sh == 1 and sw == 1
    ylo, yhi, xlo, xhi = valid_ranges(
        kh, kw, ph, pw, sh, sw, dh, dw, height, width, oh, ow
    )
    xf = x.reshape(x.size)
    yf = y.reshape(y.size)
    isz = x.itemsize
    one = x.dtype.type(1)
    zero = x.dtype.type(0)
    n_chunks = (n_img + nb - 1) // nb
    set_local_threads(local, 1)
    cf = colbuf[tid]
    rf = resbuf[tid]
    while True:
        j = fetch_add(counter, 1)
        if j >= n_chunks:
            break
        n0 = j * nb
        m = min(nb, n_img - n0)
        cols = m * npos
        xc = xf[n0 * chans * height * width : (n0 + m) * chans * height * width]
        if one1 and m == 1:
            col_addr = xc.ctypes.data
        else:
            im2col_planes(
                xc,
                m,
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
                0,
                chans * m,
                cf,
            )
            col_addr = cf.ctypes.data
        yc = yf[n0 * m_out * npos : (n0 + m) * m_out * npos]
        res_addr = yc.ctypes.data if m == 1 else rf.ctypes.data
        for g in range(groups):
            _gemm(
                gemm,
                _NT,
                _NT,
                mg,
                cols,
                kg,
                one,
                w.ctypes.data + g * mg * kg * isz,
                kg,
                col_addr + g * kg * cols * isz,
                cols,
                zero,
                res_addr + g * mg * cols * isz,
                cols,
            )
        if m > 1:
            swap01_rows(rf, m_out, m, npos, bias, 0, m_out * m, yc)
        elif bias.shape[0] > 0:
            for o in range(m_out):
                v = bias[o]
                base = u64(o * npos)
                for p in range(npos):
                    yc[base + u64(p)] += v
        if relu or affine.shape[0] > 0:
            kf = keep.reshape(keep.size)
            for t in range(m * m_out):
                at = (n0 * m_out + t) * npos
                finish_channel(yf, at, at + npos, t % m_out, affine, kf, relu, slope)


def conv_forward_wide(
    x, w, bias, affine, keep, relu, slope, kh, kw, ph, pw, sh, sw, dh, dw, groups, gemm, local,
    workers, colbuf, y,
):  # fmt: skip
    """conv_forward for one image, spread over the threads: im2col by planes,
    then the GEMM by blocks of output channels (a batch of one, as deploy).

    Args: as :func:`conv_forward` with N = 1; colbuf (>= K*P,) scratch.
    """
    chans = x.shape[1]
    m_out, npos = y.shape[1], y.shape[2] * y.shape[3]
    one1 = kh == 1 and kw == 1 and ph == 0 and pw == 0 and sh == 1 and sw == 1
    geom = (kh, kw, ph, pw, sh, sw, dh, dw)
    if not one1:
        blocks = min(chans, 4 * workers)
        launch(_wide_im2col_task, (x, *geom, blocks, colbuf, y), blocks)
    # NOTE: about two GEMM blocks per thread, cut along the longer side of each
    # group's output (positions for early layers, channels for late ones), so
    # that every block stays a well-shaped GEMM.
    mg = m_out // groups
    span = max(npos, mg)
    per_group = max(1, min(span // 16, (2 * workers + groups - 1) // groups))
    args = (x, w, bias, affine, keep, relu, slope, one1, groups, per_group, gemm)
    args = args + (local, colbuf, y)
    launch(_wide_gemm_task, args, groups * per_group, local)


@njit
def _wide_im2col_task(x, kh, kw, ph, pw, sh, sw, dh, dw, blocks, colbuf, y, b, _):
    """Block b of :func:`conv_forward_wide`'s im2col."""
    chans, height, width = x.shape[1], x.shape[2], x.shape[3]
    oh, ow = y.shape[2], y.shape[3]
    ylo, yhi, xlo, xhi = valid_ranges(
        kh, kw, ph, pw, sh, sw, dh, dw, height, width, oh, ow
    )
    im2col_planes(
        x.reshape(x.size),
        1,
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
        b * chans // blocks,
        (b + 1) * chans // blocks,
        colbuf,
    )


@njit
def _wide_gemm_task(
    x, w, bias, affine, keep, relu, slope, one1, groups, per_group, gemm, local,
    colbuf, y, t, _,
):  # fmt: skip
    """GEMM block t of :func:`conv_forward_wide`."""
    m_out, npos = y.shape[1], y.shape[2] * y.shape[3]
    kg, mg = w.shape[1], m_out // groups
    yf = y.reshape(y.size)
    isz = x.itemsize
    one = x.dtype.type(1)
    zero = x.dtype.type(0)
    col_addr = x.ctypes.data if one1 else colbuf.ctypes.data
    by_cols = npos >= mg
    span = npos if by_cols else mg
    set_local_threads(local, 1)
    g = t // per_group
    b = t - g * per_group
    a0 = b * span // per_group
    a1 = (b + 1) * span // per_group
    if a1 > a0 and by_cols:  # y_g[:, a0:a1] = W_g @ col_g[:, a0:a1]
        _gemm(
            gemm,
            _NT,
            _NT,
            mg,
            a1 - a0,
            kg,
            one,
            w.ctypes.data + g * mg * kg * isz,
            kg,
            col_addr + (g * kg * npos + a0) * isz,
            npos,
            zero,
            yf.ctypes.data + (g * mg * npos + a0) * isz,
            npos,
        )
        r0, r1, p0, p1 = g * mg, (g + 1) * mg, a0, a1
    elif a1 > a0:  # y_g[a0:a1] = W_g[a0:a1] @ col_g
        _gemm(
            gemm,
            _NT,
            _NT,
            a1 - a0,
            npos,
            kg,
            one,
            w.ctypes.data + (g * mg + a0) * kg * isz,
            kg,
            col_addr + g * kg * npos * isz,
            npos,
            zero,
            yf.ctypes.data + (g * mg + a0) * npos * isz,
            npos,
        )
        r0, r1, p0, p1 = g * mg + a0, g * mg + a1, 0, npos
    else:
        r0, r1, p0, p1 = 0, 0, 0, 0
    if bias.shape[0] > 0:
        for o in range(r0, r1):
            v = bias[o]
            base = u64(o * npos)
            for p in range(p0, p1):
                yf[base + u64(p)] += v
    if relu or affine.shape[0] > 0:
        kf = keep.reshape(keep.size)
        for o in range(r0, r1):
            finish_channel(yf, o * npos + p0, o * npos + p1, o, affine, kf, relu, slope)


def conv_backward(
    x,
    dy,
    w,
    want_w,
    want_b,
    want_x,
    kh,
    kw,
    ph,
    pw,
    sh,
    sw,
    dh,
    dw,
    groups,
    nb,
    n_groups,
    gemm,
    local,
    workers,
    counter,
    colbuf,
    resbuf,
    wacc,
    bacc,
    dx,
):
    """Convolution gradients, chunk by chunk, summed per group of chunks.

    Args:
        x: (N, C, H, W) forward input.
        dy: (N, M, oh, ow) top gradient.
        w: (M, K/G) weights.
        want_w, want_b, want_x: which gradients to compute.
        kh, kw, ph, pw, sh, sw, dh, dw: kernel size, padding, stride, dilation.
        groups: G.
        nb: images per chunk.
        n_groups: the chunks are cut into this many contiguous groups.
        gemm, local, workers, counter: see the module docstring.
        colbuf: (workers, >= K*nb*P) scratch; resbuf: (workers, >= M*nb*P).
        wacc: (n_groups, G, K/G, M/G) output: each group's weight gradient,
            transposed (written when want_w).
        bacc: (n_groups, M) float64 output: each group's bias gradient (written
            when want_b).
        dx: (N, C, H, W) bottom gradient, overwritten when want_x.
    """
    counter[0] = 0
    args = (x, dy, w, want_w, want_b, want_x, kh, kw, ph, pw, sh, sw, dh, dw)
    args += (groups, nb, n_groups, gemm, local, counter, colbuf, resbuf, wacc, bacc, dx)
    launch(_backward_task, args, workers, local)


@njit
def _backward_task(
    x,
    dy,
    w,
    want_w,
    want_b,
    want_x,
    kh,
    kw,
    ph,
    pw,
    sh,
    sw,
    dh,
    dw,
    groups,
    nb,
    n_groups,
    gemm,
    local,
    counter,
    colbuf,
    resbuf,
    wacc,
    bacc,
    dx,
    _,
    tid,
):
    """One kernel thread's part of :func:`conv_backward`: groups of chunks from
    the counter."""
    n_img, chans, height, width = x.shape
    m_out, oh, ow = dy.shape[1], dy.shape[2], dy.shape[3]
    npos = oh * ow
    kdim = chans * kh * kw
    kg, mg = kdim // groups, m_out // groups
    one1 = kh == 1 and kw == 1 and ph == 0 and pw == 0 and sh == 1 and sw == 1
    ylo, yhi, xlo, xhi = valid_ranges(
        kh, kw, ph, pw, sh, sw, dh, dw, height, width, oh, ow
    )
    xf = x.reshape(x.size)
    dyf = dy.reshape(dy.size)
    dxf = dx.reshape(dx.size)
    isz = x.itemsize
    one = x.dtype.type(1)
    zero = x.dtype.type(0)
    plane = chans * height * width
    n_chunks = (n_img + nb - 1) // nb
    set_local_threads(local, 1)
    cf = colbuf[tid]
    rf = resbuf[tid]
    while True:
        q = fetch_add(counter, 1)
        if q >= n_groups:
            break
        if want_b:
            for o in range(m_out):
                bacc[q, o] = 0.0
        for j in range(q * n_chunks // n_groups, (q + 1) * n_chunks // n_groups):
            first = j == q * n_chunks // n_groups
            n0 = j * nb
            m = min(nb, n_img - n0)
            cols = m * npos
            dyc = dyf[n0 * m_out * npos : (n0 + m) * m_out * npos]
            if m == 1:
                dyt = dyc
            else:
                swap01_rows(dyc, m, m_out, npos, xf[:0], 0, m * m_out, rf)
                dyt = rf
            if want_b:
                _row_sums(dyt, m_out, cols, bacc, q)
            if want_w:
                xc = xf[n0 * plane : (n0 + m) * plane]
                if one1 and m == 1:
                    col_addr = xc.ctypes.data
                else:
                    im2col_planes(
                        xc,
                        m,
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
                        0,
                        chans * m,
                        cf,
                    )
                    col_addr = cf.ctypes.data
                beta = zero if first else one
                for g in range(groups):
                    # NOTE: the transposed gradient col @ dy^T is measurably
                    # faster with OpenBLAS than dy @ col^T for long K.
                    _gemm(
                        gemm,
                        _NT,
                        _T,
                        kg,
                        mg,
                        cols,
                        one,
                        col_addr + g * kg * cols * isz,
                        cols,
                        dyt.ctypes.data + g * mg * cols * isz,
                        cols,
                        beta,
                        wacc[q, g].ctypes.data,
                        mg,
                    )
            if want_x:
                dxc = dxf[n0 * plane : (n0 + m) * plane]
                direct = one1 and m == 1
                target = dxc.ctypes.data if direct else cf.ctypes.data
                for g in range(groups):
                    _gemm(
                        gemm,
                        _T,
                        _NT,
                        kg,
                        cols,
                        mg,
                        one,
                        w.ctypes.data + g * mg * kg * isz,
                        kg,
                        dyt.ctypes.data + g * mg * cols * isz,
                        cols,
                        zero,
                        target + g * kg * cols * isz,
                        cols,
                    )
                if not direct:
                    col2im_planes(
                        cf,
                        m,
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
                        0,
                        chans * m,
                        dxc,
                    )


__all__ = ["conv_backward", "conv_forward", "conv_forward_wide"]
