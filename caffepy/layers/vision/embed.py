"""Embed: a learned lookup table."""

from __future__ import annotations

from caffepy import backend
from caffepy.errors import LayerError
from caffepy.layer import Layer, want_param
from caffepy.layers.vision.params import check_param_shapes
from caffepy.registry import register_layer


@register_layer("Embed")
class EmbedLayer(Layer):
    """Lookup table: ``y[..., :] = W[int(x[...]), :] + b``.

    Parameters (``embed_param``): ``num_output`` N (required), ``input_dim`` K
    (required; indices lie in [0, K)), ``bias_term`` (true), ``weight_filler``,
    ``bias_filler`` (constant 0).

    Blobs: weight (K, N); bias (N,).
    Bottom: indices stored as floats, any shape S (each value must be an integer
    in [0, K)); top: S + (N,).

    Gradient: dW[k] = sum of dy over the positions holding index k (repeated
    indices accumulate); db = sum of dy. The indices get no gradient: asking for
    one raises LayerError.
    """

    uses_ops = ("embed_backward", "embed_forward")

    exact_num_bottom = 1
    exact_num_top = 1

    @classmethod
    def param_blob_count(cls, layer_param):
        return 1 + int(layer_param.embed_param.bias_term)

    def setup(self, bottom, top):
        p = self.layer_param.embed_param
        self.num_output = int(p.num_output)
        self.input_dim = int(p.input_dim)
        if self.num_output <= 0:
            raise LayerError(self, f"num_output must be > 0, got {self.num_output}")
        if self.input_dim <= 0:
            raise LayerError(self, f"input_dim must be > 0, got {self.input_dim}")
        self.bias_term = bool(p.bias_term)
        wshape = (self.input_dim, self.num_output)
        shapes = [wshape] + ([(self.num_output,)] if self.bias_term else [])
        if self.blobs:
            check_param_shapes(self, shapes)
        else:
            self.new_blob(wshape, p.weight_filler)
            if self.bias_term:
                self.new_blob((self.num_output,), p.bias_filler)

    def allow_force_backward(self, bottom_index):
        return False

    def reshape(self, bottom, top):
        top[0].reshape(bottom[0].shape + (self.num_output,))

    def _check_indices(self, ops, values):
        """Every value must be an integer in [0, input_dim)."""
        xp = ops.xp
        flat = values.reshape(-1)
        # NOTE: the range test comes first (NaN fails it), so the integer test
        # only sees values an index can represent.
        bad = ~((flat >= 0) & (flat < self.input_dim))
        if not bad.any():
            bad = xp.floor(flat) != flat
        if bad.any():
            k = int(xp.flatnonzero(bad)[0])
            raise LayerError(
                self,
                f"bottom[0] holds {float(flat[k])!r} at flat position {k}; indices "
                f"must be integers in [0, input_dim={self.input_dim})",
            )

    def forward(self, bottom, top):
        ops = backend.ops()
        x = ops.data(bottom[0])
        self._check_indices(ops, x)
        y = ops.mutable_data(top[0]).reshape(-1, self.num_output)
        b = ops.data(self.blobs[1]) if self.bias_term else None
        ops.embed_forward(x, ops.data(self.blobs[0]), b, y, self.workspace(ops))

    def backward(self, top, propagate_down, bottom):
        if propagate_down and propagate_down[0]:
            raise LayerError(
                self,
                "cannot back-propagate to its index input (bottom[0]); "
                "propagate_down must be false for it",
            )
        ops = backend.ops()
        dw = ops.mutable_diff(self.blobs[0]) if want_param(self, 0) else None
        db = None
        if self.bias_term and want_param(self, 1):
            db = ops.mutable_diff(self.blobs[1])
        if dw is None and db is None:
            return
        dy = ops.diff(top[0]).reshape(-1, self.num_output)
        ops.embed_backward(ops.data(bottom[0]), dy, dw, db, self.workspace(ops))
