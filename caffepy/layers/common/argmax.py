"""ArgMax: the indices (and values) of the top-k entries."""

from __future__ import annotations

from caffepy import backend
from caffepy.errors import LayerError, ShapeError, UnsupportedError
from caffepy.layer import Layer, canonical_axis
from caffepy.registry import register_layer


@register_layer("ArgMax")
class ArgMaxLayer(Layer):
    """Indices (and optionally values) of the top_k largest entries.

    Parameters (``argmax_param``):
        out_max_val (default false): output the values (with ``axis``: only the
            values; without: indices then values).
        top_k (default 1).
        axis (unset): the axis to search; unset searches each item's flattened
            entries (everything after axis 0).

    Tops: with axis, the bottom shape with shape[axis] = top_k; without, (N, 1
    or 2, top_k) padded with 1s to the bottom's number of axes. Indices are
    stored as floats. Ties as Caffe's partial_sort with std::greater on
    (value, index): among equal values the larger index comes first.
    Not differentiable (backward refuses).
    """

    uses_ops = ("argmax_forward",)

    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.argmax_param
        self.out_max_val, self.top_k = p.out_max_val, int(p.top_k)
        self.has_axis = p.HasField("axis")
        self._axis_param = p.axis
        if self.top_k < 1:
            raise LayerError(self, f"top_k must be at least 1, got {self.top_k}")

    def allow_force_backward(self, bottom_index):
        return False

    def reshape(self, bottom, top):
        b = bottom[0]
        if self.has_axis:
            self.axis = canonical_axis(self, b, self._axis_param)
            dim = b.shape[self.axis]
            shape = list(b.shape)
            shape[self.axis] = self.top_k
        else:
            dim = b.count_range(1)
            shape = [1] * max(b.num_axes, 3)
            shape[0] = b.shape[0]
            shape[2] = self.top_k
            if self.out_max_val:
                shape[1] = 2
        if self.top_k > dim:
            raise ShapeError(
                self,
                f"top_k {self.top_k} exceeds the {dim} entries searched in bottom "
                f"shape {b.shape}",
            )
        top[0].reshape(tuple(shape))

    def forward(self, bottom, top):
        ops = backend.ops()
        axis = self.axis if self.has_axis else None
        x = ops.data(bottom[0])
        y = ops.mutable_data(top[0])
        ops.argmax_forward(x, self.top_k, self.out_max_val, axis, y)

    def backward(self, top, propagate_down, bottom):
        if any(propagate_down):
            raise UnsupportedError(
                f"{self.type} layer '{self.name}' is not differentiable: it cannot "
                "back-propagate to its bottom"
            )
