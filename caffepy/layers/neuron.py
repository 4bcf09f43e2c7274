"""Neuron layers: element-wise functions of one bottom, one top of the same shape.

ReLU, PReLU, ELU, Sigmoid, TanH, AbsVal, BNLL, Power, Exp, Log, Threshold, Clip,
Swish and Dropout, with BVLC Caffe's formulas and parameters. Every layer here
works in place (``top[0] is bottom[0]``): a layer whose backward needs the input
keeps a copy of it when computing in place. The hot ones (ReLU, PReLU, Dropout)
run Numba kernels from :mod:`caffepy.kernels.neuron`; the rest are NumPy ufuncs
writing into the top's buffer.
"""

import math

import numpy as np

from caffepy import rng as _rng
from caffepy.errors import LayerError, UnsupportedError
from caffepy.layer import TRAIN, NeuronLayer, want_param
from caffepy.registry import register_layer


def _flat(a):
    """A 1-D view of a contiguous array (no copy)."""
    return a.reshape(-1)


class _Neuron(NeuronLayer):
    """NeuronLayer with helpers for in-place computation and parameter gradients."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._x_copy = None

    def _stash_input(self, bottom, top):
        """Keep a copy of the input for backward when computing in place."""
        if top[0] is bottom[0]:
            data = bottom[0].data
            if self._x_copy is None or self._x_copy.shape != data.shape:
                self._x_copy = np.empty_like(data)
            np.copyto(self._x_copy, data)

    def _forward_input(self, bottom, top):
        """The forward pass's input, as backward sees it."""
        return self._x_copy if top[0] is bottom[0] else bottom[0].data



def _affine(layer, x, out):
    """out = shift + scale * x, in Caffe's order of operations (Power, Log)."""
    if layer.scale != 1:
        np.multiply(x, layer.scale, out=out)
    elif out is not x:
        np.copyto(out, x)
    if layer.shift != 0:
        out += layer.shift
    return out

@register_layer("ReLU")
class ReLULayer(_Neuron):
    """Rectified linear unit, leaky when ``negative_slope`` is set.

    ``y = x if x > 0 else negative_slope * x``.

    Parameters (``relu_param``):
        negative_slope (0): slope for x <= 0.

    Bottom: any shape. Top: same shape (in place allowed).

    Gradient: ``dx = dy`` where x > 0, ``negative_slope * dy`` where x <= 0.
    """

    def setup(self, bottom, top):
        self.negative_slope = float(self.layer_param.relu_param.negative_slope)

    def forward(self, bottom, top):
        from caffepy.kernels.neuron import relu_forward

        # NOTE: with a slope >= 0 the output has the input's sign, so backward can
        # read the mask from the top when computing in place (as Caffe does); a
        # negative slope flips it and needs the input kept.
        if self.negative_slope < 0:
            self._stash_input(bottom, top)
        relu_forward(_flat(bottom[0].data), self.negative_slope, _flat(top[0].data))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        from caffepy.kernels.neuron import relu_backward

        if top[0] is bottom[0] and self.negative_slope < 0:
            x = self._x_copy
        else:
            x = bottom[0].data
        relu_backward(
            _flat(x), _flat(top[0].diff), self.negative_slope, _flat(bottom[0].diff)
        )


@register_layer("PReLU")
class PReLULayer(_Neuron):
    """Parametric ReLU: a learned slope for x <= 0, per channel or shared.

    ``y = max(x, 0) + a_c * min(x, 0)`` with c the index along axis 1.

    Parameters (``prelu_param``):
        filler (constant 0.25 when unset, as Caffe): slope initialisation.
        channel_shared (false): one slope for all channels.

    Blobs: the slopes, shape (C,), or () when channel_shared (Caffe's 0-axis blob).

    Bottom: (N, C, ...) with at least 2 axes. Top: same shape (in place allowed).

    Gradient: ``dx = dy * (x > 0 ? 1 : a_c)``;
    ``da_c += sum over batch and space of dy * x * (x <= 0)`` (summed over every
    channel too when shared).
    """

    def setup(self, bottom, top):
        param = self.layer_param.prelu_param
        if bottom[0].num_axes < 2:
            raise LayerError(
                self,
                f"needs a bottom with at least 2 axes (N, C, ...), got shape "
                f"{bottom[0].shape}",
            )
        self.channel_shared = bool(param.channel_shared)
        channels = bottom[0].shape[1]
        shape = () if self.channel_shared else (channels,)
        if self.blobs:
            if self.blobs[0].count != (1 if self.channel_shared else channels):
                raise LayerError(
                    self,
                    f"slope blob has shape {self.blobs[0].shape}, expected {shape} "
                    f"(channel_shared: {str(self.channel_shared).lower()})",
                )
        else:
            if param.HasField("filler"):
                filler = param.filler
            else:
                from caffepy.proto import caffe_pb2

                filler = caffe_pb2.FillerParameter(type="constant", value=0.25)
            self.new_blob(shape, filler)
        self._dslope = None

    def reshape(self, bottom, top):
        channels = 1 if self.channel_shared else self.blobs[0].count
        if bottom[0].num_axes < 2 or (
            not self.channel_shared and bottom[0].shape[1] != channels
        ):
            raise LayerError(
                self,
                f"bottom shape {bottom[0].shape} does not match the {channels} "
                "channel slopes",
            )
        super().reshape(bottom, top)

    @staticmethod
    def _view(blob_array, shape):
        return blob_array.reshape(shape[0], shape[1], -1)

    def forward(self, bottom, top):
        from caffepy.kernels.neuron import prelu_forward

        self._stash_input(bottom, top)
        shape = bottom[0].shape
        prelu_forward(
            self._view(bottom[0].data, shape),
            _flat(self.blobs[0].data),
            self._view(top[0].data, shape),
        )

    def backward(self, top, propagate_down, bottom):
        from caffepy.kernels.neuron import prelu_backward

        want_slope = want_param(self, 0)
        if not (propagate_down[0] or want_slope):
            return
        shape = bottom[0].shape
        x = self._forward_input(bottom, top)
        if self._dslope is None or self._dslope.shape[0] != shape[1]:
            self._dslope = np.zeros(shape[1], np.float64)
        prelu_backward(
            self._view(x, shape),
            self._view(top[0].diff, shape),
            _flat(self.blobs[0].data),
            bool(propagate_down[0]),
            want_slope,
            self._view(bottom[0].diff, shape),
            self._dslope,
        )
        if want_slope:
            diff = self.blobs[0].diff
            if self.channel_shared:
                diff += self._dslope.sum()
            else:
                diff += self._dslope


@register_layer("ELU")
class ELULayer(_Neuron):
    """Exponential linear unit.

    ``y = x if x > 0 else alpha * (exp(x) - 1)``.

    Parameters (``elu_param``):
        alpha (1): value the output tends to for x -> -inf (negated).

    Bottom: any shape. Top: same shape (in place allowed).

    Gradient: ``dx = dy`` where x > 0, ``dy * (y + alpha)`` where x <= 0.
    """

    def setup(self, bottom, top):
        self.alpha = float(self.layer_param.elu_param.alpha)

    def forward(self, bottom, top):
        self._stash_input(bottom, top)
        x, y = bottom[0].data, top[0].data
        neg = np.minimum(x, 0)
        # NOTE: expm1 keeps the relative precision Caffe's exp(x) - 1 loses near 0.
        np.expm1(neg, out=neg)
        neg *= self.alpha
        np.maximum(x, 0, out=y)
        y += neg

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        x = self._forward_input(bottom, top)
        y, dy = top[0].data, top[0].diff
        factor = np.where(x > 0, 1, y + self.alpha).astype(self.dtype, copy=False)
        np.multiply(dy, factor, out=bottom[0].diff)


@register_layer("Sigmoid")
class SigmoidLayer(_Neuron):
    """Logistic sigmoid, computed as Caffe does: ``y = 0.5 * tanh(0.5 * x) + 0.5``.

    No parameters. Bottom: any shape. Top: same shape (in place allowed).

    Gradient: ``dx = dy * y * (1 - y)`` (from the top only).
    """

    def forward(self, bottom, top):
        y = top[0].data
        np.multiply(bottom[0].data, 0.5, out=y)
        np.tanh(y, out=y)
        y *= 0.5
        y += 0.5

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        y = top[0].data
        np.multiply(top[0].diff, y * (1 - y), out=bottom[0].diff)


@register_layer("TanH")
class TanHLayer(_Neuron):
    """Hyperbolic tangent ``y = tanh(x)``.

    No parameters. Bottom: any shape. Top: same shape (in place allowed).

    Gradient: ``dx = dy * (1 - y^2)`` (from the top only).
    """

    def forward(self, bottom, top):
        np.tanh(bottom[0].data, out=top[0].data)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        y = top[0].data
        np.multiply(top[0].diff, 1 - y * y, out=bottom[0].diff)


@register_layer("AbsVal")
class AbsValLayer(_Neuron):
    """Absolute value ``y = |x|``.

    No parameters. Bottom: any shape. Top: same shape (in place allowed, unlike
    Caffe, by keeping a copy of the input).

    Gradient: ``dx = sign(x) * dy`` (0 at x == 0).
    """

    def forward(self, bottom, top):
        self._stash_input(bottom, top)
        np.abs(bottom[0].data, out=top[0].data)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        x = self._forward_input(bottom, top)
        np.multiply(top[0].diff, np.sign(x), out=bottom[0].diff)


@register_layer("BNLL")
class BNLLLayer(_Neuron):
    """Binomial normal log likelihood (softplus) ``y = log(1 + exp(x))``.

    Computed in Caffe's overflow-free form ``max(x, 0) + log(1 + exp(-|x|))``.

    No parameters. Bottom: any shape. Top: same shape (in place allowed).

    Gradient: ``dx = dy * e / (e + 1)`` with ``e = exp(min(x, 50))`` (Caffe's
    kBNLL_THRESHOLD keeps exp finite; the sigmoid is 1 there anyway).
    """

    THRESHOLD = 50.0

    def forward(self, bottom, top):
        self._stash_input(bottom, top)
        x, y = bottom[0].data, top[0].data
        soft = np.abs(x)
        np.negative(soft, out=soft)
        np.exp(soft, out=soft)
        np.log1p(soft, out=soft)
        np.maximum(x, 0, out=y)
        y += soft

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        x = self._forward_input(bottom, top)
        e = np.minimum(x, self.THRESHOLD)
        np.exp(e, out=e)
        np.multiply(top[0].diff, e / (e + 1), out=bottom[0].diff)


@register_layer("Power")
class PowerLayer(_Neuron):
    """``y = (shift + scale * x) ^ power``.

    Parameters (``power_param``):
        power (1), scale (1), shift (0).

    As Caffe: when ``power * scale == 0`` the output is the constant
    ``1 if power == 0 else shift ^ power`` and the gradient is 0; with power 1 the
    layer is affine and its gradient the constant ``scale``.

    Bottom: any shape. Top: same shape (in place allowed).

    Gradient: ``dx = dy * power * scale * (shift + scale * x) ^ (power - 1)``.
    """

    def setup(self, bottom, top):
        param = self.layer_param.power_param
        self.power = float(param.power)
        self.scale = float(param.scale)
        self.shift = float(param.shift)
        self.diff_scale = self.power * self.scale

    def forward(self, bottom, top):
        y = top[0].data
        if self.diff_scale == 0:
            if self.power == 0:
                y[...] = 1.0
            else:
                with np.errstate(all="ignore"):  # 0 ^ -1 = inf, (-1) ^ 0.5 = NaN
                    y[...] = np.power(np.float64(self.shift), self.power)
            return
        if self.power != 1:
            self._stash_input(bottom, top)
        _affine(self, bottom[0].data, y)
        if self.power == 2:
            np.square(y, out=y)
        elif self.power != 1:
            np.power(y, self.power, out=y)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dx, dy = bottom[0].diff, top[0].diff
        if self.diff_scale == 0:
            dx[...] = 0
            return
        if self.power == 1:
            np.multiply(dy, self.diff_scale, out=dx)
            return
        x = self._forward_input(bottom, top)
        base = _affine(self, x, np.empty_like(x))
        # NOTE: Caffe writes the general case as diff_scale * y / base, which is
        # 0/0 = NaN wherever the base is 0 even when the derivative is finite
        # (power > 1); the direct power is the same value elsewhere.
        if self.power != 2:
            np.power(base, self.power - 1, out=base)
        base *= self.diff_scale
        np.multiply(dy, base, out=dx)


@register_layer("Exp")
class ExpLayer(_Neuron):
    """``y = base ^ (shift + scale * x)``; base -1 means e.

    Parameters (``exp_param``):
        base (-1 = e), scale (1), shift (0). base must be > 0 or -1.

    Computed as Caffe: ``y = outer * exp(inner * x)`` with
    ``inner = ln(base) * scale`` and ``outer = base ^ shift``.

    Bottom: any shape. Top: same shape (in place allowed).

    Gradient: ``dx = dy * y * inner``.
    """

    def setup(self, bottom, top):
        param = self.layer_param.exp_param
        base = float(param.base)
        if base != -1 and not base > 0:
            raise LayerError(
                self, f"base must be strictly positive or -1 (for e), got {base}"
            )
        log_base = 1.0 if base == -1 else math.log(base)
        self.inner_scale = log_base * float(param.scale)
        shift = float(param.shift)
        if shift == 0:
            self.outer_scale = 1.0
        else:
            self.outer_scale = math.exp(shift) if base == -1 else base**shift

    def forward(self, bottom, top):
        y = top[0].data
        if self.inner_scale != 1:
            np.multiply(bottom[0].data, self.inner_scale, out=y)
            np.exp(y, out=y)
        else:
            np.exp(bottom[0].data, out=y)
        if self.outer_scale != 1:
            y *= self.outer_scale

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dx = bottom[0].diff
        np.multiply(top[0].diff, top[0].data, out=dx)
        if self.inner_scale != 1:
            dx *= self.inner_scale


@register_layer("Log")
class LogLayer(_Neuron):
    """``y = log_base(shift + scale * x)``; base -1 means e.

    Parameters (``log_param``):
        base (-1 = e), scale (1), shift (0). base must be > 0 (and not 1) or -1.

    Bottom: any shape. Top: same shape (in place allowed).

    Gradient: ``dx = dy * scale / (ln(base) * (shift + scale * x))``.
    """

    def setup(self, bottom, top):
        param = self.layer_param.log_param
        base = float(param.base)
        if base != -1 and not base > 0:
            raise LayerError(
                self, f"base must be strictly positive or -1 (for e), got {base}"
            )
        if base == 1:
            raise LayerError(self, "base 1 has no logarithm (ln(1) = 0); use > 0, != 1")
        log_base = 1.0 if base == -1 else math.log(base)
        self.base_scale = 1.0 / log_base
        self.scale = float(param.scale)
        self.shift = float(param.shift)
        self.backward_num_scale = self.scale / log_base

    def forward(self, bottom, top):
        self._stash_input(bottom, top)
        y = _affine(self, bottom[0].data, top[0].data)
        np.log(y, out=y)
        if self.base_scale != 1:
            y *= self.base_scale

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        x = self._forward_input(bottom, top)
        base = _affine(self, x, np.empty_like(x))
        np.reciprocal(base, out=base)
        if self.backward_num_scale != 1:
            base *= self.backward_num_scale
        np.multiply(top[0].diff, base, out=bottom[0].diff)


@register_layer("Threshold")
class ThresholdLayer(_Neuron):
    """Step function ``y = 1 if x > threshold else 0``.

    Parameters (``threshold_param``):
        threshold (0).

    Bottom: any shape. Top: same shape (in place allowed).

    Forward only: as in Caffe, backward raises UnsupportedError when a gradient
    is asked for (the step has zero gradient almost everywhere).
    """

    def setup(self, bottom, top):
        self.threshold = float(self.layer_param.threshold_param.threshold)

    def forward(self, bottom, top):
        np.greater(bottom[0].data, self.threshold, out=top[0].data, casting="unsafe")

    def backward(self, top, propagate_down, bottom):
        if any(propagate_down):
            raise UnsupportedError(
                f"Threshold layer '{self.name}': backward is not implemented (as in "
                "Caffe); do not back-propagate through it"
            )


@register_layer("Clip")
class ClipLayer(_Neuron):
    """Clip to an interval: ``y = max(min, min(x, max))``.

    Parameters (``clip_param``, both required):
        min, max: the interval, min <= max.

    Bottom: any shape. Top: same shape (in place allowed).

    Gradient: ``dx = dy`` where min <= x <= max, else 0.
    """

    def setup(self, bottom, top):
        param = self.layer_param.clip_param
        missing = [f for f in ("min", "max") if not param.HasField(f)]
        if missing:
            raise LayerError(
                self, f"clip_param needs both min and max; missing {', '.join(missing)}"
            )
        self.min, self.max = float(param.min), float(param.max)
        if self.min > self.max:
            raise LayerError(
                self, f"clip_param min ({self.min}) must be <= max ({self.max})"
            )

    def forward(self, bottom, top):
        self._stash_input(bottom, top)
        y = top[0].data
        np.minimum(bottom[0].data, self.max, out=y)
        np.maximum(y, self.min, out=y)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        x = self._forward_input(bottom, top)
        inside = (x >= self.min) & (x <= self.max)
        np.multiply(top[0].diff, inside, out=bottom[0].diff)


@register_layer("Swish")
class SwishLayer(_Neuron):
    """Swish ``y = x * sigmoid(beta * x)``.

    As Caffe, the sigmoid is computed by an internal Sigmoid step
    (``0.5 * tanh(0.5 * beta * x) + 0.5``) whose output is kept for backward.

    Parameters (``swish_param``):
        beta (1).

    Bottom: any shape. Top: same shape (in place allowed).

    Gradient: ``dx = dy * (beta * y + s * (1 - beta * y))`` with
    ``s = sigmoid(beta * x)``.
    """

    def setup(self, bottom, top):
        self.beta = float(self.layer_param.swish_param.beta)
        self._sig = None

    def forward(self, bottom, top):
        x = bottom[0].data
        if self._sig is None or self._sig.shape != x.shape:
            self._sig = np.empty_like(x)
        s = self._sig
        np.multiply(x, 0.5 * self.beta, out=s)
        np.tanh(s, out=s)
        s *= 0.5
        s += 0.5
        np.multiply(x, s, out=top[0].data)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        by = top[0].data * self.beta
        grad = self._sig * (1 - by)
        grad += by
        np.multiply(top[0].diff, grad, out=bottom[0].diff)


@register_layer("Dropout")
class DropoutLayer(_Neuron):
    """Inverted dropout.

    TRAIN: ``y = x * m / (1 - p)`` with ``m ~ Bernoulli(1 - p)`` drawn per element
    from :func:`caffepy.rng.get_rng` on every forward. TEST: ``y = x``.

    If the schema has ``scale_train`` (some Caffe forks) and it is false, the
    scaling moves to test time as those forks do: TRAIN ``y = x * m``, TEST
    ``y = x * (1 - p)``.

    Parameters (``dropout_param``):
        dropout_ratio (0.5): p, the probability of dropping a unit, in [0, 1).

    Bottom: any shape. Top: same shape (in place allowed: the mask is kept).

    Gradient: the same mask and scale applied to dy.
    """

    def setup(self, bottom, top):
        param = self.layer_param.dropout_param
        p = float(param.dropout_ratio)
        if not 0 <= p < 1:
            raise LayerError(self, f"dropout_ratio must be in [0, 1), got {p}")
        self.ratio = p
        self.keep = 1.0 - p
        scale_train = True
        if "scale_train" in param.DESCRIPTOR.fields_by_name:
            scale_train = bool(param.scale_train)
        self.train_scale = 1.0 / self.keep if scale_train else 1.0
        self.test_scale = 1.0 if scale_train else self.keep
        self.threshold = round(self.keep * 2.0**32)
        self._bits = None

    def forward(self, bottom, top):
        x, y = _flat(bottom[0].data), _flat(top[0].data)
        if self.phase == TRAIN:
            from caffepy.kernels.neuron import masked_scale

            # NOTE: 32 random bits per unit, two per 64-bit draw of the global
            # generator (twice as fast as uniform floats); the unit is kept when
            # they fall below keep * 2^32, as Caffe's uint threshold on the GPU.
            raw = _rng.get_rng().bit_generator.random_raw((x.size + 1) // 2)
            self._bits = raw.view(np.uint32)[: x.size]
            masked_scale(x, self._bits, self.threshold, self.train_scale, y)
        elif self.test_scale != 1:
            np.multiply(x, self.test_scale, out=y)
        elif top[0] is not bottom[0]:
            np.copyto(y, x)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy, dx = _flat(top[0].diff), _flat(bottom[0].diff)
        if self.phase == TRAIN:
            from caffepy.kernels.neuron import masked_scale

            masked_scale(dy, self._bits, self.threshold, self.train_scale, dx)
        elif self.test_scale != 1:
            np.multiply(dy, self.test_scale, out=dx)
        elif top[0] is not bottom[0]:
            np.copyto(dx, dy)
