"""Convolution, InnerProduct and Pooling fused with the in-place ReLU after them: the Net
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


def bn_net(shape, conv, relu=True, global_stats=True, frozen_scale=False):
    """Input ``shape`` -> Convolution -> in place BatchNorm (stored statistics
    when ``global_stats``) -> Scale (learnt unless ``frozen_scale``) -> ReLU
    (when ``relu``) -> InnerProduct -> Euclidean loss."""
    text = text_format.MessageToString(relu_net(shape, conv, ip=False))
    frozen = "param { lr_mult: 0 } param { lr_mult: 0 }" if frozen_scale else ""
    stats = str(global_stats).lower()
    layers = (
        "layer { name: 'bn' type: 'BatchNorm' bottom: 'conv' top: 'conv' "
        f"batch_norm_param {{ use_global_stats: {stats} }} }}"
        f"layer {{ name: 'sc' type: 'Scale' bottom: 'conv' top: 'conv' {frozen} "
        "scale_param { bias_term: true filler { type: 'uniform' min: 0.5 max: 1.5 } "
        "bias_filler { type: 'uniform' min: -0.5 max: 0.5 } } }"
    )
    param = caffe_pb2.NetParameter()
    text_format.Parse(text, param)
    extra = text_format.Parse(layers, caffe_pb2.NetParameter()).layer
    relu_at = [lp.name for lp in param.layer].index("relu")
    kept = list(param.layer)
    if not relu:
        del kept[relu_at]
    del param.layer[:]
    param.layer.extend(kept[:relu_at] + list(extra) + kept[relu_at:])
    return param


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


def test_without_a_callable_blas_the_fused_layers_are_passes(monkeypatch):
    monkeypatch.setattr(blas, "AVAILABLE", False)
    param = relu_net((2, 3, 8, 8), "num_output: 4 kernel_size: 3 pad: 1")
    net, _ = _run(param, True)
    assert cpu_conv.kernel_paths(net.layers[1].geom) == ("pool", "pool")
    _assert_fused_same(param, {"conv", "ip1"})
    run = _stats_net(bn_net((2, 3, 8, 8), "num_output: 4 kernel_size: 3"))
    _, got = run(True, caffepy.TEST)
    _, want = run(False, caffepy.TEST)
    for (wd, wg), (gd, gg) in zip(want, got, strict=True):
        assert wd.tobytes() == gd.tobytes()
        assert wg.tobytes() == gg.tobytes()


def test_negative_slopes_and_relus_not_in_place_are_not_fused():
    # a negative slope flips the sign: the ReLU keeps its input for backward
    param = relu_net((2, 3, 8, 8), "num_output: 4 kernel_size: 3", slope=-0.5)
    net, _ = _run(param, True)
    assert not net._fused
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


def _stats_net(param, dtype=np.float32):
    """_run with stored BatchNorm statistics (not the zero-count defaults)."""

    def run(fuse, phase):
        caffepy.set_random_seed(SEED)
        net = Net(param=param, phase=phase, dtype=dtype)
        net.fuse_layers = fuse
        rng = np.random.default_rng(SEED)
        for name in net.inputs:
            net.blobs[name].data[...] = rng.standard_normal(net.blobs[name].shape)
        bn = net.layer_dict["bn"]
        bn.blobs[0].data[...] = rng.standard_normal(bn.blobs[0].shape)
        bn.blobs[1].data[...] = rng.uniform(0.5, 2, bn.blobs[1].shape)
        bn.blobs[2].data[...] = 0.9
        for _ in range(2):
            net.clear_param_diffs()
            net.forward_prefilled()
            net.backward_prefilled()
        blobs = [b for lyr in net.layers for b in lyr.blobs] + list(net.blobs.values())
        return net, [(b.data.copy(), b.diff.copy()) for b in blobs]

    return run


@pytest.mark.parametrize("frozen_scale", [False, True])
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("shape, conv, path", PATHS, ids=IDS)
def test_conv_batch_norm_scale_relu_fused_bit_identical(
    shape, conv, path, relu, frozen_scale
):
    """Convolution, BatchNorm with stored statistics, Scale (kept input or
    not), ReLU: one pass forward; backward (one by one) gets the same numbers."""
    run = _stats_net(bn_net(shape, conv, relu, frozen_scale=frozen_scale))
    for phase in (caffepy.TRAIN, caffepy.TEST):
        net, got = run(True, phase)
        assert net._fused == {1: 3 if relu else 2}
        _, want = run(False, phase)
        for (wd, wg), (gd, gg) in zip(want, got, strict=True):
            assert wd.tobytes() == gd.tobytes()
            assert wg.tobytes() == gg.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_winograd_batch_norm_scale_relu_fused_bit_identical(monkeypatch, dtype):
    monkeypatch.setattr(conv_winograd, "MIN_CHANNELS", 4)
    monkeypatch.setattr(conv_winograd, "MIN_POSITIONS", 1)
    run = _stats_net(bn_net((2, 4, 7, 6), "num_output: 5 kernel_size: 3 pad: 1"), dtype)
    net, got = run(True, caffepy.TEST)
    assert cpu_conv.kernel_paths(net.layers[1].geom)[0] == "winograd"
    _, want = run(False, caffepy.TEST)
    for (wd, wg), (gd, gg) in zip(want, got, strict=True):
        assert wd.tobytes() == gd.tobytes()
        assert wg.tobytes() == gg.tobytes()


def test_batch_norm_with_batch_statistics_is_not_fused_into_the_convolution():
    run = _stats_net(
        bn_net((2, 3, 8, 8), "num_output: 4 kernel_size: 3", global_stats=False)
    )
    net, _ = run(True, caffepy.TRAIN)
    assert net._fused == {2: 1}  # BatchNorm with its Scale, as before


@pytest.mark.parametrize("coeff", ["", "coeff: 1 coeff: -0.5", "three"])
def test_eltwise_sum_relu_fused_bit_identical(coeff):
    """ResNet's shortcut: two (or three) branches summed, the in-place ReLU."""
    bottoms = ["a", "b", "c"] if coeff == "three" else ["a", "b"]
    coeff = "" if coeff == "three" else coeff
    convs = "".join(
        f"layer {{ name: '{n}' type: 'Convolution' bottom: 'data' top: '{n}' "
        "convolution_param { num_output: 4 kernel_size: 3 pad: 1 "
        "weight_filler { type: 'gaussian' std: 0.3 } } }"
        for n in bottoms
    )
    text = (
        "layer { name: 'in' type: 'Input' top: 'data' top: 'target' input_param { "
        "shape { dim: 2 dim: 3 dim: 6 dim: 6 } shape { dim: 2 dim: 3 } } }"
        + convs
        + "layer { name: 'sum' type: 'Eltwise' "
        + " ".join(f"bottom: '{n}'" for n in bottoms)
        + f" top: 'sum' eltwise_param {{ {coeff} }} }}"
        "layer { name: 'relu' type: 'ReLU' bottom: 'sum' top: 'sum' }"
        "layer { name: 'ip' type: 'InnerProduct' bottom: 'sum' top: 'out' "
        "inner_product_param { num_output: 3 weight_filler { type: 'gaussian' "
        "std: 0.2 } } }"
        "layer { name: 'loss' type: 'EuclideanLoss' bottom: 'out' "
        "bottom: 'target' top: 'loss' }"
    )
    param = text_format.Parse(text, caffe_pb2.NetParameter())
    _assert_fused_same(param, {"sum"})


def test_eltwise_product_is_not_fused():
    text = text_format.MessageToString(
        relu_net((2, 3, 6, 6), "num_output: 4 kernel_size: 3", ip=False)
    )
    text = text.replace('name: "relu"', 'name: "relu0"')
    param = text_format.Parse(text, caffe_pb2.NetParameter())
    extra = text_format.Parse(
        "layer { name: 'prod' type: 'Eltwise' bottom: 'conv' bottom: 'conv' "
        "top: 'prod' eltwise_param { operation: PROD } }"
        "layer { name: 'relu' type: 'ReLU' bottom: 'prod' top: 'prod' }",
        caffe_pb2.NetParameter(),
    ).layer
    layers = list(param.layer)
    at = [lp.name for lp in layers].index("ip2")
    layers[at].bottom[0] = "prod"
    del param.layer[:]
    param.layer.extend(layers[:at] + list(extra) + layers[at:])
    net, _ = _run(param, True)
    assert {net._names[li] for li in net._fused} == {"conv"}


def pool_relu_net(shape, pool, slope=0.0):
    """Input ``shape`` -> Pooling (``pool``: its pooling_param text) -> in-place
    ReLU -> InnerProduct -> Euclidean loss against a (N, 3) target."""
    text = (
        "layer { name: 'in' type: 'Input' top: 'data' top: 'target' input_param { "
        f"shape {{ dim: {', dim: '.join(map(str, shape))} }} "
        f"shape {{ dim: {shape[0]} dim: 3 }} }} }}"
        "layer { name: 'pool' type: 'Pooling' bottom: 'data' top: 'pool' "
        f"pooling_param {{ {pool} }} }}"
        "layer { name: 'relu' type: 'ReLU' bottom: 'pool' top: 'pool' "
        f"relu_param {{ negative_slope: {slope} }} }}"
        "layer { name: 'ip' type: 'InnerProduct' bottom: 'pool' top: 'ip' "
        "inner_product_param { num_output: 3 weight_filler { type: 'gaussian' "
        "std: 0.3 } } }"
        "layer { name: 'loss' type: 'EuclideanLoss' bottom: 'ip' bottom: 'target' "
        "top: 'loss' }"
    )
    return text_format.Parse(text, caffe_pb2.NetParameter())


@pytest.mark.parametrize("phase", [caffepy.TRAIN, caffepy.TEST])
@pytest.mark.parametrize("slope", [0.0, 0.1])
@pytest.mark.parametrize(
    "shape, pool",
    [
        ((2, 3, 9, 9), "pool: MAX kernel_size: 3 stride: 2"),
        ((2, 3, 9, 9), "pool: AVE kernel_size: 3 stride: 2 pad: 1"),
        # big enough for the pass to be cut into blocks of planes
        ((4, 32, 32, 32), "pool: MAX kernel_size: 3 stride: 2"),
        ((4, 32, 32, 32), "pool: AVE kernel_size: 3 stride: 2"),
    ],
    ids=["max", "ave-pad", "max-blocks", "ave-blocks"],
)
def test_pool_relu_fused_bit_identical(shape, pool, slope, phase):
    param = pool_relu_net(shape, pool, slope)
    got = _assert_fused_same(param, {"pool"}, phase=phase)
    if slope == 0:
        assert (got["pool.data"] >= 0).all()


def test_stochastic_and_masked_pooling_are_not_fused():
    stochastic = pool_relu_net((2, 3, 8, 8), "pool: STOCHASTIC kernel_size: 2")
    net, _ = _run(stochastic, True, phase=caffepy.TEST)
    assert not net._fused
    masked = pool_relu_net((2, 3, 8, 8), "pool: MAX kernel_size: 2 stride: 2")
    masked.layer[1].top.append("mask")
    net, _ = _run(masked, True)
    assert not net._fused
