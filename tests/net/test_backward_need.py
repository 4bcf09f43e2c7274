"""Which layers and bottoms need backward, ported from Caffe's NetTest
(TestBottomNeedBackward, ...Force, ...EuclideanForce, ...Tricky,
TestSkipPropagateDown in src/caffe/test/test_net.cpp)."""

from google.protobuf import text_format

import caffepy
from caffepy.net import Net
from caffepy.proto import caffe_pb2

DATA = """
layer { name: 'data' type: 'DummyData' top: 'data' top: 'label'
        dummy_data_param { shape { dim: 5 dim: 2 dim: 3 dim: 4 }
                           data_filler { type: 'gaussian' std: 0.01 }
                           shape { dim: 5 } data_filler { type: 'constant' } } }
"""


def ip(name, bottom, top, n=10):
    return (
        f"layer {{ name: '{name}' type: 'InnerProduct' bottom: '{bottom}' "
        f"top: '{top}' inner_product_param {{ num_output: {n} }} }}"
    )


def build(text, force=False):
    param = text_format.Parse(text, caffe_pb2.NetParameter())
    param.force_backward = force
    return Net(param=param, phase=caffepy.TRAIN)


TINY = (
    DATA
    + ip("innerproduct", "data", "innerproduct")
    + """
layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'innerproduct' bottom: 'label'
        top: 'top_loss' }"""
)


def test_bottom_need_backward():
    assert build(TINY).bottom_need_backward == [[], [False], [True, False]]


def test_bottom_need_backward_force():
    net = build(TINY, force=True)
    assert net.bottom_need_backward == [[], [True], [True, False]]


def test_bottom_need_backward_euclidean_force():
    text = (
        DATA.replace("shape { dim: 5 } ", "shape { dim: 5 dim: 1 } ")
        + ip("innerproduct", "data", "innerproduct", 1)
        + """
    layer { name: 'loss' type: 'EuclideanLoss' bottom: 'innerproduct' bottom: 'label'
            top: 'l' }"""
    )
    net = build(text, force=True)
    assert net.bottom_need_backward == [[], [True], [True, True]]


def test_bottom_need_backward_tricky():
    # Caffe names both inner products 'innerproduct'; caffepy wants unique names.
    text = (
        DATA.replace("shape { dim: 5 } ", "shape { dim: 5 dim: 1 } ")
        + ip("innerproduct", "data", "transformed_data")
        + ip("innerproduct2", "label", "transformed_label", 1)
        + """layer { name: 'loss' type: 'SoftmaxWithLoss' top: 'l'
                         bottom: 'transformed_data' bottom: 'transformed_label' }"""
    )
    net = build(text)
    # the label input to the loss "needs backward" since it has weights under it
    assert net.bottom_need_backward == [[], [False], [False], [True, True]]


def skip_prop_net(skip_label):
    down = "propagate_down: true propagate_down: " + ("false" if skip_label else "true")
    return build(
        DATA
        + """
    layer { name: 'silence' type: 'Silence' bottom: 'label' }"""
        + ip("innerproduct", "data", "innerproduct", 1)
        + ip("ip_fake_labels", "data", "fake_labels", 1)
        + f"""
    layer {{ name: 'argmax' type: 'ArgMax' bottom: 'fake_labels' top: 'label_argmax' }}
    layer {{ name: 'loss' type: 'SigmoidCrossEntropyLoss' bottom: 'innerproduct'
             bottom: 'label_argmax' {down} top: 'cross_entropy_loss'
             loss_weight: 0.1 }}"""
    )


def test_skip_propagate_down():
    net = skip_prop_net(skip_label=False)
    need = dict(zip(net.layer_names, net.layer_need_backward))
    assert net.bottom_need_backward[net.layer_names.index("loss")][1]
    assert need == {
        name: not ("data" in name or name == "silence") for name in net.layer_names
    }

    net = skip_prop_net(skip_label=True)
    need = dict(zip(net.layer_names, net.layer_need_backward))
    assert not net.bottom_need_backward[net.layer_names.index("loss")][1]
    assert need == {name: name in ("innerproduct", "loss") for name in net.layer_names}
