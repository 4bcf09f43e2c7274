"""Filter: keep the items of a batch whose selector is non-zero."""

from __future__ import annotations

import numpy as np

from caffepy import backend
from caffepy.errors import LayerError, ShapeError
from caffepy.layer import Layer
from caffepy.registry import register_layer


@register_layer("Filter")
class FilterLayer(Layer):
    """Items (axis 0) whose selector is non-zero, from each bottom but the last
    (Caffe's ``FilterLayer``).

    Bottoms: K blobs (N, ...) to filter, then the selector (N,) or (N, 1, ...).
    Tops: K blobs (S, ...), S the number of non-zero selector values. As Caffe,
    the tops have N items after setup (the selector is not known yet) and S after
    the first forward.

    Gradient: the top diff goes back to the selected items; the others get 0.
    The selector gets no gradient.
    """

    min_num_bottom = 2
    min_num_top = 1

    def allow_force_backward(self, bottom_index):
        return bottom_index != self._selector_index

    def setup(self, bottom, top):
        if len(top) != len(bottom) - 1:
            raise LayerError(
                self,
                f"needs one top per filtered bottom: {len(bottom) - 1} bottom(s) "
                f"before the selector, got {len(top)} top(s)",
            )
        self._selector_index = len(bottom) - 1
        self._first_reshape = True

    def reshape(self, bottom, top):
        sel = bottom[-1]
        if sel.num_axes < 1 or any(d != 1 for d in sel.shape[1:]):
            raise ShapeError(
                self,
                f"the selector (last bottom) must be (N,) or (N, 1, ...), got "
                f"{sel.shape}",
            )
        num = sel.shape[0]
        for i, b in enumerate(bottom[:-1]):
            if b.num_axes < 1 or b.shape[0] != num:
                raise ShapeError(
                    self,
                    f"bottom[{i}] {b.shape} must have the selector's {num} items "
                    "along axis 0",
                )
        # NOTE: which items pass is data, read on the host here, as Caffe does in
        # Reshape; the first reshape (at setup) keeps all N items, as Caffe.
        self.indices = np.flatnonzero(np.asarray(sel.cpu_data()).reshape(num))
        count = num if self._first_reshape else len(self.indices)
        self._first_reshape = False
        for t, b in zip(top, bottom):
            t.reshape((count,) + b.shape[1:])

    def forward(self, bottom, top):
        ops = backend.ops()
        idx = ops.xp.asarray(self.indices)
        for t, b in zip(top, bottom):
            ops.mutable_data(t)[...] = ops.data(b)[idx]

    def backward(self, top, propagate_down, bottom):
        if propagate_down[-1]:
            raise LayerError(
                self, "cannot back-propagate to the selector (last bottom)"
            )
        ops = backend.ops()
        idx = ops.xp.asarray(self.indices)
        for t, b, pd in zip(top, bottom, propagate_down):
            if pd:
                dx = ops.mutable_diff(b)
                dx[...] = 0
                dx[idx] = ops.diff(t)
