"""Vision ops on the CPU: (de)convolution (:mod:`caffepy.backend.cpu.conv`),
inner product, pooling and embedding, over the Numba kernels of
:mod:`caffepy.kernels` and the task pool's thread policy.

NOTE: every computation here is the one the layers ran before the op boundary,
in the same order of floating-point operations, so results are bit-identical.
"""

from __future__ import annotations

import numba
import numpy as np

from caffepy.backend.base import Array, ConvGeometry, Ops, PoolGeometry, Workspace
from caffepy.backend.cpu import conv as _conv
from caffepy.kernels import blas as _blas
from caffepy.kernels import parallel as _pool
from caffepy.kernels import pooling as _pk

#: An InnerProduct GEMM of at least this many multiply-adds is split into
#: blocks for the threads.
IP_SPLIT_FLOPS = 1 << 20
#: ... and a GEMV (one row: deploy's batch of one) from this many (LeNet's ip1,
#: 800x500 at batch 1: 32 us on one thread, 22 over two; a 64x500x10 GEMM is
#: 10% slower split; the 2-core Xeon VMs of 2026-12-06).
IP_SPLIT_FLOPS_GEMV = 1 << 18


def _ip_kernel_threads(flops: int, rows: int = 2) -> int:
    """Threads for the inner-product GEMM kernels (kernels/inner_product.py): 1 for a
    small product (run on the calling thread), 0 without a BLAS the kernels can
    call (then numpy's matmul runs on the task pool)."""
    if not _blas.AVAILABLE:
        return 0
    if flops < (IP_SPLIT_FLOPS_GEMV if rows == 1 else IP_SPLIT_FLOPS):
        return 1
    return numba.get_num_threads()


def _ip_blocks(flops: int, size: int) -> list[tuple[int, int]]:
    """Column blocks [a, b) of a dimension of ``size`` for the pool's threads:
    one block (a single multi-threaded GEMM) for small products."""
    pool = _pool.POOL
    if pool.size == 1 or flops < IP_SPLIT_FLOPS:
        return [(0, size)]
    return _pool.split(size, 2 * pool.size)


class VisionOps:
    """The vision family of :class:`~caffepy.backend.base.Ops` on host arrays."""

    # -- convolution and deconvolution ---------------------------------------------
    def conv_forward(
        self,
        x: Array,
        w: Array,
        b: Array | None,
        geom: ConvGeometry,
        y: Array,
        ws: Workspace,
    ) -> None:
        _conv.conv_forward(x, w, b, geom, y, ws)

    def conv_forward_fused(
        self,
        x: Array,
        w: Array,
        b: Array | None,
        geom: ConvGeometry,
        y: Array,
        ws: Workspace,
        affine: Array | None,
        keep: Array | None,
        negative_slope: float | None,
    ) -> None:
        if _conv.fuses(geom):
            _conv.conv_forward(x, w, b, geom, y, ws, affine, keep, negative_slope)
        else:
            # the layers' passes one after the other: the generic default
            Ops.conv_forward_fused(
                self,  # type: ignore[arg-type]
                x, w, b, geom, y, ws, affine, keep, negative_slope,
            )  # fmt: skip

    def conv_backward(
        self,
        x: Array,
        dy: Array,
        w: Array,
        geom: ConvGeometry,
        dw: Array | None,
        db: Array | None,
        dx: Array | None,
        ws: Workspace,
    ) -> None:
        _conv.conv_backward(x, dy, w, geom, dw, db, dx, ws)

    def deconv_forward(
        self,
        x: Array,
        w: Array,
        b: Array | None,
        geom: ConvGeometry,
        y: Array,
        ws: Workspace,
    ) -> None:
        _conv.deconv_forward(x, w, b, geom, y, ws)

    def deconv_backward(
        self,
        x: Array,
        dy: Array,
        w: Array,
        geom: ConvGeometry,
        dw: Array | None,
        db: Array | None,
        dx: Array | None,
        ws: Workspace,
    ) -> None:
        _conv.deconv_backward(x, dy, w, geom, dw, db, dx, ws)

    def im2col(self, x: Array, geom: ConvGeometry, col: Array) -> None:
        _conv.im2col(x, geom, col)

    def col2im(self, col: Array, geom: ConvGeometry, x: Array) -> None:
        _conv.col2im(col, geom, x)

    # -- inner product -----------------------------------------------------------
    def inner_product_forward(
        self,
        x: Array,
        w: Array,
        b: Array | None,
        transpose: bool,
        y: Array,
        ws: Workspace,
    ) -> None:
        self._inner_product(x, w, b, transpose, y, ws, None)

    def inner_product_relu_forward(
        self,
        x: Array,
        w: Array,
        b: Array | None,
        transpose: bool,
        y: Array,
        ws: Workspace,
        negative_slope: float,
    ) -> None:
        self._inner_product(x, w, b, transpose, y, ws, negative_slope)

    def _inner_product(self, x, w, b, transpose, y, ws, relu) -> None:
        (m, k), n = x.shape, y.shape[1]
        flops = m * k * n
        workers = _ip_kernel_threads(flops, m)
        if workers:
            from caffepy.kernels.inner_product import ip_forward

            dtype = x.dtype
            bias = ws.get("ip.nobias", (0,), dtype) if b is None else b
            counter = ws.get("counter", (1,), np.int64)
            # NOTE: one worker runs on the calling thread (tasks.launch of one)
            ip_forward(
                x, w, transpose, bias, relu is not None,
                0.0 if relu is None else float(relu), min(n, 2 * workers),
                _blas.gemm_address(dtype), _blas.gemv_address(dtype),
                _blas.SET_LOCAL_THREADS, workers, counter, y,
            )  # fmt: skip
            return
        wt = w if transpose else w.T  # (K, N)
        blocks = _ip_blocks(flops, n)

        def task(j, worker):
            a, c = blocks[j]
            np.matmul(x, wt[:, a:c], out=y[:, a:c])
            if b is not None:
                y[:, a:c] += b[a:c]

        _pool.POOL.run(task, len(blocks))
        if relu is not None:
            from caffepy.kernels.neuron import relu_forward

            relu_forward(y.reshape(-1), float(relu), y.reshape(-1))

    def inner_product_backward(
        self,
        x: Array,
        dy: Array,
        w: Array,
        transpose: bool,
        dw: Array | None,
        db: Array | None,
        dx: Array | None,
        ws: Workspace,
    ) -> None:
        (m, k), n = x.shape, dy.shape[1]
        flops = m * k * n
        want_w, want_x = dw is not None, dx is not None
        workers = _ip_kernel_threads(flops)
        if workers and (want_w or want_x):
            from caffepy.kernels.inner_product import ip_backward

            counter = ws.get("counter", (1,), np.int64)
            # NOTE: the weight gradient accumulates straight into the diff (GEMM
            # with beta 1); its blocks split the outputs, dx's the inputs.
            ip_backward(
                x, dy, w, transpose, want_w, want_x, min(n, 2 * workers),
                min(k, 2 * workers), _blas.gemm_address(x.dtype),
                _blas.SET_LOCAL_THREADS, workers, counter,
                dw if want_w else w, dx if want_x else x,
            )  # fmt: skip
            want_w = want_x = False
        n_blocks = _ip_blocks(flops, n) if want_w else []
        k_blocks = _ip_blocks(flops, k) if want_x else []
        if n_blocks or k_blocks:
            tmp = (
                ws.get("ip.wgrad", dw.shape, dw.dtype)
                if want_w and dw is not None
                else None
            )
            wn = w.T if transpose else w  # (N, K)

            def task(j, worker):
                # NOTE: the weight gradient is split by output rows, the bottom
                # gradient by input columns: the blocks never overlap.
                if j < len(n_blocks):
                    a, c = n_blocks[j]
                    if transpose:  # stored (K, N): dW[:, a:c] = x^T dy[:, a:c]
                        np.matmul(x.T, dy[:, a:c], out=tmp[:, a:c])
                        dw[:, a:c] += tmp[:, a:c]
                    else:
                        np.matmul(dy[:, a:c].T, x, out=tmp[a:c])
                        dw[a:c] += tmp[a:c]
                else:
                    a, c = k_blocks[j - len(n_blocks)]
                    np.matmul(dy, wn[:, a:c], out=dx[:, a:c])

            _pool.POOL.run(task, len(n_blocks) + len(k_blocks))
        if db is not None:
            db += dy.sum(axis=0)

    # -- pooling -------------------------------------------------------------------
    def pool_forward(
        self,
        x: Array,
        geom: PoolGeometry,
        method: str,
        y: Array,
        mask: Array | None,
        ws: Workspace,
    ) -> None:
        self._pool(x, geom, method, y, mask, ws, None)

    def pool_relu_forward(
        self,
        x: Array,
        geom: PoolGeometry,
        method: str,
        y: Array,
        mask: Array | None,
        ws: Workspace,
        negative_slope: float,
    ) -> None:
        self._pool(x, geom, method, y, mask, ws, negative_slope)

    def _pool(self, x, geom, method, y, mask, ws, relu) -> None:
        (kh, kw), (ph, pw), (sh, sw) = geom.kernel, geom.pad, geom.stride
        act = (relu is not None, 0.0 if relu is None else float(relu))
        if method == "max":
            arg = ws.get("pool.argmax", y.shape, np.int32)
            _pk.max_pool_forward(x, kh, kw, ph, pw, sh, sw, y, arg, *act)
            if mask is not None:
                mask[...] = arg
        else:
            _pk.ave_pool_forward(x, kh, kw, ph, pw, sh, sw, y, *act)

    def pool_backward(
        self,
        dy: Array,
        geom: PoolGeometry,
        method: str,
        dx: Array,
        ws: Workspace,
    ) -> None:
        if method == "max":
            arg = ws.get("pool.argmax", dy.shape, np.int32)
            _pk.max_pool_backward(dy, arg, dx)
        else:
            (kh, kw), (ph, pw), (sh, sw) = geom.kernel, geom.pad, geom.stride
            _pk.ave_pool_backward(dy, kh, kw, ph, pw, sh, sw, dx)

    def stochastic_pool_forward(
        self,
        x: Array,
        geom: PoolGeometry,
        rand: Array | None,
        y: Array,
        index: Array | None,
    ) -> None:
        (kh, kw), (sh, sw) = geom.kernel, geom.stride
        x = np.ascontiguousarray(x)
        if rand is None:
            _pk.stochastic_pool_forward_test(x, kh, kw, sh, sw, y)
        else:
            _pk.stochastic_pool_forward_train(x, kh, kw, sh, sw, rand, y, index)

    def stochastic_pool_backward(
        self,
        x: Array,
        dy: Array,
        geom: PoolGeometry,
        index: Array | None,
        dx: Array,
    ) -> None:
        dy = np.ascontiguousarray(dy)
        if index is None:
            (kh, kw), (sh, sw) = geom.kernel, geom.stride
            x = np.ascontiguousarray(x)
            _pk.stochastic_pool_backward_test(x, dy, kh, kw, sh, sw, dx)
        else:
            _pk.max_pool_backward(dy, index, dx)

    # -- embedding -----------------------------------------------------------------
    @staticmethod
    def _embed_index(x: Array, ws: Workspace) -> Array:
        """The float indices x as intp, in the workspace."""
        index = ws.get("embed.index", (x.size,), np.intp)
        np.copyto(index, x.reshape(-1), casting="unsafe")
        return index

    def embed_forward(
        self, x: Array, w: Array, b: Array | None, y: Array, ws: Workspace
    ) -> None:
        index = self._embed_index(x, ws)
        # NOTE: mode="clip" lets take write straight into y (mode="raise" buffers);
        # the caller checked the indices.
        np.take(w, index, axis=0, out=y, mode="clip")
        if b is not None:
            y += b

    def embed_backward(
        self,
        x: Array,
        dy: Array,
        dw: Array | None,
        db: Array | None,
        ws: Workspace,
    ) -> None:
        if dw is not None:
            # NOTE: add.at sums the rows of repeated indices (a plain fancy-index
            # += would keep only the last one).
            np.add.at(dw, self._embed_index(x, ws), dy)
        if db is not None:
            db += dy.sum(axis=0)


__all__ = ["IP_SPLIT_FLOPS", "VisionOps"]
