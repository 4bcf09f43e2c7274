"""Device memory for the CUDA backend: CuPy arrays on a GPU, NumPy arrays under
numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``).

Everything here imports its GPU packages lazily, on first use, so that importing
caffepy (or running it on the CPU) never loads numba.cuda or CuPy.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import numpy as np


def simulated() -> bool:
    """True when numba's CUDA simulator stands in for a GPU."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        return True
    from numba import config

    return bool(getattr(config, "ENABLE_CUDASIM", 0))


def import_numba_cuda() -> ModuleType:
    """``numba.cuda``, importable on NumPy 2.5 as well.

    Raises:
        ImportError: numba's CUDA target (``numba-cuda``) is not installed.
    """
    # NOTE: numba-cuda 0.30 still calls numpy.row_stack, which NumPy 2.5 removed;
    # the alias is exactly the old function.
    if not hasattr(np, "row_stack"):
        np.row_stack = np.vstack
    from numba import cuda

    return cuda


def xp() -> ModuleType:
    """The array module of device arrays: ``numpy`` (simulator) or ``cupy``."""
    if simulated():
        return np
    import cupy

    return cupy


def empty(shape: tuple[int, ...], dtype: Any = np.float32) -> Any:
    return xp().empty(shape, dtype)


def zeros(shape: tuple[int, ...], dtype: Any = np.float32) -> Any:
    return xp().zeros(shape, dtype)


def to_host(arr: Any) -> np.ndarray:
    """A host copy of a device array (NumPy arrays pass through, uncopied)."""
    if isinstance(arr, np.ndarray):
        return arr
    return arr.get()


def to_host_into(src: Any, dst: np.ndarray) -> None:
    """dst[...] = src, device to host."""
    if isinstance(src, np.ndarray):
        np.copyto(dst, src)
    else:
        src.get(out=dst)


def from_host_into(src: np.ndarray, dst: Any) -> None:
    """dst[...] = src, host to device."""
    if isinstance(dst, np.ndarray):
        np.copyto(dst, src)
    else:
        dst.set(np.ascontiguousarray(src))


def from_host(src: np.ndarray) -> Any:
    """A new device array with the contents of a host array."""
    if simulated():
        return np.array(src, copy=True)
    import cupy

    return cupy.asarray(src)


def synchronize() -> None:
    if not simulated():
        import cupy

        cupy.cuda.get_current_stream().synchronize()


def use_device(device_id: int) -> None:
    """Make ``device_id`` current for CuPy allocations and numba.cuda launches."""
    if simulated():
        return
    import cupy

    cupy.cuda.Device(device_id).use()
    import_numba_cuda().select_device(device_id)
