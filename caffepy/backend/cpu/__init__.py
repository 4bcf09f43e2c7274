"""The CPU backend: NumPy arrays, the Numba kernels of :mod:`caffepy.kernels`,
and the thread policy (chunking, the task pool, per-thread scratch)."""

from __future__ import annotations

from typing import Any

import numpy as np

from caffepy.backend.base import Array, Ops


class CpuOps(Ops):
    """Ops on host memory. Blob arrays are the blob's host (CPU) views."""

    name = "cpu"
    xp = np

    def empty(self, shape: tuple[int, ...], dtype: Any = np.float32) -> Array:
        return np.empty(shape, dtype)

    def zeros(self, shape: tuple[int, ...], dtype: Any = np.float32) -> Array:
        return np.zeros(shape, dtype)

    def copy(self, src: Array, dst: Array) -> None:
        np.copyto(dst, src)

    def to_host(self, arr: Array) -> np.ndarray:
        return arr

    def from_host(self, arr: np.ndarray) -> Array:
        return arr

    def data(self, blob: Any) -> Array:
        return blob.cpu_data()

    def mutable_data(self, blob: Any) -> Array:
        return blob.mutable_cpu_data()

    def diff(self, blob: Any) -> Array:
        return blob.cpu_diff()

    def mutable_diff(self, blob: Any) -> Array:
        return blob.mutable_cpu_diff()

    def asum(self, arr: Array) -> float:
        return float(arr.sum())
