"""Split (one blob to several consumers) and Silence (consume without output)."""

from __future__ import annotations

from caffepy import backend
from caffepy.errors import LayerError
from caffepy.layer import Layer
from caffepy.registry import register_layer


@register_layer("Split")
class SplitLayer(Layer):
    """One bottom to several tops that share its data (Caffe inserts these when a
    blob feeds several layers).

    Bottom: any shape. Tops: the same data (shared memory, no copy).
    Gradient: the sum of the top diffs.
    """

    uses_ops = ("copy",)

    exact_num_bottom = 1
    min_num_top = 1

    def setup(self, bottom, top):
        for i, t in enumerate(top):
            if t is bottom[0]:
                raise LayerError(
                    self, f"top[{i}] is its bottom; Split cannot work in place"
                )

    def reshape(self, bottom, top):
        for t in top:
            t.reshape_like(bottom[0])
            t.share_data(bottom[0])

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        ops = backend.ops()
        dx = ops.mutable_diff(bottom[0])
        if len(top) == 1:
            ops.copy(ops.diff(top[0]), dx)
            return
        ops.xp.add(ops.diff(top[0]), ops.diff(top[1]), out=dx)
        for t in top[2:]:
            dx += ops.diff(t)


@register_layer("Silence")
class SilenceLayer(Layer):
    """Consume bottoms without output (so they are not net outputs).

    Bottoms: any. Tops: none. Backward writes zero diffs to the bottoms.
    """

    uses_ops = ("mutable_diff",)

    min_num_bottom = 1
    exact_num_top = 0

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        ops = backend.ops()
        for b, pd in zip(bottom, propagate_down):
            if pd:
                ops.mutable_diff(b)[...] = 0
