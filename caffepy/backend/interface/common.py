"""Common-layer ops: Eltwise, Reduction, ArgMax.

Common layers (Eltwise, Reduction, ArgMax). Eltwise ``operation`` is
EltwiseParameter's: PROD 0, SUM 1, MAX 2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from caffepy.backend.interface.memory import MemoryInterface

if TYPE_CHECKING:
    from caffepy.backend.base import Array


class CommonInterface(MemoryInterface):
    """The common ops of :class:`~caffepy.backend.base.Ops` (declarations only)."""

    def eltwise_forward(
        self,
        xs: list[Array],
        operation: int,
        coeffs: list[float],
        y: Array,
        mask: Array | None,
    ) -> None:
        """y = prod(xs), sum(coeff_i * x_i) or max(xs), element-wise.

        Args:
            xs: two or more inputs of one shape.
            operation: PROD (0), SUM (1) or MAX (2).
            coeffs: one per input (SUM only; cast to the arrays' float type).
            y: output of that shape, assigned (may be one of ``xs`` for SUM/PROD).
            mask: int32 of that shape for MAX, assigned the index of the input
                that gave each maximum (ties: input 1 over input 0, then a later
                input only when strictly greater); None otherwise.
        """
        raise NotImplementedError

    def eltwise_sum_relu_forward(
        self, xs: list[Array], coeffs: list[float], y: Array, negative_slope: float
    ) -> None:
        """:meth:`eltwise_forward` with SUM, then :meth:`relu_forward` in place on
        ``y`` (ResNet's shortcut sum and the in-place ReLU after it, which the Net
        runs as one): the same numbers as the two ops."""
        raise NotImplementedError

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
        """The gradient for input ``index``, assigned to ``dx``.

        SUM: coeff * dy; PROD: dy * prod of the other inputs (stable) or
        dy * y / x (not stable); MAX: dy where ``mask == index``, else 0.
        """
        raise NotImplementedError

    def reduction_forward(
        self, x: Array, operation: int, coeff: float, y: Array
    ) -> None:
        """y[i] = coeff * reduce_j x[i, j] over (num, dim) ``x``; ``y`` holds num
        values (the top's shape, () when num is 1 and the top is 0-d).

        ``operation`` is ReductionParameter's: SUM 1, ASUM 2 (sum |x|), SUMSQ 3
        (sum x^2), MEAN 4 (sum / dim).
        """
        raise NotImplementedError

    def reduction_backward(
        self, x: Array, dy: Array, operation: int, coeff: float, dx: Array
    ) -> None:
        """dx[i, j] = coeff * dy[i] * (1, sign(x), 2x, 1/dim)[operation] on
        (num, dim) arrays (``dy`` (num,)); ``dx`` assigned."""
        raise NotImplementedError

    def argmax_forward(
        self, x: Array, top_k: int, out_max_val: bool, axis: int | None, y: Array
    ) -> None:
        """Indices (as floats) and/or values of the top_k largest entries.

        Args:
            x: the input, any shape.
            top_k: how many per search.
            out_max_val: output values (with ``axis``: only the values; without:
                the indices then the values).
            axis: the axis searched, or None for each item's flattened entries
                (all axes after 0).
            y: with ``axis``, x's shape with shape[axis] = top_k; without,
                (N, 1 or 2, top_k, 1...) as Caffe. Assigned. Among equal values
                the larger index comes first (Caffe's partial_sort on (value,
                index) pairs).
        """
        raise NotImplementedError
