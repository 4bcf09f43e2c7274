"""InnerProduct: the fully connected layer."""

from __future__ import annotations

from caffepy import backend
from caffepy.errors import LayerError, ShapeError
from caffepy.layer import Layer, canonical_axis, want_param
from caffepy.layers.neuron.relu import fusable_relu
from caffepy.layers.vision.params import check_param_shapes
from caffepy.registry import register_layer


@register_layer("InnerProduct")
class InnerProductLayer(Layer):
    """Fully connected layer: ``y = x W^T + b`` over flattened trailing axes.

    Parameters (``inner_product_param``): ``num_output`` (required), ``bias_term``
    (true), ``axis`` (1): axes before it are kept, it and the later ones are
    flattened into K; ``transpose`` (false): store W as (K, N) and compute
    ``y = x W + b``; ``weight_filler``, ``bias_filler`` (constant 0).

    Blobs: weight (N, K), or (K, N) with transpose; bias (N,).
    Bottom (d0, ..., d_{axis-1}, ...) with K trailing elements -> top
    (d0, ..., d_{axis-1}, N).

    Gradient: dx = dy W (dy W^T with transpose), dW = dy^T x (x^T dy),
    db = sum of dy over the rows.
    """

    uses_ops = ("inner_product_backward", "inner_product_forward")

    exact_num_bottom = 1
    exact_num_top = 1

    @classmethod
    def param_blob_count(cls, layer_param):
        return 1 + int(layer_param.inner_product_param.bias_term)

    def setup(self, bottom, top):
        p = self.layer_param.inner_product_param
        self.num_output = int(p.num_output)
        if self.num_output <= 0:
            raise LayerError(self, f"num_output must be > 0, got {self.num_output}")
        self.axis = canonical_axis(self, bottom[0], p.axis)
        self.K = bottom[0].count_range(self.axis)
        self.bias_term = bool(p.bias_term)
        self.transpose = bool(p.transpose)
        n, k = self.num_output, self.K
        wshape = (k, n) if self.transpose else (n, k)
        shapes = [wshape] + ([(n,)] if self.bias_term else [])
        if self.blobs:
            check_param_shapes(self, shapes)
        else:
            self.new_blob(wshape, p.weight_filler)
            if self.bias_term:
                self.new_blob((n,), p.bias_filler)

    def reshape(self, bottom, top):
        x = bottom[0]
        if self.axis >= max(x.num_axes, 1):
            raise ShapeError(
                self, f"bottom {x.shape} has no axis {self.axis} to flatten from"
            )
        k = x.count_range(self.axis)
        if k != self.K:
            raise ShapeError(
                self,
                f"bottom {x.shape} flattens to K={k} from axis {self.axis}, but "
                f"the weights expect K={self.K}",
            )
        self.M = x.count_range(0, self.axis)
        top[0].reshape(x.shape[: self.axis] + (self.num_output,))

    def forward(self, bottom, top):
        ops = backend.ops()
        x = ops.data(bottom[0]).reshape(self.M, self.K)
        y = ops.mutable_data(top[0]).reshape(self.M, self.num_output)
        b = ops.data(self.blobs[1]) if self.bias_term else None
        w = ops.data(self.blobs[0])
        ops.inner_product_forward(x, w, b, self.transpose, y, self.workspace(ops))

    # -- fused with the in-place ReLU after it (fc6/fc7, LeNet's ip1) --------------
    def fuse_next(self, nxt: Layer, bottom: list, top: list) -> bool:
        """An in-place ReLU (slope >= 0) after this layer: applied to each block
        of the top as the GEMMs write it (see ConvolutionLayer.fuse_next)."""
        return fusable_relu(nxt)

    def forward_fused(self, nxt: Layer, bottom: list, top: list) -> None:
        self.reshape(bottom, top)
        nxt.reshape(top, top)
        ops = backend.ops()
        x = ops.data(bottom[0]).reshape(self.M, self.K)
        y = ops.mutable_data(top[0]).reshape(self.M, self.num_output)
        b = ops.data(self.blobs[1]) if self.bias_term else None
        w = ops.data(self.blobs[0])
        ws = self.workspace(ops)
        slope = nxt.negative_slope
        ops.inner_product_relu_forward(x, w, b, self.transpose, y, ws, slope)

    def backward(self, top, propagate_down, bottom):
        ops = backend.ops()
        dw = ops.mutable_diff(self.blobs[0]) if want_param(self, 0) else None
        db = None
        if self.bias_term and want_param(self, 1):
            db = ops.mutable_diff(self.blobs[1])
        dx = None
        if propagate_down[0]:
            dx = ops.mutable_diff(bottom[0]).reshape(self.M, self.K)
        if dw is None and db is None and dx is None:
            return
        x = ops.data(bottom[0]).reshape(self.M, self.K)
        dy = ops.diff(top[0]).reshape(self.M, self.num_output)
        w = ops.data(self.blobs[0])
        ops.inner_product_backward(
            x, dy, w, self.transpose, dw, db, dx, self.workspace(ops)
        )
