"""MultinomialLogisticLoss: the negative log likelihood of given probabilities."""

from __future__ import annotations

from caffepy import backend
from caffepy.errors import LayerError
from caffepy.layer import LossLayer
from caffepy.layers.loss.base import check_labels, per_item_reshape
from caffepy.registry import register_layer


@register_layer("MultinomialLogisticLoss")
class MultinomialLogisticLossLayer(LossLayer):
    """Negative log likelihood of probabilities (e.g. a Softmax output).

    loss = -sum_n log(max(p[n, label_n], 1e-20)) / N.

    Bottoms: probabilities (N, C, ...) flattened to (N, count/N); labels (N).
    Gradient: -loss_weight / (N * max(p, 1e-20)) at the label, 0 elsewhere.
    """

    uses_ops = (
        "check_labels",
        "multinomial_logistic_loss_backward",
        "multinomial_logistic_loss_forward",
    )

    exact_num_bottom = 2

    def reshape(self, bottom, top):
        per_item_reshape(self, bottom, top, "probabilities")

    def forward(self, bottom, top):
        ops = backend.ops()
        p = ops.data(bottom[0]).reshape(self.num, self.dim)
        labels = ops.data(bottom[1])
        check_labels(self, ops, labels, self.dim)
        ops.multinomial_logistic_loss_forward(p, labels, ops.mutable_data(top[0]))

    def backward(self, top, propagate_down, bottom):
        if propagate_down[1]:
            raise LayerError(self, "cannot back-propagate to the label input")
        if not propagate_down[0]:
            return
        ops = backend.ops()
        p = ops.data(bottom[0]).reshape(self.num, self.dim)
        dx = ops.mutable_diff(bottom[0]).reshape(self.num, self.dim)
        ops.multinomial_logistic_loss_backward(
            p, ops.data(bottom[1]), ops.diff(top[0]), dx
        )
