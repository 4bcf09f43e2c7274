"""Eltwise, Reduction and ArgMax on the device: the two-input SUM (residual
nets' hot one) as a numba.cuda kernel, the rest the CPU backend's NumPy passes,
which NumPy hands to CuPy for device arrays."""

from __future__ import annotations

from caffepy.backend.base import Array
from caffepy.backend.cpu.common import CommonOps
from caffepy.backend.cuda.neuron import _flat, _run
from caffepy.backend.interface.common import CommonInterface


class CudaCommonOps(CommonOps, CommonInterface):
    """Mixin of :class:`~caffepy.backend.cuda.CudaOps`: Eltwise, Reduction, ArgMax
    (the two-input SUM as a kernel; the rest are the CPU backend's NumPy passes,
    dispatched to CuPy for device arrays)."""

    def eltwise_forward(
        self,
        xs: list[Array],
        operation: int,
        coeffs: list[float],
        y: Array,
        mask: Array | None,
    ) -> None:
        if operation == 1 and len(xs) == 2:
            t = y.dtype.type
            a, b = _flat(xs[0]), _flat(xs[1])
            _run("eltwise_sum", y.size, a, t(coeffs[0]), b, t(coeffs[1]), _flat(y))
            return
        super().eltwise_forward(xs, operation, coeffs, y, mask)

    def argmax_forward(
        self, x: Array, top_k: int, out_max_val: bool, axis: int | None, y: Array
    ) -> None:
        from caffepy.backend.cuda.fallback import on_host

        # NOTE: a test-time layer; a stable top-k sort is simplest on the host.
        on_host(self, "argmax_forward", x, top_k, out_max_val, axis, y)
