"""Deconvolution: convolution's backward-data pass used as forward."""

from __future__ import annotations

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
    forward_op, backward_op = "deconv_forward", "deconv_backward"
    reverse = True
