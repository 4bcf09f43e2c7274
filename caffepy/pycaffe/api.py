"""pycaffe's top-level names, served by caffepy: what ``import caffe`` exports.

Net, the solvers, Layer, Blob, TRAIN/TEST, the mode and device functions, the
layer registry, and the smaller helpers of pycaffe's C++ module: ``Timer``,
``init_log``/``log``, the single-process ``solver_count``/``solver_rank``
values, ``has_nccl``/``NCCL``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from caffepy import __version__, set_device, set_mode_cpu, set_mode_gpu
from caffepy.blob import Blob
from caffepy.errors import CaffepyError
from caffepy.layer import Layer
from caffepy.net import Net
from caffepy.parallel.state import (
    set_multiprocess,
    set_solver_count,
    set_solver_rank,
    solver_count,
    solver_rank,
)
from caffepy.phase import TEST, TRAIN
from caffepy.pycaffe import io
from caffepy.pycaffe.classifier import Classifier
from caffepy.pycaffe.detector import Detector
from caffepy.pycaffe.net_spec import NetSpec, layers, params, to_proto
from caffepy.registry import layer_type_list
from caffepy.rng import set_random_seed
from caffepy.solvers import (
    AdaDeltaSolver,
    AdaGradSolver,
    AdamSolver,
    NesterovSolver,
    RMSPropSolver,
    SGDSolver,
    Solver,
    get_solver,
)

_log = logging.getLogger("caffepy")

# glog's severities, as pycaffe's init_log(level) takes them.
_GLOG_LEVELS = {
    0: logging.INFO,
    1: logging.WARNING,
    2: logging.ERROR,
    3: logging.CRITICAL,
}


def get_solver_from_file(path: str) -> Solver:
    """The solver a solver prototxt asks for (pycaffe's older name of
    :func:`get_solver`)."""
    return get_solver(path)


def init_log(level: int = 0, stderr: bool = True) -> None:
    """Log caffepy's messages in glog format from glog severity ``level`` on
    (0 INFO, 1 WARNING, 2 ERROR, 3 FATAL), to stderr."""
    from caffepy.tools.glog import setup_logging

    if level not in _GLOG_LEVELS:
        raise CaffepyError(f"init_log: level must be 0, 1, 2 or 3, got {level!r}")
    setup_logging()
    _log.setLevel(_GLOG_LEVELS[level])
    for handler in _log.handlers:
        handler.setLevel(_GLOG_LEVELS[level])


def log(message: str) -> None:
    """Write ``message`` to caffepy's log at INFO (pycaffe's ``caffe.log``)."""
    _log.info("%s", message)


class Timer:
    """A wall-clock timer: ``start()``, ``stop()``, ``ms`` (milliseconds between
    the last start and stop; reading it stops a running timer, as Caffe's)."""

    def __init__(self) -> None:
        self._start: float | None = None
        self._elapsed = 0.0
        self.running = False

    def start(self) -> None:
        self._start = time.perf_counter()
        self.running = True

    def stop(self) -> None:
        if self.running and self._start is not None:
            self._elapsed = time.perf_counter() - self._start
            self.running = False

    @property
    def ms(self) -> float:
        if self._start is None:
            _log.warning("Timer has never been run before reading time.")
            return 0.0
        self.stop()
        return self._elapsed * 1e3

    @property
    def seconds(self) -> float:
        return self.ms / 1e3


def has_nccl() -> bool:
    """Whether :class:`NCCL` can work here: CuPy's NCCL bindings import and a
    CUDA GPU exists (never on CPUs or under numba's CUDA simulator)."""
    from caffepy.parallel import nccl

    return nccl.has_nccl()


class NCCL:
    """pycaffe's ``caffe.NCCL(solver, uid)``: sums a solver's gradients over the
    processes that share ``uid`` (one process per GPU), with NCCL on the
    devices, and scales them by 1/solver_count.

    As BVLC's ``python/train.py``: in each process ``set_device``,
    ``set_solver_count(n)``, ``set_solver_rank(r)``, ``set_multiprocess(True)``;
    build the solver; ``nccl = caffe.NCCL(solver, uid)`` with the
    ``caffe.NCCL.new_uid()`` the parent made; ``nccl.bcast()`` (rank 0's
    weights everywhere); ``solver.add_callback(nccl)``; with
    ``layer_wise_reduce``, ``solver.net.after_backward(nccl)`` too; then
    ``solver.step(...)``. Caffe's one-process form (no ``uid``) is for one
    rank only here.

    Raises:
        CaffepyError: no NCCL here (CPUs, no CuPy, the simulator), or no
            ``uid`` with more than one solver.
    """

    def __init__(self, solver: Any = None, uid: bytes | None = None) -> None:
        from caffepy.parallel import nccl

        if not nccl.has_nccl():
            raise CaffepyError(
                f"caffe.NCCL cannot run here: {nccl.NO_NCCL}; caffe.has_nccl() is "
                "False. On CPUs, train with `mpiexec -n N caffepy train --solver S`"
            )
        if solver is None:
            raise CaffepyError("caffe.NCCL(solver, uid): give the solver to reduce")
        count, rank = solver_count(), solver_rank()
        if uid is None:
            if count > 1:
                raise CaffepyError(
                    f"caffe.NCCL(solver) without a uid is Caffe's one-process "
                    f"multi-GPU form; caffepy runs one process per GPU: give each "
                    f"of the {count} processes caffe.NCCL(solver, uid) with the same "
                    "caffe.NCCL.new_uid()"
                )
            uid = nccl.new_uid()
        self.solver = solver
        self._reducer = nccl.NcclReducer(
            nccl.open_comm(count, uid, rank), solver.net, solver.dtype
        )

    @staticmethod
    def new_uid() -> bytes:
        """A new NCCL id (bytes) to hand to every process of the run."""
        from caffepy.parallel import nccl

        return nccl.new_uid()

    def bcast(self) -> None:
        """Copy rank 0's weights to every rank (device to device)."""
        self._reducer.bcast_params()

    def on_start(self) -> None:
        """Solver callback: an iteration starts."""
        self._reducer._done = set()

    def on_gradients_ready(self) -> None:
        """Solver callback: sum what is not summed yet, scale by 1/N."""
        self._reducer.reduce()

    def __call__(self, layer: int) -> None:
        """Net ``after_backward`` hook: start the reduction of ``layer``'s
        parameters (``layer_wise_reduce``)."""
        self._reducer.on_layer(layer)


__all__ = [
    "AdaDeltaSolver",
    "AdaGradSolver",
    "AdamSolver",
    "Blob",
    "Classifier",
    "Detector",
    "Layer",
    "NCCL",
    "Net",
    "NesterovSolver",
    "NetSpec",
    "RMSPropSolver",
    "SGDSolver",
    "Solver",
    "TEST",
    "TRAIN",
    "Timer",
    "__version__",
    "get_solver",
    "get_solver_from_file",
    "has_nccl",
    "init_log",
    "io",
    "layer_type_list",
    "layers",
    "log",
    "params",
    "set_device",
    "set_mode_cpu",
    "set_mode_gpu",
    "set_multiprocess",
    "set_random_seed",
    "set_solver_count",
    "set_solver_rank",
    "solver_count",
    "solver_rank",
    "to_proto",
]
