"""Numba kernels: pure functions on arrays (inputs, geometry, preallocated output).

Kernels never see a Blob, a proto or a layer, so a second backend (e.g. CUDA) can
sit beside this package. JIT flags live in :mod:`caffepy.kernels.config`.
"""

from caffepy.kernels.config import njit, pjit, prange, set_num_threads

__all__ = ["njit", "pjit", "prange", "set_num_threads"]
