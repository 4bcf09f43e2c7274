"""Launch configuration shared by the kernels (Caffe's ``CAFFE_GET_BLOCKS``)."""

from __future__ import annotations

from typing import Any

from numba.core import config as _numba_config

from caffepy.backend.cuda.memory import import_numba_cuda, simulated

cuda = import_numba_cuda()

# NOTE: small layers launch small grids by design (Caffe's CAFFE_GET_BLOCKS);
# numba's low-occupancy warning would fire on most of them.
_numba_config.CUDA_LOW_OCCUPANCY_WARNINGS = False  # type: ignore[attr-defined]  # set at runtime

#: Threads per block on a GPU (Caffe's CAFFE_CUDA_NUM_THREADS is 512).
THREADS = 256
#: Blocks at most; the grid-stride loops cover the rest.
MAX_BLOCKS = 4096

# NOTE: the simulator runs every CUDA thread as a Python thread, so a tiny
# launch (one block of a few threads, each striding) keeps tests fast.
_SIM_THREADS = 8


def launch(kernel: Any, n: int, *args: Any) -> None:
    """Run ``kernel[grid, block](*args)`` with enough threads to cover ``n`` items.

    Args:
        kernel: a ``numba.cuda.jit`` kernel whose first argument is ``n``.
        n: number of items of its grid-stride loop.
        *args: the kernel's other arguments.
    """
    if n <= 0:
        return
    if simulated():
        kernel[1, min(n, _SIM_THREADS)](n, *args)
        return
    blocks = min((n + THREADS - 1) // THREADS, MAX_BLOCKS)
    kernel[blocks, THREADS](n, *args)
