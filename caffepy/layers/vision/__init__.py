"""Vision layers: Convolution, Deconvolution, Pooling, InnerProduct, Embed, SPP,
Im2col.

One file per layer; importing this package registers them. The layers read
their parameters and infer shapes; the backend's vision ops
(:class:`caffepy.backend.base.Ops`: ``conv_forward``, ``pool_forward``, ...)
do the numeric work on the active device.
"""

from caffepy.layers.vision.convolution import BaseConvolutionLayer, ConvolutionLayer
from caffepy.layers.vision.deconvolution import DeconvolutionLayer
from caffepy.layers.vision.embed import EmbedLayer
from caffepy.layers.vision.im2col_layer import Im2colLayer
from caffepy.layers.vision.inner_product import InnerProductLayer
from caffepy.layers.vision.pooling import PoolingLayer
from caffepy.layers.vision.spp import SPPLayer

__all__ = [
    "BaseConvolutionLayer",
    "ConvolutionLayer",
    "DeconvolutionLayer",
    "EmbedLayer",
    "Im2colLayer",
    "InnerProductLayer",
    "PoolingLayer",
    "SPPLayer",
]
