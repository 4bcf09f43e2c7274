"""Inner-product passes as single parallel Numba regions, in blocks of outputs.

As the convolution passes of :mod:`caffepy.kernels.conv` (serial tasks run on the
kernel threads by :func:`caffepy.kernels.tasks.launch`): the kernel threads take
blocks from a shared counter and call numpy's BLAS one thread each (through
:mod:`caffepy.kernels.blas`); ``gemm``/``gemv`` are the BLAS addresses of the
dtype, ``local`` is :data:`caffepy.kernels.blas.SET_LOCAL_THREADS`, ``workers``
the number of kernel threads and ``counter`` an int64 array of one element.
"""

from numba import uint64 as u64

from caffepy.kernels.blas import fetch_add, set_local_threads
from caffepy.kernels.blas import gemm as _gemm
from caffepy.kernels.blas import gemv as _gemv
from caffepy.kernels.config import njit
from caffepy.kernels.neuron import rectify
from caffepy.kernels.tasks import launch

_NT, _T = 111, 112  # CblasNoTrans, CblasTrans


def ip_forward(
    x, w, transpose, bias, relu, slope, blocks, gemm, gemv, local, workers, counter, y
):  # fmt: skip
    """y = x W^T + bias (W stored (N, K), or (K, N) when ``transpose``), in blocks
    of output columns.

    Args:
        x: (M, K) input, C-contiguous.
        w: weights, C-contiguous.
        transpose: W stored as (K, N).
        bias: (N,) or empty.
        relu, slope: whether a ReLU of negative slope ``slope`` follows (applied
            to each block as it is written).
        blocks: the number of column blocks (tasks).
        gemm, local, workers, counter: see the module docstring.
        gemv: the matching GEMV (for one row: a GEMM of one row packs all of W).
        y: (M, N) output, C-contiguous, overwritten.
    """
    counter[0] = 0
    args = (x, w, transpose, bias, relu, slope, blocks, gemm, gemv, local, counter, y)
    launch(_forward_task, args, workers, local)


@njit
def _forward_task(
    x, w, transpose, bias, relu, slope, blocks, gemm, gemv, local, counter, y, _, t
):  # fmt: skip
    """One kernel thread's part of :func:`ip_forward`: blocks from the counter."""
    rows, kdim = x.shape
    n_out = y.shape[1]
    isz = x.itemsize
    one = x.dtype.type(1)
    zero = x.dtype.type(0)
    yf = y.reshape(y.size)
    set_local_threads(local, 1)
    while True:
        b = fetch_add(counter, 1)
        if b >= blocks:
            break
        c0 = b * n_out // blocks
        c1 = (b + 1) * n_out // blocks
        if rows == 1 and transpose:  # y[c0:c1] = W[:, c0:c1]^T x
            _gemv(
                gemv,
                _T,
                kdim,
                c1 - c0,
                one,
                w.ctypes.data + c0 * isz,
                n_out,
                x.ctypes.data,
                1,
                zero,
                y.ctypes.data + c0 * isz,
                1,
            )
        elif rows == 1:  # y[c0:c1] = W[c0:c1] x
            _gemv(
                gemv,
                _NT,
                c1 - c0,
                kdim,
                one,
                w.ctypes.data + c0 * kdim * isz,
                kdim,
                x.ctypes.data,
                1,
                zero,
                y.ctypes.data + c0 * isz,
                1,
            )
        elif transpose:  # y[:, c0:c1] = x @ W[:, c0:c1]
            _gemm(
                gemm,
                _NT,
                _NT,
                rows,
                c1 - c0,
                kdim,
                one,
                x.ctypes.data,
                kdim,
                w.ctypes.data + c0 * isz,
                n_out,
                zero,
                y.ctypes.data + c0 * isz,
                n_out,
            )
        else:  # y[:, c0:c1] = x @ W[c0:c1]^T
            _gemm(
                gemm,
                _NT,
                _T,
                rows,
                c1 - c0,
                kdim,
                one,
                x.ctypes.data,
                kdim,
                w.ctypes.data + c0 * kdim * isz,
                kdim,
                zero,
                y.ctypes.data + c0 * isz,
                n_out,
            )
        if bias.shape[0] > 0:
            for r in range(rows):
                base = u64(r * n_out)
                for c in range(c0, c1):
                    yf[base + u64(c)] += bias[c]
        if relu:
            for r in range(rows):
                rectify(yf, r * n_out + c0, r * n_out + c1, slope)


def ip_backward(
    x,
    dy,
    w,
    transpose,
    want_w,
    want_x,
    w_blocks,
    x_blocks,
    gemm,
    local,
    workers,
    counter,
    dw,
    dx,
):
    """InnerProduct gradients: dW (accumulated, in blocks of outputs) and dx
    (overwritten, in blocks of inputs); the blocks never overlap.

    Args:
        x: (M, K) forward input; dy: (M, N) top gradient; w: weights as stored.
        transpose: W stored as (K, N).
        want_w, want_x: which gradients to compute.
        w_blocks, x_blocks: the number of blocks of each.
        gemm, local, workers, counter: see the module docstring.
        dw: weight gradient as stored, accumulated (+=) when want_w.
        dx: (M, K) bottom gradient, overwritten when want_x.
    """
    counter[0] = 0
    args = (x, dy, w, transpose, want_w, want_x, w_blocks, x_blocks, gemm, local)
    launch(_backward_task, args + (counter, dw, dx), workers, local)


@njit
def _backward_task(
    x,
    dy,
    w,
    transpose,
    want_w,
    want_x,
    w_blocks,
    x_blocks,
    gemm,
    local,
    counter,
    dw,
    dx,
    _,
    tid,
):
    """One kernel thread's part of :func:`ip_backward`: blocks from the counter."""
    rows, kdim = x.shape
    n_out = dy.shape[1]
    isz = x.itemsize
    one = x.dtype.type(1)
    zero = x.dtype.type(0)
    tasks = (w_blocks if want_w else 0) + (x_blocks if want_x else 0)
    nw = w_blocks if want_w else 0
    set_local_threads(local, 1)
    while True:
        t = fetch_add(counter, 1)
        if t >= tasks:
            break
        if t < nw:
            c0 = t * n_out // w_blocks
            c1 = (t + 1) * n_out // w_blocks
            if transpose:  # dW[:, c0:c1] += x^T dy[:, c0:c1]
                _gemm(
                    gemm,
                    _T,
                    _NT,
                    kdim,
                    c1 - c0,
                    rows,
                    one,
                    x.ctypes.data,
                    kdim,
                    dy.ctypes.data + c0 * isz,
                    n_out,
                    one,
                    dw.ctypes.data + c0 * isz,
                    n_out,
                )
            else:  # dW[c0:c1] += dy[:, c0:c1]^T x
                _gemm(
                    gemm,
                    _T,
                    _NT,
                    c1 - c0,
                    kdim,
                    rows,
                    one,
                    dy.ctypes.data + c0 * isz,
                    n_out,
                    x.ctypes.data,
                    kdim,
                    one,
                    dw.ctypes.data + c0 * kdim * isz,
                    kdim,
                )
        else:
            b = t - nw
            k0 = b * kdim // x_blocks
            k1 = (b + 1) * kdim // x_blocks
            if transpose:  # dx[:, k0:k1] = dy @ W[k0:k1]^T
                _gemm(
                    gemm,
                    _NT,
                    _T,
                    rows,
                    k1 - k0,
                    n_out,
                    one,
                    dy.ctypes.data,
                    n_out,
                    w.ctypes.data + k0 * n_out * isz,
                    n_out,
                    zero,
                    dx.ctypes.data + k0 * isz,
                    kdim,
                )
            else:  # dx[:, k0:k1] = dy @ W[:, k0:k1]
                _gemm(
                    gemm,
                    _NT,
                    _NT,
                    rows,
                    k1 - k0,
                    n_out,
                    one,
                    dy.ctypes.data,
                    n_out,
                    w.ctypes.data + k0 * isz,
                    kdim,
                    zero,
                    dx.ctypes.data + k0 * isz,
                    kdim,
                )


__all__ = ["ip_backward", "ip_forward"]
