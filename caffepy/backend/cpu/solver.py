"""The solver update rules on the CPU: NumPy passes in Caffe's order, and the
fused SGD kernel of :mod:`caffepy.kernels.solver`.

Every pass writes into a preallocated array of the parameter's float type
(``out=``), so the results are those of Caffe's ``caffe_cpu_*`` calls, bit for
bit, and a training iteration allocates nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from caffepy.backend.base import Array


class SolverOps:
    """Mixin of :class:`~caffepy.backend.cpu.CpuOps`: the update-rule ops."""

    def sumsq(self, x: Array) -> float:
        flat = x.reshape(-1)
        return float(np.dot(flat, flat))

    def scal(self, alpha: Any, x: Array) -> None:
        np.multiply(x, alpha, out=x)

    def axpby(self, alpha: Any, x: Array, beta: Any, y: Array, tmp: Array) -> None:
        np.multiply(y, beta, out=y)
        np.multiply(x, alpha, out=tmp)
        np.add(y, tmp, out=y)

    def l2_regularize(self, w: Array, decay: Any, g: Array, tmp: Array) -> None:
        np.multiply(w, decay, out=tmp)
        np.add(g, tmp, out=g)

    def l1_regularize(self, w: Array, decay: Any, g: Array, tmp: Array) -> None:
        np.sign(w, out=tmp)
        np.multiply(tmp, decay, out=tmp)
        np.add(g, tmp, out=g)

    def blob_update(self, g: Array, w: Array) -> None:
        np.subtract(w, g, out=w)

    def sgd_update(
        self, w: Array, g: Array, h: Array, decay: Any, rate: Any, momentum: Any
    ) -> None:
        from caffepy.kernels.solver import sgd_update

        sgd_update(w.reshape(-1), g.reshape(-1), h.reshape(-1), decay, rate, momentum)

    def sgd_compute_update(
        self, g: Array, h: Array, rate: Any, momentum: Any, tmp: Array
    ) -> None:
        self.axpby(rate, g, momentum, h, tmp)
        np.copyto(g, h)

    def nesterov_compute_update(
        self, g: Array, h: Array, rate: Any, momentum: Any, prev: Array, tmp: Array
    ) -> None:
        np.copyto(prev, h)
        self.axpby(rate, g, momentum, h, tmp)
        # u = (1 + m) * h - m * h_prev: "step back, then over-step"
        np.multiply(h, h.dtype.type(1) + momentum, out=g)
        np.multiply(prev, momentum, out=tmp)
        np.subtract(g, tmp, out=g)

    def adagrad_compute_update(
        self, g: Array, h: Array, rate: Any, delta: Any, tmp: Array
    ) -> None:
        np.square(g, out=tmp)
        np.add(h, tmp, out=h)
        np.sqrt(h, out=tmp)
        np.add(tmp, delta, out=tmp)
        np.divide(g, tmp, out=tmp)
        np.multiply(tmp, rate, out=g)

    def rmsprop_compute_update(
        self, g: Array, h: Array, rate: Any, rms_decay: Any, delta: Any, tmp: Array
    ) -> None:
        np.square(g, out=tmp)
        np.multiply(h, rms_decay, out=h)
        np.multiply(tmp, h.dtype.type(1) - rms_decay, out=tmp)
        np.add(h, tmp, out=h)
        np.sqrt(h, out=tmp)
        np.add(tmp, delta, out=tmp)
        np.divide(g, tmp, out=tmp)
        np.multiply(tmp, rate, out=g)

    def adadelta_compute_update(
        self,
        g: Array,
        h: Array,
        h2: Array,
        rate: Any,
        momentum: Any,
        delta: Any,
        tmp: Array,
        tmp2: Array,
    ) -> None:
        one_m = h.dtype.type(1) - momentum
        np.square(g, out=tmp)
        np.multiply(tmp, one_m, out=tmp)
        np.multiply(h, momentum, out=h)
        np.add(h, tmp, out=h)
        np.add(h2, delta, out=tmp)
        np.add(h, delta, out=tmp2)
        np.divide(tmp, tmp2, out=tmp)
        np.sqrt(tmp, out=tmp)
        np.multiply(g, tmp, out=g)
        np.square(g, out=tmp)
        np.multiply(tmp, one_m, out=tmp)
        np.multiply(h2, momentum, out=h2)
        np.add(h2, tmp, out=h2)
        np.multiply(g, rate, out=g)

    def adam_compute_update(
        self,
        g: Array,
        m: Array,
        v: Array,
        rate: Any,
        beta1: Any,
        beta2: Any,
        delta: Any,
        tmp: Array,
    ) -> None:
        one = m.dtype.type(1)
        self.axpby(one - beta1, g, beta1, m, tmp)
        np.multiply(g, g, out=tmp)
        np.multiply(tmp, one - beta2, out=tmp)
        np.multiply(v, beta2, out=v)
        np.add(v, tmp, out=v)
        np.sqrt(v, out=tmp)
        np.add(tmp, delta, out=tmp)
        np.divide(m, tmp, out=tmp)
        np.multiply(tmp, rate, out=g)
