"""Neuron and elementwise ops on the device.

The hot activations (ReLU, Sigmoid, TanH, ELU, BNLL forward, Dropout) are
numba.cuda kernels; PReLU and the rest are the CPU backend's own NumPy ufunc
passes, which NumPy hands to CuPy for CuPy arrays (``__array_ufunc__`` and
``__array_function__``), so they run on the device in the same order.
"""

from __future__ import annotations

import numpy as np

from caffepy.backend.base import Array, Workspace
from caffepy.backend.cpu.neuron import NeuronOps
from caffepy.backend.interface.neuron import NeuronInterface


def _run(name: str, n: int, *args) -> None:
    from caffepy.backend.cuda.kernels import neuron
    from caffepy.backend.cuda.kernels.launch import launch

    launch(getattr(neuron, name), n, *args)


def _flat(a: Array) -> Array:
    return a.reshape(-1)


class CudaNeuronOps(NeuronOps, NeuronInterface):
    """Mixin of :class:`~caffepy.backend.cuda.CudaOps`: the neuron ops."""

    def relu_forward(self, x: Array, negative_slope: float, y: Array) -> None:
        slope = x.dtype.type(negative_slope)
        _run("relu_forward", x.size, _flat(x), slope, _flat(y))

    def relu_backward(
        self, x: Array, dy: Array, negative_slope: float, dx: Array
    ) -> None:
        slope = x.dtype.type(negative_slope)
        _run("relu_backward", x.size, _flat(x), _flat(dy), slope, _flat(dx))

    def sigmoid_forward(self, x: Array, y: Array) -> None:
        _run("sigmoid_forward", x.size, _flat(x), _flat(y))

    def sigmoid_backward(self, y: Array, dy: Array, dx: Array) -> None:
        _run("sigmoid_backward", y.size, _flat(y), _flat(dy), _flat(dx))

    def tanh_forward(self, x: Array, y: Array) -> None:
        _run("tanh_forward", x.size, _flat(x), _flat(y))

    def tanh_backward(self, y: Array, dy: Array, dx: Array) -> None:
        _run("tanh_backward", y.size, _flat(y), _flat(dy), _flat(dx))

    def elu_forward(self, x: Array, alpha: float, y: Array) -> None:
        _run("elu_forward", x.size, _flat(x), x.dtype.type(alpha), _flat(y))

    def elu_backward(
        self, x: Array, y: Array, dy: Array, alpha: float, dx: Array
    ) -> None:
        a = x.dtype.type(alpha)
        _run("elu_backward", x.size, _flat(x), _flat(y), _flat(dy), a, _flat(dx))

    def bnll_forward(self, x: Array, y: Array) -> None:
        _run("bnll_forward", x.size, _flat(x), _flat(y))

    def prelu_forward(self, x: Array, slope: Array, y: Array) -> None:
        a = slope.reshape(1, -1, 1)
        neg = self.xp.minimum(x, 0) * a
        self.xp.maximum(x, 0, out=y)
        y += neg

    def prelu_backward(
        self,
        x: Array,
        dy: Array,
        slope: Array,
        dx: Array | None,
        dslope: Array | None,
        ws: Workspace,
    ) -> None:
        xp = self.xp
        # NOTE: the slope gradient is read before dx is written (dx may be dy).
        if dslope is not None:
            part = (dy * x * (x <= 0)).sum(axis=(0, 2), dtype=np.float64)
            if dslope.size == part.size:
                dslope += part.reshape(dslope.shape).astype(dslope.dtype)
            else:  # one slope shared by every channel
                dslope += part.sum().astype(dslope.dtype)
        if dx is not None:
            factor = xp.where(x > 0, x.dtype.type(1), slope.reshape(1, -1, 1))
            xp.multiply(dy, factor.astype(dx.dtype, copy=False), out=dx)

    def dropout_forward(
        self, x: Array, bits: Array, threshold: int, scale: float, y: Array
    ) -> None:
        self._masked_scale(x, bits, threshold, scale, y)

    def dropout_backward(
        self, dy: Array, bits: Array, threshold: int, scale: float, dx: Array
    ) -> None:
        self._masked_scale(dy, bits, threshold, scale, dx)

    def _masked_scale(
        self, a: Array, bits: Array, threshold: int, scale: float, out: Array
    ) -> None:
        # NOTE: threshold may be 2^32 (keep everything): compare in uint64.
        t = np.uint64(threshold)
        _run("masked_scale", a.size, _flat(a), _flat(bits), t, a.dtype.type(scale),
             _flat(out))  # fmt: skip
