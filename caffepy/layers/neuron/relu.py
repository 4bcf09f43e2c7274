"""Rectifiers: ReLU (leaky with a negative slope), PReLU and ELU."""

from __future__ import annotations

from typing import Any

from caffepy import backend
from caffepy.backend.base import Array
from caffepy.errors import LayerError
from caffepy.layer import want_param
from caffepy.layers.neuron.base import InPlaceNeuron
from caffepy.registry import register_layer


def fusable_relu(layer: Any) -> bool:
    """Whether ``layer`` is a ReLU that the layer before it may apply as it writes
    its top (:meth:`caffepy.layer.Layer.fuse_next`; the Net has checked that it
    computes in place): a plain ReLU of slope >= 0, whose backward reads its
    mask from the top and keeps no copy of its input."""
    return type(layer) is ReLULayer and layer.negative_slope >= 0


@register_layer("ReLU")
class ReLULayer(InPlaceNeuron):
    """Rectified linear unit, leaky when ``negative_slope`` is set.

    ``y = x if x > 0 else negative_slope * x``.

    Parameters (``relu_param``):
        negative_slope (0): slope for x <= 0.

    Bottom: any shape. Top: same shape (in place allowed).

    Gradient: ``dx = dy`` where x > 0, ``negative_slope * dy`` where x <= 0.
    """

    uses_ops = ("relu_backward", "relu_forward")

    def setup(self, bottom, top):
        self.negative_slope = float(self.layer_param.relu_param.negative_slope)

    def forward(self, bottom, top):
        ops = backend.ops()
        # NOTE: with a slope >= 0 the output has the input's sign, so backward can
        # read the mask from the top when computing in place (as Caffe does); a
        # negative slope flips it and needs the input kept.
        if self.negative_slope < 0:
            self._keep_input(ops, bottom, top)
        x = ops.data(bottom[0])
        ops.relu_forward(x, self.negative_slope, ops.mutable_data(top[0]))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        ops = backend.ops()
        if self.negative_slope < 0:
            x = self._forward_input(ops, bottom, top)
        else:
            x = ops.data(bottom[0])
        dy = ops.diff(top[0])
        ops.relu_backward(x, dy, self.negative_slope, ops.mutable_diff(bottom[0]))


@register_layer("PReLU")
class PReLULayer(InPlaceNeuron):
    """Parametric ReLU: a learned slope for x <= 0, per channel or shared.

    ``y = max(x, 0) + a_c * min(x, 0)`` with c the index along axis 1.

    Parameters (``prelu_param``):
        filler (constant 0.25 when unset, as Caffe): slope initialisation.
        channel_shared (false): one slope for all channels.

    Blobs: the slopes, shape (C,), or () when channel_shared (Caffe's 0-axis blob).

    Bottom: (N, C, ...) with at least 2 axes. Top: same shape (in place allowed).

    Gradient: ``dx = dy * (x > 0 ? 1 : a_c)``;
    ``da_c += sum over batch and space of dy * x * (x <= 0)`` (summed over every
    channel too when shared).
    """

    uses_ops = ("prelu_backward", "prelu_forward")

    @classmethod
    def param_blob_count(cls, layer_param: Any) -> int:
        """The slopes (one blob, shared or per channel)."""
        return 1

    def setup(self, bottom, top):
        param = self.layer_param.prelu_param
        if bottom[0].num_axes < 2:
            raise LayerError(
                self,
                f"needs a bottom with at least 2 axes (N, C, ...), got shape "
                f"{bottom[0].shape}",
            )
        self.channel_shared = bool(param.channel_shared)
        channels = bottom[0].shape[1]
        shape = () if self.channel_shared else (channels,)
        if self.blobs:
            if self.blobs[0].count != (1 if self.channel_shared else channels):
                raise LayerError(
                    self,
                    f"slope blob has shape {self.blobs[0].shape}, expected {shape} "
                    f"(channel_shared: {str(self.channel_shared).lower()})",
                )
        else:
            if param.HasField("filler"):
                filler = param.filler
            else:
                from caffepy.proto import caffe_pb2

                filler = caffe_pb2.FillerParameter(type="constant", value=0.25)
            self.new_blob(shape, filler)

    def reshape(self, bottom, top):
        channels = 1 if self.channel_shared else self.blobs[0].count
        if bottom[0].num_axes < 2 or (
            not self.channel_shared and bottom[0].shape[1] != channels
        ):
            raise LayerError(
                self,
                f"bottom shape {bottom[0].shape} does not match the {channels} "
                "channel slopes",
            )
        super().reshape(bottom, top)

    @staticmethod
    def _view(array: Array) -> Array:
        """(N, C, S) view of an (N, C, ...) array."""
        return array.reshape(array.shape[0], array.shape[1], -1)

    def forward(self, bottom, top):
        ops = backend.ops()
        self._keep_input(ops, bottom, top)
        x = self._view(ops.data(bottom[0]))
        slope = ops.data(self.blobs[0])
        ops.prelu_forward(x, slope, self._view(ops.mutable_data(top[0])))

    def backward(self, top, propagate_down, bottom):
        want_slope = want_param(self, 0)
        if not (propagate_down[0] or want_slope):
            return
        ops = backend.ops()
        x = self._view(self._forward_input(ops, bottom, top))
        dy = self._view(ops.diff(top[0]))
        dx = self._view(ops.mutable_diff(bottom[0])) if propagate_down[0] else None
        dslope = ops.mutable_diff(self.blobs[0]) if want_slope else None
        slope = ops.data(self.blobs[0])
        ops.prelu_backward(x, dy, slope, dx, dslope, self.workspace(ops))


@register_layer("ELU")
class ELULayer(InPlaceNeuron):
    """Exponential linear unit.

    ``y = x if x > 0 else alpha * (exp(x) - 1)``.

    Parameters (``elu_param``):
        alpha (1): value the output tends to for x -> -inf (negated).

    Bottom: any shape. Top: same shape (in place allowed).

    Gradient: ``dx = dy`` where x > 0, ``dy * (y + alpha)`` where x <= 0.
    """

    uses_ops = ("elu_backward", "elu_forward")

    def setup(self, bottom, top):
        self.alpha = float(self.layer_param.elu_param.alpha)

    def forward(self, bottom, top):
        ops = backend.ops()
        self._keep_input(ops, bottom, top)
        x = ops.data(bottom[0])
        ops.elu_forward(x, self.alpha, ops.mutable_data(top[0]))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        ops = backend.ops()
        x = self._forward_input(ops, bottom, top)
        y, dy = ops.data(top[0]), ops.diff(top[0])
        ops.elu_backward(x, y, dy, self.alpha, ops.mutable_diff(bottom[0]))
