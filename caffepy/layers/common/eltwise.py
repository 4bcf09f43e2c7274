"""Eltwise: element-wise product, weighted sum or maximum of bottoms."""

from __future__ import annotations

import numpy as np

from caffepy import backend
from caffepy.errors import LayerError, ShapeError
from caffepy.layer import Layer
from caffepy.registry import register_layer

# EltwiseParameter.EltwiseOp
PROD, SUM, MAX = 0, 1, 2


@register_layer("Eltwise")
class EltwiseLayer(Layer):
    """Element-wise PROD, SUM (with coefficients) or MAX of bottoms of one shape.

    Parameters (``eltwise_param``):
        operation: PROD, SUM (default) or MAX.
        coeff: one per bottom, SUM only (default all 1).
        stable_prod_grad (default true): PROD gradient as the product of the other
            inputs (true) or top / bottom (false; wrong where a bottom is 0).

    Gradients: SUM: coeff_i * dy; PROD: dy * prod_{j != i} x_j; MAX: dy to the
    bottom that was the max (ties as Caffe: bottom 1 wins over bottom 0, and a
    later bottom replaces the running max only when strictly greater).
    """

    uses_ops = ("eltwise_backward", "eltwise_forward")

    min_num_bottom = 2
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.eltwise_param
        self.op = p.operation
        if self.op not in (PROD, SUM, MAX):
            raise LayerError(self, f"unknown operation {self.op}")
        coeff = list(p.coeff)
        if coeff and self.op != SUM:
            raise LayerError(self, "takes coefficients only for operation SUM")
        if coeff and len(coeff) != len(bottom):
            raise LayerError(
                self,
                f"has {len(coeff)} coeff values for {len(bottom)} bottoms; give one per "
                "bottom",
            )
        self.coeff = coeff or [1.0] * len(bottom)
        self.stable_prod_grad = p.stable_prod_grad

    def reshape(self, bottom, top):
        ref = bottom[0].shape
        for i, b in enumerate(bottom[1:], 1):
            if b.shape != ref:
                raise ShapeError(
                    self,
                    f"bottom[{i}] has shape {b.shape} but bottom[0] has {ref}; "
                    "Eltwise needs equal shapes",
                )
        top[0].reshape(ref)

    def _mask(self, ops, shape):
        """The MAX winners (kept from forward for backward); None otherwise."""
        if self.op != MAX:
            return None
        return self.workspace(ops).get("mask", shape, np.int32)

    def forward(self, bottom, top):
        ops = backend.ops()
        xs = [ops.data(b) for b in bottom]
        y = ops.mutable_data(top[0])
        mask = self._mask(ops, top[0].shape)
        ops.eltwise_forward(xs, self.op, self.coeff, y, mask)

    # -- fused with the in-place ReLU after it (ResNet's shortcut sums) -------------
    def fuse_next(self, nxt: Layer, bottom: list, top: list) -> bool:
        """An in-place ReLU (slope >= 0) after a SUM: rectified as it is summed
        (``Ops.eltwise_sum_relu_forward``); backward runs them one by one."""
        from caffepy.layers.neuron.relu import fusable_relu

        return self.op == SUM and fusable_relu(nxt)

    def forward_fused(self, nxt: Layer, bottom: list, top: list) -> None:
        self.reshape(bottom, top)
        nxt.reshape(top, top)
        ops = backend.ops()
        xs = [ops.data(b) for b in bottom]
        y = ops.mutable_data(top[0])
        ops.eltwise_sum_relu_forward(xs, self.coeff, y, nxt.negative_slope)

    def backward(self, top, propagate_down, bottom):
        ops = backend.ops()
        dy = ops.diff(top[0])
        y = ops.data(top[0]) if self.op == PROD and not self.stable_prod_grad else None
        mask = self._mask(ops, top[0].shape)
        xs = [ops.data(b) for b in bottom] if self.op == PROD else []
        for i, (b, pd) in enumerate(zip(bottom, propagate_down)):
            if pd:
                ops.eltwise_backward(
                    xs,
                    y,
                    dy,
                    mask,
                    self.op,
                    self.coeff,
                    self.stable_prod_grad,
                    i,
                    ops.mutable_diff(b),
                )
