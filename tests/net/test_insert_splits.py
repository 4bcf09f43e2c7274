"""Split insertion, ported from Caffe's SplitLayerInsertionTest
(src/caffe/test/test_split_layer.cpp): the expected nets are Caffe's, in the
current ``layer`` syntax. Every case also checks idempotence, as Caffe's does."""

import pytest
from google.protobuf import text_format

import caffepy
from caffepy.net import Net, insert_splits
from caffepy.proto import caffe_pb2


def L(name, type_, bottom=(), top=(), extra=""):
    """One ``layer { }`` in prototxt text."""
    b = " ".join(f"bottom: '{x}'" for x in bottom)
    t = " ".join(f"top: '{x}'" for x in top)
    return f"layer {{ name: '{name}' type: '{type_}' {b} {t} {extra} }}\n"


def S(blob, layer, i, n, extra=""):
    """The Split layer Caffe inserts for top ``i`` of ``layer`` read ``n`` times."""
    split = f"{blob}_{layer}_{i}_split"
    return L(split, "Split", [blob], [f"{split}_{k}" for k in range(n)], extra)


def parse(text):
    return text_format.Parse(text, caffe_pb2.NetParameter())


def check_insertion(given, expected):
    out, inserted = insert_splits(parse(given))
    assert text_format.MessageToString(out) == text_format.MessageToString(
        parse(expected)
    )
    want = [
        i
        for i, lp in enumerate(parse(expected).layer)
        if lp.type == "Split" and lp.name not in {x.name for x in parse(given).layer}
    ]
    assert inserted == want
    again, more = insert_splits(out)
    assert again == out and more == []


DATA = L("data", "Data", [], ["data", "label"])


def test_no_insertion_1():
    net = (
        DATA
        + L("innerprod", "InnerProduct", ["data"], ["innerprod"])
        + L("loss", "SoftmaxWithLoss", ["innerprod", "label"])
    )
    check_insertion("name: 'TestNetwork' " + net, "name: 'TestNetwork' " + net)


def test_no_insertion_2_user_split_is_kept():
    net = (
        DATA
        + L("data_split", "Split", ["data"], ["data_split_0", "data_split_1"])
        + L("innerprod1", "InnerProduct", ["data_split_0"], ["innerprod1"])
        + L("innerprod2", "InnerProduct", ["data_split_1"], ["innerprod2"])
        + L("loss", "EuclideanLoss", ["innerprod1", "innerprod2"])
    )
    check_insertion(net, net)


def test_no_insertion_imagenet():
    net = DATA
    prev = "data"
    for k, in_place in (
        (1, "pool norm"),
        (2, "pool norm"),
        (3, ""),
        (4, ""),
        (5, "pool"),
    ):
        conv = f"conv{k}"
        net += L(
            conv,
            "Convolution",
            [prev],
            [conv],
            "param { lr_mult: 1 } param { lr_mult: 2 }",
        )
        net += L(f"relu{k}", "ReLU", [conv], [conv])
        prev = conv
        if "pool" in in_place:
            net += L(f"pool{k}", "Pooling", [prev], [f"pool{k}"])
            prev = f"pool{k}"
        if "norm" in in_place:
            net += L(f"norm{k}", "LRN", [prev], [f"norm{k}"])
            prev = f"norm{k}"
    for k in (6, 7):
        net += L(f"fc{k}", "InnerProduct", [prev], [f"fc{k}"])
        net += L(f"relu{k}", "ReLU", [f"fc{k}"], [f"fc{k}"])
        net += L(f"drop{k}", "Dropout", [f"fc{k}"], [f"fc{k}"])
        prev = f"fc{k}"
    net += L("fc8", "InnerProduct", [prev], ["fc8"])
    net += L("loss", "SoftmaxWithLoss", ["fc8", "label"])
    check_insertion("name: 'CaffeNet' " + net, "name: 'CaffeNet' " + net)


def test_no_insertion_with_in_place():
    net = (
        DATA
        + L("innerprod", "InnerProduct", ["data"], ["innerprod"])
        + L("relu", "ReLU", ["innerprod"], ["innerprod"])
        + L("loss", "SoftmaxWithLoss", ["innerprod", "label"])
    )
    check_insertion(net, net)


def test_loss_insertion():
    data = L("data", "DummyData", [], ["data"])
    ip = "inner_product_param { num_output: 10 bias_term: false }"
    given = (
        "force_backward: true "
        + data
        + L(
            "innerproduct1",
            "InnerProduct",
            ["data"],
            ["innerproduct1"],
            ip + " param { name: 'unsharedweights1' } loss_weight: 2.5",
        )
        + L(
            "innerproduct2",
            "InnerProduct",
            ["data"],
            ["innerproduct2"],
            ip + " param { name: 'unsharedweights2' }",
        )
        + L("loss", "EuclideanLoss", ["innerproduct1", "innerproduct2"])
    )
    expected = (
        "force_backward: true "
        + data
        + S("data", "data", 0, 2)
        + L(
            "innerproduct1",
            "InnerProduct",
            ["data_data_0_split_0"],
            ["innerproduct1"],
            ip + " param { name: 'unsharedweights1' }",
        )
        + S("innerproduct1", "innerproduct1", 0, 2, "loss_weight: 2.5 loss_weight: 0")
        + L(
            "innerproduct2",
            "InnerProduct",
            ["data_data_0_split_1"],
            ["innerproduct2"],
            ip + " param { name: 'unsharedweights2' }",
        )
        + L(
            "loss",
            "EuclideanLoss",
            ["innerproduct1_innerproduct1_0_split_1", "innerproduct2"],
        )
    )
    check_insertion(given, expected)


def test_insertion():
    given = (
        DATA
        + L("innerprod1", "InnerProduct", ["data"], ["innerprod1"])
        + L("innerprod2", "InnerProduct", ["data"], ["innerprod2"])
        + L("innerprod3", "InnerProduct", ["data"], ["innerprod3"])
        + L("loss1", "EuclideanLoss", ["innerprod1", "innerprod2"])
        + L("loss2", "EuclideanLoss", ["innerprod2", "innerprod3"])
    )
    expected = (
        DATA
        + S("data", "data", 0, 3)
        + L("innerprod1", "InnerProduct", ["data_data_0_split_0"], ["innerprod1"])
        + L("innerprod2", "InnerProduct", ["data_data_0_split_1"], ["innerprod2"])
        + S("innerprod2", "innerprod2", 0, 2)
        + L("innerprod3", "InnerProduct", ["data_data_0_split_2"], ["innerprod3"])
        + L("loss1", "EuclideanLoss", ["innerprod1", "innerprod2_innerprod2_0_split_0"])
        + L("loss2", "EuclideanLoss", ["innerprod2_innerprod2_0_split_1", "innerprod3"])
    )
    check_insertion(given, expected)


def test_insertion_two_top():
    given = (
        DATA
        + L("innerprod1", "InnerProduct", ["data"], ["innerprod1"])
        + L("innerprod2", "InnerProduct", ["label"], ["innerprod2"])
        + L("innerprod3", "InnerProduct", ["data"], ["innerprod3"])
        + L("innerprod4", "InnerProduct", ["label"], ["innerprod4"])
        + L("loss1", "EuclideanLoss", ["innerprod1", "innerprod3"])
        + L("loss2", "EuclideanLoss", ["innerprod2", "innerprod4"])
    )
    expected = (
        DATA
        + S("data", "data", 0, 2)
        + S("label", "data", 1, 2)
        + L("innerprod1", "InnerProduct", ["data_data_0_split_0"], ["innerprod1"])
        + L("innerprod2", "InnerProduct", ["label_data_1_split_0"], ["innerprod2"])
        + L("innerprod3", "InnerProduct", ["data_data_0_split_1"], ["innerprod3"])
        + L("innerprod4", "InnerProduct", ["label_data_1_split_1"], ["innerprod4"])
        + L("loss1", "EuclideanLoss", ["innerprod1", "innerprod3"])
        + L("loss2", "EuclideanLoss", ["innerprod2", "innerprod4"])
    )
    check_insertion(given, expected)


def test_input_insertion():
    # Caffe's net-level `input:` is upgraded to an Input layer named 'input'
    # before splits are inserted, hence Caffe's 'data_input_0_split'.
    inp = L(
        "input",
        "Input",
        [],
        ["data"],
        "input_param { shape { dim: 10 dim: 3 dim: 227 dim: 227 } }",
    )
    given = (
        inp
        + L("innerprod1", "InnerProduct", ["data"], ["innerprod1"])
        + L("innerprod2", "InnerProduct", ["data"], ["innerprod2"])
        + L("loss", "EuclideanLoss", ["innerprod1", "innerprod2"])
    )
    expected = (
        inp
        + S("data", "input", 0, 2)
        + L("innerprod1", "InnerProduct", ["data_input_0_split_0"], ["innerprod1"])
        + L("innerprod2", "InnerProduct", ["data_input_0_split_1"], ["innerprod2"])
        + L("loss", "EuclideanLoss", ["innerprod1", "innerprod2"])
    )
    check_insertion(given, expected)


def test_insertion_with_in_place():
    given = (
        DATA
        + L("innerprod1", "InnerProduct", ["data"], ["innerprod1"])
        + L("relu1", "ReLU", ["innerprod1"], ["innerprod1"])
        + L("innerprod2", "InnerProduct", ["innerprod1"], ["innerprod2"])
        + L("loss1", "EuclideanLoss", ["innerprod1", "label"])
        + L("loss2", "EuclideanLoss", ["innerprod2", "data"])
    )
    expected = (
        DATA
        + S("data", "data", 0, 2)
        + L("innerprod1", "InnerProduct", ["data_data_0_split_0"], ["innerprod1"])
        + L("relu1", "ReLU", ["innerprod1"], ["innerprod1"])
        + S("innerprod1", "relu1", 0, 2)
        + L(
            "innerprod2", "InnerProduct", ["innerprod1_relu1_0_split_0"], ["innerprod2"]
        )
        + L("loss1", "EuclideanLoss", ["innerprod1_relu1_0_split_1", "label"])
        + L("loss2", "EuclideanLoss", ["innerprod2", "data_data_0_split_1"])
    )
    check_insertion(given, expected)


# -- what the Net does with the inserted splits ----------------------------------
USER_SPLIT = """
name: "own_split"
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "x_split" type: "Split" bottom: "x" top: "a" top: "b" }
layer { name: "ip1" type: "InnerProduct" bottom: "a" top: "y1"
        inner_product_param { num_output: 2 } }
layer { name: "ip2" type: "InnerProduct" bottom: "b" top: "y2"
        inner_product_param { num_output: 2 } }
layer { name: "sum" type: "Eltwise" bottom: "y1" bottom: "y2" top: "s" }
layer { name: "loss" type: "EuclideanLoss" bottom: "s" bottom: "y1" top: "l" }
"""


def test_to_proto_keeps_a_users_split_and_drops_inserted_ones():
    net = Net(param=parse(USER_SPLIT), phase=caffepy.TEST)
    names = net.layer_names
    assert "x_split" in names and "y1_ip1_0_split" in names
    written = [lp.name for lp in net.to_proto().layer]
    assert written == ["in", "x_split", "ip1", "ip2", "sum", "loss"]
    # the layers are written as the user wrote them, not with split blob names
    assert list(net.to_proto().layer[5].bottom) == ["s", "y1"]


def test_unknown_bottom_is_named():
    with pytest.raises(caffepy.errors.NetError, match="unknown bottom blob 'nope'"):
        insert_splits(parse(L("r", "ReLU", ["nope"], ["r"])))
