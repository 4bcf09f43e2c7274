"""Net building steps (filter, splits, backward pruning, sharing) and pycaffe API."""

import numpy as np
import pytest
from google.protobuf import text_format

import caffepy
from caffepy.errors import NetError, UnsupportedError, WeightsError
from caffepy.net import Net, filter_net, insert_splits, state_meets_rule
from caffepy.proto import caffe_pb2


def net_param(text):
    return text_format.Parse(text, caffe_pb2.NetParameter())


MLP = """
name: "mlp"
layer { name: "in" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 4 dim: 6 } shape { dim: 4 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
        param { lr_mult: 0 } param { lr_mult: 0 }
        inner_product_param { num_output: 5 weight_filler { type: "xavier" } } }
layer { name: "relu" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
        inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
layer { name: "acc" type: "Accuracy" bottom: "ip2" bottom: "label" top: "acc"
        include { phase: TEST } }
"""


def test_state_rules():
    state = caffe_pb2.NetState(phase=caffe_pb2.TRAIN, level=2, stage=["a"])
    rule = caffe_pb2.NetStateRule
    assert state_meets_rule(state, rule(phase=caffe_pb2.TRAIN))
    assert not state_meets_rule(state, rule(phase=caffe_pb2.TEST))
    assert state_meets_rule(state, rule(min_level=2))
    assert not state_meets_rule(state, rule(max_level=1))
    assert state_meets_rule(state, rule(stage=["a"]))
    assert not state_meets_rule(state, rule(stage=["a", "b"]))
    assert not state_meets_rule(state, rule(not_stage=["a"]))


def test_filter_by_phase():
    p = net_param(MLP)
    train = filter_net(p, caffe_pb2.NetState(phase=caffe_pb2.TRAIN))
    test = filter_net(p, caffe_pb2.NetState(phase=caffe_pb2.TEST))
    assert "acc" not in [lp.name for lp in train.layer]
    assert "acc" in [lp.name for lp in test.layer]


def test_filter_refuses_include_and_exclude():
    p = net_param(
        'layer { name: "x" type: "ReLU" include { phase: TRAIN } '
        "exclude { phase: TEST } }"
    )
    with pytest.raises(NetError, match="either include rules or exclude rules"):
        filter_net(p, caffe_pb2.NetState())


def test_insert_splits_names_and_counts():
    p = filter_net(net_param(MLP), caffe_pb2.NetState(phase=caffe_pb2.TEST))
    s, inserted = insert_splits(p)
    names = [lp.name for lp in s.layer]
    assert sorted(names[i] for i in inserted) == ["ip2_ip2_0_split", "label_in_1_split"]
    assert "ip2_ip2_0_split" in names and "label_in_1_split" in names
    split = s.layer[names.index("ip2_ip2_0_split")]
    assert list(split.top) == ["ip2_ip2_0_split_0", "ip2_ip2_0_split_1"]
    loss = s.layer[names.index("loss")]
    assert list(loss.bottom) == ["ip2_ip2_0_split_0", "label_in_1_split_0"]


def test_unknown_bottom_names_layer():
    p = net_param('layer { name: "r" type: "ReLU" bottom: "nope" top: "r" }')
    with pytest.raises(NetError, match="layer 'r'.*unknown bottom blob 'nope'"):
        Net(param=p, phase=caffepy.TRAIN)


def test_unknown_layer_type_suggests(tmp_path):
    f = tmp_path / "n.prototxt"
    f.write_text(
        'layer { name: "in" type: "Input" top: "x" '
        "input_param { shape { dim: 1 } } }\n"
        'layer { name: "r" type: "ReLu" bottom: "x" top: "y" }\n'
    )
    with pytest.raises(
        UnsupportedError, match=r"'ReLu'.*n.prototxt:2.*did you mean 'ReLU'"
    ):
        Net(str(f), caffepy.TRAIN)


def test_unsupported_caffe_layer_is_named():
    p = net_param('layer { name: "l" type: "ImageData_Multi" }')
    with pytest.raises(
        UnsupportedError, match="'ImageData_Multi'.*does not support yet"
    ):
        Net(param=p, phase=caffepy.TRAIN)


def test_frozen_bottom_layer_needs_no_backward():
    net = Net(param=net_param(MLP), phase=caffepy.TRAIN)
    need = dict(zip(net.layer_names, net.layer_need_backward))
    assert need["ip1"] is False and need["relu"] is False
    assert need["ip2"] is True and need["loss"] is True
    assert net.params_lr == [0.0, 0.0, 1.0, 1.0]
    before = net.params["ip1"][0].data.copy()
    net.blobs["data"].data[...] = np.random.randn(4, 6)
    net.blobs["label"].data[...] = [0, 1, 2, 1]
    net.forward_backward()
    assert not net.params["ip1"][0].has_diff or np.all(net.params["ip1"][0].diff == 0)
    np.testing.assert_array_equal(before, net.params["ip1"][0].data)


def test_pycaffe_api_forward_backward_outputs():
    net = Net(param=net_param(MLP), phase=caffepy.TEST)
    assert net.inputs == ["data", "label"]
    assert set(net.outputs) == {"loss", "acc"}
    out = net.forward(data=np.random.randn(4, 6), label=np.array([0, 1, 2, 0]))
    assert out["loss"].shape == () and 0 <= float(out["acc"]) <= 1
    assert list(net.params) == ["ip1", "ip2"]
    assert net.top_names["ip1"] == ["ip1"]
    # as pycaffe: names after split insertion
    assert net.bottom_names["loss"] == ["ip2_ip2_0_split_0", "label_in_1_split_0"]


def test_param_sharing_sums_gradients():
    text = """
    layer { name: "in" type: "Input" top: "a" top: "b"
            input_param { shape { dim: 2 dim: 3 } } }
    layer { name: "ipa" type: "InnerProduct" bottom: "a" top: "ya"
            param { name: "w" } param { name: "bias" }
            inner_product_param { num_output: 2 weight_filler { type: "gaussian" } } }
    layer { name: "ipb" type: "InnerProduct" bottom: "b" top: "yb"
            param { name: "w" } param { name: "bias" }
            inner_product_param { num_output: 2 } }
    layer { name: "sum" type: "Eltwise" bottom: "ya" bottom: "yb" top: "y" }
    layer { name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "y" top: "l" }
    """
    net = Net(param=net_param(text), phase=caffepy.TRAIN)
    wa, wb = net.params["ipa"][0], net.params["ipb"][0]
    wa.data[...] = 1.5
    assert np.all(wb.data == 1.5), "shared weights share memory"
    assert len(net.learnable_params) == 2


def test_save_and_copy_roundtrip(tmp_path):
    a = Net(param=net_param(MLP), phase=caffepy.TRAIN)
    path = tmp_path / "w.caffemodel"
    a.save(str(path))
    b = Net(param=net_param(MLP), phase=caffepy.TRAIN)
    report = b.copy_from(str(path))
    assert report["copied"] == ["ip1", "ip2"]
    for name in ("ip1", "ip2"):
        for x, y in zip(a.params[name], b.params[name]):
            np.testing.assert_array_equal(x.data, y.data)
    c = Net(param=net_param(MLP), phase=caffepy.TEST, weights=str(path))
    np.testing.assert_array_equal(c.params["ip2"][0].data, a.params["ip2"][0].data)


def test_copy_shape_mismatch_names_layer_and_advises(tmp_path):
    a = Net(param=net_param(MLP), phase=caffepy.TRAIN)
    path = tmp_path / "w.caffemodel"
    a.save(str(path))
    other = MLP.replace("num_output: 3", "num_output: 7")
    b = Net(param=net_param(other), phase=caffepy.TRAIN)
    with pytest.raises(WeightsError, match=r"layer 'ip2'.*\(3, 5\).*\(7, 5\).*rename"):
        b.copy_from(str(path))


def test_truncated_weights_refused(tmp_path):
    a = Net(param=net_param(MLP), phase=caffepy.TRAIN)
    path = tmp_path / "w.caffemodel"
    a.save(str(path))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(WeightsError, match="truncated|not a Caffe"):
        Net(param=net_param(MLP), phase=caffepy.TRAIN, weights=str(path))


def test_old_pycaffe_signature(tmp_path):
    f = tmp_path / "n.prototxt"
    f.write_text(MLP)
    a = Net(str(f), caffepy.TRAIN)
    w = tmp_path / "w.caffemodel"
    a.save(str(w))
    b = Net(str(f), str(w), caffepy.TEST)
    assert b.phase == caffepy.TEST
    np.testing.assert_array_equal(b.params["ip1"][0].data, a.params["ip1"][0].data)


def test_float64_net():
    net = Net(param=net_param(MLP), phase=caffepy.TRAIN, dtype=np.float64)
    assert net.blobs["ip1"].data.dtype == np.float64
    assert net.params["ip2"][0].data.dtype == np.float64


def test_layer_type_list_has_core_types():
    types = caffepy.layer_type_list()
    for t in (
        "Convolution",
        "Pooling",
        "InnerProduct",
        "ReLU",
        "SoftmaxWithLoss",
        "BatchNorm",
        "Scale",
        "Dropout",
        "Data",
        "Input",
        "Python",
    ):
        assert t in types


class AddOne(caffepy.Layer):
    def setup(self, bottom, top):
        self.k = float(self.param_str or 1)

    def reshape(self, bottom, top):
        top[0].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data + self.k

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = top[0].diff


def test_python_layer():
    text = """
    layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 2 } } }
    layer { name: "py" type: "Python" bottom: "x" top: "y"
            python_param { module: "tests.test_net" layer: "AddOne" param_str: "2" } }
    """
    net = Net(param=net_param(text), phase=caffepy.TEST)
    out = net.forward(x=np.ones((2, 2)))
    np.testing.assert_array_equal(out["y"], 3)
