"""N-D (3 or more spatial axes) convolution and deconvolution on the CPU.

Caffe's ``BaseConvolutionLayer`` with ``force_nd_im2col``: the input is unfolded
by :func:`caffepy.kernels.im2col_nd.im2col_nd`, then one GEMM per group over a
chunk of images (numpy's matmul), as :mod:`caffepy.backend.cpu.conv` does for 1-D
and 2-D with its fused kernels. Weight gradients are summed chunk by chunk in
order, so they are the same bits on every run.
"""

from __future__ import annotations

import math

import numpy as np

from caffepy.backend.base import Array, ConvGeometry, Workspace
from caffepy.kernels import im2col_nd as _nd

#: Most elements of the column buffer of one chunk of images.
COL_BUFFER_ELEMENTS = 1 << 20


class _NdPass:
    """Views and scratch of one N-D (de)convolution pass."""

    def __init__(self, geom: ConvGeometry, ws: Workspace | None, dtype: np.dtype):
        self.geom = geom
        self.ws = ws
        self.dtype = dtype
        self.num = geom.num
        self.group = geom.group
        self.cin = geom.in_channels
        self.cout = geom.out_channels
        self.args = tuple(
            np.asarray(v, np.int64)
            for v in (
                geom.in_spatial,
                geom.out_spatial,
                geom.kernel,
                geom.pad,
                geom.stride,
                geom.dilation,
            )
        )
        self.rows = self.cin * math.prod(geom.kernel)
        self.npos = math.prod(geom.out_spatial)
        step = max(1, COL_BUFFER_ELEMENTS // max(1, self.rows * self.npos))
        self.chunks = [
            (n0, min(n0 + step, self.num)) for n0 in range(0, self.num, step)
        ]

    def conv_in(self, arr: Array) -> Array:
        """(N, C_in, *in_spatial) view of a conv-input array."""
        return arr.reshape((self.num, self.cin) + tuple(self.geom.in_spatial))

    def conv_out(self, arr: Array) -> Array:
        """(N, C_out, P) view of a conv-output array."""
        return arr.reshape(self.num, self.cout, self.npos)

    def weights(self, arr: Array) -> Array:
        """(group, C_out/group, C_in/group * prod(kernel)) view of the weights."""
        return arr.reshape(self.group, self.cout // self.group, -1)

    def col(self, nb: int) -> Array:
        """The column buffer for nb images: (rows, nb, *out_spatial)."""
        shape = (self.rows, nb) + tuple(self.geom.out_spatial)
        # NOTE: the plain im2col/col2im ops build a pass without a workspace and
        # never ask for a column buffer.
        assert self.ws is not None, "a column buffer needs the layer's workspace"
        return self.ws.get("ndcol", shape, self.dtype)

    def grouped(self, col: Array) -> Array:
        """(group, rows/group, nb*P) view of a column buffer."""
        return col.reshape(self.group, self.rows // self.group, -1)

    def im2col(self, x: Array) -> Array:
        """Columns of conv-input images x (nb, C_in, *in_spatial)."""
        col = self.col(x.shape[0])
        _nd.im2col_nd(np.ascontiguousarray(x), *self.args, col)
        return col

    def col2im(self, col: Array, x: Array) -> None:
        """Fold columns into conv-input images x (nb, C_in, *in_spatial), assigned."""
        _nd.col2im_nd(col, *self.args, x)

    def to_cnp(self, y: Array) -> Array:
        """Conv-output images y (nb, C_out, P) as (group, C_out/group, nb*P)."""
        t = np.ascontiguousarray(y.transpose(1, 0, 2))
        return t.reshape(self.group, self.cout // self.group, -1)

    def from_cnp(self, res: Array, nb: int) -> Array:
        """A (group, C_out/group, nb*P) GEMM result as (nb, C_out, P)."""
        return res.reshape(self.cout, nb, self.npos).transpose(1, 0, 2)


def conv_forward(x, w, b, geom: ConvGeometry, y, ws: Workspace) -> None:
    """N-D :meth:`~caffepy.backend.base.Ops.conv_forward`."""
    run = _NdPass(geom, ws, x.dtype)
    x_in, y3, w3 = run.conv_in(x), run.conv_out(y), run.weights(w)
    for n0, n1 in run.chunks:
        col = run.im2col(x_in[n0:n1])
        res = np.matmul(w3, run.grouped(col))
        y3[n0:n1] = run.from_cnp(res, n1 - n0)
        if b is not None:
            y3[n0:n1] += b[:, None]


def conv_backward(x, dy, w, geom: ConvGeometry, dw, db, dx, ws: Workspace) -> None:
    """N-D :meth:`~caffepy.backend.base.Ops.conv_backward`."""
    run = _NdPass(geom, ws, x.dtype)
    x_in, dy3, w3 = run.conv_in(x), run.conv_out(dy), run.weights(w)
    dx_in = run.conv_in(dx) if dx is not None else None
    if db is not None:
        db += dy3.sum(axis=(0, 2), dtype=np.float64).astype(db.dtype)
    dw3 = run.weights(dw) if dw is not None else None
    for n0, n1 in run.chunks:
        dy_g = run.to_cnp(dy3[n0:n1])
        if dw3 is not None:
            col = run.im2col(x_in[n0:n1])
            dw3 += np.matmul(dy_g, run.grouped(col).transpose(0, 2, 1))
        if dx_in is not None:
            col = run.col(n1 - n0)
            np.matmul(w3.transpose(0, 2, 1), dy_g, out=run.grouped(col))
            run.col2im(col, dx_in[n0:n1])


def deconv_forward(x, w, b, geom: ConvGeometry, y, ws: Workspace) -> None:
    """N-D :meth:`~caffepy.backend.base.Ops.deconv_forward`: x is the conv
    output, y the conv input."""
    run = _NdPass(geom, ws, x.dtype)
    x3, y_in, w3 = run.conv_out(x), run.conv_in(y), run.weights(w)
    for n0, n1 in run.chunks:
        col = run.col(n1 - n0)
        np.matmul(w3.transpose(0, 2, 1), run.to_cnp(x3[n0:n1]), out=run.grouped(col))
        run.col2im(col, y_in[n0:n1])
    if b is not None:
        y.reshape(geom.num, geom.in_channels, -1)[...] += b[:, None]


def deconv_backward(x, dy, w, geom: ConvGeometry, dw, db, dx, ws: Workspace) -> None:
    """N-D :meth:`~caffepy.backend.base.Ops.deconv_backward`."""
    run = _NdPass(geom, ws, x.dtype)
    x3, dy_in, w3 = run.conv_out(x), run.conv_in(dy), run.weights(w)
    if db is not None:
        flat = dy.reshape(geom.num, geom.in_channels, -1)
        db += flat.sum(axis=(0, 2), dtype=np.float64).astype(db.dtype)
    if dw is None and dx is None:
        return
    dx3 = run.conv_out(dx) if dx is not None else None
    dw3 = run.weights(dw) if dw is not None else None
    for n0, n1 in run.chunks:
        col = run.im2col(dy_in[n0:n1])
        if dw3 is not None:
            x_g = run.to_cnp(x3[n0:n1])
            dw3 += np.matmul(x_g, run.grouped(col).transpose(0, 2, 1))
        if dx3 is not None:
            dx3[n0:n1] = run.from_cnp(np.matmul(w3, run.grouped(col)), n1 - n0)


def im2col(x, geom: ConvGeometry, col) -> None:
    """N-D :meth:`~caffepy.backend.base.Ops.im2col`."""
    run = _NdPass(geom, None, x.dtype)
    _nd.im2col_nd(np.ascontiguousarray(run.conv_in(x)), *run.args, col)


def col2im(col, geom: ConvGeometry, x) -> None:
    """N-D :meth:`~caffepy.backend.base.Ops.col2im`."""
    run = _NdPass(geom, None, col.dtype)
    _nd.col2im_nd(np.ascontiguousarray(col), *run.args, run.conv_in(x))


__all__ = [
    "col2im",
    "conv_backward",
    "conv_forward",
    "deconv_backward",
    "deconv_forward",
    "im2col",
]
