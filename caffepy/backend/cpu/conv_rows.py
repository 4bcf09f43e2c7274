"""The CPU backend's row-column convolutions (:mod:`caffepy.kernels.conv_rows`):
when they run, and their scratch. Convolutions of vertical stride 1 as shifted
GEMMs over row columns, kh times smaller than im2col's columns; a single image
(deploy's batch of one) cut into bands of output rows over the threads.
:mod:`caffepy.backend.cpu.conv` dispatches here."""

from __future__ import annotations

import numba
import numpy as np

from caffepy.backend.base import ConvGeometry
from caffepy.backend.cpu import conv as _conv
from caffepy.backend.cpu import conv_winograd as _wino
from caffepy.kernels import blas as _blas

#: Least output positions per image, and least row-column rows (C/G * kw, the
#: GEMMs' inner size), for which a convolution of vertical stride 1 runs as
#: shifted GEMMs over row columns (:mod:`caffepy.kernels.conv_rows`): columns kh
#: times smaller than im2col's, but one GEMM per image and kernel row. Measured
#: (1 and 2 threads) 1.2-2.4x faster forward and 1.1-1.6x backward on
#: CIFAR10-quick's conv2/conv3, LeNet's conv2 and ResNet's 3x3 convs from 56x56
#: to 14x14; slower below these limits (3- and 1-channel inputs, 7x7 outputs),
#: except on small images: up to ROWS_SMALL_POSITIONS output positions the
#: row columns win whatever the inner size (forward + weight gradient, 1 and 2
#: threads: LeNet's conv1 1.4-1.7x, CIFAR10-quick's 1.4-1.7x, a 3x3 over 3
#: channels at 32x32 1.4-2x faster; at 64x64 over 3 channels im2col's longer
#: GEMMs are 1.5x faster, at VGG's 224x224 1.6x).
ROWS_MIN_POSITIONS = 64
ROWS_MIN_INNER = 16
ROWS_SMALL_POSITIONS = 1024


def use_rows(geom: ConvGeometry) -> bool:
    """Whether a 2-D convolution runs on :mod:`caffepy.kernels.conv_rows`."""
    pl = _conv.plan(geom)
    npos = pl.out_sp[0] * pl.out_sp[1]
    return (
        _blas.AVAILABLE
        and pl.stride[0] == 1
        and pl.kernel[0] > 1
        and npos >= ROWS_MIN_POSITIONS
        and (
            geom.in_channels // geom.group * pl.kernel[1] >= ROWS_MIN_INNER
            or npos <= ROWS_SMALL_POSITIONS
        )
        and (geom.num > 1 or numba.get_num_threads() == 1)
    )


#: A single image (deploy's batch of one) is cut into bands of output rows on
#: conv_rows, at least two per thread and at most this many positions each, so
#: that the threads share it and a band's row columns stay small. Measured on
#: CIFAR10-quick's convs and VGG-16's (224x224 to 14x14), 1 and 2 threads: rows
#: in bands beat im2col + GEMM (the whole image, or split over the threads by
#: conv_forward_wide) 1.1-2x, except where the GEMMs' inner size is large and
#: the image small (VGG's 28x28 and 14x14: im2col's one long-K GEMM is 5-20%
#: faster) and for 3x3 kernels over 3 channels (VGG's conv1_1).
ROWS_BAND_POSITIONS = 1568
#: ... and at least this many positions each: a smaller image runs in fewer
#: bands, one on the calling thread below twice this (CIFAR10-quick's conv3,
#: 8x8: 112 us in one band on 2 threads, 123 in four; LeNet's conv2 70 against
#: 89; the 2-core Xeon VMs of 2026-12-06).
ROWS_BAND_MIN_POSITIONS = 128
ROWS_ONE_MIN_INNER = 12
ROWS_ONE_MAX_INNER = 512
ROWS_ONE_MAX_INNER_POSITIONS = 2048


def use_rows_one(geom: ConvGeometry) -> bool:
    """Whether the forward of a 2-D convolution of one image runs on conv_rows."""
    pl = _conv.plan(geom)
    inner = geom.in_channels // geom.group * pl.kernel[1]
    npos = pl.out_sp[0] * pl.out_sp[1]
    return (
        _blas.AVAILABLE
        and pl.stride[0] == 1
        and pl.kernel[0] > 1
        and npos >= ROWS_MIN_POSITIONS
        and inner >= ROWS_ONE_MIN_INNER
        and (inner < ROWS_ONE_MAX_INNER or npos >= ROWS_ONE_MAX_INNER_POSITIONS)
    )


def _args(geom, ws, dtype, workers):
    """Row-column scratch and the rearranged weights' buffer for conv_rows."""
    pl = _conv.plan(geom)
    kh, kw = pl.kernel
    hr = pl.out_sp[0] + (kh - 1) * pl.dilation[0]
    size = max(1, geom.in_channels * kw * hr * pl.out_sp[1])
    rowbuf = _conv.thread_scratch(ws).get("rcol", (workers, size), dtype)
    kg = geom.in_channels // geom.group * kw
    wr = ws.get("rw", (kh, geom.out_channels, kg), dtype)
    return rowbuf, wr


def forward(
    x, w, b, geom, y, ws, act: _wino.Epilogue | None = None, bands=None
) -> None:
    from caffepy.kernels import conv_rows as _cr

    pl = _conv.plan(geom)
    dtype = x.dtype
    workers = numba.get_num_threads()
    if bands is None:
        # a batch smaller than the threads: each image cut into bands of rows
        bands = -(-workers // geom.num)
        if geom.num == 1:
            npos = pl.out_sp[0] * pl.out_sp[1]
            bands = max(2 * workers, -(-npos // ROWS_BAND_POSITIONS))
            bands = max(1, min(bands, npos // ROWS_BAND_MIN_POSITIONS))
        bands = min(pl.out_sp[0], bands)
    rowbuf, wr = _args(geom, ws, dtype, workers)
    post: _wino.Epilogue = act or (
        np.empty((0, 0), dtype),
        np.empty(0, dtype),
        False,
        0.0,
    )
    kh, kw = pl.kernel
    _cr.rearrange(w.reshape(geom.out_channels, -1), kh, kw, wr)
    bias = ws.get("conv.nobias", (0,), dtype) if b is None else b
    x4 = x.reshape((geom.num, geom.in_channels) + pl.in_sp)
    y4 = y.reshape((geom.num, geom.out_channels) + pl.out_sp)
    args = (pl.pad[0], pl.pad[1], pl.stride[1], pl.dilation[0], pl.dilation[1])
    _cr.forward(
        x4, wr, bias, *post, kh, kw, *args, geom.group, bands, _blas.gemm_address(dtype),
        _blas.SET_LOCAL_THREADS, workers, _conv.thread_scratch(ws).get("counter", (1,), np.int64),
        rowbuf, y4,
    )  # fmt: skip


def backward(x, dy, w, geom, dw, db, dx, ws) -> None:
    from caffepy.kernels import conv_rows as _cr

    pl = _conv.plan(geom)
    dtype = x.dtype
    workers = numba.get_num_threads()
    rowbuf, wr = _args(geom, ws, dtype, workers)
    kh, kw = pl.kernel
    want_w, want_b, want_x = dw is not None, db is not None, dx is not None
    scratch = _conv.thread_scratch(ws)
    drowbuf = scratch.get("rdcol", rowbuf.shape, dtype)
    if want_x:
        _cr.rearrange(w.reshape(geom.out_channels, -1), kh, kw, wr)
    n_groups = min(geom.num, 4 * workers) if workers > 1 else 1
    g = geom.group
    kg, mg = geom.in_channels // g * kw, geom.out_channels // g
    wacc = scratch.get("rwacc", (n_groups, kh, g, kg, mg), dtype)
    bacc = scratch.get("bacc", (n_groups, geom.out_channels), np.float64)
    x4 = x.reshape((geom.num, geom.in_channels) + pl.in_sp)
    dx4 = dx.reshape(x4.shape) if want_x else x4
    dy4 = dy.reshape((geom.num, geom.out_channels) + pl.out_sp)
    args = (pl.pad[0], pl.pad[1], pl.stride[1], pl.dilation[0], pl.dilation[1])
    _cr.backward(
        x4, dy4, wr, want_w, want_b, want_x, kh, kw, *args, g, n_groups,
        _blas.gemm_address(dtype), _blas.SET_LOCAL_THREADS, workers,
        scratch.get("counter", (1,), np.int64), rowbuf, drowbuf, wacc, bacc, dx4,
    )  # fmt: skip
    # NOTE: the groups' sums are added in order: the same bits every run.
    dw2 = dw.reshape(geom.out_channels, -1) if want_w else None
    for q in range(n_groups):
        if want_w:
            _cr.unrearrange_add(wacc[q], kh, kw, dw2)
        if want_b:
            db += bacc[q].astype(dtype)
