"""Python layers through ``import caffe``: the behaviour of BVLC's
test_python_layer.py, test_python_layer_with_param_str.py and
test_layer_type_list.py."""

import os

import numpy as np
import pytest

import caffe
from tests.pycaffe.nets import write_temp

MODULE = "tests.pycaffe.pylayers"


def _py(name, layer, bottom=None, top=None, param_str=None):
    b = f"bottom: '{bottom}'" if bottom else ""
    t = f"top: '{top or name}'"
    p = f"param_str: '{param_str}'" if param_str is not None else ""
    return (
        f"layer {{ type: 'Python' name: '{name}' {b} {t} python_param {{ "
        f"module: '{MODULE}' layer: '{layer}' {p} }} }}\n"
    )


HEAD = (
    "name: 'pythonnet' force_backward: true\n"
    "input: 'data' input_shape { dim: 10 dim: 9 dim: 8 }\n"
)


def _net(text, phase=caffe.TRAIN):
    path = write_temp(text)
    try:
        return caffe.Net(path, phase)
    finally:
        os.remove(path)


@pytest.fixture
def chain():
    return _net(
        HEAD
        + _py("one", "TimesTen", "data")
        + _py("two", "TimesTen", "one")
        + _py("three", "TimesTen", "two")
    )


def test_forward(chain):
    chain.blobs["data"].data[...] = 8
    chain.forward()
    assert (chain.blobs["three"].data == 8 * 10**3).all()


def test_backward(chain):
    chain.blobs["three"].diff[...] = 7
    chain.backward()
    assert (chain.blobs["data"].diff == 7 * 10**3).all()


def test_reshape(chain):
    chain.blobs["data"].reshape(4, 4, 4, 4)
    chain.forward()
    for blob in chain.blobs.values():
        assert blob.data.shape == (4, 4, 4, 4)


def test_an_exception_in_setup_reaches_the_caller():
    with pytest.raises(RuntimeError, match="on purpose"):
        _net("name: 'x' " + _py("layer", "Failing", top="top"), caffe.TEST)


def test_parameter_blobs_save_load_and_share(tmp_path):
    text = HEAD + _py("layer", "WithParameter", "data", "top")
    net = _net(text)
    net.forward()
    net.backward()
    layer = net.layers[list(net._layer_names).index("layer")]
    assert layer.blobs[0].data[0] == 0 and layer.blobs[0].diff[0] == 1
    layer.blobs[0].data[0] += layer.blobs[0].diff[0]
    path = str(tmp_path / "p.caffemodel")
    net.save(path)
    layer.blobs[0].data[0] = -1
    net.copy_from(path)
    assert layer.blobs[0].data[0] == 1
    net2 = _net(text)
    net2.share_with(net)
    assert net2.layers[list(net2._layer_names).index("layer")].blobs[0].data[0] == 1


@pytest.mark.parametrize("phase", [caffe.TRAIN, caffe.TEST])
def test_phase(phase):
    net = _net("name: 'x' " + _py("layer", "Phase", top="phase"), phase)
    assert net.forward()["phase"] == phase


def test_param_str():
    net = _net(
        HEAD
        + _py("mul10", "TimesParamStr", "data", param_str="10")
        + _py("mul2", "TimesParamStr", "mul10", param_str="2")
    )
    net.blobs["data"].data[...] = 8
    net.forward()
    assert (net.blobs["mul2"].data == 8 * 20).all()
    net.blobs["mul2"].diff[...] = 7
    net.backward()
    assert (net.blobs["data"].diff == 7 * 20).all()


def test_legacy_param_str_underscore():
    net = _net(HEAD + _py("plus2", "PlusParamStrUnderscore", "data", param_str="2"))
    net.blobs["data"].data[...] = 8
    assert (net.forward()["plus2"] == 10).all()
    layer = net.layer_dict["plus2"]
    assert layer.param_str_ == layer.param_str == "2"


def test_layer_type_list():
    types = caffe.layer_type_list()
    for name in ("Data", "Convolution", "InnerProduct", "Python"):
        assert name in types
    assert np.all(np.array(types[:-1]) <= np.array(types[1:]))  # sorted
