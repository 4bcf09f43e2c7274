"""ContrastiveLoss: pull similar pairs together, push dissimilar ones apart."""

from __future__ import annotations

from caffepy import backend
from caffepy.errors import LayerError, ShapeError
from caffepy.layer import LossLayer
from caffepy.registry import register_layer


@register_layer("ContrastiveLoss")
class ContrastiveLossLayer(LossLayer):
    """Contrastive loss on pairs (a_n, b_n) with similarity labels y_n.

    d_n = ||a_n - b_n||; loss = sum_n [y_n d_n^2 + (1 - y_n) m(d_n)] / (2 N) with
    m(d) = max(margin - d, 0)^2, or max(margin - d^2, 0) when legacy_version.
    y_n is int(label) != 0.

    Parameters (``contrastive_loss_param``): margin (default 1.0),
    legacy_version (default false).

    Bottoms: a (N, ...), b (same shape), y (N). Gradient to a (b: negated):
    similar: (a - b) w / N; dissimilar with positive margin term:
    -(margin - d)/(d + 1e-4) (a - b) w / N (legacy: -(a - b) w / N); w = loss_weight.
    """

    uses_ops = ("contrastive_loss_backward", "contrastive_loss_forward")

    exact_num_bottom = 3

    def setup(self, bottom, top):
        p = self.layer_param.contrastive_loss_param
        self.margin, self.legacy = float(p.margin), p.legacy_version

    def allow_force_backward(self, bottom_index):
        return bottom_index != 2

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        if bottom[0].shape != bottom[1].shape:
            raise ShapeError(
                self,
                f"the two inputs must have the same shape: {bottom[0].shape} vs "
                f"{bottom[1].shape}",
            )
        self.num = bottom[0].shape[0] if bottom[0].num_axes else 1
        if bottom[2].count != self.num:
            raise ShapeError(
                self,
                f"needs one similarity label per pair: inputs {bottom[0].shape}, "
                f"labels {bottom[2].shape}",
            )
        self.dim = bottom[0].count // max(self.num, 1)

    def _work(self, ops):
        """a - b (N, D) and its squared row norms (N,), kept for backward."""
        ws = self.workspace(ops)
        d = ws.get("diff", (self.num, self.dim), self.dtype)
        return d, ws.get("dist_sq", (self.num,), self.dtype)

    def forward(self, bottom, top):
        ops = backend.ops()
        a = ops.data(bottom[0]).reshape(self.num, self.dim)
        b = ops.data(bottom[1]).reshape(self.num, self.dim)
        d, dist_sq = self._work(ops)
        ops.contrastive_loss_forward(
            a,
            b,
            ops.data(bottom[2]),
            self.margin,
            self.legacy,
            d,
            dist_sq,
            ops.mutable_data(top[0]),
        )

    def backward(self, top, propagate_down, bottom):
        if propagate_down[2]:
            raise LayerError(self, "cannot back-propagate to the label input")
        ops = backend.ops()
        d, dist_sq = self._work(ops)
        for i, sign in ((0, 1.0), (1, -1.0)):
            if propagate_down[i]:
                dx = ops.mutable_diff(bottom[i]).reshape(self.num, self.dim)
                ops.contrastive_loss_backward(
                    d,
                    dist_sq,
                    ops.data(bottom[2]),
                    self.margin,
                    self.legacy,
                    ops.diff(top[0]),
                    sign,
                    dx,
                )
