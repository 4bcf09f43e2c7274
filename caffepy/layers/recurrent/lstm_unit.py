"""LSTMUnit: one time step of an LSTM cell, given the gate pre-activations."""

from __future__ import annotations

from caffepy import backend
from caffepy.errors import ShapeError
from caffepy.layer import Layer
from caffepy.registry import register_layer


def _sigmoid(xp, x):
    # NOTE: 0.5 * (1 + tanh(x / 2)) is the logistic function without exp(-x),
    # which overflows (and warns) for large negative x.
    return 0.5 * (1.0 + xp.tanh(0.5 * x))


@register_layer("LSTMUnit")
class LSTMUnitLayer(Layer):
    """One LSTM step (Caffe's ``LSTMUnitLayer``), the unit the LSTM layer unrolls.

    Bottoms: ``c_prev`` (1, N, D), the previous cell state; ``x`` (1, N, 4D), the
    gate pre-activations in Caffe's order i, f, o, g; ``cont`` (1, N), the
    sequence-continuation indicators (0 at the start of a sequence).
    Tops: ``c`` (1, N, D) and ``h`` (1, N, D)::

        i = sigmoid(x_i)   f = sigmoid(x_f)   o = sigmoid(x_o)   g = tanh(x_g)
        c = cont * f * c_prev + i * g
        h = o * tanh(c)

    Gradient: with ``dc' = dc + dh * o * (1 - tanh(c)^2)``: ``dc_prev = cont * f *
    dc'``; ``dx_i = dc' * g * i(1-i)``, ``dx_f = dc' * c_prev * cont * f(1-f)``,
    ``dx_o = dh * tanh(c) * o(1-o)``, ``dx_g = dc' * i * (1-g^2)``. ``cont`` gets
    no gradient (Caffe refuses it). For the 0/1 values ``cont`` takes this is
    exactly Caffe's backward.
    """

    exact_num_bottom = 3
    exact_num_top = 2

    def allow_force_backward(self, bottom_index):
        return bottom_index != 2

    def reshape(self, bottom, top):
        c_prev, x, cont = bottom
        if c_prev.num_axes != 3 or c_prev.shape[0] != 1:
            raise ShapeError(
                self, f"c_prev (bottom[0]) must be (1, N, D), got shape {c_prev.shape}"
            )
        _, n, d = c_prev.shape
        if x.shape != (1, n, 4 * d):
            raise ShapeError(
                self,
                f"the gate input (bottom[1]) must be (1, {n}, {4 * d}) for c_prev "
                f"{c_prev.shape}, got shape {x.shape}",
            )
        if cont.shape != (1, n):
            raise ShapeError(
                self,
                f"cont (bottom[2]) must be (1, {n}) for c_prev {c_prev.shape}, got "
                f"shape {cont.shape}",
            )
        self.n, self.d = n, d
        top[0].reshape(c_prev.shape)
        top[1].reshape(c_prev.shape)

    def _gates(self, ops, bottom):
        """The activated gates i, f, o, g, each (N, D), and cont as (N, 1)."""
        xp = ops.xp
        x = ops.data(bottom[1]).reshape(self.n, 4, self.d)
        sig = _sigmoid(xp, x[:, :3])
        g = xp.tanh(x[:, 3])
        cont = ops.data(bottom[2]).reshape(self.n, 1)
        return sig[:, 0], sig[:, 1], sig[:, 2], g, cont

    def forward(self, bottom, top):
        ops = backend.ops()
        xp = ops.xp
        i, f, o, g, cont = self._gates(ops, bottom)
        c_prev = ops.data(bottom[0]).reshape(self.n, self.d)
        c = ops.mutable_data(top[0]).reshape(self.n, self.d)
        c[...] = cont * f * c_prev + i * g
        ops.mutable_data(top[1]).reshape(self.n, self.d)[...] = o * xp.tanh(c)

    def backward(self, top, propagate_down, bottom):
        if not (propagate_down[0] or propagate_down[1]):
            return
        ops = backend.ops()
        xp = ops.xp
        i, f, o, g, cont = self._gates(ops, bottom)
        shape = (self.n, self.d)
        tanh_c = xp.tanh(ops.data(top[0]).reshape(shape))
        dh = ops.diff(top[1]).reshape(shape)
        dc = ops.diff(top[0]).reshape(shape) + dh * o * (1 - tanh_c * tanh_c)
        if propagate_down[0]:
            ops.mutable_diff(bottom[0]).reshape(shape)[...] = dc * cont * f
        if propagate_down[1]:
            c_prev = ops.data(bottom[0]).reshape(shape)
            dx = ops.mutable_diff(bottom[1]).reshape(self.n, 4, self.d)
            dx[:, 0] = dc * g * i * (1 - i)
            dx[:, 1] = dc * c_prev * cont * f * (1 - f)
            dx[:, 2] = dh * tanh_c * o * (1 - o)
            dx[:, 3] = dc * i * (1 - g * g)
