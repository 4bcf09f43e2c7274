"""SyncedMemory: one flat buffer that lives on the host, the device, or both.

Caffe's ``SyncedMemory``: the *head* says where the valid copy is, and a copy is
made only when an accessor needs the other side::

    UNINITIALIZED --cpu_data/mutable_cpu_data--> HEAD_AT_CPU
    UNINITIALIZED --gpu_data/mutable_gpu_data--> HEAD_AT_GPU
    HEAD_AT_CPU   --gpu_data--> SYNCED (host->device copy)
    HEAD_AT_GPU   --cpu_data--> SYNCED (device->host copy)
    any           --mutable_cpu_data--> HEAD_AT_CPU (copy first if the head was GPU)
    any           --mutable_gpu_data--> HEAD_AT_GPU (copy first if the head was CPU)

Both sides are allocated lazily and zero-filled on first use, so CPU-only use
never imports numba.cuda or CuPy. The device side comes from
:mod:`caffepy.backend.cuda.memory` (CuPy arrays on a GPU, NumPy arrays under
numba's CUDA simulator).

Every host<->device copy is counted process-wide (:func:`copy_counts`), so tests
can prove what a GPU iteration moves.
"""

from __future__ import annotations

from typing import Any

import numpy as np

UNINITIALIZED = "UNINITIALIZED"
HEAD_AT_CPU = "HEAD_AT_CPU"
HEAD_AT_GPU = "HEAD_AT_GPU"
SYNCED = "SYNCED"

_counts = {"h2d": 0, "d2h": 0, "h2d_bytes": 0, "d2h_bytes": 0}


def copy_counts() -> dict[str, int]:
    """Host->device and device->host copies (and bytes) since the last reset.

    Returns:
        A new dict with keys ``h2d``, ``d2h``, ``h2d_bytes``, ``d2h_bytes``.
    """
    return dict(_counts)


def reset_copy_counts() -> None:
    """Zero the copy counters."""
    for key in _counts:
        _counts[key] = 0


def count_copy(direction: str, nbytes: int) -> None:
    """Record one copy made outside a SyncedMemory (a loss read, a batch upload).

    Args:
        direction: ``"h2d"`` or ``"d2h"``.
        nbytes: bytes moved.
    """
    _counts[direction] += 1
    _counts[direction + "_bytes"] += int(nbytes)


def _device_memory():
    from caffepy.backend.cuda import memory

    return memory


class SyncedMemory:
    """A flat buffer of ``size`` elements of ``dtype``, synced between host and device.

    Args:
        size: number of elements (the buffer never changes size).
        dtype: NumPy dtype of the elements.

    Attributes:
        head: one of ``UNINITIALIZED``, ``HEAD_AT_CPU``, ``HEAD_AT_GPU``, ``SYNCED``.
    """

    __slots__ = ("size", "dtype", "head", "_cpu", "_gpu")

    def __init__(self, size: int, dtype: Any = np.float32):
        self.size = int(size)
        self.dtype = np.dtype(dtype)
        self.head = UNINITIALIZED
        self._cpu: np.ndarray | None = None
        self._gpu: Any = None

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def has_cpu(self) -> bool:
        return self._cpu is not None

    @property
    def has_gpu(self) -> bool:
        return self._gpu is not None

    # -- moving the head ---------------------------------------------------------
    def _to_cpu(self) -> np.ndarray:
        head = self.head
        if head is HEAD_AT_CPU or head is SYNCED:
            return self._cpu
        if self._cpu is None:
            self._cpu = np.zeros(self.size, self.dtype)
        if head is UNINITIALIZED:
            self.head = HEAD_AT_CPU
        else:  # HEAD_AT_GPU
            _device_memory().to_host_into(self._gpu, self._cpu)
            count_copy("d2h", self.nbytes)
            self.head = SYNCED
        return self._cpu

    def _to_gpu(self) -> Any:
        head = self.head
        if head is HEAD_AT_GPU or head is SYNCED:
            return self._gpu
        mem = _device_memory()
        if self._gpu is None:
            self._gpu = mem.zeros((self.size,), self.dtype)
        if head is UNINITIALIZED:
            self.head = HEAD_AT_GPU
        else:  # HEAD_AT_CPU
            mem.from_host_into(self._cpu, self._gpu)
            count_copy("h2d", self.nbytes)
            self.head = SYNCED
        return self._gpu

    # -- Caffe's accessors ---------------------------------------------------------
    def cpu_data(self) -> np.ndarray:
        """The host buffer, for reading (copies device->host if the head is GPU)."""
        return self._to_cpu()

    def mutable_cpu_data(self) -> np.ndarray:
        """The host buffer, to be written: the host becomes the head."""
        buf = self._to_cpu()
        self.head = HEAD_AT_CPU
        return buf

    def gpu_data(self) -> Any:
        """The device buffer, for reading (copies host->device if the head is CPU)."""
        return self._to_gpu()

    def mutable_gpu_data(self) -> Any:
        """The device buffer, to be written: the device becomes the head."""
        buf = self._to_gpu()
        self.head = HEAD_AT_GPU
        return buf

    def set_cpu_data(self, arr: np.ndarray) -> None:
        """Adopt ``arr`` (flat, ``size`` elements) as the host buffer; head = CPU."""
        if arr.size != self.size or arr.dtype != self.dtype:
            raise ValueError(
                f"set_cpu_data: {arr.size} x {arr.dtype} given, "
                f"{self.size} x {self.dtype} expected"
            )
        self._cpu = arr.reshape(-1)
        self.head = HEAD_AT_CPU

    def __repr__(self) -> str:
        return f"SyncedMemory(size={self.size}, dtype={self.dtype.name}, {self.head})"
