"""The common layers' ops on the CPU: Eltwise, Reduction and ArgMax.

Vectorised NumPy over the whole arrays (the two-input Eltwise SUM, the hot one
in residual nets, is one parallel Numba pass), in the float operations and
order of the layers they came from, so results are unchanged bit for bit.
"""

from __future__ import annotations

import numpy as np

from caffepy.backend.base import Array

_PROD, _SUM, _MAX = 0, 1, 2
_R_SUM, _R_ASUM, _R_SUMSQ, _R_MEAN = 1, 2, 3, 4


class CommonOps:
    """Mixin of :class:`~caffepy.backend.cpu.CpuOps`: Eltwise, Reduction, ArgMax."""

    def eltwise_forward(
        self,
        xs: list[Array],
        operation: int,
        coeffs: list[float],
        y: Array,
        mask: Array | None,
    ) -> None:
        t = y.dtype.type
        if operation == _SUM and len(xs) == 2:
            from caffepy.kernels.neuron import axpby

            # NOTE: one parallel pass, the same float operations as below.
            axpby(
                xs[0].reshape(-1),
                t(coeffs[0]),
                xs[1].reshape(-1),
                t(coeffs[1]),
                y.reshape(-1),
            )
        elif operation == _SUM:
            np.multiply(xs[0], t(coeffs[0]), out=y)
            for x, c in zip(xs[1:], coeffs[1:]):
                if c == 1.0:
                    y += x
                else:
                    y += t(c) * x
        elif operation == _PROD:
            np.multiply(xs[0], xs[1], out=y)
            for x in xs[2:]:
                y *= x
        elif operation == _MAX:
            assert mask is not None  # MAX records its winners for backward
            a, b = xs[0], xs[1]
            np.less_equal(a, b, out=mask)  # 0 only where input 0 is strictly greater
            np.maximum(a, b, out=y)
            for k, x in enumerate(xs[2:], 2):
                upd = x > y
                mask[upd] = k
                np.copyto(y, x, where=upd)
        else:
            raise ValueError(f"unknown Eltwise operation {operation}")

    def eltwise_sum_relu_forward(
        self, xs: list[Array], coeffs: list[float], y: Array, negative_slope: float
    ) -> None:
        from caffepy.kernels.neuron import axpby_relu, relu_forward

        t, slope, flat = y.dtype.type, float(negative_slope), y.reshape(-1)
        if len(xs) == 2:
            a, b = xs[0].reshape(-1), xs[1].reshape(-1)
            axpby_relu(a, t(coeffs[0]), b, t(coeffs[1]), slope, flat)
        else:
            self.eltwise_forward(xs, _SUM, coeffs, y, None)
            relu_forward(flat, slope, flat)

    def eltwise_backward(
        self,
        xs: list[Array],
        y: Array,
        dy: Array,
        mask: Array | None,
        operation: int,
        coeffs: list[float],
        stable_prod_grad: bool,
        index: int,
        dx: Array,
    ) -> None:
        if operation == _SUM:
            np.multiply(dy, dx.dtype.type(coeffs[index]), out=dx)
        elif operation == _PROD:
            if stable_prod_grad:
                others = [x for j, x in enumerate(xs) if j != index]
                np.multiply(dy, others[0], out=dx)
                for x in others[1:]:
                    dx *= x
            else:
                np.divide(y, xs[index], out=dx)
                dx *= dy
        else:
            np.multiply(dy, mask == index, out=dx)

    def reduction_forward(
        self, x: Array, operation: int, coeff: float, y: Array
    ) -> None:
        if operation == _R_ASUM:
            r = np.abs(x).sum(axis=1)
        elif operation == _R_SUMSQ:
            r = np.einsum("ij,ij->i", x, x)
        else:
            r = x.sum(axis=1)
        scale = coeff / x.shape[1] if operation == _R_MEAN else coeff
        y[...] = (r * y.dtype.type(scale)).reshape(y.shape)

    def reduction_backward(
        self, x: Array, dy: Array, operation: int, coeff: float, dx: Array
    ) -> None:
        t = dx.dtype.type
        dy = dy.reshape(-1, 1)
        if operation == _R_SUM:
            dx[...] = dy * t(coeff)
        elif operation == _R_MEAN:
            dx[...] = dy * t(coeff / x.shape[1])
        elif operation == _R_ASUM:
            np.multiply(np.sign(x), dy * t(coeff), out=dx)
        else:
            np.multiply(x, dy * t(2.0 * coeff), out=dx)

    def argmax_forward(
        self, x: Array, top_k: int, out_max_val: bool, axis: int | None, y: Array
    ) -> None:
        x = np.moveaxis(x, axis, -1) if axis is not None else x.reshape(x.shape[0], -1)
        dim = x.shape[-1]
        xr = x[..., ::-1]
        # NOTE: on the reversed array, a stable sort (or argmax, which returns the
        # first maximum) puts the larger original index first among equal values.
        if top_k == 1:
            idx = dim - 1 - np.argmax(xr, axis=-1)[..., None]
        else:
            idx = dim - 1 - np.argsort(-xr, axis=-1, kind="stable")[..., :top_k]
        if axis is not None:
            out = np.take_along_axis(x, idx, -1) if out_max_val else idx
            y[...] = np.moveaxis(out, -1, axis)
        else:
            y = y.reshape(x.shape[0], -1)
            y[:, :top_k] = idx
            if out_max_val:
                y[:, top_k:] = np.take_along_axis(x, idx, -1)
