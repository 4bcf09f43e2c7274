"""NetSpec (caffe.layers / caffe.params / to_proto): the behaviour of BVLC's
python/caffe/test/test_net_spec.py, plus how keyword arguments are routed."""

import os

import pytest

import caffe
from caffe import layers as L
from caffe import params as P
from tests.pycaffe.nets import write_temp


def _lenet_layers(data, label):
    conv1 = L.Convolution(
        data, kernel_size=5, num_output=20, weight_filler=dict(type="xavier")
    )
    pool1 = L.Pooling(conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    conv2 = L.Convolution(
        pool1, kernel_size=5, num_output=50, weight_filler=dict(type="xavier")
    )
    pool2 = L.Pooling(conv2, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    ip1 = L.InnerProduct(pool2, num_output=500, weight_filler=dict(type="xavier"))
    relu1 = L.ReLU(ip1, in_place=True)
    ip2 = L.InnerProduct(relu1, num_output=10, weight_filler=dict(type="xavier"))
    return [conv1, pool1, conv2, pool2, ip1, relu1, ip2, L.SoftmaxWithLoss(ip2, label)]


def _data(batch):
    return L.DummyData(
        shape=[dict(dim=[batch, 1, 28, 28]), dict(dim=[batch, 1, 1, 1])],
        transform_param=dict(scale=1.0 / 255),
        ntop=2,
    )


def named_lenet(batch):
    n = caffe.NetSpec()
    n.data, n.label = _data(batch)
    tops = _lenet_layers(n.data, n.label)
    for name, top in zip(
        ["conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2", "loss"], tops
    ):
        n[name] = top
    return n.to_proto()


def anon_lenet(batch):
    data, label = _data(batch)
    return _lenet_layers(data, label)[-1].to_proto()


def load(proto):
    path = write_temp(str(proto))
    try:
        return caffe.Net(path, caffe.TEST)
    finally:
        os.remove(path)


@pytest.mark.parametrize("make", [named_lenet, anon_lenet])
def test_lenet_builds_with_in_place_relu(make):
    proto = make(5)
    assert proto.layer[6].type == "ReLU"
    assert list(proto.layer[6].bottom) == list(proto.layer[6].top)
    net = load(proto)
    assert len(net.layers) == 9


def test_names_come_from_the_spec_or_the_type():
    named = named_lenet(5)
    assert [lp.name for lp in named.layer] == [
        "data",
        "conv1",
        "pool1",
        "conv2",
        "pool2",
        "ip1",
        "relu1",
        "ip2",
        "loss",
    ]
    assert list(named.layer[6].top) == ["ip1"]  # in place over ip1
    assert list(named.layer[7].bottom) == ["ip1"]
    anon = anon_lenet(5)
    assert [lp.name for lp in anon.layer][:3] == [
        "DummyData1",
        "Convolution1",
        "Pooling1",
    ]
    assert list(anon.layer[0].top) == ["DummyData1", "DummyData2"]


def test_keyword_arguments_are_routed():
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[2, 3, 8, 8]))
    n.conv = L.Convolution(
        n.data,
        num_output=4,
        kernel_size=3,
        param=[dict(lr_mult=1), dict(lr_mult=2, decay_mult=0)],
        include=dict(phase=caffe.TEST),
        loss_weight=0.5,
    )
    proto = n.to_proto()
    conv = proto.layer[1]
    assert conv.convolution_param.num_output == 4
    assert list(conv.convolution_param.kernel_size) == [3]  # repeated: one item
    assert [p.lr_mult for p in conv.param] == [1, 2]
    assert conv.param[1].decay_mult == 0
    assert conv.include[0].phase == caffe.TEST
    assert list(conv.loss_weight) == [0.5]
    assert list(proto.layer[0].input_param.shape[0].dim) == [2, 3, 8, 8]


def test_deconvolution_keywords_go_to_convolution_param():
    data = L.Input(shape=dict(dim=[1, 1, 4, 4]))
    proto = L.Deconvolution(data, num_output=2, kernel_size=4, stride=2).to_proto()
    assert proto.layer[1].convolution_param.num_output == 2
    assert list(proto.layer[1].convolution_param.stride) == [2]


def test_params_are_the_enum_values():
    assert P.Pooling.MAX == caffe.proto.caffe_pb2.PoolingParameter.MAX
    assert P.Pooling.AVE == 1
    assert P.Eltwise.SUM == caffe.proto.caffe_pb2.EltwiseParameter.SUM


def test_zero_tops():
    n = caffe.NetSpec()
    n.data, n.data2 = L.DummyData(shape=dict(dim=3), ntop=2)
    n.silence_data = L.Silence(n.data, ntop=0)
    n.silence_data2 = L.Silence(n.data2, ntop=0)
    proto = n.to_proto()
    assert [lp.name for lp in proto.layer] == ["data", "silence_data", "silence_data2"]
    net = load(proto)
    assert len(net.forward()) == 0


def test_an_input_that_is_not_a_top_is_a_type_error():
    data = L.DummyData(ntop=2)
    pattern = r"^Silence input 0 is not a Top \(type is <class 'tuple'>\)$"
    with pytest.raises(TypeError, match=pattern):
        L.Silence(data, ntop=0)
    L.Silence(*data, ntop=0)


def test_missing_top_is_an_attribute_error():
    with pytest.raises(AttributeError, match="conv9"):
        caffe.NetSpec().conv9  # noqa: B018
