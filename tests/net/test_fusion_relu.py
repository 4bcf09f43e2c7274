"""Convolution and InnerProduct fused with the in-place ReLU after them: the Net
runs the pair as one pass (the ReLU applied as each block of the top is
written), bit for bit what the two layers compute one by one, on every
convolution path the CPU backend picks."""

import numba
import numpy as np
import pytest
from google.protobuf import text_format

import caffepy
from caffepy.backend.cpu import conv as cpu_conv
from caffepy.backend.cpu import conv_winograd
from caffepy.kernels import blas
from caffepy.net import Net
from caffepy.proto import caffe_pb2

SEED = 7


def relu_net(shape, conv, slope=0.0, ip=True):
    """Input ``shape`` -> Convolution (``conv``: its convolution_param text) ->
    in-place ReLU -> InnerProduct -> in-place ReLU -> InnerProduct -> Euclidean
    loss against a (N, 3) target (the ReLUs of negative slope ``slope``)."""
    relu = f"relu_param {{ negative_slope: {slope} }}"
    text = (
        "layer { name: 'in' type: 'Input' top: 'data' top: 'target' input_param { "
        f"shape {{ dim: {', dim: '.join(map(str, shape))} }} "
        f"shape {{ dim: {shape[0]} dim: 3 }} }} }}"
        "layer { name: 'conv' type: 'Convolution' bottom: 'data' top: 'conv' "
        f"convolution_param {{ {conv} weight_filler {{ type: 'gaussian' std: 0.3 }} "
        "bias_filler { type: 'uniform' min: -0.5 max: 0.5 } } }"
        f"layer {{ name: 'relu' type: 'ReLU' bottom: 'conv' top: 'conv' {relu} }}"
    )
    if ip:
        text += (
            "layer { name: 'ip1' type: 'InnerProduct' bottom: 'conv' top: 'ip1' "
            "inner_product_param { num_output: 5 weight_filler { type: 'gaussian' "
            "std: 0.2 } bias_filler { type: 'uniform' min: -0.5 max: 0.5 } } }"
            f"layer {{ name: 'relu1' type: 'ReLU' bottom: 'ip1' top: 'ip1' {relu} }}"
            "layer { name: 'ip2' type: 'InnerProduct' bottom: 'ip1' top: 'out' "
            "inner_product_param { num_output: 3 weight_filler { type: 'gaussian' "
            "std: 0.2 } } }"
        )
    else:
        text += (
            "layer { name: 'ip2' type: 'InnerProduct' bottom: 'conv' top: 'out' "
            "inner_product_param { num_output: 3 weight_filler { type: 'gaussian' "
            "std: 0.2 } } }"
        )
    text += (
        "layer { name: 'loss' type: 'EuclideanLoss' bottom: 'out' bottom: 'target' "
        "top: 'loss' }"
    )
    return text_format.Parse(text, caffe_pb2.NetParameter())


def _run(param, fuse, phase=caffepy.TRAIN, dtype=np.float32):
    caffepy.set_random_seed(SEED)
    net = Net(param=param, phase=phase, dtype=dtype)
    net.fuse_layers = fuse
    rng = np.random.default_rng(SEED)
    for name in net.inputs:
        blob = net.blobs[name]
        blob.data[...] = rng.standard_normal(blob.shape)
    state = {}
    for _ in range(2):
        net.clear_param_diffs()
        net.forward_prefilled()
        if phase == caffepy.TRAIN:
            net.backward_prefilled()
    for name, blob in net.blobs.items():
        state[f"{name}.data"] = blob.data.copy()
        state[f"{name}.diff"] = blob.diff.copy()
    for li, layer in enumerate(net.layers):
        for j, blob in enumerate(layer.blobs):
            state[f"{li}.{j}.data"] = blob.data.copy()
            state[f"{li}.{j}.diff"] = blob.diff.copy()
    return net, state


def _assert_fused_same(param, fused_layers, **kw):
    net, got = _run(param, True, **kw)
    assert {net._names[li] for li in net._fused} == fused_layers
    _, want = _run(param, False, **kw)
    assert want.keys() == got.keys()
    for key in want:
        assert want[key].tobytes() == got[key].tobytes(), key
    return got


#: (input shape, convolution_param, the CPU forward path it takes at 2 threads)
PATHS = [
    ((2, 3, 8, 8), "num_output: 4 kernel_size: 3 pad: 1", "rows"),
    ((1, 4, 10, 9), "num_output: 4 kernel_size: 3 pad: 1", "rows"),  # in bands
    ((3, 1, 40, 40), "num_output: 4 kernel_size: 5", "fused"),
    ((1, 1, 40, 40), "num_output: 4 kernel_size: 5", "fused"),  # over the threads
    ((2, 4, 6, 6), "num_output: 6 kernel_size: 1", "fused"),
    ((2, 4, 7, 7), "num_output: 6 kernel_size: 3 stride: 2 group: 2", "fused"),
    ((2, 4, 8, 8), "num_output: 6 kernel_size: 3 bias_term: false", "fused"),
    ((2, 3, 4, 5, 5), "num_output: 4 kernel_size: 3 pad: 1", "nd"),
]
IDS = ["rows", "rows-bands", "fused", "wide", "1x1", "grouped", "no-bias", "3d"]


@pytest.mark.parametrize("slope", [0.0, 0.25])
@pytest.mark.parametrize("shape, conv, path", PATHS, ids=IDS)
def test_conv_relu_fused_bit_identical(shape, conv, path, slope):
    before = numba.get_num_threads()
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    try:
        param = relu_net(shape, conv, slope)
        net, _ = _run(param, True, phase=caffepy.TEST)
        if numba.get_num_threads() == 2:
            assert cpu_conv.kernel_paths(net.layers[1].geom)[0] == path
        _assert_fused_same(param, {"conv", "ip1"})
    finally:
        numba.set_num_threads(before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_winograd_relu_fused_bit_identical(monkeypatch, dtype):
    monkeypatch.setattr(conv_winograd, "MIN_CHANNELS", 4)
    monkeypatch.setattr(conv_winograd, "MIN_POSITIONS", 1)
    conv = "num_output: 5 kernel_size: 3 pad: 1"
    param = relu_net((2, 4, 7, 6), conv, ip=False)
    net, _ = _run(param, True, dtype=dtype)
    assert cpu_conv.kernel_paths(net.layers[1].geom)[0] == "winograd"
    _assert_fused_same(param, {"conv"}, dtype=dtype)


def test_without_a_callable_blas_the_relu_is_a_pass(monkeypatch):
    monkeypatch.setattr(blas, "AVAILABLE", False)
    param = relu_net((2, 3, 8, 8), "num_output: 4 kernel_size: 3 pad: 1")
    net, _ = _run(param, True)
    assert cpu_conv.kernel_paths(net.layers[1].geom) == ("pool", "pool")
    _assert_fused_same(param, {"conv", "ip1"})


def test_relu_after_relu_and_leaky_negative_slopes_are_not_fused():
    # a negative slope flips the sign: the ReLU keeps its input for backward
    param = relu_net((2, 3, 8, 8), "num_output: 4 kernel_size: 3", slope=-0.5)
    net, _ = _run(param, True)
    assert net._fused == set()
    # the top also read by another layer before the ReLU: not in place, no fusion
    text = text_format.MessageToString(
        relu_net((2, 3, 8, 8), "num_output: 4 kernel_size: 3")
    )
    text = text.replace('top: "conv"\n  relu_param', 'top: "conv_r"\n  relu_param')
    text = text.replace(
        'bottom: "conv"\n  top: "ip1"', 'bottom: "conv_r"\n  top: "ip1"'
    )
    net, _ = _run(text_format.Parse(text, caffe_pb2.NetParameter()), True)
    assert {net._names[li] for li in net._fused} == {"ip1"}


def test_forward_to_the_convolution_leaves_its_output_unrectified():
    param = relu_net((2, 3, 8, 8), "num_output: 4 kernel_size: 3 pad: 1")
    net, _ = _run(param, True, phase=caffepy.TEST)
    out = net.forward(end="conv")["conv"]
    assert (out < 0).any()
    out = net.forward(end="relu")["conv"]
    assert not (out < 0).any()
