"""Parameter sharing and the Net's layer hooks, with cases ported from Caffe's
NetTest (src/caffe/test/test_net.cpp): TestSharedWeightsDataNet/DiffNet/Update/
Resume, PERMISSIVE and STRICT share modes, and lr_mult agreement."""

import numpy as np
import pytest
from google.protobuf import text_format

import caffepy
from caffepy.errors import NetError
from caffepy.net import Net
from caffepy.proto import caffe_pb2
from caffepy.registry import layer_class

SEED = 1701


def parse(text):
    return text_format.Parse(text, caffe_pb2.NetParameter())


def weights_net(shared, diff_data=False, bias=False):
    """Caffe's (Un)SharedWeightsNet, or its DiffData variant (ip2 reads ip1)."""
    n1, n2 = (
        ("sharedweights",) * 2 if shared else ("unsharedweights1", "unsharedweights2")
    )
    fill = "type: 'constant' value: 0.5" if diff_data else "type: 'gaussian' std: 10"
    ip = f"num_output: 10 bias_term: {str(bias).lower()} weight_filler {{ {fill} }}"
    if diff_data:
        data = (
            "layer { name: 'data' type: 'DummyData' top: 'data1' top: 'data2' "
            "dummy_data_param { num: 10 channels: 10 height: 1 width: 1 "
            "num: 10 channels: 10 height: 1 width: 1 "
            "data_filler { type: 'gaussian' std: 10 } } }"
        )
        b1, b2, loss = (
            "data1",
            "innerproduct1",
            "bottom: 'data2' bottom: 'innerproduct2'",
        )
    else:
        data = (
            "layer { name: 'data' type: 'DummyData' top: 'data' "
            "dummy_data_param { num: 5 channels: 2 height: 3 width: 4 "
            "data_filler { type: 'gaussian' std: 0.01 } } }"
        )
        b1, b2 = "data", "data"
        loss = "bottom: 'innerproduct1' bottom: 'innerproduct2'"
    text = f"""
    name: 'WeightsNetwork' {data}
    layer {{ name: 'innerproduct1' type: 'InnerProduct' bottom: '{b1}'
             top: 'innerproduct1' inner_product_param {{ {ip} }}
             param {{ name: '{n1}' }} }}
    layer {{ name: 'innerproduct2' type: 'InnerProduct' bottom: '{b2}'
             top: 'innerproduct2' inner_product_param {{ {ip} }}
             param {{ name: '{n2}' }} }}
    layer {{ name: 'loss' type: 'EuclideanLoss' {loss} top: 'loss' }}
    """
    caffepy.set_random_seed(SEED)
    return Net(param=parse(text), phase=caffepy.TRAIN)


def ip_weights(net):
    return (
        net.layer_dict["innerproduct1"].blobs[0],
        net.layer_dict["innerproduct2"].blobs[0],
    )


def test_unshared_weights_data_net():
    assert weights_net(shared=False).forward_prefilled() > 0


def test_shared_weights_data_net():
    assert weights_net(shared=True).forward_prefilled() == pytest.approx(0.0)


def test_unshared_weights_diff_net():
    net = weights_net(shared=False)
    net.forward_backward()
    w1, w2 = ip_weights(net)
    assert np.all(np.abs(w1.diff) > 0)
    np.testing.assert_allclose(-w1.diff, w2.diff, rtol=1e-6)


def test_shared_weights_diff_net():
    net = weights_net(shared=True)
    assert net.forward_backward() == pytest.approx(0.0)
    w1, w2 = ip_weights(net)
    assert not w1.diff.any() and not w2.diff.any()


def test_shared_weights_update():
    shared = weights_net(shared=True, diff_data=True)
    w1, w2 = ip_weights(shared)
    # one learnable parameter, one memory for data and for diff
    assert shared.learnable_params == [w1]
    assert np.shares_memory(w1.data, w2.data)
    assert np.shares_memory(w1.diff, w2.diff)
    shared.forward_backward()
    summed = w1.diff.copy()
    assert summed.any()
    w1.data[...] -= w1.diff  # Caffe's Net::Update for the one learnable blob
    assert np.array_equal(w1.data, w2.data)

    unshared = weights_net(shared=False, diff_data=True)
    u1, u2 = ip_weights(unshared)
    assert len(unshared.learnable_params) == 2
    assert not np.shares_memory(u1.data, u2.data)
    unshared.forward_backward()
    assert u1.diff.any() and u2.diff.any() and not np.array_equal(u1.diff, u2.diff)
    # the shared diff is the sum of the two paths' diffs
    np.testing.assert_allclose(u1.diff + u2.diff, summed, rtol=1e-5, atol=1e-4)


def test_shared_weights_resume():
    net = weights_net(shared=True, diff_data=True)
    net.forward_backward()
    w1, _ = ip_weights(net)
    w1.data[...] -= w1.diff
    saved = w1.data.copy()
    proto = net.to_proto()
    again = weights_net(shared=True, diff_data=True)
    again.copy_from(proto)
    r1, r2 = ip_weights(again)
    assert r1 is not r2
    assert np.shares_memory(r1.data, r2.data)
    np.testing.assert_array_equal(r1.data, saved)


# -- share modes ------------------------------------------------------------------
def conv_sharing_ip(mode="", conv_out=20, kernel=5):
    """An IP owner of shape (20, 25) and a conv weight of (conv_out, 1, k, k)."""
    mode_text = f"share_mode: {mode}" if mode else ""
    return parse(f"""
    layer {{ name: 'in' type: 'Input' top: 'x' top: 'img'
             input_param {{ shape {{ dim: 2 dim: 25 }} shape {{ dim: 2 dim: 1 dim: 5
                                                            dim: 5 }} }} }}
    layer {{ name: 'ip' type: 'InnerProduct' bottom: 'x' top: 'y'
             param {{ name: 'w' }}
             inner_product_param {{ num_output: 20 bias_term: false
                                   weight_filler {{ type: 'gaussian' }} }} }}
    layer {{ name: 'conv' type: 'Convolution' bottom: 'img' top: 'z'
             param {{ name: 'w' {mode_text} }}
             convolution_param {{ num_output: {conv_out} kernel_size: {kernel}
                                 bias_term: false }} }}
    """)


def test_permissive_sharing_keeps_each_blobs_own_shape():
    net = Net(param=conv_sharing_ip("PERMISSIVE"), phase=caffepy.TEST)
    owner = net.layer_dict["ip"].blobs[0]
    conv = net.layer_dict["conv"].blobs[0]
    assert owner.shape == (20, 25)
    assert conv.shape == (20, 1, 5, 5)
    assert np.shares_memory(owner.data, conv.data)
    np.testing.assert_array_equal(conv.data.reshape(20, 25), owner.data)
    out = net.forward()
    # the conv of a 5x5 image with a 5x5 kernel is the IP of the flattened image
    x = net.blobs["img"].data.reshape(2, 25)
    np.testing.assert_allclose(out["z"].reshape(2, 20), x @ owner.data.T, rtol=1e-5)


def test_permissive_sharing_needs_equal_counts():
    with pytest.raises(
        NetError,
        match=r"layer 'conv'.*owned by layer 'ip'.*count "
        r"mismatch.*\(20, 25\).*\(16, 1, 5, 5\)",
    ):
        Net(param=conv_sharing_ip("PERMISSIVE", conv_out=16), phase=caffepy.TEST)


@pytest.mark.parametrize("mode", ["", "STRICT"])
def test_strict_sharing_needs_equal_shapes(mode):
    with pytest.raises(
        NetError,
        match=r"layer 'conv'.*owned by layer 'ip'.*shape "
        r"mismatch.*\(20, 25\).*\(20, 1, 5, 5\)",
    ):
        Net(param=conv_sharing_ip(mode), phase=caffepy.TEST)


# -- multipliers of shared parameters ----------------------------------------------
def two_ips(spec1, spec2):
    return parse(f"""
    layer {{ name: 'in' type: 'Input' top: 'x' input_param {{ shape {{ dim: 2 dim: 3 }} }} }}
    layer {{ name: 'a' type: 'InnerProduct' bottom: 'x' top: 'a' param {{ {spec1} }}
             inner_product_param {{ num_output: 2 bias_term: false }} }}
    layer {{ name: 'b' type: 'InnerProduct' bottom: 'x' top: 'b' param {{ {spec2} }}
             inner_product_param {{ num_output: 2 bias_term: false }} }}
    layer {{ name: 'loss' type: 'EuclideanLoss' bottom: 'a' bottom: 'b' top: 'l' }}
    """)


def test_shared_lr_mult_mismatch_is_refused():
    with pytest.raises(
        NetError, match="layer 'b'.*'w' has lr_mult 2 but its owner, layer 'a', has 3"
    ):
        Net(param=two_ips("name: 'w' lr_mult: 3", "name: 'w' lr_mult: 2"))


def test_sharer_sets_multipliers_the_owner_left_unset():
    net = Net(param=two_ips("name: 'w'", "name: 'w' lr_mult: 2 decay_mult: 0"))
    assert net.params_lr == [2.0] and net.params_weight_decay == [0.0]
    a, b = net.layer_names.index("a"), net.layer_names.index("b")
    assert net.param_owners == [(a, 0, None), (b, 0, (a, 0))]


# -- type knowledge in the layers ---------------------------------------------------
def test_batchnorm_fixes_its_own_lr_mult():
    net = Net(
        param=parse("""
    layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 4 dim: 3 } } }
    layer { name: 'bn' type: 'BatchNorm' bottom: 'x' top: 'x' }
    layer { name: 'sc' type: 'Scale' bottom: 'x' top: 'y' scale_param { bias_term: true } }
    layer { name: 'loss' type: 'EuclideanLoss' bottom: 'y' bottom: 'x' top: 'l' }
    """),
        phase=caffepy.TRAIN,
    )
    assert net.params_lr == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert net.params_weight_decay == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert net.layer_dict["bn"].param_propagate_down == [False] * 3


PARAM_LAYERS = """
layer { name: 'in' type: 'Input' top: 'x' top: 'ids'
        input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } shape { dim: 2 } } }
layer { name: 'c1' type: 'Convolution' bottom: 'x' top: 'c1'
        convolution_param { num_output: 2 kernel_size: 3 } }
layer { name: 'c2' type: 'Convolution' bottom: 'x' top: 'c2'
        convolution_param { num_output: 2 kernel_size: 3 bias_term: false } }
layer { name: 'd1' type: 'Deconvolution' bottom: 'x' top: 'd1'
        convolution_param { num_output: 2 kernel_size: 2 } }
layer { name: 'i1' type: 'InnerProduct' bottom: 'x' top: 'i1'
        inner_product_param { num_output: 2 } }
layer { name: 'i2' type: 'InnerProduct' bottom: 'x' top: 'i2'
        inner_product_param { num_output: 2 bias_term: false } }
layer { name: 'e1' type: 'Embed' bottom: 'ids' top: 'e1'
        embed_param { num_output: 2 input_dim: 5 } }
layer { name: 's1' type: 'Scale' bottom: 'x' top: 's1' }
layer { name: 's2' type: 'Scale' bottom: 'x' top: 's2' scale_param { bias_term: true } }
layer { name: 's3' type: 'Scale' bottom: 'x' bottom: 'ids' top: 's3'
        scale_param { axis: 0 } }
layer { name: 'b1' type: 'Bias' bottom: 'x' top: 'b1' }
layer { name: 'b2' type: 'Bias' bottom: 'x' bottom: 'ids' top: 'b2'
        bias_param { axis: 0 } }
layer { name: 'p1' type: 'PReLU' bottom: 'x' top: 'p1' }
layer { name: 'bn' type: 'BatchNorm' bottom: 'x' top: 'bn' }
layer { name: 'r1' type: 'ReLU' bottom: 'x' top: 'r1' }
"""


def test_param_blob_count_matches_the_built_layers():
    param = parse(PARAM_LAYERS)
    net = Net(param=param, phase=caffepy.TEST)
    for lp in param.layer:
        layer = net.layer_dict[lp.name]
        assert layer_class(lp.type).param_blob_count(lp) == len(layer.blobs), lp.name


def test_close_closes_every_layer_and_net_is_a_context_manager():
    closed = []
    with Net(param=parse(PARAM_LAYERS), phase=caffepy.TEST) as net:
        for layer in net.layers:
            layer.close = lambda name=layer.name: closed.append(name)
    assert closed == net.layer_names


def test_edit_learning_rates_counts_blobs_through_the_layers():
    from caffepy.training import edit_learning_rates

    param = parse(PARAM_LAYERS)
    changed = edit_learning_rates(param, freeze=["c*", "bn", "r1"], rules=[("i1", 2)])
    assert changed == ["c1", "c2", "i1"]  # BatchNorm fixes its own; ReLU has none
    layers = {lp.name: lp for lp in param.layer}
    assert [(s.lr_mult, s.decay_mult) for s in layers["c1"].param] == [(0, 0)] * 2
    assert len(layers["c2"].param) == 1
    assert [s.lr_mult for s in layers["i1"].param] == [2, 2]
    assert not layers["bn"].param
    Net(param=param, phase=caffepy.TRAIN)  # still builds
