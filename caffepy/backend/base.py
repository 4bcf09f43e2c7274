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

The ops are declared by family, one interface class per module of
:mod:`caffepy.backend.interface` (memory, vision, neuron, common, normalization,
loss, solver); :class:`Ops` gathers them. A backend may leave an op
unimplemented (``NotImplementedError``), and the layer then falls back to the
CPU backend with explicit host syncs (Caffe's ``Forward_gpu`` calling
``Forward_cpu``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from caffepy.backend.interface.common import CommonInterface
from caffepy.backend.interface.loss import LossInterface
from caffepy.backend.interface.neuron import NeuronInterface
from caffepy.backend.interface.normalization import NormalizationInterface
from caffepy.backend.interface.solver import SolverInterface
from caffepy.backend.interface.vision import VisionInterface

Array = Any
"""A backend's array: ``numpy.ndarray`` on the CPU, a device array on CUDA."""


class Workspace:
    """Named work arrays of one backend that grow but never shrink.

    ``ws.get("col", shape, dtype)`` returns an uninitialised array of that shape
    backed by a buffer kept under that name; a later call with a larger size
    reallocates, a smaller one reuses the buffer. One per layer (or per op
    owner), created by :meth:`Ops.workspace`.

    Attributes:
        state: small host values an op keeps between calls on this workspace
            (e.g. which input a convolution's columns were unfolded from, so
            backward can reuse them).
    """

    def __init__(self, ops: Ops):
        self._ops = ops
        self._arrays: dict[tuple[str, str], Array] = {}
        self._views: dict[tuple, Array] = {}
        self.state: dict[str, Any] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: Any = np.float32) -> Array:
        # NOTE: the views handed out are cached by (name, dtype, shape): a layer's
        # steady state asks for the same few every pass, and building a view costs
        # microseconds, a dict lookup a tenth of that.
        try:
            view = self._views.get((name, dtype, shape))
        except TypeError:  # an unhashable shape (a list)
            shape = tuple(shape)
            view = self._views.get((name, dtype, shape))
        if view is not None:
            return view
        size = 1
        for d in shape:
            size *= int(d)
        key = (name, np.dtype(dtype).str)
        buf = self._arrays.get(key)
        if buf is None or buf.size < size:
            buf = self._ops.empty((max(size, 1),), dtype)
            self._arrays[key] = buf
            self._views.clear()  # views of the replaced buffer must not be reused
        view = buf[:size].reshape(shape)
        if len(self._views) >= 256:
            self._views.clear()
        self._views[(name, dtype, shape)] = view
        return view

    @property
    def ops(self) -> Ops:
        """The backend whose arrays this workspace holds."""
        return self._ops

    def zeros(
        self, name: str, shape: tuple[int, ...], dtype: Any = np.float32
    ) -> Array:
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
        self._views.clear()
        self.state.clear()


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


class Ops(
    VisionInterface,
    NeuronInterface,
    CommonInterface,
    NormalizationInterface,
    LossInterface,
    SolverInterface,
):
    """One device's memory and numeric ops. Subclasses: the CPU and CUDA backends.

    Every op is declared, with its docstring, on the family interface it belongs
    to (:mod:`caffepy.backend.interface`); a backend implements them in one mixin
    per family. The memory interface (:class:`MemoryInterface`, the base of every
    family) holds ``name``, ``xp`` and the array and blob accessors.
    """

    #: The GPU this backend computes on (the CUDA backend's); -1 on the host.
    device_id: int = -1

    def workspace(self) -> Workspace:
        return Workspace(self)

    # -- fused pairs: the two ops one after the other, where a backend has no
    # -- kernel of its own
    def conv_forward_fused(
        self,
        x: Array,
        w: Array,
        b: Array | None,
        geom: ConvGeometry,
        y: Array,
        ws: Workspace,
        affine: Array | None,
        keep: Array | None,
        negative_slope: float | None,
    ) -> None:
        self.conv_forward(x, w, b, geom, y, ws)
        if affine is not None:
            y3 = y.reshape(geom.num, geom.out_channels, -1)
            k3 = None if keep is None else keep.reshape(y3.shape)
            mean, std, scale, bias = affine
            self.batch_norm_scale_forward_global(y3, mean, std, scale, bias, k3, y3)
        if negative_slope is not None:
            self.relu_forward(y, negative_slope, y)

    def inner_product_relu_forward(
        self,
        x: Array,
        w: Array,
        b: Array | None,
        transpose: bool,
        y: Array,
        ws: Workspace,
        negative_slope: float,
    ) -> None:
        self.inner_product_forward(x, w, b, transpose, y, ws)
        self.relu_forward(y, negative_slope, y)

    def pool_relu_forward(
        self,
        x: Array,
        geom: PoolGeometry,
        method: str,
        y: Array,
        mask: Array | None,
        ws: Workspace,
        negative_slope: float,
    ) -> None:
        self.pool_forward(x, geom, method, y, mask, ws)
        self.relu_forward(y, negative_slope, y)

    def eltwise_sum_relu_forward(
        self, xs: list[Array], coeffs: list[float], y: Array, negative_slope: float
    ) -> None:
        self.eltwise_forward(xs, 1, coeffs, y, None)  # 1: SUM
        self.relu_forward(y, negative_slope, y)

    def supports(self, layer: Any) -> bool:
        """Whether ``layer`` runs natively here (every op in its ``uses_ops``
        implemented); always on the CPU, which implements every op."""
        return True
