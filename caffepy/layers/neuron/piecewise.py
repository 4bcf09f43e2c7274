"""Piecewise-linear maps: AbsVal, Threshold (a step, forward only) and Clip."""

from __future__ import annotations

from caffepy import backend
from caffepy.errors import LayerError, UnsupportedError
from caffepy.layers.neuron.base import InPlaceNeuron
from caffepy.registry import register_layer


@register_layer("AbsVal")
class AbsValLayer(InPlaceNeuron):
    """Absolute value ``y = |x|``.

    No parameters. Bottom: any shape. Top: same shape (in place allowed, unlike
    Caffe, by keeping a copy of the input).

    Gradient: ``dx = sign(x) * dy`` (0 at x == 0).
    """

    uses_ops = ("absval_backward", "absval_forward")

    def forward(self, bottom, top):
        ops = backend.ops()
        self._keep_input(ops, bottom, top)
        ops.absval_forward(ops.data(bottom[0]), ops.mutable_data(top[0]))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        ops = backend.ops()
        x = self._forward_input(ops, bottom, top)
        ops.absval_backward(x, ops.diff(top[0]), ops.mutable_diff(bottom[0]))


@register_layer("Threshold")
class ThresholdLayer(InPlaceNeuron):
    """Step function ``y = 1 if x > threshold else 0``.

    Parameters (``threshold_param``):
        threshold (0).

    Bottom: any shape. Top: same shape (in place allowed).

    Forward only: as in Caffe, backward raises UnsupportedError when a gradient
    is asked for (the step has zero gradient almost everywhere).
    """

    uses_ops = ("threshold_forward",)

    def setup(self, bottom, top):
        self.threshold = float(self.layer_param.threshold_param.threshold)

    def forward(self, bottom, top):
        ops = backend.ops()
        x = ops.data(bottom[0])
        ops.threshold_forward(x, self.threshold, ops.mutable_data(top[0]))

    def backward(self, top, propagate_down, bottom):
        if any(propagate_down):
            raise UnsupportedError(
                f"Threshold layer '{self.name}': backward is not implemented (as in "
                "Caffe); do not back-propagate through it"
            )


@register_layer("Clip")
class ClipLayer(InPlaceNeuron):
    """Clip to an interval: ``y = max(min, min(x, max))``.

    Parameters (``clip_param``, both required):
        min, max: the interval, min <= max.

    Bottom: any shape. Top: same shape (in place allowed).

    Gradient: ``dx = dy`` where min <= x <= max, else 0.
    """

    uses_ops = ("clip_backward", "clip_forward")

    def setup(self, bottom, top):
        param = self.layer_param.clip_param
        missing = [f for f in ("min", "max") if not param.HasField(f)]
        if missing:
            raise LayerError(
                self, f"clip_param needs both min and max; missing {', '.join(missing)}"
            )
        self.min, self.max = float(param.min), float(param.max)
        if self.min > self.max:
            raise LayerError(
                self, f"clip_param min ({self.min}) must be <= max ({self.max})"
            )

    def forward(self, bottom, top):
        ops = backend.ops()
        self._keep_input(ops, bottom, top)
        x = ops.data(bottom[0])
        ops.clip_forward(x, self.min, self.max, ops.mutable_data(top[0]))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        ops = backend.ops()
        x = self._forward_input(ops, bottom, top)
        dy, dx = ops.diff(top[0]), ops.mutable_diff(bottom[0])
        ops.clip_backward(x, dy, self.min, self.max, dx)
