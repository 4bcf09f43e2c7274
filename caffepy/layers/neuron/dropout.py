"""Dropout: inverted dropout with masks from caffepy's random generator."""

from __future__ import annotations

import numpy as np

from caffepy import backend
from caffepy import rng as _rng
from caffepy.errors import LayerError
from caffepy.layer import TRAIN
from caffepy.layers.neuron.base import InPlaceNeuron
from caffepy.registry import register_layer


@register_layer("Dropout")
class DropoutLayer(InPlaceNeuron):
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

    uses_ops = ("copy", "dropout_backward", "dropout_forward", "from_host")

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
        ops = backend.ops()
        x, y = ops.data(bottom[0]), ops.mutable_data(top[0])
        if self.phase == TRAIN:
            # NOTE: 32 random bits per unit, two per 64-bit draw of the global
            # generator (twice as fast as uniform floats); the unit is kept when
            # they fall below keep * 2^32, as Caffe's uint threshold on the GPU.
            # They are drawn on the host whatever the device, so a GPU run drops
            # the same units as a CPU one.
            raw = _rng.get_rng().bit_generator.random_raw((x.size + 1) // 2)
            self._bits = ops.from_host(raw.view(np.uint32)[: x.size])
            ops.dropout_forward(x, self._bits, self.threshold, self.train_scale, y)
        elif self.test_scale != 1:
            ops.xp.multiply(x, self.test_scale, out=y)
        elif top[0] is not bottom[0]:
            ops.copy(x, y)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        ops = backend.ops()
        dy, dx = ops.diff(top[0]), ops.mutable_diff(bottom[0])
        if self.phase == TRAIN:
            scale = self.train_scale
            ops.dropout_backward(dy, self._bits, self.threshold, scale, dx)
        elif self.test_scale != 1:
            ops.xp.multiply(dy, self.test_scale, out=dx)
        elif top[0] is not bottom[0]:
            ops.copy(dy, dx)
