"""The one place for Numba JIT flags.

- ``cache=True``: compiled kernels are reused across processes (start-up ≈ 0.3 s).
- no ``fastmath``: gradient checks need IEEE behaviour.
- the threading layer is set explicitly (OpenMP, overridable with
  ``CAFFEPY_THREADING_LAYER``) so behaviour does not change between machines.
- ``caffepy.set_num_threads`` (the commands' ``--threads``) caps the threads of
  the Numba kernels, the layers' task pool (:mod:`caffepy.kernels.parallel`)
  and the BLAS.
"""

import os

# NOTE: OpenMP workers that spin-wait fight OpenBLAS's threads for the two cores:
# a 5 µs parallel kernel right after a GEMM then takes milliseconds. Passive
# waiting (set before the OpenMP runtime starts) keeps both pools polite.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numba  # noqa: E402

numba.config.THREADING_LAYER = os.environ.get("CAFFEPY_THREADING_LAYER", "omp")

_FLAGS = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")


def njit(*args, **kwargs):
    """``numba.njit`` with caffepy's flags (serial kernel)."""
    opts = dict(_FLAGS, **kwargs)
    if args and callable(args[0]):
        return numba.njit(**opts)(args[0])
    return numba.njit(*args, **opts)


def pjit(*args, **kwargs):
    """``numba.njit(parallel=True)`` with caffepy's flags (use ``numba.prange``)."""
    return njit(*args, parallel=True, **kwargs)


prange = numba.prange


def set_num_threads(n):
    """Threads for Numba kernels, the layers' task pool and the BLAS (1 .. cores)."""
    from caffepy.kernels.parallel import POOL

    n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    POOL.resize(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:  # pragma: no cover
        pass
    return n
