"""The Net's fused layer pairs (BatchNorm + in-place Scale) and shared gradient
memory: both compute exactly what the layers compute one by one, bit for bit."""

import numpy as np
import pytest
from google.protobuf import text_format

import caffepy
from caffepy.net import Net
from caffepy.netmemory import plan_diff_sharing
from caffepy.proto import caffe_pb2

SEED = 1701


def block_net(shape, global_stats=None, frozen_scale=False):
    """A ResNet basic block over ``shape`` (N, C, H, W): conv-BN-Scale-ReLU twice
    and the shortcut, then an InnerProduct, a BN + Scale on its (N, C) output and
    a Euclidean loss."""
    n, c, h, w = shape
    bn = (
        ""
        if global_stats is None
        else (f"batch_norm_param {{ use_global_stats: {str(global_stats).lower()} }}")
    )
    scale_param = "param { lr_mult: 0 } param { lr_mult: 0 }" if frozen_scale else ""

    def unit(name, bottom, relu=True):
        text = (
            f"layer {{ name: '{name}' type: 'Convolution' bottom: '{bottom}' "
            f"top: '{name}' convolution_param {{ num_output: {c} kernel_size: 3 "
            "pad: 1 bias_term: false weight_filler { type: 'gaussian' std: 0.3 } } }"
            f"layer {{ name: 'bn_{name}' type: 'BatchNorm' bottom: '{name}' "
            f"top: '{name}' {bn} }}"
            f"layer {{ name: 'sc_{name}' type: 'Scale' bottom: '{name}' "
            f"top: '{name}' {scale_param} scale_param {{ bias_term: true "
            "filler { type: 'uniform' min: 0.5 max: 1.5 } "
            "bias_filler { type: 'uniform' min: -0.5 max: 0.5 } } }"
        )
        if relu:
            text += (
                f"layer {{ name: 'relu_{name}' type: 'ReLU' bottom: '{name}' "
                f"top: '{name}' }}"
            )
        return text

    text = (
        "layer { name: 'in' type: 'Input' top: 'data' top: 'target' input_param { "
        f"shape {{ dim: {n} dim: {c} dim: {h} dim: {w} }} shape {{ dim: {n} dim: 6 }} }} }}"
        + unit("a", "data")
        + unit("b", "a", relu=False)
        + "layer { name: 'sum' type: 'Eltwise' bottom: 'b' bottom: 'a' top: 'sum' }"
        "layer { name: 'ip' type: 'InnerProduct' bottom: 'sum' top: 'ip' "
        "inner_product_param { num_output: 6 weight_filler { type: 'gaussian' "
        "std: 0.1 } } }"
        f"layer {{ name: 'bn_ip' type: 'BatchNorm' bottom: 'ip' top: 'ip' {bn} }}"
        "layer { name: 'sc_ip' type: 'Scale' bottom: 'ip' top: 'ip' "
        "scale_param { bias_term: true filler { type: 'uniform' min: 0.5 max: 1.5 } "
        "bias_filler { type: 'uniform' min: -0.5 max: 0.5 } } }"
        "layer { name: 'loss' type: 'EuclideanLoss' bottom: 'ip' bottom: 'target' "
        "top: 'loss' }"
    )
    return text_format.Parse(text, caffe_pb2.NetParameter())


def _build(param, phase, dtype):
    caffepy.set_random_seed(SEED)
    net = Net(param=param, phase=phase, dtype=dtype)
    rng = np.random.default_rng(SEED)
    for name in net.inputs:
        blob = net.blobs[name]
        blob.data[...] = rng.standard_normal(blob.shape) * 2 + 0.5
    for layer in net.layers:
        if layer.type == "BatchNorm":  # stored statistics for the TEST passes
            layer.blobs[0].data[...] = rng.standard_normal(layer.blobs[0].shape)
            layer.blobs[1].data[...] = rng.uniform(0.5, 2, layer.blobs[1].shape)
            layer.blobs[2].data[...] = 0.9
    return net


def _state(net, backward):
    out = {}
    for name, blob in net.blobs.items():
        out[f"{name}.data"] = blob.data.copy()
        if backward:
            out[f"{name}.diff"] = blob.diff.copy()
    for li, layer in enumerate(net.layers):
        for j, blob in enumerate(layer.blobs):
            out[f"{li}.{j}.data"] = blob.data.copy()
            if backward:
                out[f"{li}.{j}.diff"] = blob.diff.copy()
    return out


def _run(param, phase, dtype, fuse, passes=2):
    net = _build(param, phase, dtype)
    net.fuse_layers = fuse
    backward = phase == caffepy.TRAIN
    for _ in range(passes):
        net.clear_param_diffs()
        net.forward_prefilled()
        if backward:
            net.backward_prefilled()
    return net, _state(net, backward)


def _assert_same(want, got):
    assert want.keys() == got.keys()
    for key in want:
        assert want[key].tobytes() == got[key].tobytes(), key


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(4, 8, 6, 5), (3, 5, 2, 2)])
@pytest.mark.parametrize("global_stats", [None, True])
@pytest.mark.parametrize("phase", ["train", "test"])
def test_fused_batch_norm_scale_bit_identical(dtype, shape, global_stats, phase):
    phase = caffepy.TRAIN if phase == "train" else caffepy.TEST
    param = block_net(shape, global_stats)
    fused, got = _run(param, phase, dtype, True)
    want_runs = {}
    for li, layer in enumerate(fused.layers):
        if layer.type != "BatchNorm":
            continue
        if fused.layers[li - 1].type == "Convolution" and layer.use_global_stats:
            # the convolution computes BatchNorm, Scale and a ReLU after them
            relu = li + 2 < len(fused.layers) and fused.layers[li + 2].type == "ReLU"
            want_runs[li - 1] = 3 if relu else 2
        else:
            want_runs[li] = 1  # every other BatchNorm with its Scale
    assert fused._fused == want_runs
    _, want = _run(param, phase, dtype, False)
    _assert_same(want, got)


def test_fused_frozen_scale_runs_one_by_one_in_backward():
    param = block_net((2, 4, 5, 5), frozen_scale=True)
    _, got = _run(param, caffepy.TRAIN, np.float32, True)
    _, want = _run(param, caffepy.TRAIN, np.float32, False)
    _assert_same(want, got)


def test_partial_forward_is_not_fused():
    """forward(end=BatchNorm) leaves the normalised values, as without fusion."""
    param = block_net((2, 4, 5, 5))
    nets = [_build(param, caffepy.TRAIN, np.float32) for _ in range(2)]
    nets[1].fuse_layers = False
    outs = [net.forward(end="bn_a")["a"].copy() for net in nets]
    assert outs[0].tobytes() == outs[1].tobytes()
    # from the Scale on, the Scale keeps its own input again
    for net in nets:
        net.forward(start="sc_a")
        net.backward()
    for name in ("sc_a",):
        g = [net.layer_dict[name].blobs[0].diff for net in nets]
        assert g[0].tobytes() == g[1].tobytes()


def test_fusion_off_with_debug_info():
    param = block_net((2, 4, 5, 5))
    net = _build(param, caffepy.TRAIN, np.float32)
    net.debug_info = True
    assert not net._fusing()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shared_diffs_bit_identical(dtype):
    param = block_net((3, 4, 6, 6))
    _, want = _run(param, caffepy.TRAIN, dtype, True)
    net = _build(param, caffepy.TRAIN, dtype)
    assert net.share_diffs() > 0
    for _ in range(2):
        net.clear_param_diffs()
        net.forward_prefilled()
        net.backward_prefilled()
    got = _state(net, True)
    # parameters, their gradients, every blob's data and the kept diffs agree
    for key, value in want.items():
        if key.endswith(".diff") and not key[0].isdigit():
            name = key[: -len(".diff")]
            if name not in (*net.inputs, *net.outputs):
                continue  # inner gradients live only while backward uses them
        assert value.tobytes() == got[key].tobytes(), key


def test_plan_diff_sharing_keeps_overlapping_ranges_apart():
    from caffepy.blob import Blob

    a, b, c, d = (Blob((n,)) for n in (8, 6, 4, 2))
    # a -> L0 -> b -> L1 -> c -> L2 -> d
    bottoms = [[a], [b], [c]]
    tops = [[b], [c], [d]]
    groups = plan_diff_sharing(bottoms, tops, [True] * 3, [[True]] * 3, set())
    # b lives over [0, 1], c over [1, 2], d over [2, 2]: b and d share
    assert [[id(x) for x in g] for g in groups] == [[id(b), id(d)]]
    # a consumer that needs no gradient: the reader would see an unwritten diff
    groups = plan_diff_sharing(
        bottoms, tops, [True] * 3, [[True], [False], [True]], set()
    )
    assert groups == []


def test_solver_shares_diffs_and_trains_the_same(tmp_path):
    param = block_net((2, 4, 5, 5))
    net_file = tmp_path / "net.prototxt"
    net_file.write_text(text_format.MessageToString(param))
    sp = caffe_pb2.SolverParameter(
        net=str(net_file),
        base_lr=0.01,
        momentum=0.9,
        weight_decay=1e-3,
        lr_policy="fixed",
        max_iter=3,
        display=0,
        snapshot_after_train=False,
        random_seed=SEED,
    )
    results = []
    for share in (True, False):
        solver = caffepy.get_solver(sp, share_diffs=share)
        rng = np.random.default_rng(SEED)
        for name in solver.net.inputs:
            blob = solver.net.blobs[name]
            blob.data[...] = rng.standard_normal(blob.shape)
        solver.step(3)
        results.append([b.data.copy() for b in solver.net.learnable_params])
    for x, y in zip(*results):
        assert x.tobytes() == y.tobytes()


def test_pycaffe_solver_keeps_a_diff_per_blob(tmp_path):
    # pycaffe code reads inner gradients after solver.step: only `caffepy train`
    # (share_diffs=True) lets them share memory
    param = block_net((2, 4, 5, 5))
    net_file = tmp_path / "net.prototxt"
    net_file.write_text(text_format.MessageToString(param))
    sp = caffe_pb2.SolverParameter(
        net=str(net_file), base_lr=0.01, lr_policy="fixed", max_iter=1, display=0
    )
    for share, want_shared in ((False, False), (True, True)):
        kwargs = {"share_diffs": True} if share else {}
        net = caffepy.get_solver(sp, **kwargs).net
        diffs = [b.diff for b in net.blobs.values() if b.count]
        shared = any(
            np.shares_memory(x, y) for i, x in enumerate(diffs) for y in diffs[i + 1 :]
        )
        assert shared == want_shared
