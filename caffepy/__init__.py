"""caffepy: Caffe, rebuilt in Python, with pycaffe's API.

    import caffepy
    net = caffepy.Net("deploy.prototxt", caffepy.TEST, weights="model.caffemodel")
    solver = caffepy.get_solver("solver.prototxt"); solver.step(100)
"""

import os as _os

# NOTE: OpenBLAS's threads spin after each GEMM and fight the kernels' threads for
# the cores; a short timeout (set before numpy loads its BLAS) lets them sleep.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from caffepy.blob import Blob  # noqa: E402
from caffepy.errors import CaffepyError  # noqa: E402
from caffepy.layer import TEST, TRAIN, Layer  # noqa: E402
from caffepy.registry import layer_type_list  # noqa: E402
from caffepy.rng import set_random_seed  # noqa: E402

__version__ = "0.1.0"

_LAZY = {
    "Net": "caffepy.net",
    "get_solver": "caffepy.solvers",
    "SGDSolver": "caffepy.solvers",
    "NesterovSolver": "caffepy.solvers",
    "AdaGradSolver": "caffepy.solvers",
    "RMSPropSolver": "caffepy.solvers",
    "AdaDeltaSolver": "caffepy.solvers",
    "AdamSolver": "caffepy.solvers",
    "set_num_threads": "caffepy.kernels.config",
}


def __getattr__(name):
    # NOTE: heavy modules (numba kernels, solvers) load on first use, so
    # `import caffepy` and `caffepy --help` stay fast.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'caffepy' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def set_mode_cpu():
    """pycaffe compatibility: caffepy computes on the CPU."""


def set_device(device_id):  # noqa: ARG001 - pycaffe compatibility
    """pycaffe compatibility: no GPU mode yet."""


__all__ = [
    "Blob", "CaffepyError", "Layer", "Net", "TEST", "TRAIN", "get_solver",
    "layer_type_list", "set_random_seed", "set_mode_cpu",
]
