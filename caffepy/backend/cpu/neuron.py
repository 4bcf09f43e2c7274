"""Neuron ops on the CPU: the Numba kernels of :mod:`caffepy.kernels.neuron` for
the hot ones (ReLU, PReLU, Dropout), NumPy ufuncs writing into the output for
the rest.

NOTE: every expression here is the one the layers used before the op boundary,
in the same order of floating-point operations, so results are bit-identical.
"""

from __future__ import annotations

import numpy as np

from caffepy.backend.base import Array, Workspace
from caffepy.kernels import neuron as K


def _flat(a: Array) -> Array:
    """A 1-D view of a contiguous array (no copy)."""
    return a.reshape(-1)


def _affine(x: Array, scale: float, shift: float, out: Array) -> Array:
    """out = shift + scale * x, in Caffe's order of operations (Power, Log)."""
    if scale != 1:
        np.multiply(x, scale, out=out)
    elif out is not x:
        np.copyto(out, x)
    if shift != 0:
        out += shift
    return out


class NeuronOps:
    """The neuron family of :class:`~caffepy.backend.base.Ops` on host arrays."""

    def relu_forward(self, x: Array, negative_slope: float, y: Array) -> None:
        K.relu_forward(_flat(x), negative_slope, _flat(y))

    def relu_backward(
        self, x: Array, dy: Array, negative_slope: float, dx: Array
    ) -> None:
        K.relu_backward(_flat(x), _flat(dy), negative_slope, _flat(dx))

    def prelu_forward(self, x: Array, slope: Array, y: Array) -> None:
        K.prelu_forward(x, _flat(slope), y)

    def prelu_backward(
        self,
        x: Array,
        dy: Array,
        slope: Array,
        dx: Array | None,
        dslope: Array | None,
        ws: Workspace,
    ) -> None:
        if dx is None and dslope is None:
            return
        # NOTE: per-channel sums in float64 first, then one add into the diff (a
        # shared slope adds their float64 total), as before the op boundary.
        sums = ws.get("prelu_dslope", (x.shape[1],), np.float64)
        K.prelu_backward(
            x,
            dy,
            _flat(slope),
            dx is not None,
            dslope is not None,
            dy if dx is None else dx,
            sums,
        )
        if dslope is not None:
            if dslope.shape == sums.shape:
                dslope += sums
            else:  # one slope shared by every channel
                dslope += sums.sum()

    def elu_forward(self, x: Array, alpha: float, y: Array) -> None:
        neg = np.minimum(x, 0)
        # NOTE: expm1 keeps the relative precision Caffe's exp(x) - 1 loses near 0.
        np.expm1(neg, out=neg)
        neg *= alpha
        np.maximum(x, 0, out=y)
        y += neg

    def elu_backward(
        self, x: Array, y: Array, dy: Array, alpha: float, dx: Array
    ) -> None:
        factor = np.where(x > 0, 1, y + alpha).astype(dx.dtype, copy=False)
        np.multiply(dy, factor, out=dx)

    def sigmoid_forward(self, x: Array, y: Array) -> None:
        np.multiply(x, 0.5, out=y)
        np.tanh(y, out=y)
        y *= 0.5
        y += 0.5

    def sigmoid_backward(self, y: Array, dy: Array, dx: Array) -> None:
        np.multiply(dy, y * (1 - y), out=dx)

    def tanh_forward(self, x: Array, y: Array) -> None:
        np.tanh(x, out=y)

    def tanh_backward(self, y: Array, dy: Array, dx: Array) -> None:
        np.multiply(dy, 1 - y * y, out=dx)

    def absval_forward(self, x: Array, y: Array) -> None:
        np.abs(x, out=y)

    def absval_backward(self, x: Array, dy: Array, dx: Array) -> None:
        np.multiply(dy, np.sign(x), out=dx)

    def bnll_forward(self, x: Array, y: Array) -> None:
        soft = np.abs(x)
        np.negative(soft, out=soft)
        np.exp(soft, out=soft)
        np.log1p(soft, out=soft)
        np.maximum(x, 0, out=y)
        y += soft

    def bnll_backward(self, x: Array, dy: Array, dx: Array) -> None:
        e = np.minimum(x, 50.0)
        np.exp(e, out=e)
        np.multiply(dy, e / (e + 1), out=dx)

    def power_forward(
        self, x: Array, power: float, scale: float, shift: float, y: Array
    ) -> None:
        if power * scale == 0:
            if power == 0:
                y[...] = 1.0
            else:
                with np.errstate(all="ignore"):  # 0 ^ -1 = inf, (-1) ^ 0.5 = NaN
                    y[...] = np.power(np.float64(shift), power)
            return
        _affine(x, scale, shift, y)
        if power == 2:
            np.square(y, out=y)
        elif power != 1:
            np.power(y, power, out=y)

    def power_backward(
        self, x: Array, dy: Array, power: float, scale: float, shift: float, dx: Array
    ) -> None:
        diff_scale = power * scale
        if diff_scale == 0:
            dx[...] = 0
            return
        if power == 1:
            np.multiply(dy, diff_scale, out=dx)
            return
        base = _affine(x, scale, shift, np.empty_like(x))
        # NOTE: Caffe writes the general case as diff_scale * y / base, which is
        # 0/0 = NaN wherever the base is 0 even when the derivative is finite
        # (power > 1); the direct power is the same value elsewhere.
        if power != 2:
            np.power(base, power - 1, out=base)
        base *= diff_scale
        np.multiply(dy, base, out=dx)

    def exp_forward(
        self, x: Array, inner_scale: float, outer_scale: float, y: Array
    ) -> None:
        if inner_scale != 1:
            np.multiply(x, inner_scale, out=y)
            np.exp(y, out=y)
        else:
            np.exp(x, out=y)
        if outer_scale != 1:
            y *= outer_scale

    def exp_backward(self, y: Array, dy: Array, inner_scale: float, dx: Array) -> None:
        np.multiply(dy, y, out=dx)
        if inner_scale != 1:
            dx *= inner_scale

    def log_forward(
        self, x: Array, scale: float, shift: float, base_scale: float, y: Array
    ) -> None:
        _affine(x, scale, shift, y)
        np.log(y, out=y)
        if base_scale != 1:
            y *= base_scale

    def log_backward(
        self, x: Array, dy: Array, scale: float, shift: float, coeff: float, dx: Array
    ) -> None:
        base = _affine(x, scale, shift, np.empty_like(x))
        np.reciprocal(base, out=base)
        if coeff != 1:
            base *= coeff
        np.multiply(dy, base, out=dx)

    def threshold_forward(self, x: Array, threshold: float, y: Array) -> None:
        np.greater(x, threshold, out=y, casting="unsafe")

    def clip_forward(self, x: Array, lo: float, hi: float, y: Array) -> None:
        np.minimum(x, hi, out=y)
        np.maximum(y, lo, out=y)

    def clip_backward(
        self, x: Array, dy: Array, lo: float, hi: float, dx: Array
    ) -> None:
        inside = (x >= lo) & (x <= hi)
        np.multiply(dy, inside, out=dx)

    def swish_forward(self, x: Array, beta: float, sig: Array, y: Array) -> None:
        np.multiply(x, 0.5 * beta, out=sig)
        np.tanh(sig, out=sig)
        sig *= 0.5
        sig += 0.5
        np.multiply(x, sig, out=y)

    def swish_backward(
        self, y: Array, sig: Array, dy: Array, beta: float, dx: Array
    ) -> None:
        by = y * beta
        grad = sig * (1 - by)
        grad += by
        np.multiply(dy, grad, out=dx)

    def dropout_forward(
        self, x: Array, bits: Array, threshold: int, scale: float, y: Array
    ) -> None:
        K.masked_scale(_flat(x), _flat(bits), threshold, scale, _flat(y))

    def dropout_backward(
        self, dy: Array, bits: Array, threshold: int, scale: float, dx: Array
    ) -> None:
        K.masked_scale(_flat(dy), _flat(bits), threshold, scale, _flat(dx))
