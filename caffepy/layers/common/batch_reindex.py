"""BatchReindex: select, reorder or repeat the items of a batch."""

from __future__ import annotations

import numpy as np

from caffepy import backend
from caffepy.errors import LayerError, ShapeError
from caffepy.layer import Layer
from caffepy.registry import register_layer


@register_layer("BatchReindex")
class BatchReindexLayer(Layer):
    """``y[i] = x[idx[i]]`` along axis 0 (Caffe's ``BatchReindexLayer``).

    Bottoms: ``x`` (N, ...); ``idx`` (M,), integer item indices in [0, N) stored
    as floats (repeats allowed, M may differ from N). Top: (M, ...).

    Gradient: ``dx[n] = sum of dy[i] over the i with idx[i] == n`` (0 for items
    not selected). ``idx`` gets no gradient.
    """

    exact_num_bottom = 2
    exact_num_top = 1

    def allow_force_backward(self, bottom_index):
        return bottom_index == 0

    def reshape(self, bottom, top):
        x, idx = bottom
        if idx.num_axes != 1:
            raise ShapeError(
                self, f"the index bottom (bottom[1]) must be 1-D (M,), got {idx.shape}"
            )
        if x.num_axes < 1:
            raise ShapeError(self, f"bottom[0] needs a batch axis, got shape {x.shape}")
        top[0].reshape((idx.shape[0],) + x.shape[1:])

    def _indices(self, ops, bottom):
        """The indices as integers, checked to lie in [0, N)."""
        raw = ops.data(bottom[1])
        num = bottom[0].shape[0]
        host = np.asarray(bottom[1].cpu_data()) if ops.name != "cpu" else raw
        bad = (host < 0) | (host >= num)
        if bad.any():
            raise LayerError(
                self,
                f"index {host[bad][0]:g} at position {int(np.argmax(bad))} is out of "
                f"range for a batch of {num} items (expected 0 <= index < {num})",
            )
        return raw.astype(np.int64)

    def forward(self, bottom, top):
        ops = backend.ops()
        idx = self._indices(ops, bottom)
        x = ops.data(bottom[0])
        ops.mutable_data(top[0])[...] = x[idx]

    def backward(self, top, propagate_down, bottom):
        if propagate_down[1]:
            raise LayerError(self, "cannot back-propagate to the index bottom")
        if not propagate_down[0]:
            return
        ops = backend.ops()
        xp = ops.xp
        idx = self._indices(ops, bottom)
        num = bottom[0].shape[0]
        dy = ops.diff(top[0]).reshape(len(idx), -1)
        dx = ops.mutable_diff(bottom[0]).reshape(num, -1)
        # NOTE: a one-hot matrix sums the rows of repeated indices (a scatter-add)
        # with one matmul on any device.
        onehot = (idx[None, :] == xp.arange(num)[:, None]).astype(dx.dtype)
        xp.matmul(onehot, dy, out=dx)
