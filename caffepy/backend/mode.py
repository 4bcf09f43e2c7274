"""Caffe's process-wide mode: CPU or GPU, and the GPU's device id."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from caffepy.backend.base import Ops

CPU = "CPU"
GPU = "GPU"


@dataclass
class _State:
    """The process-wide mode (``CPU`` or ``GPU``), the GPU's device id, and whether
    GPU training may replay its iterations from a CUDA graph."""

    mode: str = CPU
    device: int = 0
    cuda_graph: bool = True


_state = _State()
_backends: dict[str, Ops] = {}
# NOTE: the CPU fallback of one layer (Caffe's Forward_gpu -> Forward_cpu) is
# per thread, so a data prefetch thread keeps the mode it was started in.
_local = threading.local()


def get_mode() -> str:
    return _state.mode


def get_device() -> int:
    return _state.device


def set_mode_cpu() -> None:
    """Compute on the CPU (pycaffe's ``caffe.set_mode_cpu()``)."""
    _state.mode = CPU


def set_mode_gpu() -> None:
    """Compute on the GPU of :func:`set_device` (pycaffe's ``caffe.set_mode_gpu()``).

    Raises:
        GpuUnavailableError: no CUDA device, or the GPU packages are missing
            (``pip install 'caffepy[gpu]'``); never a silent CPU run.
    """
    from caffepy.backend import cuda

    cuda.check_available(_state.device)
    _state.mode = GPU


def set_device(device_id: int) -> None:
    """Choose the GPU used in GPU mode (pycaffe's ``caffe.set_device(i)``)."""
    _state.device = int(device_id)
    if _state.mode == GPU:
        from caffepy.backend import cuda

        cuda.check_available(_state.device)


def set_cuda_graph(on: bool) -> None:
    """Allow (default) or forbid replaying GPU training iterations from a CUDA
    graph; ``CAFFEPY_CUDA_GRAPH=0`` in the environment forbids it as well."""
    _state.cuda_graph = bool(on)


def cuda_graph_allowed() -> bool:
    """False when :func:`set_cuda_graph` or ``CAFFEPY_CUDA_GRAPH=0`` turned CUDA
    graphs off."""
    env = os.environ.get("CAFFEPY_CUDA_GRAPH", "1").strip().lower()
    return _state.cuda_graph and env not in ("0", "", "off", "false", "no")


def ops() -> Ops:
    """The backend of the current mode (the CPU inside :func:`cpu_fallback`)."""
    mode = _state.mode
    if mode == GPU and getattr(_local, "fallback", 0) != 0:
        return cpu_ops()
    backend = _backends.get(mode)
    if backend is None:
        if mode == CPU:
            from caffepy.backend.cpu import CpuOps

            backend = CpuOps()
        else:
            from caffepy.backend.cuda import CudaOps

            backend = CudaOps(_state.device)
        _backends[mode] = backend
    elif mode == GPU and backend.device_id != _state.device:
        from caffepy.backend.cuda import CudaOps

        backend = _backends[mode] = CudaOps(_state.device)
    return backend


def is_gpu() -> bool:
    """True in GPU mode."""
    return _state.mode == GPU


def cpu_ops() -> Ops:
    """The CPU backend, whatever the mode (for CPU fallbacks)."""
    backend = _backends.get(CPU)
    if backend is None:
        from caffepy.backend.cpu import CpuOps

        backend = _backends[CPU] = CpuOps()
    return backend


@contextlib.contextmanager
def cpu_fallback() -> Iterator[Ops]:
    """Run a layer's hooks on the CPU backend in GPU mode (Caffe's ``Forward_gpu``
    defaulting to ``Forward_cpu``): :func:`ops` returns the CPU backend inside,
    and the blobs sync to the host through their CPU accessors."""
    _local.fallback = getattr(_local, "fallback", 0) + 1
    try:
        yield cpu_ops()
    finally:
        _local.fallback -= 1


def runs_on_gpu(layer: object) -> bool:
    """True when ``layer`` runs natively in the current mode's GPU backend."""
    if _state.mode != GPU:
        return False
    return ops().supports(layer)
