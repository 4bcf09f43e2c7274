"""Accuracy: top-k classification accuracy (a metric, not a loss)."""

from __future__ import annotations

from caffepy import backend
from caffepy.errors import LayerError, UnsupportedError
from caffepy.layer import Layer
from caffepy.layers.loss.base import check_labels, label_geometry
from caffepy.registry import register_layer


@register_layer("Accuracy")
class AccuracyLayer(Layer):
    """Top-k classification accuracy (not a loss: no loss weight, forward only).

    A position counts as correct when fewer than top_k OTHER classes score at
    least as high as the true class (BVLC Caffe 1.0's rule: a tie with the true
    class counts against it).

    Parameters (``accuracy_param``): top_k (default 1), axis (default 1, the class
    axis), ignore_label (unset).

    Bottoms: scores (..., C, ...) and labels (outer*inner). Tops: accuracy (0-d);
    optional per-class accuracy (C,) (0 for a class with no labels).
    Backward is refused (Caffe: not implemented).
    """

    uses_ops = ("accuracy_forward", "check_labels")

    exact_num_bottom = 2
    min_num_top = 1
    max_num_top = 2

    def setup(self, bottom, top):
        p = self.layer_param.accuracy_param
        self.top_k = int(p.top_k)
        self.ignore_label = int(p.ignore_label) if p.HasField("ignore_label") else None
        self._axis_param = p.axis

    def allow_force_backward(self, bottom_index):
        return False

    def reshape(self, bottom, top):
        self.axis, self.outer, self.C, self.inner = label_geometry(
            self, bottom, self._axis_param, "score"
        )
        if self.top_k > self.C:
            raise LayerError(
                self,
                f"top_k {self.top_k} exceeds the {self.C} classes of scores "
                f"{bottom[0].shape}",
            )
        top[0].reshape(())
        if len(top) > 1:
            top[1].reshape(self.C)

    def forward(self, bottom, top):
        ops = backend.ops()
        x = ops.data(bottom[0]).reshape(self.outer, self.C, self.inner)
        labels = ops.data(bottom[1])
        check_labels(self, ops, labels, self.C, self.ignore_label)
        per_class = ops.mutable_data(top[1]) if len(top) > 1 else None
        ops.accuracy_forward(
            x,
            labels,
            self.top_k,
            self.ignore_label,
            ops.mutable_data(top[0]),
            per_class,
        )

    def backward(self, top, propagate_down, bottom):
        if any(propagate_down):
            raise UnsupportedError(
                f"{self.type} layer '{self.name}' is not differentiable: it cannot "
                "back-propagate to its bottoms"
            )
