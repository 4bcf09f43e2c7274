"""The op interface every backend implements, and the one workspace mechanism.

Conventions for every op:

- Arguments are arrays of the backend's own kind (``ops.data(blob)`` and
  friends, ``ops.empty``), never Blobs, protos or layers: inputs first, geometry
  and scalars next, outputs last.
- An op *assigns* its outputs, except parameter gradients (``dw``, ``db``,
  ...), which it *accumulates* (Caffe's ``param_propagate_down`` contract). An
  output given as ``None`` is not wanted and is not computed.
- Scratch memory comes from a :class:`Workspace` the caller owns (one per layer),
  so steady-state training allocates nothing.

Sections below name the layer families they serve; a backend may leave an op
unimplemented (``NotImplementedError``), and the layer then falls back to the
CPU backend with explicit host syncs (Caffe's ``Forward_gpu`` calling
``Forward_cpu``).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

Array = Any
"""A backend's array: ``numpy.ndarray`` on the CPU, a device array on CUDA."""


class Workspace:
    """Named work arrays of one backend that grow but never shrink.

    ``ws.get("col", shape, dtype)`` returns an uninitialised array of that shape
    backed by a buffer kept under that name; a later call with a larger size
    reallocates, a smaller one reuses the buffer. One per layer (or per op
    owner), created by :meth:`Ops.workspace`.
    """

    def __init__(self, ops: Ops):
        self._ops = ops
        self._arrays: dict[tuple[str, str], Array] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: Any = np.float32) -> Array:
        size = 1
        for d in shape:
            size *= int(d)
        key = (name, np.dtype(dtype).str)
        buf = self._arrays.get(key)
        if buf is None or buf.size < size:
            buf = self._ops.empty((max(size, 1),), dtype)
            self._arrays[key] = buf
        return buf[:size].reshape(shape)

    def zeros(self, name: str, shape: tuple[int, ...], dtype: Any = np.float32) -> Array:
        arr = self.get(name, shape, dtype)
        arr[...] = 0
        return arr

    def keep(self, name: str, src: Array) -> Array:
        """A copy of ``src`` kept under ``name`` (the input of an in-place layer,
        needed again by backward)."""
        dst = self.get(name, src.shape, src.dtype)
        self._ops.copy(src, dst)
        return dst

    def clear(self) -> None:
        self._arrays.clear()


@dataclass(frozen=True)
class ConvGeometry:
    """The geometry of a (de)convolution in its GEMM view.

    A convolution maps a *conv input* (``in_channels`` x ``in_spatial``) to a
    *conv output* (``out_channels`` x ``out_spatial``) with weights
    ``(out_channels, in_channels // group, *kernel)``. Deconvolution swaps the
    roles (its forward is convolution's backward-data), as Caffe's
    ``reverse_dimensions()``. Spatial tuples have one entry per spatial axis.
    """

    num: int
    in_channels: int
    out_channels: int
    in_spatial: tuple[int, ...]
    out_spatial: tuple[int, ...]
    kernel: tuple[int, ...]
    pad: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    group: int

    @property
    def is_1x1(self) -> bool:
        return (
            all(k == 1 for k in self.kernel)
            and all(s == 1 for s in self.stride)
            and all(p == 0 for p in self.pad)
        )


@dataclass(frozen=True)
class PoolGeometry:
    """Pooling windows over (N, C, H, W): kernel, stride, pad and the pooled size
    (Caffe's ceil rounding, last window clipped)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int]
    pooled: tuple[int, int]


class Ops:
    """One device's memory and numeric ops. Subclasses: the CPU and CUDA backends.

    Attributes:
        name: ``"cpu"`` or ``"cuda"``.
        xp: the array module of this backend's arrays (``numpy``, or ``cupy``),
            for small array expressions that need no kernel of their own.
    """

    name: str = "abstract"
    xp: ModuleType = np

    # -- memory and blob access -------------------------------------------------
    def empty(self, shape: tuple[int, ...], dtype: Any = np.float32) -> Array:
        raise NotImplementedError

    def zeros(self, shape: tuple[int, ...], dtype: Any = np.float32) -> Array:
        raise NotImplementedError

    def copy(self, src: Array, dst: Array) -> None:
        """dst[...] = src (same shape and backend)."""
        raise NotImplementedError

    def to_host(self, arr: Array) -> np.ndarray:
        raise NotImplementedError

    def from_host(self, arr: np.ndarray) -> Array:
        raise NotImplementedError

    def workspace(self) -> Workspace:
        return Workspace(self)

    def data(self, blob: Any) -> Array:
        """The blob's data on this device, for reading."""
        raise NotImplementedError

    def mutable_data(self, blob: Any) -> Array:
        """The blob's data on this device, to be written (this device becomes its
        head)."""
        raise NotImplementedError

    def diff(self, blob: Any) -> Array:
        raise NotImplementedError

    def mutable_diff(self, blob: Any) -> Array:
        raise NotImplementedError

    def asum(self, arr: Array) -> float:
        """sum(arr) as a Python float (the one device-to-host read of a loss)."""
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on the CPU)."""

    # -- vision: convolution, deconvolution, inner product, pooling, im2col ------
    # (owned by the vision work; insert methods below this line)

    # -- neuron and elementwise ----------------------------------------------------
    # (owned by the neuron/common work; insert methods below this line)

    # -- normalization: LRN, BatchNorm, MVN, Scale/Bias reductions -----------------
    # (owned by the normalization work; insert methods below this line)

    # -- softmax and losses ------------------------------------------------------
    # (owned by the loss work; insert methods below this line)

    # -- solver update rules -----------------------------------------------------
    # (owned by the solver work; insert methods below this line)
