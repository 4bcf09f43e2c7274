"""caffepy: Caffe, rebuilt in Python, with pycaffe's API.

import caffepy
net = caffepy.Net("deploy.prototxt", caffepy.TEST, weights="model.caffemodel")
solver = caffepy.get_solver("solver.prototxt"); solver.step(100)
"""

import os as _os

# NOTE: OpenBLAS's threads spin after each GEMM and fight the kernels' threads for
# the cores; a short timeout (set before numpy loads its BLAS) lets them sleep.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from caffepy.errors import CaffepyError  # noqa: E402
from caffepy.phase import TEST, TRAIN  # noqa: E402

__version__ = "0.1.0"

_LAZY = {
    "Blob": "caffepy.blob",
    "Layer": "caffepy.layer",
    "layer_type_list": "caffepy.registry",
    "set_random_seed": "caffepy.rng",
    "Net": "caffepy.net",
    "get_solver": "caffepy.solvers",
    "SGDSolver": "caffepy.solvers",
    "NesterovSolver": "caffepy.solvers",
    "AdaGradSolver": "caffepy.solvers",
    "RMSPropSolver": "caffepy.solvers",
    "AdaDeltaSolver": "caffepy.solvers",
    "AdamSolver": "caffepy.solvers",
    "set_num_threads": "caffepy.kernels.config",
    "solver_count": "caffepy.parallel.state",
    "solver_rank": "caffepy.parallel.state",
    "set_multiprocess": "caffepy.parallel.state",
}


def __getattr__(name):
    # NOTE: heavy modules (numpy, numba kernels, solvers) load on first use, so
    # `import caffepy` and `caffepy --help` stay fast.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'caffepy' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def set_mode_cpu():
    """Compute on the CPU (pycaffe's ``caffe.set_mode_cpu()``)."""
    from caffepy.backend import mode

    mode.set_mode_cpu()


def set_mode_gpu():
    """Compute on the GPU of :func:`set_device` (pycaffe's ``caffe.set_mode_gpu()``).

    Raises:
        GpuUnavailableError: no CUDA device or no GPU packages (one line).
    """
    from caffepy.backend import mode

    mode.set_mode_gpu()


def set_device(device_id):
    """Choose the GPU used in GPU mode (pycaffe's ``caffe.set_device(i)``)."""
    from caffepy.backend import mode

    mode.set_device(device_id)


__all__ = [
    "Blob",
    "CaffepyError",
    "Layer",
    "Net",
    "TEST",
    "TRAIN",
    "get_solver",
    "layer_type_list",
    "set_random_seed",
    "set_mode_cpu",
    "set_mode_gpu",
    "set_device",
]
