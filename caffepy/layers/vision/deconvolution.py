"""Deconvolution: convolution's backward-data pass used as forward."""

from __future__ import annotations

from caffepy import backend
from caffepy.layers.vision.convolution import BaseConvolutionLayer
from caffepy.registry import register_layer


@register_layer("Deconvolution")
class DeconvolutionLayer(BaseConvolutionLayer):
    """Transposed convolution: convolution's backward-data pass used as forward.

    Each input pixel scatters ``x[n, c, i, j] * W[c, m', :, :]`` into the output
    window at ``(i*sh - ph, j*sw - pw)`` (dilated by dh, dw), plus ``b[m]``.

    Parameters: as Convolution (``convolution_param``), with the roles of input
    and output swapped.

    Any number of spatial axes, as Convolution (3-D on 5-D blobs).

    Blobs: weight (C, num_output/group, *kernel); bias (num_output,).
    Bottoms/tops: pairs; bottom (N, C, H, W) -> top (N, num_output, oh, ow),
    ``oh = sh*(H-1) + dh*(kh-1)+1 - 2*ph``.

    Gradient: dx = convolution of dy with W; dW = x (x) columns(dy); db = sum dy.
    """

    uses_ops = ("deconv_backward", "deconv_forward")

    reverse = True

    def forward(self, bottom, top):
        ops = backend.ops()
        w = ops.data(self.blobs[0])
        b = ops.data(self.blobs[1]) if self.bias_term else None
        ws = self.workspace(ops)
        for bot, t in zip(bottom, top):
            ops.deconv_forward(ops.data(bot), w, b, self.geom, ops.mutable_data(t), ws)

    def backward(self, top, propagate_down, bottom):
        ops = backend.ops()
        w = ops.data(self.blobs[0])
        dw, db = self._param_grads(ops)
        ws = self.workspace(ops)
        for i, (t, bot) in enumerate(zip(top, bottom)):
            dx = self._wanted(ops, propagate_down, i, bot)
            if dw is None and db is None and dx is None:
                continue
            x, dy = ops.data(bot), ops.diff(t)
            ops.deconv_backward(x, dy, w, self.geom, dw, db, dx, ws)
