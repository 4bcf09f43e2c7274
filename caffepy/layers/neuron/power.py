"""Power, Exp and Log: powers, exponentials and logarithms of an affine input."""

from __future__ import annotations

import math

from caffepy import backend
from caffepy.errors import LayerError
from caffepy.layers.neuron.base import InPlaceNeuron
from caffepy.registry import register_layer


@register_layer("Power")
class PowerLayer(InPlaceNeuron):
    """``y = (shift + scale * x) ^ power``.

    Parameters (``power_param``):
        power (1), scale (1), shift (0).

    As Caffe: when ``power * scale == 0`` the output is the constant
    ``1 if power == 0 else shift ^ power`` and the gradient is 0; with power 1 the
    layer is affine and its gradient the constant ``scale``.

    Bottom: any shape. Top: same shape (in place allowed).

    Gradient: ``dx = dy * power * scale * (shift + scale * x) ^ (power - 1)``.
    """

    uses_ops = ("power_backward", "power_forward")

    def setup(self, bottom, top):
        param = self.layer_param.power_param
        self.power = float(param.power)
        self.scale = float(param.scale)
        self.shift = float(param.shift)
        for field in ("power", "scale", "shift"):
            if not math.isfinite(getattr(self, field)):
                raise LayerError(
                    self,
                    f"power_param.{field} must be finite; got {getattr(self, field)}",
                )
        self.diff_scale = self.power * self.scale

    def _reads_input(self) -> bool:
        """Whether backward reads x (not for a constant or an affine layer)."""
        return self.diff_scale != 0 and self.power != 1

    def forward(self, bottom, top):
        ops = backend.ops()
        if self._reads_input():
            self._keep_input(ops, bottom, top)
        x = ops.data(bottom[0])
        y = ops.mutable_data(top[0])
        ops.power_forward(x, self.power, self.scale, self.shift, y)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        ops = backend.ops()
        dy = ops.diff(top[0])
        x = self._forward_input(ops, bottom, top) if self._reads_input() else dy
        dx = ops.mutable_diff(bottom[0])
        ops.power_backward(x, dy, self.power, self.scale, self.shift, dx)


@register_layer("Exp")
class ExpLayer(InPlaceNeuron):
    """``y = base ^ (shift + scale * x)``; base -1 means e.

    Parameters (``exp_param``):
        base (-1 = e), scale (1), shift (0). base must be > 0 or -1.

    Computed as Caffe: ``y = outer * exp(inner * x)`` with
    ``inner = ln(base) * scale`` and ``outer = base ^ shift``.

    Bottom: any shape. Top: same shape (in place allowed).

    Gradient: ``dx = dy * y * inner``.
    """

    uses_ops = ("exp_backward", "exp_forward")

    def setup(self, bottom, top):
        param = self.layer_param.exp_param
        base = float(param.base)
        if base != -1 and not base > 0:
            raise LayerError(
                self, f"base must be strictly positive or -1 (for e), got {base}"
            )
        log_base = 1.0 if base == -1 else math.log(base)
        self.inner_scale = log_base * float(param.scale)
        shift = float(param.shift)
        if shift == 0:
            self.outer_scale = 1.0
        else:
            self.outer_scale = math.exp(shift) if base == -1 else base**shift

    def forward(self, bottom, top):
        ops = backend.ops()
        x = ops.data(bottom[0])
        y = ops.mutable_data(top[0])
        ops.exp_forward(x, self.inner_scale, self.outer_scale, y)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        ops = backend.ops()
        y, dy = ops.data(top[0]), ops.diff(top[0])
        ops.exp_backward(y, dy, self.inner_scale, ops.mutable_diff(bottom[0]))


@register_layer("Log")
class LogLayer(InPlaceNeuron):
    """``y = log_base(shift + scale * x)``; base -1 means e.

    Parameters (``log_param``):
        base (-1 = e), scale (1), shift (0). base must be > 0 (and not 1) or -1.

    Bottom: any shape. Top: same shape (in place allowed).

    Gradient: ``dx = dy * scale / (ln(base) * (shift + scale * x))``.
    """

    uses_ops = ("log_backward", "log_forward")

    def setup(self, bottom, top):
        param = self.layer_param.log_param
        base = float(param.base)
        if base != -1 and not base > 0:
            raise LayerError(
                self, f"base must be strictly positive or -1 (for e), got {base}"
            )
        if base == 1:
            raise LayerError(self, "base 1 has no logarithm (ln(1) = 0); use > 0, != 1")
        log_base = 1.0 if base == -1 else math.log(base)
        self.base_scale = 1.0 / log_base
        self.scale = float(param.scale)
        self.shift = float(param.shift)
        self.backward_num_scale = self.scale / log_base

    def forward(self, bottom, top):
        ops = backend.ops()
        self._keep_input(ops, bottom, top)
        x = ops.data(bottom[0])
        y = ops.mutable_data(top[0])
        ops.log_forward(x, self.scale, self.shift, self.base_scale, y)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        ops = backend.ops()
        x = self._forward_input(ops, bottom, top)
        dy, dx = ops.diff(top[0]), ops.mutable_diff(bottom[0])
        coeff = self.backward_num_scale
        ops.log_backward(x, dy, self.scale, self.shift, coeff, dx)
