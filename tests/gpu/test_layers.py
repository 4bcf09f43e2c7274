"""Layers in GPU mode: numeric gradient checks (tiny shapes: the simulator is
slow) and which layer types run natively on the device."""

import numpy as np
import pytest

from caffepy.backend import mode
from caffepy.testing import GradientChecker, layer_from_text, make_blobs

FILLERS = 'weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "gaussian" std: 0.3 }'


def _check(text, shapes, checker=None, check_bottom=None, labels=None):
    layer = layer_from_text(text)
    bottom = make_blobs(*shapes)
    if labels is not None:
        bottom[-1].mutable_cpu_data()[...] = labels
    top = make_blobs(*([(1,)] * (2 if 'top: "b"' in text else 1)))
    assert mode.runs_on_gpu(layer), f"{layer.type} falls back to the CPU"
    checker = checker or GradientChecker(stepsize=1e-3, threshold=1e-3)
    checker.check_gradient(layer, bottom, top, check_bottom=check_bottom)


@pytest.mark.parametrize(
    "params, shape",
    [
        ("num_output: 2 kernel_size: 3 pad: 1 stride: 2", (2, 2, 5, 4)),
        ("num_output: 4 kernel_size: 2 group: 2 dilation: 2", (1, 2, 5, 5)),
        ("num_output: 2 kernel_size: 1", (2, 3, 2, 3)),
    ],
)
def test_convolution_gradient(gpu, params, shape):
    _check(f'type: "Convolution" convolution_param {{ {params} {FILLERS} }}', [shape])


def test_deconvolution_gradient(gpu):
    text = (
        'type: "Deconvolution" convolution_param { num_output: 2 kernel_size: 3 '
        f"stride: 2 pad: 1 {FILLERS} }}"
    )
    _check(text, [(2, 2, 3, 3)])


@pytest.mark.parametrize("transpose", ["false", "true"])
def test_inner_product_gradient(gpu, transpose):
    text = (
        f'type: "InnerProduct" inner_product_param {{ num_output: 3 '
        f"transpose: {transpose} {FILLERS} }}"
    )
    _check(text, [(2, 2, 2, 2)])


@pytest.mark.parametrize("pool", ["MAX", "AVE"])
def test_pooling_gradient(gpu, pool):
    text = f'type: "Pooling" pooling_param {{ pool: {pool} kernel_size: 3 stride: 2 pad: 1 }}'
    checker = GradientChecker(stepsize=1e-4, threshold=1e-2)
    _check(text, [(1, 2, 5, 5)], checker)


def test_relu_gradient(gpu):
    checker = GradientChecker(stepsize=1e-3, threshold=1e-3, kink=0.0, kink_range=1e-2)
    _check('type: "ReLU" relu_param { negative_slope: 0.1 }', [(2, 3, 2, 2)], checker)


def test_softmax_loss_gradient(gpu):
    labels = np.array([0, 2, 1, 2], np.float64).reshape(4, 1)
    _check(
        'type: "SoftmaxWithLoss"',
        [(4, 3), (4, 1)],
        GradientChecker(stepsize=1e-2, threshold=1e-2),
        check_bottom=0,
        labels=labels,
    )


def test_batch_norm_gradient(gpu):
    _check(
        'type: "BatchNorm"',
        [(3, 2, 2, 2)],
        GradientChecker(stepsize=1e-3, threshold=1e-2),
    )


def test_lrn_gradients(gpu):
    for region in ("ACROSS_CHANNELS", "WITHIN_CHANNEL"):
        text = f'type: "LRN" lrn_param {{ local_size: 3 norm_region: {region} }}'
        _check(text, [(1, 4, 3, 3)], GradientChecker(stepsize=1e-2, threshold=1e-2))


def test_prelu_and_eltwise_gradients(gpu):
    _check('type: "PReLU"', [(2, 3, 2)])
    _check(
        'type: "Eltwise" eltwise_param { operation: SUM coeff: 2 coeff: -1 }',
        [(2, 3), (2, 3)],
    )


def test_cpu_fallback_layer_still_runs_in_gpu_mode(gpu):
    # A layer without ``uses_ops`` runs its hooks on the CPU backend.
    from caffepy.layers.neuron.relu import ReLULayer

    class HostReLU(ReLULayer):
        uses_ops = ()

    layer = HostReLU(layer_from_text('type: "ReLU"').layer_param, 0, np.float64)
    assert not mode.runs_on_gpu(layer)
    bottom, top = make_blobs((2, 3)), make_blobs((1,))
    layer.SetUp(bottom, top)
    layer.Forward(bottom, top)
    np.testing.assert_array_equal(top[0].data, np.maximum(bottom[0].data, 0))
