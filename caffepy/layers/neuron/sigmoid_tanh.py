"""Smooth activations: Sigmoid, TanH, BNLL (softplus) and Swish."""

from __future__ import annotations

from typing import Any

from caffepy import backend
from caffepy.backend.base import Array, Ops
from caffepy.layers.neuron.base import InPlaceNeuron
from caffepy.registry import register_layer


@register_layer("Sigmoid")
class SigmoidLayer(InPlaceNeuron):
    """Logistic sigmoid, computed as Caffe does: ``y = 0.5 * tanh(0.5 * x) + 0.5``.

    No parameters. Bottom: any shape. Top: same shape (in place allowed).

    Gradient: ``dx = dy * y * (1 - y)`` (from the top only).
    """

    uses_ops = ("sigmoid_backward", "sigmoid_forward")

    def forward(self, bottom, top):
        ops = backend.ops()
        ops.sigmoid_forward(ops.data(bottom[0]), ops.mutable_data(top[0]))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        ops = backend.ops()
        y, dy = ops.data(top[0]), ops.diff(top[0])
        ops.sigmoid_backward(y, dy, ops.mutable_diff(bottom[0]))


@register_layer("TanH")
class TanHLayer(InPlaceNeuron):
    """Hyperbolic tangent ``y = tanh(x)``.

    No parameters. Bottom: any shape. Top: same shape (in place allowed).

    Gradient: ``dx = dy * (1 - y^2)`` (from the top only).
    """

    uses_ops = ("tanh_backward", "tanh_forward")

    def forward(self, bottom, top):
        ops = backend.ops()
        ops.tanh_forward(ops.data(bottom[0]), ops.mutable_data(top[0]))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        ops = backend.ops()
        y, dy = ops.data(top[0]), ops.diff(top[0])
        ops.tanh_backward(y, dy, ops.mutable_diff(bottom[0]))


@register_layer("BNLL")
class BNLLLayer(InPlaceNeuron):
    """Binomial normal log likelihood (softplus) ``y = log(1 + exp(x))``.

    Computed in Caffe's overflow-free form ``max(x, 0) + log(1 + exp(-|x|))``.

    No parameters. Bottom: any shape. Top: same shape (in place allowed).

    Gradient: ``dx = dy * e / (e + 1)`` with ``e = exp(min(x, 50))`` (Caffe's
    kBNLL_THRESHOLD keeps exp finite; the sigmoid is 1 there anyway).
    """

    uses_ops = ("bnll_backward", "bnll_forward")

    def forward(self, bottom, top):
        ops = backend.ops()
        self._keep_input(ops, bottom, top)
        ops.bnll_forward(ops.data(bottom[0]), ops.mutable_data(top[0]))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        ops = backend.ops()
        x = self._forward_input(ops, bottom, top)
        ops.bnll_backward(x, ops.diff(top[0]), ops.mutable_diff(bottom[0]))


@register_layer("Swish")
class SwishLayer(InPlaceNeuron):
    """Swish ``y = x * sigmoid(beta * x)``.

    As Caffe, the sigmoid is computed by an internal Sigmoid step
    (``0.5 * tanh(0.5 * beta * x) + 0.5``) whose output is kept for backward.

    Parameters (``swish_param``):
        beta (1).

    Bottom: any shape. Top: same shape (in place allowed).

    Gradient: ``dx = dy * (beta * y + s * (1 - beta * y))`` with
    ``s = sigmoid(beta * x)``.
    """

    uses_ops = ("swish_backward", "swish_forward")

    def setup(self, bottom, top):
        self.beta = float(self.layer_param.swish_param.beta)

    def _sigmoid(self, ops: Ops, blob: Any) -> Array:
        """The internal sigmoid's output, kept in the workspace for backward."""
        return self.workspace(ops).get("sigmoid", blob.shape, blob.dtype)

    def forward(self, bottom, top):
        ops = backend.ops()
        x = ops.data(bottom[0])
        sig = self._sigmoid(ops, bottom[0])
        ops.swish_forward(x, self.beta, sig, ops.mutable_data(top[0]))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        ops = backend.ops()
        y, dy = ops.data(top[0]), ops.diff(top[0])
        sig = self._sigmoid(ops, top[0])
        ops.swish_backward(y, sig, dy, self.beta, ops.mutable_diff(bottom[0]))
