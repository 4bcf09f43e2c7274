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


_streams: dict[int, Any] = {}
_cupy: Any = None


def _sync_config() -> None:
    # NOTE: every launch goes to the current CuPy stream, so numba's per-argument
    # synchronisation on a CuPy array's stream (__cuda_array_interface__ v3)
    # would only add host syncs, and a sync during CUDA graph capture aborts it.
    for mod in ("numba.core.config", "numba.cuda.core.config"):
        try:
            cfg = __import__(mod, fromlist=["_"])
        except ImportError:
            continue
        setattr(cfg, "CUDA_ARRAY_INTERFACE_SYNC", False)  # noqa: B010 - set at runtime


def current_stream() -> Any:
    """The numba stream of the current CuPy stream (0: the default stream), so
    kernels and CuPy work stay ordered, and a captured stream captures both."""
    global _cupy
    if _cupy is None:
        import cupy

        _cupy = cupy
        _sync_config()
    ptr = _cupy.cuda.get_current_stream().ptr
    if ptr == 0:
        return 0
    stream = _streams.get(ptr)
    if stream is None:
        stream = _streams[ptr] = cuda.external_stream(ptr)
    return stream


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
    kernel[blocks, THREADS, current_stream()](n, *args)
