"""3x3 convolutions of stride 1 on Winograd's F(2x2, 3x3) (:mod:`caffepy.kernels.winograd`):
when the CPU backend uses them (:func:`use`), and the forward and bottom-gradient
passes over host arrays. The weight gradient stays on the other passes of
:mod:`caffepy.backend.cpu.conv`, which calls these with the convolution's
:class:`~caffepy.backend.cpu.conv.Plan` and the calling thread's shared scratch.

Why and where (measured against the row-column and im2col passes, 2 threads; 1
thread alike): 2.25x fewer multiply-adds, results that differ from a direct
convolution by rounding (float32: about 1e-6 relative). VGG-16's layers at
batch 1 1.07x (64 channels at 224x224) to 1.78x (512 at 28x28), ResNet's 3x3
layers at batch 32 1.16x (64 channels) to 1.76x (256, 512); from 64 channels
down to 8x8 images 1.2x. Below 64 channels (input or output) it is slower (32
channels at 16x16, batch 100: 0.5x): the GEMMs' inner size is the channels.
The bottom gradient takes as long as the forward (1.1-1.9x less than the
row-column pass's: 32 x 256 x 14x14 43 -> 23 ms, 8 x 512 x 28x28 158 -> 81).
It also needs MIN_POSITIONS output positions over the batch: the weights are
transformed in every pass, which a small output does not repay (512 channels
at 7x7: batch 1 0.61-0.75x, batch 2 0.89-1.0x, batch 4 1.19x; at 14x14 batch
1 1.3-1.7x).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numba
import numpy as np

from caffepy.backend.base import Array, Workspace
from caffepy.kernels import blas as _blas

#: The layers fused after a convolution, as the kernels take them: affine (4, M)
#: or (0, 0), keep (flat) or empty, relu, slope (caffepy.backend.cpu.conv).
Epilogue = tuple[Array, Array, bool, float]

if TYPE_CHECKING:
    from caffepy.backend.cpu.conv import Plan

#: Whether the passes run at all (off with CAFFEPY_WINOGRAD=0).
ENABLED = os.environ.get("CAFFEPY_WINOGRAD", "1") != "0"
MIN_CHANNELS = 64
MIN_POSITIONS = 128
#: Tiles (of 2x2 outputs) per chunk of images: bounds the transformed input
#: and the GEMMs' results (16 * channels * tiles each).
TILES = 2048


def use(pl: Plan) -> bool:
    """Whether the forward of the convolution planned as ``pl`` runs here."""
    g = pl.geom
    return (
        ENABLED
        and _blas.AVAILABLE
        and pl.kernel == (3, 3)
        and pl.stride == (1, 1)
        and pl.dilation == (1, 1)
        and g.group == 1
        and min(g.in_channels, g.out_channels) >= MIN_CHANNELS
        and g.num * pl.out_sp[0] * pl.out_sp[1] >= MIN_POSITIONS
    )


def use_for_backward_data(pl: Plan) -> bool:
    """Whether its bottom gradient runs here (the full correlation's padding,
    2 - pad, must not be negative)."""
    return use(pl) and max(pl.pad) <= 2


def forward(
    x: Array, w: Array, b: Array | None, pl: Plan, y: Array, ws: Workspace,
    scratch: Workspace, act: Epilogue | None = None,
) -> None:  # fmt: skip
    """y = conv(x, w) + b, then the fused layers ``act`` (affine, keep, relu,
    slope: see :func:`caffepy.backend.cpu.conv.conv_forward`)."""
    g = pl.geom
    c, m = g.in_channels, g.out_channels
    bias = ws.get("conv.nobias", (0,), x.dtype) if b is None else b
    x4 = x.reshape((g.num, c) + pl.in_sp)
    y4 = y.reshape((g.num, m) + pl.out_sp)
    _convolve(x4, w.reshape(m, c, 3, 3), bias, pl.pad, y4, scratch, act)


def backward_data(
    dy: Array, w: Array, pl: Plan, dx: Array, ws: Workspace, scratch: Workspace
) -> None:
    """dx (overwritten): the convolution of dy with the flipped, transposed
    kernels and padding 2 - pad (the full correlation)."""
    g = pl.geom
    c, m = g.in_channels, g.out_channels
    wt = scratch.get("wino.wt", (c, m, 3, 3), w.dtype)
    np.copyto(wt, w.reshape(m, c, 3, 3).transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
    dy4 = dy.reshape((g.num, m) + pl.out_sp)
    dx4 = dx.reshape((g.num, c) + pl.in_sp)
    pad = (2 - pl.pad[0], 2 - pl.pad[1])
    _convolve(dy4, wt, ws.get("conv.nobias", (0,), dy.dtype), pad, dx4, scratch)


def _convolve(x4, w4, bias, pad, y4, scratch, act: Epilogue | None = None) -> None:
    """y4 = the 3x3, stride-1 convolution of x4 with w4 (Cout, C, 3, 3)."""
    from caffepy.kernels import winograd as _wg

    dtype = x4.dtype
    workers = numba.get_num_threads()
    num, chans = x4.shape[0], x4.shape[1]
    m_out = y4.shape[1]
    tiles = ((y4.shape[2] + 1) // 2) * ((y4.shape[3] + 1) // 2)
    nb = max(1, min(num, TILES // tiles))
    # NOTE: the transformed weights and the chunk's buffers live only within
    # this pass: the calling thread's shared scratch holds them.
    u = scratch.get("wino.u", (16, _wg.plane(m_out * chans)), dtype)
    v = scratch.get("wino.v", (16, _wg.plane(chans * nb * tiles)), dtype)
    m = scratch.get("wino.m", (16, _wg.plane(m_out * nb * tiles)), dtype)
    _wg.transform_weights(w4, workers, u)
    gemm, local = _blas.gemm_address(dtype), _blas.SET_LOCAL_THREADS
    post: Epilogue = act or (np.empty((0, 0), dtype), np.empty(0, dtype), False, 0.0)
    for n0 in range(0, num, nb):
        todo = min(nb, num - n0)
        _wg.conv3x3(
            x4,
            u,
            bias,
            *post,
            pad[0],
            pad[1],
            n0,
            todo,
            gemm,
            local,
            workers,
            v,
            m,
            y4,
        )
