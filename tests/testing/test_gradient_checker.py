"""caffepy.testing.GradientChecker: accepts right backwards, rejects wrong ones.

A checker that passes everything proves nothing, so each mode is run on a ReLU
whose backward is right and on copies whose backward is deliberately wrong.
"""

import numpy as np
import pytest

from caffepy import TRAIN
from caffepy.proto import caffe_pb2
from caffepy.registry import layer_class
from caffepy.testing import (
    GradientChecker,
    GradientCheckError,
    layer_from_text,
    make_blobs,
)

SHAPE = (2, 3, 2, 2)
ReLULayer = layer_class("ReLU")


class _HalfGradReLU(ReLULayer):
    """A ReLU whose backward drops a factor of 2 (a wrong gradient)."""

    def backward(self, top, propagate_down, bottom):
        super().backward(top, propagate_down, bottom)
        bottom[0].mutable_cpu_diff()[...] *= 0.5


class _LeakyJacobianReLU(ReLULayer):
    """Right on the diagonal, but its backward also leaks into the next element."""

    def backward(self, top, propagate_down, bottom):
        dy = np.array(top[0].cpu_diff()).reshape(-1)
        super().backward(top, propagate_down, bottom)
        flat = bottom[0].mutable_cpu_diff().reshape(-1)
        flat[1:] += 0.25 * dy[:-1]


class _CountingReLU(ReLULayer):
    """A right ReLU that counts its forward passes."""

    forwards = 0

    def forward(self, bottom, top):
        type(self).forwards += 1
        super().forward(bottom, top)


def _relu(cls=ReLULayer):
    param = caffe_pb2.LayerParameter(name="relu", type="ReLU")
    return cls(param, TRAIN, np.float64)


def _blobs():
    # NOTE: inputs stay clear of ReLU's kink at 0 (kink_range below).
    bottom = make_blobs(SHAPE)
    data = bottom[0].mutable_cpu_data()
    data[np.abs(data) < 0.05] = 0.5
    return bottom, make_blobs(())


def _checker():
    return GradientChecker(stepsize=1e-3, threshold=1e-4, kink=0.0, kink_range=1e-2)


MODES = ["check_gradient", "check_gradient_exhaustive", "check_gradient_eltwise"]


@pytest.mark.parametrize("mode", MODES)
def test_accepts_the_right_backward(mode):
    bottom, top = _blobs()
    getattr(_checker(), mode)(_relu(), bottom, top)


@pytest.mark.parametrize("mode", MODES)
def test_rejects_a_backward_missing_a_factor_of_two(mode):
    bottom, top = _blobs()
    with pytest.raises(GradientCheckError, match=r"ReLU layer 'relu': bottom\[0\]"):
        getattr(_checker(), mode)(_relu(_HalfGradReLU), bottom, top)


@pytest.mark.parametrize("mode", MODES)
def test_rejects_a_backward_with_off_diagonal_terms(mode):
    bottom, top = _blobs()
    with pytest.raises(GradientCheckError, match=r"bottom\[0\] element [1-9]"):
        getattr(_checker(), mode)(_relu(_LeakyJacobianReLU), bottom, top)


def test_eltwise_mode_names_the_off_diagonal_entry():
    bottom, top = _blobs()
    with pytest.raises(GradientCheckError, match="numeric 0 \\(element-wise layer\\)"):
        _checker().check_gradient_eltwise(_relu(_LeakyJacobianReLU), bottom, top)


def test_eltwise_mode_is_linear_in_the_count():
    bottom, top = _blobs()
    _CountingReLU.forwards = 0
    _checker().check_gradient_eltwise(_relu(_CountingReLU), bottom, top)
    n = bottom[0].count
    # One forward for the analytic gradient and two for the central difference
    # per top element; the full check per element would need 1 + 2n each.
    assert _CountingReLU.forwards == 3 * n


@pytest.mark.parametrize(
    "text, shape",
    [
        ('type: "Sigmoid"', SHAPE),
        ('type: "TanH"', SHAPE),
        ('type: "ELU" elu_param { alpha: 0.5 }', (3, 4)),
        ('type: "Power" power_param { power: 2 scale: 0.5 shift: 2 }', (3, 4)),
    ],
)
def test_eltwise_mode_accepts_real_neuron_layers(text, shape):
    bottom = make_blobs(shape)
    if "ELU" in text:  # away from the kink at 0
        data = bottom[0].mutable_cpu_data()
        data[np.abs(data) < 0.05] = 0.5
    layer = layer_from_text(text, TRAIN, np.float64)
    _checker().check_gradient_eltwise(layer, bottom, make_blobs(()))


def test_eltwise_mode_refuses_parameter_blobs():
    layer = layer_from_text('type: "PReLU"', TRAIN, np.float64)
    with pytest.raises(GradientCheckError, match="parameter-free layers only"):
        _checker().check_gradient_eltwise(layer, make_blobs(SHAPE), make_blobs(()))


def test_eltwise_mode_refuses_non_elementwise_layers():
    layer = layer_from_text(
        'type: "InnerProduct" inner_product_param { num_output: 2 }'
    )
    bottom = make_blobs((2, 3))
    with pytest.raises(GradientCheckError, match="parameter-free layers only"):
        _checker().check_gradient_eltwise(layer, bottom, make_blobs(()))
    layer = layer_from_text('type: "Reduction"')
    with pytest.raises(GradientCheckError, match="bottoms of the top's count 1"):
        _checker().check_gradient_eltwise(layer, make_blobs((2, 3)), make_blobs(()))


def test_dtype_mismatch_is_refused():
    layer = layer_from_text('type: "ReLU"', TRAIN, np.float32)
    with pytest.raises(GradientCheckError, match="give every blob the layer's dtype"):
        _checker().check_gradient(layer, make_blobs(SHAPE), make_blobs(()))


def test_single_top_element_objective_and_check_bottom():
    layer = layer_from_text('type: "Eltwise" eltwise_param { operation: PROD }')
    bottom, top = make_blobs((2, 3), (2, 3), seed=3), make_blobs(())
    _checker().check_gradient(
        layer, bottom, top, check_bottom=1, top_id=0, top_data_id=4
    )
