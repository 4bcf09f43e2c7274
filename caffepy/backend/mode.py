"""Caffe's process-wide mode: CPU or GPU, and the GPU's device id."""

from __future__ import annotations

from caffepy.backend.base import Ops

CPU = "CPU"
GPU = "GPU"

_state = {"mode": CPU, "device": 0}
_backends: dict[str, Ops] = {}


def get_mode() -> str:
    return _state["mode"]


def get_device() -> int:
    return _state["device"]


def set_mode_cpu() -> None:
    """Compute on the CPU (pycaffe's ``caffe.set_mode_cpu()``)."""
    _state["mode"] = CPU


def set_mode_gpu() -> None:
    """Compute on the GPU of :func:`set_device` (pycaffe's ``caffe.set_mode_gpu()``).

    Raises:
        GpuUnavailableError: no CUDA device, or the GPU packages are missing
            (``pip install 'caffepy[gpu]'``); never a silent CPU run.
    """
    from caffepy.backend import cuda

    cuda.check_available(_state["device"])
    _state["mode"] = GPU


def set_device(device_id: int) -> None:
    """Choose the GPU used in GPU mode (pycaffe's ``caffe.set_device(i)``)."""
    _state["device"] = int(device_id)
    if _state["mode"] == GPU:
        from caffepy.backend import cuda

        cuda.check_available(_state["device"])


def ops() -> Ops:
    """The backend of the current mode."""
    mode = _state["mode"]
    backend = _backends.get(mode)
    if backend is None:
        if mode == CPU:
            from caffepy.backend.cpu import CpuOps

            backend = CpuOps()
        else:
            from caffepy.backend.cuda import CudaOps

            backend = CudaOps(_state["device"])
        _backends[mode] = backend
    return backend


def cpu_ops() -> Ops:
    """The CPU backend, whatever the mode (for CPU fallbacks)."""
    backend = _backends.get(CPU)
    if backend is None:
        from caffepy.backend.cpu import CpuOps

        backend = _backends[CPU] = CpuOps()
    return backend
