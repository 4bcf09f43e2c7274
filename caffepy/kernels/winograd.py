"""3x3 convolution of stride 1 by Winograd's minimal filtering, F(2x2, 3x3).

Each 2x2 tile of the output is computed from a 4x4 tile of the (zero-padded)
input with 16 multiplications per channel pair instead of 36 (Lavin and Gray,
"Fast Algorithms for Convolutional Neural Networks", 2016)::

    Y = A^T [ (G g G^T) * (B^T d B) ] A       (* elementwise, summed over C)

    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
    G   = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]

The sum over the input channels is 16 GEMMs, one per element of the 4x4
tile: ``M[k] (Cout, T) = U[k] (Cout, C) @ V[k] (C, T)`` over the T tiles of a
chunk of images, with ``U = G g G^T`` (the weights, transformed once per
pass) and ``V = B^T d B`` (the input). The GEMMs do 2.25x fewer
multiply-adds than im2col's, their inner size is C instead of 9C, and no
column matrix is written. The transforms only add and halve, so the results
differ from a direct convolution by rounding alone (float32: relative
differences of about 1e-6).

Layouts: ``u`` (16, >= Cout*C), ``v`` (16, >= C*T) and ``m`` (16, >= Cout*T),
C-contiguous 2-D arrays whose row k holds the (Cout, C), (C, T) or (Cout, T)
matrix of tile element k (rows padded by :func:`plane`); tile q of a chunk is image ``q // (th*tw)``, tile row
``(q // tw) % th``, column ``q % tw``. Each pass is a serial task run on the
kernel threads by :func:`caffepy.kernels.tasks.launch`.
"""

import numpy as np
from numba import uint64 as u64

from caffepy.kernels.blas import gemm as _gemm
from caffepy.kernels.blas import set_local_threads
from caffepy.kernels.config import njit
from caffepy.kernels.neuron import finish_channel
from caffepy.kernels.tasks import launch

_NT = 111  # CblasNoTrans


def plane(size: int) -> int:
    """The row length of a (16, row) buffer holding 16 matrices of ``size``."""
    # NOTE: the transforms read or write the 16 rows at once; rows a multiple
    # of 4 KiB apart fall into the same L1 sets and evict each other (a
    # 512x512 weight transform took 6 ms, 1 ms with rows 64 bytes off).
    return (size + 15) // 16 * 16 + 16


def transform_weights(w, workers, u):
    """``u[k, o*C + c] = (G w[o, c] G^T)[k]`` for (Cout, C, 3, 3) weights ``w``."""
    blocks = min(w.shape[0], 4 * workers)
    launch(_weights_task, (w, blocks, u), blocks)


@njit
def _weights_task(w, blocks, u, b, _):
    """Output channels [b*Cout/blocks, (b+1)*Cout/blocks) of transform_weights."""
    m_out, chans = w.shape[0], w.shape[1]
    wf = w.reshape(w.size)
    uf = u.reshape(u.size)
    half = w.dtype.type(0.5)
    plane = u64(u.shape[1])
    for o in range(b * m_out // blocks, (b + 1) * m_out // blocks):
        for c in range(chans):
            s = u64((o * chans + c) * 9)
            g0, g1, g2 = wf[s], wf[s + u64(1)], wf[s + u64(2)]
            g3, g4, g5 = wf[s + u64(3)], wf[s + u64(4)], wf[s + u64(5)]
            g6, g7, g8 = wf[s + u64(6)], wf[s + u64(7)], wf[s + u64(8)]
            # columns of G g (4x3), then each of its rows times G^T
            t0 = _g(g0, g3, g6, half)
            t1 = _g(g1, g4, g7, half)
            t2 = _g(g2, g5, g8, half)
            at = u64(o * chans + c)
            for i in range(4):
                e0, e1, e2, e3 = _g(t0[i], t1[i], t2[i], half)
                k = u64(4 * i)
                uf[at + k * plane] = e0
                uf[at + (k + u64(1)) * plane] = e1
                uf[at + (k + u64(2)) * plane] = e2
                uf[at + (k + u64(3)) * plane] = e3


@njit
def _g(v0, v1, v2, half):
    """G (v0, v1, v2): the four rows of G times a 3-vector."""
    return v0, half * (v0 + v1 + v2), half * (v0 - v1 + v2), v2


def conv3x3(
    x, u, bias, affine, keep, relu, slope, ph, pw, n0, nb, gemm, local, workers, v,
    m, y,
):  # fmt: skip
    """Images [n0, n0 + nb) of a 3x3, stride-1 convolution: y = conv(x) + bias.

    Args:
        x: (N, C, H, W) input, C-contiguous.
        u: weights from :func:`transform_weights`.
        bias: (Cout,) or empty.
        affine, keep, relu, slope: the layers fused after the convolution,
            applied to each output plane as it is written (see
            :func:`caffepy.kernels.conv.conv_forward`).
        ph, pw: padding.
        n0, nb: the chunk of images.
        gemm, local: :func:`caffepy.kernels.blas.gemm_address` of the dtype and
            :data:`caffepy.kernels.blas.SET_LOCAL_THREADS`.
        workers: the number of kernel threads.
        v: (16, >= C*nb*T) scratch; m: (16, >= Cout*nb*T) scratch.
        y: (N, Cout, OH, OW) output, C-contiguous.
    """
    chans, m_out = x.shape[1], y.shape[1]
    c_blocks = min(chans, 4 * workers)
    launch(_input_task, (x, ph, pw, n0, nb, c_blocks, v, y), c_blocks)
    # NOTE: the 16 GEMMs, each cut along its output channels where there are
    # more threads than two GEMMs each
    split = max(1, min(m_out // 32, -(-2 * workers // 16)))
    args = (u, v, chans, split, nb, gemm, local, m, y)
    launch(_gemm_task, args, 16 * split, local)
    o_blocks = min(m_out, 4 * workers)
    args = (m, bias, affine, keep, relu, slope, n0, nb, o_blocks, y)
    launch(_output_task, args, o_blocks)


@njit
def _input_task(x, ph, pw, n0, nb, blocks, v, y, b, _):
    """Channels [b*C/blocks, (b+1)*C/blocks) of V = B^T d B for every tile."""
    chans, height, width = x.shape[1], x.shape[2], x.shape[3]
    th, tw = (y.shape[2] + 1) // 2, (y.shape[3] + 1) // 2
    tiles = nb * th * tw
    xf = x.reshape(x.size)
    vf = v.reshape(v.size)
    zero = x.dtype.type(0)
    d = np.empty(16, x.dtype)
    plane = u64(v.shape[1])
    for c in range(b * chans // blocks, (b + 1) * chans // blocks):
        q = u64(c * tiles)
        for i in range(nb):
            base = ((n0 + i) * chans + c) * height * width
            for ty in range(th):
                y0 = 2 * ty - ph
                for tx in range(tw):
                    x0 = 2 * tx - pw
                    if y0 >= 0 and y0 + 4 <= height and x0 >= 0 and x0 + 4 <= width:
                        for r in range(4):
                            s = u64(base + (y0 + r) * width + x0)
                            d[4 * r] = xf[s]
                            d[4 * r + 1] = xf[s + u64(1)]
                            d[4 * r + 2] = xf[s + u64(2)]
                            d[4 * r + 3] = xf[s + u64(3)]
                    else:
                        for r in range(4):
                            yy = y0 + r
                            for cc in range(4):
                                xx = x0 + cc
                                if 0 <= yy < height and 0 <= xx < width:
                                    d[4 * r + cc] = xf[u64(base + yy * width + xx)]
                                else:
                                    d[4 * r + cc] = zero
                    # B^T d (rows), then (B^T d) B (columns)
                    for cc in range(4):
                        r0, r1 = d[cc], d[4 + cc]
                        r2, r3 = d[8 + cc], d[12 + cc]
                        d[cc] = r0 - r2
                        d[4 + cc] = r1 + r2
                        d[8 + cc] = r2 - r1
                        d[12 + cc] = r1 - r3
                    for r in range(4):
                        e0, e1 = d[4 * r], d[4 * r + 1]
                        e2, e3 = d[4 * r + 2], d[4 * r + 3]
                        k = u64(4 * r)
                        vf[k * plane + q] = e0 - e2
                        vf[(k + u64(1)) * plane + q] = e1 + e2
                        vf[(k + u64(2)) * plane + q] = e2 - e1
                        vf[(k + u64(3)) * plane + q] = e1 - e3
                    q += u64(1)


@njit
def _gemm_task(u, v, chans, split, nb, gemm, local, m, y, t, _):
    """M[k][o0:o1] = U[k][o0:o1] @ V[k] for k = t // split."""
    m_out = y.shape[1]
    tiles = nb * ((y.shape[2] + 1) // 2) * ((y.shape[3] + 1) // 2)
    isz = u.itemsize
    k = t // split
    s = t - k * split
    o0 = s * m_out // split
    o1 = (s + 1) * m_out // split
    set_local_threads(local, 1)
    _gemm(
        gemm,
        _NT,
        _NT,
        o1 - o0,
        tiles,
        chans,
        u.dtype.type(1),
        u.ctypes.data + (k * u.shape[1] + o0 * chans) * isz,
        chans,
        v.ctypes.data + k * v.shape[1] * isz,
        tiles,
        u.dtype.type(0),
        m.ctypes.data + (k * m.shape[1] + o0 * tiles) * isz,
        tiles,
    )


@njit
def _output_task(m, bias, affine, keep, relu, slope, n0, nb, blocks, y, b, _):
    """Output channels [b*Cout/blocks, (b+1)*Cout/blocks): Y = A^T M A + bias
    (then the fused layers)."""
    m_out, out_h, out_w = y.shape[1], y.shape[2], y.shape[3]
    th, tw = (out_h + 1) // 2, (out_w + 1) // 2
    tiles = nb * th * tw
    mf = m.reshape(m.size)
    yf = y.reshape(y.size)
    zero = y.dtype.type(0)
    plane = u64(m.shape[1])
    for o in range(b * m_out // blocks, (b + 1) * m_out // blocks):
        bo = bias[o] if bias.shape[0] > 0 else zero
        q = u64(o * tiles)
        for i in range(nb):
            base = ((n0 + i) * m_out + o) * out_h * out_w
            for ty in range(th):
                for tx in range(tw):
                    m0, m1 = mf[q], mf[q + plane]
                    m2, m3 = mf[q + u64(2) * plane], mf[q + u64(3) * plane]
                    m4, m5 = mf[q + u64(4) * plane], mf[q + u64(5) * plane]
                    m6, m7 = mf[q + u64(6) * plane], mf[q + u64(7) * plane]
                    m8, m9 = mf[q + u64(8) * plane], mf[q + u64(9) * plane]
                    m10, m11 = mf[q + u64(10) * plane], mf[q + u64(11) * plane]
                    m12, m13 = mf[q + u64(12) * plane], mf[q + u64(13) * plane]
                    m14, m15 = mf[q + u64(14) * plane], mf[q + u64(15) * plane]
                    q += u64(1)
                    # A^T M (2x4), then (A^T M) A (2x2)
                    s0 = m0 + m4 + m8
                    s1 = m1 + m5 + m9
                    s2 = m2 + m6 + m10
                    s3 = m3 + m7 + m11
                    t0 = m4 - m8 - m12
                    t1 = m5 - m9 - m13
                    t2 = m6 - m10 - m14
                    t3 = m7 - m11 - m15
                    oy, ox = 2 * ty, 2 * tx
                    at = u64(base + oy * out_w + ox)
                    yf[at] = s0 + s1 + s2 + bo
                    if ox + 1 < out_w:
                        yf[at + u64(1)] = s1 - s2 - s3 + bo
                    if oy + 1 < out_h:
                        at2 = at + u64(out_w)
                        yf[at2] = t0 + t1 + t2 + bo
                        if ox + 1 < out_w:
                            yf[at2 + u64(1)] = t1 - t2 - t3 + bo
            if relu or affine.shape[0] > 0:
                kf = keep.reshape(keep.size)
                at = base + out_h * out_w
                finish_channel(yf, base, at, o, affine, kf, relu, slope)
