"""caffe.Net's pycaffe surface: the behaviour of BVLC's python/caffe/test/test_net.py,
plus the batching, index views, loss weights and hooks pycaffe exposes."""

import os
from collections import OrderedDict

import numpy as np
import pytest

import caffe
from tests.pycaffe.nets import input_net_text, simple_net_text, write_temp

NUM_OUTPUT = 13


@pytest.fixture
def net_file():
    path = write_temp(simple_net_text(NUM_OUTPUT))
    yield path
    os.remove(path)


@pytest.fixture
def net(net_file):
    n = caffe.Net(net_file, caffe.TRAIN)
    rng = np.random.default_rng(1701)
    n.blobs["label"].data[...] = rng.integers(NUM_OUTPUT, size=(5, 1, 1, 1))
    return n


def test_blobs_outlive_the_net(net):
    params = [p for ps in net.params.values() for p in ps]
    blobs = list(net.blobs.values())
    del net
    total = sum(float(p.data.sum() + p.diff.sum()) for p in params)
    total += sum(float(b.data.sum() + b.diff.sum()) for b in blobs)
    assert np.isfinite(total)


def test_layer_dict_follows_layer_names(net):
    assert list(net.layer_dict) == list(net._layer_names)
    for i, name in enumerate(net._layer_names):
        assert net.layer_dict[name].type == net.layers[i].type


def test_forward_one_layer_matches_a_matrix_product(net):
    conv = net.blobs["conv"]
    conv.data[...] = np.random.default_rng(0).uniform(size=conv.data.shape)
    out = net.forward(start="ip", end="ip")
    assert "ip_blob" in out
    w, b = net.params["ip"][0].data, net.params["ip"][1].data
    expected = conv.data.reshape(5, -1) @ w.T + b
    np.testing.assert_allclose(
        net.blobs["ip_blob"].data, expected, rtol=1e-4, atol=1e-4
    )


def test_backward_one_layer_matches_a_matrix_product(net):
    top = net.blobs["ip_blob"]
    g = np.random.default_rng(1).uniform(size=top.data.shape).astype(np.float32)
    top.diff[...] = g
    out = net.backward(start="ip", end="ip")
    assert "conv" in out
    expected = (g @ net.params["ip"][0].data).reshape(net.blobs["conv"].shape)
    np.testing.assert_allclose(net.blobs["conv"].diff, expected, rtol=1e-4, atol=1e-4)


def test_clear_param_diffs(net):
    net.forward()
    net.backward()
    diff = net.params["conv"][0].diff
    assert np.abs(diff).max() > 0
    net.clear_param_diffs()
    assert (net.params["conv"][0].diff == 0).all()


def test_inputs_outputs_and_names(net):
    assert net.inputs == []
    assert net.outputs == ["loss"]
    assert net.top_names == OrderedDict(
        [
            ("data", ["data", "label"]),
            ("conv", ["conv"]),
            ("ip", ["ip_blob"]),
            ("loss", ["loss"]),
        ]
    )
    assert net.bottom_names == OrderedDict(
        [
            ("data", []),
            ("conv", ["data"]),
            ("ip", ["conv"]),
            ("loss", ["ip_blob", "label"]),
        ]
    )


def test_index_views(net):
    names = ["data", "label", "conv", "ip_blob", "loss"]
    assert net._blob_names == names
    assert [b is net.blobs[n] for b, n in zip(net._blobs, names)] == [True] * 5
    assert net._outputs == [4]
    assert net._inputs == []
    assert net._top_ids(0) == [0, 1]
    assert net._bottom_ids(3) == [3, 1]


def test_blob_loss_weights(net):
    assert net.blob_loss_weights == OrderedDict(
        [("data", 0.0), ("label", 0.0), ("conv", 0.0), ("ip_blob", 0.0), ("loss", 1.0)]
    )
    assert net._blob_loss_weights == [0.0, 0.0, 0.0, 0.0, 1.0]


def test_underscore_forward_backward_take_indices(net):
    net.blobs["ip_blob"].data[...] = 0
    loss = net._forward(3, 3)  # the loss layer alone: uniform softmax
    assert loss == pytest.approx(np.log(NUM_OUTPUT), rel=1e-5)
    assert net.blobs["loss"].data == pytest.approx(np.log(NUM_OUTPUT), rel=1e-5)
    net.blobs["conv"].diff[...] = 7
    net._backward(3, 3)  # conv's diff is not touched by the loss layer
    assert (net.blobs["conv"].diff == 7).all()


def test_save_and_read_with_both_constructors(net, net_file, tmp_path):
    path = str(tmp_path / "w.caffemodel")
    net.save(path)
    legacy = caffe.Net(net_file, path, caffe.TRAIN)
    named = caffe.Net(net_file, caffe.TRAIN, weights=path)
    for other in (legacy, named):
        for name, blobs in net.params.items():
            for i, blob in enumerate(blobs):
                assert np.abs(blob.data - other.params[name][i].data).sum() == 0


def test_share_with_uses_the_same_memory(net, net_file):
    other = caffe.Net(net_file, caffe.TRAIN)
    other.share_with(net)
    net.params["ip"][0].data[...] = 0.5
    assert (other.params["ip"][0].data == 0.5).all()


def test_hooks_run_around_every_layer_in_order(net):
    calls = []
    net.before_forward(lambda i: calls.append(("bf", i)))
    net.after_forward(lambda i: calls.append(("af", i)))
    net.before_backward(lambda i: calls.append(("bb", i)))
    net.after_backward(lambda i: calls.append(("ab", i)))
    net.forward()
    net.backward()
    fwd = [(k, i) for i in range(4) for k in ("bf", "af")]
    bwd = [(k, i) for i in range(3, -1, -1) for k in ("bb", "ab")]
    assert calls == fwd + bwd


def test_hooks_see_each_layer_before_and_after_it_runs(net):
    seen = {}

    def before(i):
        if i == 2:
            seen["ip_before"] = net.blobs["ip_blob"].data.copy()

    def after(i):
        if i == 2:
            seen["ip_after"] = net.blobs["ip_blob"].data.copy()

    net.blobs["ip_blob"].data[...] = 123.0
    net.before_forward(before)
    net.after_forward(after)
    net.forward()
    assert (seen["ip_before"] == 123.0).all()
    np.testing.assert_array_equal(seen["ip_after"], net.blobs["ip_blob"].data)
    assert not (seen["ip_after"] == 123.0).all()


@pytest.fixture
def deploy():
    path = write_temp(input_net_text(batch=4))
    yield caffe.Net(path, caffe.TEST)
    os.remove(path)


def test_forward_all_batches_and_drops_padding(deploy):
    x = np.random.default_rng(2).normal(size=(10, 3, 8, 8)).astype(np.float32)
    out = deploy.forward_all(data=x, blobs=["ip"])
    assert out["prob"].shape == (10, 4) and out["ip"].shape == (10, 4)
    w, b = deploy.params["ip"][0].data, deploy.params["ip"][1].data
    ip = x.reshape(10, -1) @ w.T + b
    np.testing.assert_allclose(out["ip"], ip, rtol=1e-4, atol=1e-5)
    e = np.exp(ip - ip.max(1, keepdims=True))
    np.testing.assert_allclose(out["prob"], e / e.sum(1, keepdims=True), atol=1e-5)


def test_forward_backward_all(deploy):
    x = np.random.default_rng(3).normal(size=(6, 3, 8, 8)).astype(np.float32)
    g = np.random.default_rng(4).normal(size=(6, 4)).astype(np.float32)
    outs, diffs = deploy.forward_backward_all(data=x, prob=g)
    assert outs["prob"].shape == (6, 4)
    assert diffs["data"].shape == (6, 3, 8, 8)
    p = outs["prob"]
    dip = p * (g - (g * p).sum(1, keepdims=True))  # softmax backward
    expected = (dip @ deploy.params["ip"][0].data).reshape(6, 3, 8, 8)
    np.testing.assert_allclose(diffs["data"], expected, rtol=1e-3, atol=1e-5)


LEVELS = """
layer { name: "data" type: "DummyData" top: "data"
  dummy_data_param { shape { dim: 1 dim: 1 dim: 10 dim: 10 } } }
layer { name: "NoLevel" type: "InnerProduct" bottom: "data" top: "NoLevel"
  inner_product_param { num_output: 1 } }
layer { name: "Level0Only" type: "InnerProduct" bottom: "data" top: "Level0Only"
  include { min_level: 0 max_level: 0 } inner_product_param { num_output: 1 } }
layer { name: "Level1Only" type: "InnerProduct" bottom: "data" top: "Level1Only"
  include { min_level: 1 max_level: 1 } inner_product_param { num_output: 1 } }
layer { name: "Level>=0" type: "InnerProduct" bottom: "data" top: "Level>=0"
  include { min_level: 0 } inner_product_param { num_output: 1 } }
layer { name: "Level>=1" type: "InnerProduct" bottom: "data" top: "Level>=1"
  include { min_level: 1 } inner_product_param { num_output: 1 } }
"""

STAGES = """
layer { name: "data" type: "DummyData" top: "data"
  dummy_data_param { shape { dim: 1 dim: 1 dim: 10 dim: 10 } } }
layer { name: "A" type: "InnerProduct" bottom: "data" top: "A"
  include { stage: "A" } inner_product_param { num_output: 1 } }
layer { name: "B" type: "InnerProduct" bottom: "data" top: "B"
  include { stage: "B" } inner_product_param { num_output: 1 } }
layer { name: "AorB" type: "InnerProduct" bottom: "data" top: "AorB"
  include { stage: "A" } include { stage: "B" } inner_product_param { num_output: 1 } }
layer { name: "AandB" type: "InnerProduct" bottom: "data" top: "AandB"
  include { stage: "A" stage: "B" } inner_product_param { num_output: 1 } }
"""


def _non_data_blobs(text, **kwargs):
    path = write_temp(text)
    try:
        net = caffe.Net(path, caffe.TEST, **kwargs)
    finally:
        os.remove(path)
    return [b for b in net.blobs if "data" not in b]


@pytest.mark.parametrize(
    "kwargs, blobs",
    [
        ({}, ["NoLevel", "Level0Only", "Level>=0"]),
        ({"level": 1}, ["NoLevel", "Level1Only", "Level>=0", "Level>=1"]),
    ],
)
def test_levels(kwargs, blobs):
    assert _non_data_blobs(LEVELS, **kwargs) == blobs


@pytest.mark.parametrize(
    "stages, blobs",
    [
        (["A"], ["A", "AorB"]),
        (["B"], ["B", "AorB"]),
        (["A", "B"], ["A", "B", "AorB", "AandB"]),
    ],
)
def test_stages(stages, blobs):
    assert _non_data_blobs(STAGES, stages=stages) == blobs
