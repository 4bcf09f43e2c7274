"""Neuron ops: element-wise activations and Dropout.

Neuron ops (ReLU ... Dropout): ``x``, ``y``, ``dy``, ``dx`` (and ``sig``) are
arrays of one shape (any) and one float dtype (float32 or float64); ``y`` may
be ``x`` and ``dx`` may be ``dy`` (in-place layers). Backward ops read the
forward's input ``x`` or output ``y``, whichever the formula needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from caffepy.backend.interface.memory import MemoryInterface

if TYPE_CHECKING:
    from caffepy.backend.base import Array, Workspace


class NeuronInterface(MemoryInterface):
    """The neuron ops of :class:`~caffepy.backend.base.Ops` (declarations only)."""

    def relu_forward(self, x: Array, negative_slope: float, y: Array) -> None:
        """y = x if x > 0 else negative_slope * x."""
        raise NotImplementedError

    def relu_backward(
        self, x: Array, dy: Array, negative_slope: float, dx: Array
    ) -> None:
        """dx = dy if x > 0 else negative_slope * dy (``x`` may be the forward's
        output when negative_slope >= 0: it has the input's sign)."""
        raise NotImplementedError

    def prelu_forward(self, x: Array, slope: Array, y: Array) -> None:
        """y = max(x, 0) + slope[c] * min(x, 0) on (N, C, S) arrays; ``slope`` is
        (C,), or one element shared by every channel."""
        raise NotImplementedError

    def prelu_backward(
        self,
        x: Array,
        dy: Array,
        slope: Array,
        dx: Array | None,
        dslope: Array | None,
        ws: Workspace,
    ) -> None:
        """PReLU gradients on (N, C, S) arrays.

        Args:
            x, dy: (N, C, S) input of the forward and gradient of the top.
            slope: (C,) slopes, or one shared element.
            dx: (N, C, S), assigned ``dy * (x > 0 ? 1 : slope[c])``; may be ``dy``.
            dslope: ``slope``'s gradient, *accumulated* with the sum over n, s
                (and c when shared) of ``dy * x * (x <= 0)``.
            ws: the caller's workspace (per-channel partial sums).
        """
        raise NotImplementedError

    def elu_forward(self, x: Array, alpha: float, y: Array) -> None:
        """y = x if x > 0 else alpha * (exp(x) - 1)."""
        raise NotImplementedError

    def elu_backward(
        self, x: Array, y: Array, dy: Array, alpha: float, dx: Array
    ) -> None:
        """dx = dy if x > 0 else dy * (y + alpha)."""
        raise NotImplementedError

    def sigmoid_forward(self, x: Array, y: Array) -> None:
        """y = 0.5 * tanh(0.5 * x) + 0.5 (Caffe's form of the logistic)."""
        raise NotImplementedError

    def sigmoid_backward(self, y: Array, dy: Array, dx: Array) -> None:
        """dx = dy * y * (1 - y)."""
        raise NotImplementedError

    def tanh_forward(self, x: Array, y: Array) -> None:
        """y = tanh(x)."""
        raise NotImplementedError

    def tanh_backward(self, y: Array, dy: Array, dx: Array) -> None:
        """dx = dy * (1 - y^2)."""
        raise NotImplementedError

    def absval_forward(self, x: Array, y: Array) -> None:
        """y = |x|."""
        raise NotImplementedError

    def absval_backward(self, x: Array, dy: Array, dx: Array) -> None:
        """dx = sign(x) * dy."""
        raise NotImplementedError

    def bnll_forward(self, x: Array, y: Array) -> None:
        """y = max(x, 0) + log(1 + exp(-|x|)) (softplus without overflow)."""
        raise NotImplementedError

    def bnll_backward(self, x: Array, dy: Array, dx: Array) -> None:
        """dx = dy * e / (e + 1), e = exp(min(x, 50)) (Caffe's kBNLL_THRESHOLD)."""
        raise NotImplementedError

    def power_forward(
        self, x: Array, power: float, scale: float, shift: float, y: Array
    ) -> None:
        """y = (shift + scale * x) ^ power; the constant ``1 if power == 0 else
        shift ^ power`` when power * scale == 0 (Caffe)."""
        raise NotImplementedError

    def power_backward(
        self, x: Array, dy: Array, power: float, scale: float, shift: float, dx: Array
    ) -> None:
        """dx = dy * power * scale * (shift + scale * x) ^ (power - 1) (0 when
        power * scale == 0; ``x`` is not read when power == 1)."""
        raise NotImplementedError

    def exp_forward(
        self, x: Array, inner_scale: float, outer_scale: float, y: Array
    ) -> None:
        """y = outer_scale * exp(inner_scale * x)."""
        raise NotImplementedError

    def exp_backward(self, y: Array, dy: Array, inner_scale: float, dx: Array) -> None:
        """dx = dy * y * inner_scale."""
        raise NotImplementedError

    def log_forward(
        self, x: Array, scale: float, shift: float, base_scale: float, y: Array
    ) -> None:
        """y = base_scale * ln(shift + scale * x) (base_scale = 1 / ln(base))."""
        raise NotImplementedError

    def log_backward(
        self, x: Array, dy: Array, scale: float, shift: float, coeff: float, dx: Array
    ) -> None:
        """dx = dy * coeff / (shift + scale * x) (coeff = scale / ln(base))."""
        raise NotImplementedError

    def threshold_forward(self, x: Array, threshold: float, y: Array) -> None:
        """y = 1 if x > threshold else 0."""
        raise NotImplementedError

    def clip_forward(self, x: Array, lo: float, hi: float, y: Array) -> None:
        """y = max(lo, min(x, hi))."""
        raise NotImplementedError

    def clip_backward(
        self, x: Array, dy: Array, lo: float, hi: float, dx: Array
    ) -> None:
        """dx = dy where lo <= x <= hi, else 0."""
        raise NotImplementedError

    def swish_forward(self, x: Array, beta: float, sig: Array, y: Array) -> None:
        """sig = sigmoid(beta * x) (Caffe's tanh form), y = x * sig; ``sig`` must
        not alias ``x``."""
        raise NotImplementedError

    def swish_backward(
        self, y: Array, sig: Array, dy: Array, beta: float, dx: Array
    ) -> None:
        """dx = dy * (beta * y + sig * (1 - beta * y))."""
        raise NotImplementedError

    def dropout_forward(
        self, x: Array, bits: Array, threshold: int, scale: float, y: Array
    ) -> None:
        """y = x * scale where bits < threshold, else 0 (inverted dropout).

        Args:
            x: input, any shape.
            bits: uint32 random bits, ``x.size`` of them (drawn on the host from
                :mod:`caffepy.rng`, so every device drops the same units).
            threshold: keep probability times 2^32.
            scale: factor of the kept units.
            y: output of x's shape, assigned (may be ``x``).
        """
        raise NotImplementedError

    def dropout_backward(
        self, dy: Array, bits: Array, threshold: int, scale: float, dx: Array
    ) -> None:
        """dx = dy * scale where bits < threshold, else 0 (the forward's mask)."""
        raise NotImplementedError
