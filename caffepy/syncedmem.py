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

While a net is built, an :class:`AllocationBudget` (:func:`allocation_budget`)
counts the bytes of every blob as its shape becomes known, before anything is
allocated, and refuses the blob that would not fit in the available memory.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
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

    @property
    def host_buffer(self) -> np.ndarray | None:
        """The host buffer as it is (None when not allocated); no sync, no
        allocation."""
        return self._cpu

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


# -- the allocation budget of a net build ------------------------------------------
#: Environment variable that sets the memory a net may use, in bytes (``K``, ``M``
#: or ``G`` suffixes allowed), instead of /proc/meminfo's MemAvailable.
MEMORY_LIMIT_ENV = "CAFFEPY_MEMORY_LIMIT"

_SUFFIXES = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def format_size(n: int) -> str:
    """Bytes as a short human-readable size (1.5 GiB, 12.0 MiB, 3 kB)."""
    if n >= 2**30:
        return f"{n / 2**30:.1f} GiB"
    if n >= 2**20:
        return f"{n / 2**20:.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.0f} kB"
    return f"{n} B"


def mem_available() -> int | None:
    """MemAvailable from /proc/meminfo in bytes, or None where there is none."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def memory_limit() -> int | None:
    """The bytes a net may allocate: ``CAFFEPY_MEMORY_LIMIT`` when set, else
    MemAvailable; None when neither is known (no check).

    Raises:
        ResourceError: ``CAFFEPY_MEMORY_LIMIT`` is not a size.
    """
    text = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    if not text:
        return mem_available()
    body = text.upper().removesuffix("IB").removesuffix("B")
    unit = body[-1:] if body[-1:] in _SUFFIXES else ""
    try:
        value = float(body[: len(body) - len(unit)])
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        from caffepy.errors import ResourceError

        raise ResourceError(
            f"{MEMORY_LIMIT_ENV}={text!r} is not a size; expected bytes, "
            "optionally with K, M or G (e.g. 512M)"
        )
    return int(value * _SUFFIXES[unit])


class AllocationBudget:
    """The bytes a net build may still allocate, counted blob by blob as shapes
    become known (before SyncedMemory allocates anything).

    Args:
        limit: bytes available, or None to count without refusing.

    Attributes:
        used: bytes of the blobs reserved so far.
        layer: the layer being built, as errors name it (``Type layer 'name'``).
        by_layer: bytes reserved per layer.
    """

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.used = 0
        self.layer: str | None = None
        self.by_layer: dict[str, int] = {}

    def reserve(
        self, nbytes: int, shape: tuple[int, ...], dtype: Any, scratch: int = 0
    ) -> None:
        """Count a blob of ``shape`` (``nbytes``) for the current layer.

        Args:
            nbytes: the blob's bytes, kept.
            shape, dtype: the blob's, for the message.
            scratch: bytes needed only while the blob is filled (a filler's
                values), checked but not kept.

        Raises:
            ResourceError: the net would then need more than ``limit`` bytes.
        """
        total = self.used + nbytes
        if self.limit is not None and total + scratch > self.limit:
            self._refuse(nbytes, total, scratch, shape, dtype)
        self.used = total
        if self.layer is not None:
            self.by_layer[self.layer] = self.by_layer.get(self.layer, 0) + nbytes

    def release(self, nbytes: int) -> None:
        """Give back the bytes of a blob memory dropped before it was allocated
        (a top that shares its bottom's data, a buffer replaced by a bigger one)."""
        self.used = max(0, self.used - nbytes)
        if self.layer in self.by_layer:
            self.by_layer[self.layer] = max(0, self.by_layer[self.layer] - nbytes)

    def _refuse(self, nbytes, total, scratch, shape, dtype):
        from caffepy.errors import ResourceError

        name = np.dtype(dtype).name
        msg = (
            f"a blob of shape {shape} ({name}) needs {nbytes} bytes "
            f"({format_size(nbytes)})"
        )
        if scratch:
            msg += f" and {format_size(nbytes + scratch)} while it is filled"
        if self.used * 100 >= total:  # (not when the rest is negligible)
            msg += (
                f"; with the {format_size(self.used)} of blobs and parameters "
                f"before it, the net would need {format_size(total + scratch)}"
            )
        src = os.environ.get(MEMORY_LIMIT_ENV) and MEMORY_LIMIT_ENV or "MemAvailable"
        msg += (
            f", more than the {format_size(self.limit)} of memory available "
            f"({src}); refused before allocating it: make the layer or the batch "
            "smaller"
        )
        if self.by_layer:
            big, size = max(self.by_layer.items(), key=lambda kv: kv[1])
            if big != self.layer and size > nbytes:
                msg += f" (the largest layer so far is {big}, {format_size(size)})"
        raise ResourceError(msg)


_local = threading.local()


def current_budget() -> AllocationBudget | None:
    """The budget of the net being built in this thread, or None."""
    return getattr(_local, "budget", None)


@contextlib.contextmanager
def allocation_budget() -> Iterator[AllocationBudget]:
    """Count (and refuse) the blobs built in this thread: a new budget of
    :func:`memory_limit` bytes, read once, or the enclosing build's budget (a
    net built inside a layer, as the recurrent layers' unrolled nets)."""
    budget = current_budget()
    if budget is not None:
        layer = budget.layer
        try:
            yield budget
        finally:
            budget.layer = layer
        return
    _local.budget = budget = AllocationBudget(memory_limit())
    try:
        yield budget
    finally:
        _local.budget = None
