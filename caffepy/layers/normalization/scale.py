"""Scale: multiply by a broadcast scale, optionally add a bias."""

from __future__ import annotations

from typing import Any

from caffepy import backend
from caffepy.errors import LayerError
from caffepy.layer import Layer, want_param
from caffepy.layers.normalization.broadcast import (
    as1d,
    broadcast_geometry,
    channel_sums,
    param_shape,
)
from caffepy.registry import register_layer


@register_layer("Scale")
class ScaleLayer(Layer):
    """Multiply by a scale broadcast over the first bottom, optionally add a bias.

    ``y = x * s + b`` where s (and b) cover ``num_axes`` axes of x from ``axis``
    and are repeated over the others.

    Parameters (``scale_param``):
        axis (1): first axis of x the scale covers (negative counts from the end).
        num_axes (1): axes covered by a learned scale; 0 = a scalar, -1 = every axis
            from ``axis`` on. Ignored with a second bottom (its shape decides).
        filler (constant 1 when unset, as Caffe): learned-scale initialisation.
        bias_term (false): also learn a bias of the same coverage (as a Bias
            layer with the same axis and num_axes).
        bias_filler (constant 0): bias initialisation.

    Bottoms: x, and optionally the scale itself as bottom[1] (then no scale blob).
    Top: x's shape (in place allowed: the input is kept for the scale gradient).

    Blobs: [scale][, bias] — the scale only when it is not bottom[1].

    Gradient: ``dx = dy * s``; ``ds = sum of dy * x`` and ``db = sum of dy`` over
    the repeated axes (accumulated into a learned scale/bias, written into
    bottom[1].diff).
    """

    uses_ops = ("channel_affine", "channel_sums")

    min_num_bottom = 1
    max_num_bottom = 2
    exact_num_top = 1

    def setup(self, bottom, top):
        param = self.layer_param.scale_param
        self.axis = param.axis
        if len(bottom) == 1 and not self.blobs:
            shape = param_shape(self, bottom[0], param.axis, param.num_axes, "scale")
            if param.HasField("filler"):
                filler = param.filler
            else:
                from caffepy.proto import caffe_pb2

                filler = caffe_pb2.FillerParameter(type="constant", value=1.0)
            self.new_blob(shape, filler)
        self.bias_term = bool(param.bias_term)
        self.bias_id = None
        #: the input of the last forward when a BatchNorm fused with this layer
        #: kept it (its normalised input, :meth:`BatchNormLayer.forward_fused`)
        self.saved_input = None
        if self.bias_term:
            if len(self.blobs) + len(bottom) < 3:
                # NOTE: the bias follows Bias's rules with Scale's axis; with a
                # second bottom it covers as many axes as that bottom has.
                num_axes = bottom[1].num_axes if len(bottom) > 1 else param.num_axes
                shape = param_shape(self, bottom[0], param.axis, num_axes, "bias")
                self.new_blob(shape, param.bias_filler)
            self.bias_id = len(self.blobs) - 1
        elif len(self.blobs) + len(bottom) > 2:
            raise LayerError(
                self,
                f"has {len(self.blobs)} blobs with {len(bottom)} bottom(s) but "
                "bias_term is false",
            )

    @classmethod
    def param_blob_count(cls, layer_param: Any) -> int:
        """The scale unless it is bottom[1], and the bias with bias_term."""
        scale = 0 if len(layer_param.bottom) > 1 else 1
        return scale + int(layer_param.scale_param.bias_term)

    def _scale_blob(self, bottom):
        return bottom[1] if len(bottom) > 1 else self.blobs[0]

    def reshape(self, bottom, top):
        scale = self._scale_blob(bottom)
        self.geom = broadcast_geometry(self, bottom[0], scale, self.axis, "scale")
        if self.bias_id is not None:
            bias = self.blobs[self.bias_id]
            self.bias_geom = broadcast_geometry(
                self, bottom[0], bias, self.axis, "bias"
            )
        if top[0] is not bottom[0]:
            top[0].reshape(bottom[0].shape)

    def _keeps_input(self, bottom: list, top: list) -> bool:
        """Whether backward needs a copy of x (in place, for the scale gradient)."""
        return top[0] is bottom[0] and (len(bottom) > 1 or want_param(self, 0))

    def forward(self, bottom, top):
        ops = backend.ops()
        self.saved_input = None
        if self._keeps_input(bottom, top):
            self.workspace(ops).keep("x", ops.data(bottom[0]))
        x3 = ops.data(bottom[0]).reshape(self.geom)
        s = as1d(ops.data(self._scale_blob(bottom)))
        y3 = ops.mutable_data(top[0]).reshape(self.geom)
        if self.bias_id is None:
            ops.channel_affine(x3, s, None, y3)
            return
        b = as1d(ops.data(self.blobs[self.bias_id]))
        if self.bias_geom == self.geom:
            ops.channel_affine(x3, s, b, y3)
        else:
            ops.channel_affine(x3, s, None, y3)
            y3b = y3.reshape(self.bias_geom)
            ops.channel_affine(y3b, None, b, y3b)

    def backward(self, top, propagate_down, bottom):
        ops = backend.ops()
        # Parameter gradients first: in place, dx overwrites dy.
        dy = ops.diff(top[0])
        dy3 = dy.reshape(self.geom)
        want_bias = self.bias_id is not None and want_param(self, self.bias_id)
        scale_is_param = len(bottom) == 1
        scale = self._scale_blob(bottom)
        if (scale_is_param and want_param(self, 0)) or (
            not scale_is_param and propagate_down[1]
        ):
            if self.saved_input is not None:
                x = self.saved_input
            elif self._keeps_input(bottom, top):
                x = self.workspace(ops).get("x", bottom[0].shape, bottom[0].dtype)
            else:
                x = ops.data(bottom[0])
            sum_dy, sum_dyx = channel_sums(self, ops, dy3, x.reshape(self.geom))
            dscale = ops.mutable_diff(scale)
            if scale_is_param:
                dscale += sum_dyx.reshape(scale.shape)
            else:
                dscale[...] = sum_dyx.reshape(scale.shape)
            if want_bias and self.bias_geom == self.geom:
                bias = self.blobs[self.bias_id]
                ops.mutable_diff(bias)[...] += sum_dy.reshape(bias.shape)
                want_bias = False
        if want_bias:
            sum_dy, _ = channel_sums(self, ops, dy.reshape(self.bias_geom), None)
            bias = self.blobs[self.bias_id]
            ops.mutable_diff(bias)[...] += sum_dy.reshape(bias.shape)
        if propagate_down[0]:
            s = as1d(ops.data(scale))
            dx3 = ops.mutable_diff(bottom[0]).reshape(self.geom)
            ops.channel_affine(dy3, s, None, dx3)
