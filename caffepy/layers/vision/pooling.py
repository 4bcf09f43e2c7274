"""Pooling: max, average or stochastic over windows of the spatial axes."""

from __future__ import annotations

import numpy as np

from caffepy import backend
from caffepy import rng as _rng
from caffepy.backend.base import PoolGeometry
from caffepy.errors import LayerError, ShapeError
from caffepy.layer import TRAIN, Layer
from caffepy.layers.neuron.relu import fusable_relu
from caffepy.registry import register_layer


@register_layer("Pooling")
class PoolingLayer(Layer):
    """Max, average or stochastic pooling over the spatial axes of (N, C, H, W).

    MAX: ``y = max over the window clipped to the input``; an optional second top
    holds the argmax as a float flat index ``h*W + w`` into the input plane.
    AVE: ``y = sum over the clipped window / pool_size``, where pool_size is the
    window clipped to the *padded* input (padding counts; the part of a ceil-mode
    window beyond the padding does not), as Caffe.
    STOCHASTIC (Caffe's GPU kernels; its CPU code aborts), on non-negative inputs,
    without padding: TRAIN samples one element per window with probability
    proportional to its value (uniform draws from :func:`caffepy.rng.get_rng`);
    TEST gives the probability-weighted average ``sum(x^2) / sum(x)``.

    Parameters (``pooling_param``): ``pool`` (MAX, AVE or STOCHASTIC); ``kernel_size`` or ``kernel_h``+``kernel_w`` (required
    unless ``global_pooling``); ``pad`` (0) or ``pad_h``+``pad_w``, each < kernel;
    ``stride`` (1) or ``stride_h``+``stride_w``; ``global_pooling`` (false):
    kernel = H x W (pad must be 0 and stride 1); ``round_mode`` (CEIL) or FLOOR.

    Output size: ``ph = ceil((H + 2*pad_h - kh) / sh) + 1`` (floor for FLOOR);
    with padding, if ``(ph-1)*sh >= H + pad_h`` then ph -= 1, so the last window
    starts inside the padded input. Likewise for the width.

    Gradient: MAX routes dy to the argmax (summing where windows share it); AVE
    spreads dy/pool_size over the clipped window. STOCHASTIC: TRAIN routes dy to
    the sampled element (as Caffe); TEST is the exact gradient of the weighted
    average, ``(2 x_i S - Q) / S^2`` (Caffe's GPU code would reuse the last TRAIN
    samples). The mask top has no gradient.
    """

    uses_ops = (
        "from_host",
        "pool_backward",
        "pool_forward",
        "stochastic_pool_backward",
        "stochastic_pool_forward",
    )

    exact_num_bottom = 1
    min_num_top = 1
    max_num_top = 2

    def setup(self, bottom, top):
        p = self.layer_param.pooling_param
        P = type(p)
        self.pool = p.pool
        if self.pool not in (P.MAX, P.AVE, P.STOCHASTIC):
            raise LayerError(self, f"unknown pool method {self.pool}")
        if len(top) > 1 and self.pool != P.MAX:
            raise LayerError(
                self,
                f"only MAX pooling has a second (argmax mask) top; got "
                f"{len(top)} tops with pool {P.PoolMethod.Name(self.pool)}",
            )
        has = p.HasField
        self.global_pooling = p.global_pooling
        if self.global_pooling:
            if has("kernel_size") or has("kernel_h") or has("kernel_w"):
                raise LayerError(
                    self,
                    "global_pooling takes the kernel from the bottom; do not give "
                    "kernel_size or kernel_h/kernel_w",
                )
        else:
            square, rect = has("kernel_size"), has("kernel_h") or has("kernel_w")
            if square and rect:
                raise LayerError(
                    self,
                    "give the kernel as kernel_size OR kernel_h and kernel_w, not both",
                )
            if not square and not rect:
                raise LayerError(
                    self,
                    "needs kernel_size (or kernel_h and kernel_w, or "
                    "global_pooling: true)",
                )
            if rect and not (has("kernel_h") and has("kernel_w")):
                raise LayerError(
                    self, "a non-square kernel needs both kernel_h and kernel_w"
                )
        for short in ("pad", "stride"):
            pair = (has(short + "_h"), has(short + "_w"))
            if has(short) and any(pair):
                raise LayerError(
                    self, f"give {short} OR {short}_h and {short}_w, not both"
                )
            if pair[0] != pair[1]:
                raise LayerError(
                    self, f"{short}_h and {short}_w must be given together"
                )
        if has("kernel_size"):
            self.kernel = (p.kernel_size, p.kernel_size)
        else:
            self.kernel = (p.kernel_h, p.kernel_w)
        if has("pad_h"):
            self.pad = (p.pad_h, p.pad_w)
        else:
            self.pad = (p.pad, p.pad)
        if has("stride_h"):
            self.stride = (p.stride_h, p.stride_w)
        else:
            self.stride = (p.stride, p.stride)
        if self.global_pooling:
            if self.pad != (0, 0) or self.stride != (1, 1):
                raise LayerError(
                    self,
                    f"global_pooling needs pad 0 and stride 1, got pad "
                    f"{list(self.pad)} and stride {list(self.stride)}",
                )
        elif min(self.kernel) <= 0:
            raise LayerError(self, f"kernel size must be > 0, got {list(self.kernel)}")
        if min(self.stride) <= 0:
            raise LayerError(self, f"stride must be > 0, got {list(self.stride)}")
        if not self.global_pooling and (
            self.pad[0] >= self.kernel[0] or self.pad[1] >= self.kernel[1]
        ):
            raise LayerError(
                self,
                f"pad {list(self.pad)} must be smaller than the kernel "
                f"{list(self.kernel)}",
            )
        if self.pool == P.STOCHASTIC and self.pad != (0, 0):
            raise LayerError(
                self,
                f"padding is implemented only for MAX and AVE pooling; got pad "
                f"{list(self.pad)} with pool STOCHASTIC",
            )
        self.ceil_mode = p.round_mode == P.CEIL
        self.is_max = self.pool == P.MAX
        self.stochastic = self.pool == P.STOCHASTIC
        self.geom = None

    def _pooled(self, size, k, pad, stride):
        span = size + 2 * pad - k
        pooled = (-(-span // stride) if self.ceil_mode else span // stride) + 1
        return pooled

    def reshape(self, bottom, top):
        x = bottom[0]
        if x.num_axes != 4:
            raise ShapeError(
                self, f"bottom must have 4 axes (N, C, H, W), got shape {x.shape}"
            )
        n, c, h, w = x.shape
        if self.global_pooling:
            self.kernel = (h, w)
        (kh, kw), (ph, pw), (sh, sw) = self.kernel, self.pad, self.stride
        out_h = self._pooled(h, kh, ph, sh)
        out_w = self._pooled(w, kw, pw, sw)
        if ph or pw:
            # NOTE: Caffe's clip rule (applied to both axes when either is padded):
            # the last window must start inside the padded input.
            if (out_h - 1) * sh >= h + ph:
                out_h -= 1
            if (out_w - 1) * sw >= w + pw:
                out_w -= 1
        if out_h <= 0 or out_w <= 0:
            raise ShapeError(
                self,
                f"bottom {x.shape} is smaller than the kernel {list(self.kernel)}"
                f" with pad {list(self.pad)}",
            )
        shape = (n, c, out_h, out_w)
        for t in top:
            t.reshape(shape)
        geom = self.geom
        if geom is None or geom.kernel != self.kernel or geom.pooled != shape[2:]:
            self.geom = PoolGeometry(self.kernel, self.stride, self.pad, shape[2:])

    def forward(self, bottom, top):
        ops = backend.ops()
        if self.stochastic:
            return self._stochastic_forward(ops, bottom, top)
        mask = ops.mutable_data(top[1]) if len(top) > 1 else None
        ops.pool_forward(
            ops.data(bottom[0]),
            self.geom,
            "max" if self.is_max else "ave",
            ops.mutable_data(top[0]),
            mask,
            self.workspace(ops),
        )

    # -- fused with the in-place ReLU after it (CIFAR-10's pool1/relu1) -----------
    def fuse_next(self, nxt: Layer, bottom: list, top: list) -> bool:
        """An in-place ReLU (slope >= 0) after a max or average pooling: applied
        to each plane of the top as the pooling writes it."""
        return not self.stochastic and len(top) == 1 and fusable_relu(nxt)

    def forward_fused(self, nxt: Layer, bottom: list, top: list) -> None:
        self.reshape(bottom, top)
        nxt.reshape(top, top)
        ops = backend.ops()
        ops.pool_relu_forward(
            ops.data(bottom[0]),
            self.geom,
            "max" if self.is_max else "ave",
            ops.mutable_data(top[0]),
            None,
            self.workspace(ops),
            nxt.negative_slope,
        )

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        ops = backend.ops()
        if self.stochastic:
            index = self.workspace(ops).state.get("sto.index")
            if self.phase != TRAIN:
                index = None
            ops.stochastic_pool_backward(
                ops.data(bottom[0]),
                ops.diff(top[0]),
                self.geom,
                index,
                ops.mutable_diff(bottom[0]),
            )
            return
        ops.pool_backward(
            ops.diff(top[0]),
            self.geom,
            "max" if self.is_max else "ave",
            ops.mutable_diff(bottom[0]),
            self.workspace(ops),
        )

    def _stochastic_forward(self, ops, bottom, top):
        x, y = ops.data(bottom[0]), ops.mutable_data(top[0])
        if self.phase != TRAIN:
            ops.stochastic_pool_forward(x, self.geom, None, y, None)
            return
        ws = self.workspace(ops)
        # NOTE: the draws come from the host generator whatever the device, so a
        # GPU run samples the same elements as a CPU one.
        rand = _rng.get_rng().random(y.shape, dtype=np.float32)
        index = ws.get("sto.index", y.shape, np.int32)
        ops.stochastic_pool_forward(x, self.geom, ops.from_host(rand), y, index)
        ws.state["sto.index"] = index
