"""The vision ops on the device: convolution as Caffe's non-cuDNN path (a batched
im2col kernel, then one batched cuBLAS GEMM per group through ``xp.matmul``),
inner product as GEMMs, pooling kernels, and Embed by indexing."""

from __future__ import annotations

import numpy as np

from caffepy.backend.base import Array, ConvGeometry, PoolGeometry, Workspace
from caffepy.backend.cuda.fallback import on_host
from caffepy.backend.interface.vision import VisionInterface


def _k():
    from caffepy.backend.cuda.kernels import vision
    from caffepy.backend.cuda.kernels.launch import launch

    return vision, launch


def _dims(geom: ConvGeometry) -> tuple[int, int, int, int]:
    """(G, O/G, C/G * prod(kernel), prod(out_spatial)) of the GEMM view."""
    g = geom.group
    ck = geom.in_channels // g * int(np.prod(geom.kernel))
    return g, geom.out_channels // g, ck, int(np.prod(geom.out_spatial))


def _geom_args(geom: ConvGeometry) -> tuple[int, ...]:
    (h, w), (kh, kw) = geom.in_spatial, geom.kernel
    (ph, pw), (sh, sw), (dh, dw) = geom.pad, geom.stride, geom.dilation
    oh, ow = geom.out_spatial
    return geom.in_channels, h, w, kh, kw, ph, pw, sh, sw, dh, dw, oh, ow


class CudaVisionOps(VisionInterface):
    """Mixin of :class:`~caffepy.backend.cuda.CudaOps`: the vision ops."""

    def matmul(self, a: Array, b: Array, out: Array) -> None:
        """out = a @ b (numpy.matmul semantics): CuPy's cuBLAS, or libcublas
        called directly while a CUDA graph is captured (CuPy refuses cuBLAS
        then) or when ``CAFFEPY_CUBLAS_DIRECT=1``."""
        from caffepy.backend.cuda import cublas, graph

        if graph.direct_cublas():
            cublas.matmul(a, b, out)
        else:
            self.xp.matmul(a, b, out=out)

    # -- columns -------------------------------------------------------------------
    def _unfold(self, x: Array, geom: ConvGeometry, ws: Workspace, name: str) -> Array:
        """x (num, C, *in_spatial) as columns (num, G, CK/G, S); x itself (a view)
        for a 1x1 convolution."""
        g, _, ck, s = _dims(geom)
        if geom.is_1x1:
            return x.reshape(geom.num, g, ck, s)
        col = ws.get(name, (geom.num, g, ck, s), x.dtype)
        vision, launch = _k()
        n = geom.num * geom.in_channels * s
        launch(
            vision.im2col_batch, n, x.reshape(-1), *_geom_args(geom), col.reshape(-1)
        )
        return col

    def _fold(self, col: Array, geom: ConvGeometry, x: Array) -> None:
        """x = col2im(col): col (num, G, CK/G, S) into x (num, C, *in_spatial)."""
        if geom.is_1x1:
            self.copy(col.reshape(x.shape), x)
            return
        vision, launch = _k()
        launch(
            vision.col2im_batch,
            x.size,
            col.reshape(-1),
            *_geom_args(geom),
            x.reshape(-1),
        )

    @staticmethod
    def _planar(geom: ConvGeometry) -> bool:
        return len(geom.kernel) == 2

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
        if not self._planar(geom):
            return on_host(self, "conv_forward", x, w, b, geom, y, ws)
        g, og, ck, s = _dims(geom)
        col = self._unfold(x, geom, ws, "col")
        y4 = y.reshape(geom.num, g, og, s)
        self.matmul(w.reshape(g, og, ck), col, y4)
        if b is not None:
            y.reshape(geom.num, geom.out_channels, s)[...] += b.reshape(-1, 1)

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
        if not self._planar(geom):
            return on_host(self, "conv_backward", x, dy, w, geom, dw, db, dx, ws)
        g, og, ck, s = _dims(geom)
        dy4 = dy.reshape(geom.num, g, og, s)
        if db is not None:
            db += dy.reshape(geom.num, geom.out_channels, s).sum(axis=(0, 2))
        if dw is not None:
            col = self._unfold(x, geom, ws, "col")
            part = ws.get("dw", (geom.num, g, og, ck), dy.dtype)
            self.matmul(dy4, col.swapaxes(-1, -2), part)
            dw += part.sum(axis=0).reshape(dw.shape)
        if dx is not None:
            dcol = ws.get("dcol", (geom.num, g, ck, s), dy.dtype)
            self.matmul(w.reshape(g, og, ck).swapaxes(-1, -2), dy4, dcol)
            self._fold(dcol, geom, dx)

    def deconv_forward(
        self,
        x: Array,
        w: Array,
        b: Array | None,
        geom: ConvGeometry,
        y: Array,
        ws: Workspace,
    ) -> None:
        if not self._planar(geom):
            return on_host(self, "deconv_forward", x, w, b, geom, y, ws)
        g, og, ck, s = _dims(geom)
        dcol = ws.get("dcol", (geom.num, g, ck, s), x.dtype)
        x4 = x.reshape(geom.num, g, og, s)
        self.matmul(w.reshape(g, og, ck).swapaxes(-1, -2), x4, dcol)
        self._fold(dcol, geom, y)
        if b is not None:
            y.reshape(geom.num, geom.in_channels, -1)[...] += b.reshape(-1, 1)

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
        if not self._planar(geom):
            return on_host(self, "deconv_backward", x, dy, w, geom, dw, db, dx, ws)
        g, og, ck, s = _dims(geom)
        if db is not None:
            db += dy.reshape(geom.num, geom.in_channels, -1).sum(axis=(0, 2))
        if dw is None and dx is None:
            return
        col = self._unfold(dy, geom, ws, "col")
        if dw is not None:
            x4 = x.reshape(geom.num, g, og, s)
            part = ws.get("dw", (geom.num, g, og, ck), dy.dtype)
            self.matmul(x4, col.swapaxes(-1, -2), part)
            dw += part.sum(axis=0).reshape(dw.shape)
        if dx is not None:
            self.matmul(w.reshape(g, og, ck), col, dx.reshape(geom.num, g, og, s))

    def im2col(self, x: Array, geom: ConvGeometry, col: Array) -> None:
        if not self._planar(geom):
            return on_host(self, "im2col", x, geom, col)
        ws = self.workspace()
        g, _, ck, s = _dims(geom)
        cols = self._unfold(x, geom, ws, "col").reshape(geom.num, g * ck, s)
        col.reshape(g * ck, geom.num, s)[...] = cols.swapaxes(0, 1)

    def col2im(self, col: Array, geom: ConvGeometry, x: Array) -> None:
        if not self._planar(geom):
            return on_host(self, "col2im", col, geom, x)
        g, _, ck, s = _dims(geom)
        batch = self.xp.ascontiguousarray(
            col.reshape(g * ck, geom.num, s).swapaxes(0, 1)
        )
        self._fold(batch.reshape(geom.num, g, ck, s), geom, x)

    # -- inner product -------------------------------------------------------------
    def inner_product_forward(
        self,
        x: Array,
        w: Array,
        b: Array | None,
        transpose: bool,
        y: Array,
        ws: Workspace,
    ) -> None:
        self.matmul(x, w if transpose else w.T, y)
        if b is not None:
            y += b

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
        if dw is not None:
            part = ws.get("dw", dw.shape, dw.dtype)
            if transpose:
                self.matmul(x.T, dy, part)
            else:
                self.matmul(dy.T, x, part)
            dw += part
        if db is not None:
            db += dy.sum(axis=0)
        if dx is not None:
            self.matmul(dy, w.T if transpose else w, dx)

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
        vision, launch = _k()
        _, _, h, w = x.shape
        args = (h, w, *geom.pooled, *geom.kernel, *geom.pad, *geom.stride)
        if method == "max":
            arg = ws.get("pool.argmax", y.shape, np.int32)
            launch(vision.max_pool_forward, y.size, x.reshape(-1), *args,
                   y.reshape(-1), arg.reshape(-1))  # fmt: skip
            if mask is not None:
                mask[...] = arg
        else:
            launch(vision.ave_pool_forward, y.size, x.reshape(-1), *args, y.reshape(-1))

    def pool_backward(
        self,
        dy: Array,
        geom: PoolGeometry,
        method: str,
        dx: Array,
        ws: Workspace,
    ) -> None:
        vision, launch = _k()
        _, _, h, w = dx.shape
        args = (h, w, *geom.pooled, *geom.kernel, *geom.pad, *geom.stride)
        if method == "max":
            arg = ws.get("pool.argmax", dy.shape, np.int32)
            launch(vision.max_pool_backward, dx.size, dy.reshape(-1), arg.reshape(-1),
                   *args, dx.reshape(-1))  # fmt: skip
        else:
            launch(vision.ave_pool_backward, dx.size, dy.reshape(-1), *args,
                   dx.reshape(-1))  # fmt: skip

    def stochastic_pool_forward(self, x, geom, rand, y, index) -> None:
        # NOTE: stochastic pooling is rare: its op runs on the host.
        on_host(self, "stochastic_pool_forward", x, geom, rand, y, index)

    def stochastic_pool_backward(self, x, dy, geom, index, dx) -> None:
        on_host(self, "stochastic_pool_backward", x, dy, geom, index, dx)

    # -- embedding -----------------------------------------------------------------
    def embed_forward(
        self, x: Array, w: Array, b: Array | None, y: Array, ws: Workspace
    ) -> None:
        index = x.reshape(-1).astype(np.intp)
        self.xp.take(w, index, axis=0, out=y)
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
            # NOTE: add.at sums the rows of repeated indices.
            self.xp.add.at(dw, x.reshape(-1).astype(np.intp), dy)
        if db is not None:
            db += dy.sum(axis=0)
