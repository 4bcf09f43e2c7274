"""Parameter: a learnable blob as a layer's output."""

from __future__ import annotations

from caffepy.layer import Layer
from caffepy.layers.vision.params import check_param_shapes
from caffepy.registry import register_layer


@register_layer("Parameter")
class ParameterLayer(Layer):
    """A layer without bottoms whose top is its one parameter blob (Caffe's
    ``ParameterLayer``), so a net can learn a tensor used as any layer's input.

    Parameters (``parameter_param``): ``shape``, the blob's shape. There is no
    filler: the blob starts at zeros (as Caffe), unless weights are loaded.

    Top: the blob itself, data and diff (no copy), so the gradient a consumer
    writes into the top is the parameter's gradient.
    """

    exact_num_bottom = 0
    exact_num_top = 1

    @classmethod
    def param_blob_count(cls, layer_param):
        return 1

    def setup(self, bottom, top):
        shape = tuple(int(d) for d in self.layer_param.parameter_param.shape.dim)
        if self.blobs:
            check_param_shapes(self, [shape])
        else:
            self.new_blob(shape)

    def reshape(self, bottom, top):
        # NOTE: shared on every reshape: the net may give the blob other memory
        # after setup (a shared ``param { name }``, copied weights).
        blob = self.blobs[0]
        top[0].reshape(blob.shape)
        top[0].share_data(blob)
        top[0].share_diff(blob)

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        pass
