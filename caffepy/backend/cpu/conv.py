"""The CPU convolution engine: (de)convolution lowered to GEMMs over columns.

Columns (:mod:`caffepy.kernels.im2col`) are built for chunks of images small
enough to stay in the cache (:data:`COL_BUFFER_ELEMENTS`): one GEMM per group
and chunk, instead of Caffe's one per image. Where numpy's BLAS is callable
from Numba (:mod:`caffepy.kernels.blas`), a whole convolution pass (im2col,
GEMMs, transposes of every chunk) runs as one parallel Numba region
(:mod:`caffepy.kernels.conv`). Otherwise, and for deconvolution, the same
chunks run as numpy matmuls on the task pool (:mod:`caffepy.kernels.parallel`),
each thread in its own scratch (``col{worker}`` and friends in the caller's
:class:`~caffepy.backend.base.Workspace`).

Backward sums the weight gradient of each contiguous group of chunks into the
group's own array, in chunk order, and adds the groups in order: the groups do
not depend on which thread ran them, so the gradients are the same bits from
run to run (a resumed training run stays bit-identical).
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import numba
import numpy as np

from caffepy.backend.base import Array, ConvGeometry, Workspace
from caffepy.backend.cpu import conv_nd as _nd
from caffepy.backend.cpu import conv_rows as _rows
from caffepy.backend.cpu import conv_winograd as _wino
from caffepy.kernels import blas as _blas
from caffepy.kernels import im2col as _ic
from caffepy.kernels import parallel as _pool

#: Most elements a convolution's column buffer holds per chunk of images (1 MiB
#: of float32, so a chunk's columns stay in the cache between im2col and its
#: GEMM): a batch whose columns need more is processed a few images at a time.
COL_BUFFER_ELEMENTS = 1 << 18

_COLS_OF = "conv.cols_of"  # Workspace.state key: whose columns "col0" holds


@dataclass(frozen=True)
class Plan:
    """A :class:`ConvGeometry` as 2-D (a 1-D convolution gets a leading axis of
    kernel 1), with the sizes the engine needs."""

    geom: ConvGeometry
    kernel: tuple[int, int]
    pad: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    in_sp: tuple[int, int]
    out_sp: tuple[int, int]
    rows: int  # in_channels * kh * kw: the rows of a column matrix
    is_1x1: bool

    @property
    def kernel_args(self) -> tuple[int, int, int, int, int, int, int, int]:
        """(kh, kw, ph, pw, sh, sw, dh, dw), as the kernels take them."""
        (kh, kw), (ph, pw), (sh, sw), (dh, dw) = (
            self.kernel,
            self.pad,
            self.stride,
            self.dilation,
        )
        return kh, kw, ph, pw, sh, sw, dh, dw

    @property
    def macs(self) -> int:
        """Multiply-adds of one image's forward."""
        g = self.geom
        return g.out_channels * self.rows // g.group * self.out_sp[0] * self.out_sp[1]


#: Least multiply-adds of one image's forward for which a batch of one is
#: spread over the threads by conv_forward_wide; below, one thread does it
#: (LeNet's conv1, 0.29M: 37 us on one thread, 48 on two; measured on the
#: 2-core Xeon VMs of 2026-12-06).
WIDE_MIN_MACS = 1 << 20


@functools.lru_cache(maxsize=1024)
def plan(geom: ConvGeometry) -> Plan:
    """The 2-D plan of a geometry (cached: geometries are few and immutable)."""
    extra = 2 - len(geom.kernel)

    def two(values, fill):
        return (fill,) * extra + tuple(int(v) for v in values)

    kernel = two(geom.kernel, 1)
    stride = two(geom.stride, 1)
    pad = two(geom.pad, 0)
    return Plan(
        geom=geom,
        kernel=kernel,
        pad=pad,
        stride=stride,
        dilation=two(geom.dilation, 1),
        in_sp=two(geom.in_spatial, 1),
        out_sp=two(geom.out_spatial, 1),
        rows=geom.in_channels * kernel[0] * kernel[1],
        is_1x1=kernel == (1, 1) and stride == (1, 1) and pad == (0, 0),
    )


def image_chunks(geom: ConvGeometry) -> list[tuple[int, int]]:
    """Image ranges [n0, n1) processed as one task (one GEMM per group).

    A chunk's columns fit COL_BUFFER_ELEMENTS (so they stay in the cache
    between im2col and the GEMM); with several threads the batch is also cut
    into about four chunks per thread, so the pool can balance the load. A
    chunk holds at least one image.
    """
    p = plan(geom)
    num = geom.num
    per_image = max(1, p.rows * p.out_sp[0] * p.out_sp[1])
    step = max(1, COL_BUFFER_ELEMENTS // per_image)
    if _pool.POOL.size > 1:
        step = min(step, max(1, -(-num // (4 * _pool.POOL.size))))
    return [(n0, min(n0 + step, num)) for n0 in range(0, num, step)]


def _key(x: np.ndarray) -> tuple:
    """What identifies an input array (its memory and layout)."""
    return (x.ctypes.data, x.shape, x.strides, x.dtype.str)


class _Pass:
    """One (de)convolution pass on the pool: views, scratch and the lowered
    operations on a chunk of nb images."""

    def __init__(self, geom: ConvGeometry, ws: Workspace, dtype: np.dtype):
        self.p = plan(geom)
        self.ws = ws
        self.dtype = dtype
        self.num = geom.num
        self.group = geom.group
        self.cin = geom.in_channels
        self.cout = geom.out_channels
        self.no_bias = ws.get("conv.nobias", (0,), dtype)

    # -- views and buffers ------------------------------------------------------
    def conv_in4(self, arr: Array) -> Array:
        """(N, C_in, H, W) view of a conv-input array."""
        return arr.reshape((self.num, self.cin) + self.p.in_sp)

    def conv_out3(self, arr: Array) -> Array:
        """(N, C_out, P) view of a conv-output array."""
        return arr.reshape(self.num, self.cout, -1)

    def weights3(self, arr: Array) -> Array:
        """(group, C_out/group, C_in/group*kh*kw) view of weights or their diff."""
        return arr.reshape(self.group, self.cout // self.group, -1)

    def col(self, nb: int, worker: int) -> Array:
        """The column buffer of one thread for nb images: (C_in*kh*kw, nb, oh, ow)."""
        return self.ws.get(
            f"col{worker}", (self.p.rows, nb) + self.p.out_sp, self.dtype
        )

    def gemm_out(self, nb: int, worker: int) -> Array:
        """Buffer for a GEMM result over nb images in (C_out, nb, P) layout."""
        npos = self.p.out_sp[0] * self.p.out_sp[1]
        return self.ws.get(f"gemm{worker}", (self.cout, nb, npos), self.dtype)

    def grouped(self, arr: Array) -> Array:
        """(group, rows/group, nb*P) view of a (rows, nb, ...) buffer."""
        return arr.reshape(self.group, arr.shape[0] // self.group, -1)

    # -- the lowered operations, on a chunk of nb images ---------------------------
    # NOTE: a chunk of one image needs no transposes: its (C, 1, P) column and
    # GEMM layouts are the image's own (C, P) memory, so 1x1 convolutions read
    # the bottom and write the top directly.
    def im2col(self, x4: Array, worker: int) -> Array:
        """Columns of conv-input images x4 (nb, C_in, H, W), in the column buffer."""
        nb = x4.shape[0]
        if self.p.is_1x1 and nb == 1:
            return x4.reshape(self.cin, 1, -1)
        col = self.col(nb, worker)
        if self.p.is_1x1:
            # NOTE: a 1x1/stride-1/pad-0 column matrix is the input with N and C
            # swapped: a plain transpose, no patch gathering.
            _ic.swap01(
                x4.reshape(nb, self.cin, -1),
                self.no_bias,
                col.reshape(self.cin, nb, -1),
            )
        else:
            _ic.im2col(x4, *self.p.kernel_args, col)
        return col

    def col2im_target(self, x4: Array, worker: int) -> Array:
        """Where W^T @ dy goes for images x4: x4 itself for one image of a 1x1
        convolution, else the column buffer (then folded by col2im)."""
        if self.p.is_1x1 and x4.shape[0] == 1:
            return x4.reshape(self.cin, 1, -1)
        return self.col(x4.shape[0], worker)

    def col2im(self, col: Array, x4: Array) -> None:
        """Sum the columns back into conv-input images x4 (nb, C_in, H, W)."""
        nb = x4.shape[0]
        if self.p.is_1x1:
            if nb > 1:
                _ic.swap01(
                    col.reshape(self.cin, nb, -1),
                    self.no_bias,
                    x4.reshape(nb, self.cin, -1),
                )
        else:
            _ic.col2im(col, *self.p.kernel_args, x4)

    def forward_gemm(self, col, weights, bias, y3, worker) -> None:
        """y3 (nb, C_out, P) = W @ col (+ bias), via the (C_out, nb, P) buffer."""
        nb = y3.shape[0]
        res = y3.reshape(y3.shape[1], 1, -1) if nb == 1 else self.gemm_out(nb, worker)
        np.matmul(self.weights3(weights), self.grouped(col), out=self.grouped(res))
        if nb > 1:
            _ic.swap01(res, self.no_bias if bias is None else bias, y3)
        elif bias is not None:
            _ic.add_bias(res.reshape(res.shape[0], -1), bias)

    def backward_gemm(self, y_t, weights, col) -> None:
        """col = W^T @ y_t, with y_t in (C_out, nb, P) layout."""
        w3 = self.weights3(weights)
        np.matmul(w3.transpose(0, 2, 1), self.grouped(y_t), out=self.grouped(col))

    def weight_gemm(self, col, y_t, acc, first, worker) -> None:
        """acc (group, K, C_out/group) (+)= col @ y_t^T: the transposed weight
        gradient of one chunk, written (first) or added to its group's sum."""
        # NOTE: computing the transposed gradient (col @ dy^T) is measurably faster
        # with OpenBLAS than dy @ col^T for these long-K shapes.
        out = acc
        if not first:
            out = self.ws.get(f"wgrad{worker}", acc.shape, self.dtype)
        np.matmul(self.grouped(col), self.grouped(y_t).transpose(0, 2, 1), out=out)
        if not first:
            acc += out

    def transposed(self, y3: Array, worker: int) -> Array:
        """Conv-output images y3 (nb, C_out, P) in (C_out, nb, P) layout."""
        nb = y3.shape[0]
        if nb == 1:
            return y3.reshape(y3.shape[1], 1, -1)
        res = self.gemm_out(nb, worker)
        _ic.swap01(y3, self.no_bias, res)
        return res

    def bias_grad(self, dy_t: Array, acc_b: Array, worker: int) -> None:
        """acc_b += the sum of dy_t (C_out, nb, P) over images and positions."""
        tmp = self.ws.get(f"bsum{worker}", (dy_t.shape[0],), self.dtype)
        np.sum(dy_t.reshape(dy_t.shape[0], -1), axis=1, out=tmp)
        acc_b += tmp

    # -- ordered gradient sums ------------------------------------------------------
    def grad_sums(self, n_jobs: int, want_w: bool, want_b: bool, n_bias: int):
        """Gradient sums for a backward pass of ``n_jobs`` chunks: the chunks are
        cut into contiguous groups, each summed in order into its own arrays
        (weights transposed, as weight_gemm writes them; bias). Returns
        (groups, sums): groups[g] is a range of job indices, sums[g] its
        [weight sum, bias sum, weight sum written]."""
        pool = _pool.POOL
        n_groups = min(n_jobs, 4 * pool.size) if pool.size > 1 else 1
        groups = [range(a, b) for a, b in _pool.split(n_jobs, n_groups)]
        g, mg = self.group, self.cout // self.group
        wshape = (g, self.p.rows // g, mg)
        sums = []
        for q in range(len(groups)):
            acc_w = self.ws.get(f"gw{q}", wshape, self.dtype) if want_w else None
            acc_b = self.ws.zeros(f"gb{q}", (n_bias,), self.dtype) if want_b else None
            sums.append([acc_w, acc_b, False])
        return groups, sums

    def reduce_grads(self, sums, dw: Array | None, db: Array | None) -> None:
        """Add the groups' gradient sums to the parameter diffs, in order."""
        w3 = self.weights3(dw) if dw is not None else None
        for acc_w, acc_b, written in sums:
            if written:
                w3 += acc_w.transpose(0, 2, 1)
            if acc_b is not None:
                db += acc_b


# ----------------------------------------------------------------------------
# Convolution: fused kernels when the BLAS is callable from Numba
# ----------------------------------------------------------------------------
_THREAD = threading.local()


def thread_scratch(ws: Workspace) -> Workspace:
    """The scratch that every convolution pass of the calling thread shares.

    The fused and row-column passes' column rows, GEMM results and gradient
    accumulators live only within one layer pass, so one set as large as the
    largest layer's serves the whole net instead of one set per layer (ResNet-50
    training at batch 8 on two threads held about 700 MiB of per-layer
    accumulators). One per Python thread: nets may run in several threads at
    once (the kernels release the GIL).
    """
    scratch = getattr(_THREAD, "ws", None)
    if scratch is None or scratch.ops is not ws.ops:
        scratch = _THREAD.ws = ws.ops.workspace()
    return scratch


def _fused_args(pl: Plan, ws: Workspace, dtype, workers: int, nb: int):
    """Per-thread scratch rows and the pass counter for kernels/conv.py."""
    g = pl.geom
    npos = pl.out_sp[0] * pl.out_sp[1]
    ws = thread_scratch(ws)
    colbuf = ws.get("fcol", (workers, max(1, pl.rows * nb * npos)), dtype)
    resbuf = ws.get("fres", (workers, max(1, g.out_channels * nb * npos)), dtype)
    counter = ws.get("counter", (1,), np.int64)
    return colbuf, resbuf, counter


def kernel_paths(geom: ConvGeometry) -> tuple[str, str]:
    """The kernels a convolution's forward and backward run on, as chosen by
    :func:`conv_forward` and :func:`conv_backward`: ``"rows"``
    (kernels/conv_rows.py), ``"fused"`` (kernels/conv.py), ``"winograd"``
    (conv_winograd.py: forward and the bottom gradient), ``"pool"`` (numpy
    GEMMs on the task pool) or ``"nd"`` (more than two spatial axes)."""
    if len(geom.kernel) > 2:
        return "nd", "nd"
    if not _blas.AVAILABLE:
        return "pool", "pool"
    back = "rows" if _rows.use_rows(geom) else "fused"
    if _wino.use(plan(geom)):
        return "winograd", back
    one = _rows.use_rows_one(geom) if geom.num == 1 else _rows.use_rows(geom)
    return ("rows" if one else "fused"), back


def fuses(geom: ConvGeometry) -> bool:
    """Whether :func:`conv_forward` applies fused layers in its own kernels (2-D
    convolutions with a callable BLAS); otherwise the generic
    :meth:`~caffepy.backend.base.Ops.conv_forward_fused` runs the layers' passes."""
    return len(geom.kernel) <= 2 and _blas.AVAILABLE


def conv_forward(
    x, w, b, geom: ConvGeometry, y, ws: Workspace, affine=None, keep=None, relu=None
) -> None:
    """See :meth:`caffepy.backend.base.Ops.conv_forward`; ``affine``, ``keep``,
    ``relu``: the layers fused after it, as
    :meth:`~caffepy.backend.base.Ops.conv_forward_fused` takes them, applied in
    the kernels that write y (only where :func:`fuses`)."""
    ws.state.pop(_COLS_OF, None)
    if not fuses(geom):
        assert affine is None and relu is None, "no fused kernels for this geometry"
        if len(geom.kernel) > 2:
            _nd.conv_forward(x, w, b, geom, y, ws)
        else:
            _pool_forward(x, w, b, geom, y, ws)
        return
    pl = plan(geom)
    dtype = x.dtype
    act = (
        ws.get("conv.noaffine", (0, 0), dtype) if affine is None else affine,
        ws.get("conv.nokeep", (0,), dtype) if keep is None else keep.reshape(-1),
        relu is not None,
        0.0 if relu is None else float(relu),
    )
    if _wino.use(pl):
        _wino.forward(x, w, b, pl, y, ws, thread_scratch(ws), act)
    elif _rows.use_rows_one(geom) if geom.num == 1 else _rows.use_rows(geom):
        _rows.forward(x, w, b, geom, y, ws, act)
    else:
        _fused_forward(x, w, b, geom, y, ws, act)


def conv_backward(x, dy, w, geom: ConvGeometry, dw, db, dx, ws: Workspace) -> None:
    """See :meth:`caffepy.backend.base.Ops.conv_backward`."""
    cols_of = ws.state.pop(_COLS_OF, None)
    if dw is None and db is None and dx is None:
        return
    if len(geom.kernel) > 2:
        return _nd.conv_backward(x, dy, w, geom, dw, db, dx, ws)
    pl = plan(geom)
    if dx is not None and _wino.use_for_backward_data(pl):
        _wino.backward_data(dy, w, pl, dx, ws, thread_scratch(ws))
        dx = None
        if dw is None and db is None:
            return
    if _rows.use_rows(geom):
        _rows.backward(x, dy, w, geom, dw, db, dx, ws)
    elif _blas.AVAILABLE:
        _fused_backward(x, dy, w, geom, dw, db, dx, ws)
    else:
        reuse = cols_of is not None and cols_of == _key(x)
        _pool_backward(x, dy, w, geom, dw, db, dx, ws, reuse)


def _fused_forward(x, w, b, geom, y, ws, act: _wino.Epilogue) -> None:
    from caffepy.kernels import conv as _ck

    pl = plan(geom)
    dtype = x.dtype
    w2 = w.reshape(geom.out_channels, -1)
    bias = ws.get("conv.nobias", (0,), dtype) if b is None else b
    workers = numba.get_num_threads()
    nb = image_chunks(geom)[0][1]
    colbuf, resbuf, counter = _fused_args(pl, ws, dtype, workers, nb)
    gemm = _blas.gemm_address(dtype)
    x4 = x.reshape((geom.num, geom.in_channels) + pl.in_sp)
    y4 = y.reshape((geom.num, geom.out_channels) + pl.out_sp)
    args = pl.kernel_args
    local = _blas.SET_LOCAL_THREADS
    if geom.num == 1 and workers > 1 and pl.macs >= WIDE_MIN_MACS:
        _ck.conv_forward_wide(
            x4, w2, bias, *act, *args, geom.group, gemm, local, workers, colbuf[0],
            y4,
        )  # fmt: skip
    else:
        _ck.conv_forward(
            x4, w2, bias, *act, *args, geom.group, nb, gemm, local, workers,
            counter, colbuf, resbuf, y4,
        )  # fmt: skip


def _fused_backward(x, dy, w, geom, dw, db, dx, ws) -> None:
    from caffepy.kernels import conv as _ck

    pl = plan(geom)
    dtype = x.dtype
    w2 = w.reshape(geom.out_channels, -1)
    workers = numba.get_num_threads()
    nb = image_chunks(geom)[0][1]
    colbuf, resbuf, counter = _fused_args(pl, ws, dtype, workers, nb)
    n_chunks = -(-geom.num // nb)
    n_groups = min(n_chunks, 4 * workers) if workers > 1 else 1
    g = geom.group
    kg, mg = pl.rows // g, geom.out_channels // g
    wacc = thread_scratch(ws).get("wacc", (n_groups, g, kg, mg), dtype)
    bacc = thread_scratch(ws).get("bacc", (n_groups, geom.out_channels), np.float64)
    want_w, want_b, want_x = dw is not None, db is not None, dx is not None
    x4 = x.reshape((geom.num, geom.in_channels) + pl.in_sp)
    dx4 = dx.reshape(x4.shape) if want_x else x4
    dy4 = dy.reshape((geom.num, geom.out_channels) + pl.out_sp)
    _ck.conv_backward(
        x4, dy4, w2, want_w, want_b, want_x, *pl.kernel_args, g, nb, n_groups,
        _blas.gemm_address(dtype), _blas.SET_LOCAL_THREADS, workers, counter,
        colbuf, resbuf, wacc, bacc, dx4,
    )  # fmt: skip
    # NOTE: the groups' sums are added in order: the same bits every run.
    w3 = dw.reshape(g, mg, -1) if want_w else None
    for q in range(n_groups):
        if want_w:
            w3 += wacc[q].transpose(0, 2, 1)
        if want_b:
            db += bacc[q].astype(dtype)


# ----------------------------------------------------------------------------
# Convolution and deconvolution on the task pool (numpy matmuls)
# ----------------------------------------------------------------------------
def _pool_forward(x, w, b, geom, y, ws) -> None:
    run = _Pass(geom, ws, x.dtype)
    chunks = image_chunks(geom)
    x4, y3 = run.conv_in4(x), run.conv_out3(y)

    def task(j, worker):
        n0, n1 = chunks[j]
        col = run.im2col(x4[n0:n1], worker)
        run.forward_gemm(col, w, b, y3[n0:n1], worker)

    _pool.POOL.run(task, len(chunks))
    # NOTE: when the columns of the whole batch fit in one buffer, backward reuses
    # them for the weight gradient instead of unfolding the input again as Caffe
    # does. That is exact as long as the input does not change between forward
    # and backward, which a Net guarantees (it splits a blob read by several
    # layers); another pass on this workspace forgets them.
    if len(chunks) == 1 and not run.p.is_1x1:
        ws.state[_COLS_OF] = _key(x)


def _pool_backward(x, dy, w, geom, dw, db, dx, ws, reuse: bool) -> None:
    run = _Pass(geom, ws, x.dtype)
    chunks = image_chunks(geom)
    want_w, want_b = dw is not None, db is not None
    x4, dy3 = run.conv_in4(x), run.conv_out3(dy)
    dx4 = run.conv_in4(dx) if dx is not None else None
    groups, sums = run.grad_sums(len(chunks), want_w, want_b, geom.out_channels)

    def task(q, worker):
        for j in groups[q]:
            chunk(j, sums[q], worker)

    def chunk(j, acc, worker):
        n0, n1 = chunks[j]
        dy_t = run.transposed(dy3[n0:n1], worker)
        if want_b:
            run.bias_grad(dy_t, acc[1], worker)
        if want_w:
            if reuse:
                col = run.col(n1 - n0, worker)
            else:
                col = run.im2col(x4[n0:n1], worker)
            run.weight_gemm(col, dy_t, acc[0], not acc[2], worker)
            acc[2] = True
        if dx4 is not None:
            col = run.col2im_target(dx4[n0:n1], worker)
            run.backward_gemm(dy_t, w, col)
            run.col2im(col, dx4[n0:n1])

    _pool.POOL.run(task, len(groups))
    run.reduce_grads(sums, dw, db)


def deconv_forward(x, w, b, geom: ConvGeometry, y, ws: Workspace) -> None:
    """See :meth:`caffepy.backend.base.Ops.deconv_forward`."""
    if len(geom.kernel) > 2:
        return _nd.deconv_forward(x, w, b, geom, y, ws)
    run = _Pass(geom, ws, x.dtype)
    chunks = image_chunks(geom)
    x3, y4 = run.conv_out3(x), run.conv_in4(y)

    def task(j, worker):
        n0, n1 = chunks[j]
        x_t = run.transposed(x3[n0:n1], worker)
        col = run.col2im_target(y4[n0:n1], worker)
        run.backward_gemm(x_t, w, col)
        run.col2im(col, y4[n0:n1])

    _pool.POOL.run(task, len(chunks))
    if b is not None:
        y3 = y.reshape(geom.num, geom.in_channels, -1)
        y3 += b[:, None]


def deconv_backward(x, dy, w, geom: ConvGeometry, dw, db, dx, ws: Workspace) -> None:
    """See :meth:`caffepy.backend.base.Ops.deconv_backward`."""
    if len(geom.kernel) > 2:
        return _nd.deconv_backward(x, dy, w, geom, dw, db, dx, ws)
    if db is not None:
        db += dy.reshape(geom.num, geom.in_channels, -1).sum(axis=(0, 2))
    if dw is None and dx is None:
        return
    run = _Pass(geom, ws, x.dtype)
    chunks = image_chunks(geom)
    dy4, x3 = run.conv_in4(dy), run.conv_out3(x)
    dx3 = run.conv_out3(dx) if dx is not None else None
    want_w = dw is not None
    groups, sums = run.grad_sums(len(chunks), want_w, False, 0)

    def task(q, worker):
        acc = sums[q]
        for j in groups[q]:
            n0, n1 = chunks[j]
            col = run.im2col(dy4[n0:n1], worker)
            if want_w:
                x_t = run.transposed(x3[n0:n1], worker)
                run.weight_gemm(col, x_t, acc[0], not acc[2], worker)
                acc[2] = True
            if dx3 is not None:
                run.forward_gemm(col, w, None, dx3[n0:n1], worker)

    _pool.POOL.run(task, len(groups))
    run.reduce_grads(sums, dw, None)


def im2col(x, geom: ConvGeometry, col) -> None:
    """See :meth:`caffepy.backend.base.Ops.im2col`."""
    if len(geom.kernel) > 2:
        return _nd.im2col(x, geom, col)
    pl = plan(geom)
    x4 = x.reshape((geom.num, geom.in_channels) + pl.in_sp)
    _ic.im2col(x4, *pl.kernel_args, col.reshape((pl.rows, geom.num) + pl.out_sp))


def col2im(col, geom: ConvGeometry, x) -> None:
    """See :meth:`caffepy.backend.base.Ops.col2im`."""
    if len(geom.kernel) > 2:
        return _nd.col2im(col, geom, x)
    pl = plan(geom)
    x4 = x.reshape((geom.num, geom.in_channels) + pl.in_sp)
    _ic.col2im(col.reshape((pl.rows, geom.num) + pl.out_sp), *pl.kernel_args, x4)


__all__ = [
    "COL_BUFFER_ELEMENTS",
    "Plan",
    "col2im",
    "conv_backward",
    "conv_forward",
    "deconv_backward",
    "deconv_forward",
    "im2col",
    "image_chunks",
    "plan",
]
