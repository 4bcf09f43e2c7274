"""BatchNorm: batch normalisation without scale or shift (Caffe's)."""

from __future__ import annotations

from typing import Any

import numpy as np

from caffepy import backend
from caffepy.backend.base import Array, Ops
from caffepy.errors import LayerError, ShapeError
from caffepy.layer import TEST, Layer, want_param
from caffepy.registry import register_layer


@register_layer("BatchNorm")
class BatchNormLayer(Layer):
    """Batch normalisation without scale or shift (Caffe's BatchNorm).

    ``y = (x - mean) / sqrt(var + eps)`` per channel (axis 1), statistics over
    the batch and every axis after 1.

    Parameters (``batch_norm_param``):
        use_global_stats (unset: true in TEST, false in TRAIN): normalise with the
            stored statistics instead of the batch's.
        moving_average_fraction (0.999): decay ``maf`` of the stored sums.
        eps (1e-5): added to the variance.

    Blobs (statistics, never learned: the Net gives them lr_mult 0 and, as Caffe,
    an explicit nonzero lr_mult is refused): ``blobs[0]`` running mean sum (C,),
    ``blobs[1]`` running variance sum (C,), ``blobs[2]`` their normaliser (1,).
    With batch statistics, forward updates them as Caffe:
    ``s = maf * s + 1``, ``mean_sum = maf * mean_sum + mean``,
    ``var_sum = maf * var_sum + m / (m - 1) * var`` (m = N * spatial; the
    normalisation itself uses the biased variance). Global statistics are
    ``blobs[0] / s`` and ``blobs[1] / s`` (0 when s == 0).

    Bottom: (N, C, ...) or (N,) (one channel). Top: same shape (in place allowed).

    Gradient: with batch statistics
    ``dx = (dy - mean(dy) - mean(dy * y) * y) / sqrt(var + eps)``; with global
    statistics ``dx = dy / sqrt(var + eps)``.
    """

    uses_ops = (
        "batch_norm_backward_global",
        "batch_norm_backward_train",
        "batch_norm_forward_global",
        "batch_norm_forward_train",
        "batch_norm_global_stats",
        "batch_norm_update_stats",
    )

    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        param = self.layer_param.batch_norm_param
        self.moving_average_fraction = float(param.moving_average_fraction)
        self.use_global_stats = self.phase == TEST
        if param.HasField("use_global_stats"):
            self.use_global_stats = bool(param.use_global_stats)
        self.eps = float(param.eps)
        if self.eps < 0:
            raise LayerError(self, f"eps must be >= 0, got {self.eps}")
        if bottom[0].num_axes == 0:
            raise LayerError(self, "needs a bottom with at least 1 axis, got a scalar")
        self.channels = 1 if bottom[0].num_axes == 1 else bottom[0].shape[1]
        for i, spec in enumerate(self.layer_param.param[:3]):
            if spec.lr_mult != 0:
                raise LayerError(
                    self,
                    f"param {i} has lr_mult {spec.lr_mult}; BatchNorm statistics "
                    "cannot be learned (use lr_mult: 0 or leave param out)",
                )
        if self.blobs:
            want = [(self.channels,), (self.channels,), (1,)]
            got = [b.count for b in self.blobs]
            if len(self.blobs) != 3 or got != [w[0] for w in want]:
                raise LayerError(
                    self,
                    f"expected 3 statistics blobs of shapes {want}, got "
                    f"{[b.shape for b in self.blobs]}",
                )
        else:
            for shape in ((self.channels,), (self.channels,), (1,)):
                self.new_blob(shape)  # zeros
        self.param_propagate_down = [False] * len(self.blobs)

    @classmethod
    def param_blob_count(cls, layer_param: Any) -> int:
        """Mean sum, variance sum and their normaliser."""
        return 3

    @classmethod
    def fixed_lr_mults(cls, layer_param: Any) -> list[float]:
        """Zeros: the statistics are never learned (setup refuses an explicit
        nonzero lr_mult, as Caffe)."""
        return [0.0, 0.0, 0.0]

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        if len(shape) == 0 or (len(shape) > 1 and shape[1] != self.channels):
            raise ShapeError(
                self,
                f"bottom shape {shape} does not have the {self.channels} channels "
                "(axis 1) the layer was set up with",
            )
        if top[0] is not bottom[0]:
            top[0].reshape(shape)

    def _view(self, array: Array) -> Array:
        """(N, C, S) view of an (N, C, ...) or (N,) array."""
        num = array.shape[0]
        return array.reshape(num, self.channels, -1) if num else array.reshape(0, 1, 1)

    def _stats(self, ops: Ops, name: str) -> Array:
        """A (C,) statistic of the last forward (mean, var, std), kept in the
        workspace."""
        return self.workspace(ops).get(name, (self.channels,), self.dtype)

    def forward(self, bottom, top):
        ops = backend.ops()
        x3 = self._view(ops.data(bottom[0]))
        y3 = self._view(ops.mutable_data(top[0]))
        mean, var, std = (self._stats(ops, n) for n in ("mean", "var", "std"))
        if self.use_global_stats:
            stored = [ops.data(b) for b in self.blobs]
            ops.batch_norm_global_stats(*stored, self.eps, mean, var, std)
            ops.batch_norm_forward_global(x3, mean, std, y3)
            return
        xnorm = self.workspace(ops).get("xnorm", x3.shape, x3.dtype)
        ops.batch_norm_forward_train(x3, self.eps, y3, xnorm, mean, var, std)
        self._update_stats(ops, bottom[0].count, mean, var)

    def _update_stats(self, ops: Ops, count: int, mean: Array, var: Array) -> None:
        """Fold the batch's mean and variance into the stored sums."""
        m = count // self.channels
        # NOTE: the stored variance is unbiased (m / (m - 1)), the one used to
        # normalise this batch is not, as Caffe.
        correction = m / (m - 1) if m > 1 else 1.0
        stored = [ops.mutable_data(b) for b in self.blobs]
        maf = self.moving_average_fraction
        ops.batch_norm_update_stats(mean, var, maf, correction, *stored)

    # -- fused with the in-place Scale after it (ResNet's BatchNorm + Scale) -------
    def fuse_next(self, nxt: Layer, bottom: list, top: list) -> bool:
        """A Scale with a learned per-channel scale and bias, in place after this
        BatchNorm computed in place: ``y = xnorm * scale + bias`` in the same pass
        as the normalisation, and the Scale keeps no copy of its input (it is this
        layer's ``xnorm``)."""
        from caffepy.layers.normalization.scale import ScaleLayer

        if not isinstance(nxt, ScaleLayer) or top[0] is not bottom[0]:
            return False
        if len(nxt.layer_param.bottom) != 1 or nxt.bias_id is None:
            return False
        if bottom[0].num_axes < 2 or nxt.dtype != self.dtype:
            return False
        axis = nxt.axis + bottom[0].num_axes if nxt.axis < 0 else nxt.axis
        want = (self.channels,)
        return axis == 1 and all(
            b.shape == want for b in (nxt.blobs[0], nxt.blobs[nxt.bias_id])
        )

    def forward_fused(self, nxt: Layer, bottom: list, top: list) -> None:
        self.reshape(bottom, top)
        nxt.reshape(top, top)
        ops = backend.ops()
        x3 = self._view(ops.data(bottom[0]))
        y3 = self._view(ops.mutable_data(top[0]))
        mean, var, std = (self._stats(ops, n) for n in ("mean", "var", "std"))
        s = ops.data(nxt.blobs[0]).reshape(-1)
        b = ops.data(nxt.blobs[nxt.bias_id]).reshape(-1)
        if self.use_global_stats:
            stored = [ops.data(blob) for blob in self.blobs]
            ops.batch_norm_global_stats(*stored, self.eps, mean, var, std)
            keep = None
            if nxt._keeps_input(top, top):
                keep = self.workspace(ops).get("xnorm", x3.shape, x3.dtype)
            ops.batch_norm_scale_forward_global(x3, mean, std, s, b, keep, y3)
            nxt.saved_input = keep
            return
        xnorm = self.workspace(ops).get("xnorm", x3.shape, x3.dtype)
        ops.batch_norm_scale_forward_train(
            x3, self.eps, s, b, y3, xnorm, mean, var, std
        )
        self._update_stats(ops, bottom[0].count, mean, var)
        nxt.saved_input = xnorm

    def global_affine(self, ops: Ops, scale: Layer, top: list) -> tuple:
        """For a layer that computes this BatchNorm (stored statistics) and the
        in-place Scale after it in its own pass (a Convolution's
        ``forward_following``): the (4, C) mean, std, scale and bias to apply,
        and where the normalised values go when the Scale keeps its input for
        backward (else None). Leaves what the two layers' backward passes
        read, as their own forwards would."""
        mean, var, std = (self._stats(ops, n) for n in ("mean", "var", "std"))
        stored = [ops.data(blob) for blob in self.blobs]
        ops.batch_norm_global_stats(*stored, self.eps, mean, var, std)
        rows = self.workspace(ops).get("affine", (4, self.channels), self.dtype)
        params = (scale.blobs[0], scale.blobs[scale.bias_id])
        for row, src in zip(rows[2:], params, strict=True):
            ops.copy(ops.data(src).reshape(-1), row)
        ops.copy(mean, rows[0])
        ops.copy(std, rows[1])
        keep = None
        if scale._keeps_input(top, top):
            shape = self._view(ops.data(top[0])).shape
            keep = self.workspace(ops).get("xnorm", shape, self.dtype)
        scale.saved_input = keep
        return rows, keep

    def backward_fused(
        self, nxt: Layer, top: list, propagate_down: list, bottom: list
    ) -> bool:
        xnorm = getattr(nxt, "saved_input", None)
        if self.use_global_stats or not propagate_down[0] or xnorm is None:
            return False
        if not (want_param(nxt, 0) and want_param(nxt, nxt.bias_id)):
            return False
        ops = backend.ops()
        dy3 = self._view(ops.diff(top[0]))
        dx3 = self._view(ops.mutable_diff(bottom[0]))
        scale, bias = nxt.blobs[0], nxt.blobs[nxt.bias_id]
        ws = nxt.workspace(ops)
        sum_dy = ws.get("sum", (self.channels,), np.float64)
        sum_dyx = ws.get("dot", (self.channels,), np.float64)
        s = ops.data(scale).reshape(-1)
        std = self._stats(ops, "std")
        ops.batch_norm_scale_backward_train(dy3, xnorm, s, std, dx3, sum_dy, sum_dyx)
        # NOTE: as ScaleLayer.backward: float32 += float64, in NumPy
        ops.mutable_diff(scale)[...] += sum_dyx.reshape(scale.shape)
        ops.mutable_diff(bias)[...] += sum_dy.reshape(bias.shape)
        return True

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        ops = backend.ops()
        dy3 = self._view(ops.diff(top[0]))
        dx3 = self._view(ops.mutable_diff(bottom[0]))
        std = self._stats(ops, "std")
        if self.use_global_stats:
            ops.batch_norm_backward_global(dy3, std, dx3)
            return
        xnorm = self.workspace(ops).get("xnorm", dy3.shape, dy3.dtype)
        ops.batch_norm_backward_train(dy3, xnorm, std, dx3)
