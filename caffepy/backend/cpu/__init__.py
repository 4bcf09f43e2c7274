"""The CPU backend: NumPy arrays, the Numba kernels of :mod:`caffepy.kernels`,
and the thread policy (chunking, the task pool, per-thread scratch)."""

from __future__ import annotations

from typing import Any

import numpy as np

from caffepy.backend.base import Array, Ops
from caffepy.backend.cpu.common import CommonOps
from caffepy.backend.cpu.loss import LossOps
from caffepy.backend.cpu.neuron import NeuronOps
from caffepy.backend.cpu.normalization import NormalizationOps
from caffepy.backend.cpu.solver import SolverOps
from caffepy.backend.cpu.vision import VisionOps

#: Elements from which :meth:`CpuOps.copy` runs in parallel.
_PARALLEL_COPY = 1 << 16


class CpuOps(
    VisionOps, SolverOps, NeuronOps, NormalizationOps, CommonOps, LossOps, Ops
):
    """Ops on host memory. Blob arrays are the blob's host (CPU) views."""

    name = "cpu"
    xp = np

    def empty(self, shape: tuple[int, ...], dtype: Any = np.float32) -> Array:
        return np.empty(shape, dtype)

    def zeros(self, shape: tuple[int, ...], dtype: Any = np.float32) -> Array:
        return np.zeros(shape, dtype)

    def copy(self, src: Array, dst: Array) -> None:
        # NOTE: large contiguous copies (the input an in-place Scale or LRN keeps
        # for backward) run on every kernel thread; small ones are not worth it.
        if (
            src.size >= _PARALLEL_COPY
            and src.dtype == dst.dtype
            and src.flags.c_contiguous
            and dst.flags.c_contiguous
        ):
            from caffepy.kernels.neuron import copy

            copy(src.reshape(-1), dst.reshape(-1))
        else:
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
