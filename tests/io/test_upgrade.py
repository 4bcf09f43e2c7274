"""Upgrades of legacy nets and solvers (caffepy/io/upgrade/), field by field."""

import logging

import numpy as np
import pytest
from google.protobuf import text_format

from caffepy.errors import PrototxtError, UnsupportedError
from caffepy.io import upgrade
from caffepy.io.upgrade import (
    V0_LAYER_TYPES,
    V1_LAYER_TYPE_NAMES,
    net_needs_upgrade,
    solver_needs_upgrade,
    upgrade_net,
    upgrade_net_binary,
    upgrade_solver,
)
from caffepy.proto import caffe_pb2
from tests.conftest import FIXTURES, require_fixtures


def parse_net(text):
    return text_format.Parse(text, caffe_pb2.NetParameter())


def by_name(net):
    return {layer.name: layer for layer in net.layer}


def specs(layer):
    """The param specs as (name, lr_mult, decay_mult) with unset fields as None."""
    return [
        (
            p.name if p.HasField("name") else None,
            p.lr_mult if p.HasField("lr_mult") else None,
            p.decay_mult if p.HasField("decay_mult") else None,
        )
        for p in layer.param
    ]


# ------------------------------------------------------------------------ V0
V0_LENET = """
name: "LeNetV0"
layers {
  layer {
    name: "mnist" type: "data" source: "mnist-train-leveldb" batchsize: 64
    scale: 0.00390625 meanfile: "mean.binaryproto" cropsize: 24 mirror: true
    rand_skip: 7
  }
  top: "data" top: "label"
}
layers {
  layer { name: "pad1" type: "padding" pad: 2 }
  bottom: "data" top: "pad1"
}
layers {
  layer {
    name: "conv1" type: "conv" num_output: 20 kernelsize: 5 stride: 1 group: 1
    biasterm: false
    weight_filler { type: "xavier" }
    bias_filler { type: "constant" value: 0.1 }
    blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0
  }
  bottom: "pad1" top: "conv1"
}
layers {
  layer { name: "pad2" type: "padding" pad: 1 }
  bottom: "conv1" top: "pad2"
}
layers {
  layer { name: "pool1" type: "pool" pool: AVE kernelsize: 3 stride: 2 }
  bottom: "pad2" top: "pool1"
}
layers {
  layer { name: "norm1" type: "lrn" local_size: 3 alpha: 0.0001 beta: 0.5 k: 2 }
  bottom: "pool1" top: "norm1"
}
layers {
  layer {
    name: "ip1" type: "innerproduct" num_output: 500
    weight_filler { type: "gaussian" std: 0.01 }
  }
  bottom: "norm1" top: "ip1"
}
layers { layer { name: "relu1" type: "relu" } bottom: "ip1" top: "ip1" }
layers {
  layer { name: "drop1" type: "dropout" dropout_ratio: 0.3 }
  bottom: "ip1" top: "ip1"
}
layers {
  layer { name: "ip2" type: "innerproduct" num_output: 10 }
  bottom: "ip1" top: "ip2"
}
layers {
  layer { name: "loss" type: "softmax_loss" }
  bottom: "ip2" bottom: "label"
}
"""


def test_v0_lenet_upgrades_field_by_field():
    net = parse_net(V0_LENET)
    assert net_needs_upgrade(net)
    assert upgrade_net(net, "lenet_v0.prototxt") is True
    assert len(net.layers) == 0
    assert net.name == "LeNetV0"
    # the two padding layers are gone
    assert [layer.name for layer in net.layer] == [
        "mnist", "conv1", "pool1", "norm1", "ip1", "relu1", "drop1", "ip2", "loss",
    ]  # fmt: skip
    layers = by_name(net)

    data = layers["mnist"]
    assert data.type == "Data"
    assert list(data.top) == ["data", "label"]
    assert data.data_param.source == "mnist-train-leveldb"
    assert data.data_param.batch_size == 64
    assert data.data_param.rand_skip == 7
    t = data.transform_param
    assert t.scale == pytest.approx(0.00390625)
    assert t.mean_file == "mean.binaryproto"
    assert t.crop_size == 24
    assert t.mirror is True
    for name in ("scale", "mean_file", "crop_size", "mirror"):
        assert not data.data_param.HasField(name)

    conv = layers["conv1"]
    assert conv.type == "Convolution"
    # the padding layer folded into the conv: its pad, and its bottom
    assert list(conv.bottom) == ["data"]
    cp = conv.convolution_param
    assert list(cp.pad) == [2]
    assert list(cp.kernel_size) == [5]
    assert list(cp.stride) == [1]
    assert cp.num_output == 20
    assert cp.group == 1 and cp.HasField("group")
    assert cp.bias_term is False
    assert cp.weight_filler.type == "xavier"
    assert cp.bias_filler.type == "constant"
    assert cp.bias_filler.value == pytest.approx(0.1)
    assert specs(conv) == [(None, 1.0, 1.0), (None, 2.0, 0.0)]

    pool = layers["pool1"]
    assert pool.type == "Pooling"
    assert list(pool.bottom) == ["conv1"]
    pp = pool.pooling_param
    assert pp.pool == caffe_pb2.PoolingParameter.AVE
    assert pp.pad == 1 and pp.kernel_size == 3 and pp.stride == 2

    lrn = layers["norm1"].lrn_param
    assert layers["norm1"].type == "LRN"
    assert lrn.local_size == 3
    assert lrn.alpha == pytest.approx(0.0001)
    assert lrn.beta == pytest.approx(0.5)
    assert lrn.k == pytest.approx(2)

    ip1 = layers["ip1"]
    assert ip1.type == "InnerProduct"
    assert ip1.inner_product_param.num_output == 500
    assert ip1.inner_product_param.weight_filler.std == pytest.approx(0.01)
    assert not ip1.param  # no blobs_lr given: no param specs

    assert layers["relu1"].type == "ReLU"
    assert list(layers["relu1"].bottom) == list(layers["relu1"].top) == ["ip1"]
    assert layers["drop1"].type == "Dropout"
    assert layers["drop1"].dropout_param.dropout_ratio == pytest.approx(0.3)
    assert layers["loss"].type == "SoftmaxWithLoss"
    assert list(layers["loss"].bottom) == ["ip2", "label"]

    # upgraded once: nothing more to do
    assert not net_needs_upgrade(net)
    assert upgrade_net(net) is False


V0_DATA_LAYERS = """
input: "rois"
layers {
  layer {
    name: "images" type: "images" source: "list.txt" batchsize: 8
    shuffle_images: true new_height: 256 new_width: 320 rand_skip: 3
    cropsize: 227 mirror: true meanfile: "m.binaryproto"
  }
  top: "img" top: "img_label"
}
layers {
  layer {
    name: "windows" type: "window_data" source: "windows.txt" batchsize: 128
    det_fg_threshold: 0.6 det_bg_threshold: 0.4 det_fg_fraction: 0.3
    det_context_pad: 16 det_crop_mode: "square" scale: 2
  }
  top: "win" top: "win_label"
}
layers {
  layer { name: "h5" type: "hdf5_data" source: "h5.txt" batchsize: 5 }
  top: "h5data" top: "h5label"
}
layers {
  layer { name: "cat" type: "concat" concat_dim: 0 }
  bottom: "img" bottom: "win" top: "cat"
}
layers {
  layer { name: "info" type: "infogain_loss" source: "H.binaryproto" }
  bottom: "cat" bottom: "img_label"
}
layers {
  layer {
    name: "out" type: "hdf5_output" hdf5_output_param { file_name: "out.h5" }
  }
  bottom: "h5data" bottom: "h5label"
}
layers {
  layer { name: "pad" type: "padding" pad: 3 }
  bottom: "rois" top: "rois_pad"
}
layers {
  layer { name: "pool" type: "pool" pool: STOCHASTIC kernelsize: 2 }
  bottom: "rois_pad" top: "pooled"
}
"""


def test_v0_data_and_misc_fields():
    net = parse_net(V0_DATA_LAYERS)
    upgrade_net(net)
    layers = by_name(net)

    images = layers["images"]
    assert images.type == "ImageData"
    ip = images.image_data_param
    assert (ip.source, ip.batch_size, ip.rand_skip) == ("list.txt", 8, 3)
    assert ip.shuffle is True
    assert (ip.new_height, ip.new_width) == (256, 320)
    t = images.transform_param
    assert (t.crop_size, t.mirror, t.mean_file) == (227, True, "m.binaryproto")

    win = layers["windows"]
    assert win.type == "WindowData"
    wp = win.window_data_param
    assert (wp.source, wp.batch_size) == ("windows.txt", 128)
    assert wp.fg_threshold == pytest.approx(0.6)
    assert wp.bg_threshold == pytest.approx(0.4)
    assert wp.fg_fraction == pytest.approx(0.3)
    assert wp.context_pad == 16
    assert wp.crop_mode == "square"
    assert win.transform_param.scale == 2

    h5 = layers["h5"]
    assert h5.type == "HDF5Data"
    assert (h5.hdf5_data_param.source, h5.hdf5_data_param.batch_size) == ("h5.txt", 5)
    assert layers["cat"].type == "Concat"
    assert layers["cat"].concat_param.concat_dim == 0
    assert layers["cat"].concat_param.HasField("concat_dim")
    assert layers["info"].type == "InfogainLoss"
    assert layers["info"].infogain_loss_param.source == "H.binaryproto"
    assert layers["out"].type == "HDF5Output"
    assert layers["out"].hdf5_output_param.file_name == "out.h5"

    # a padding layer fed by a net input folds into a pool layer
    pool = layers["pool"]
    assert list(pool.bottom) == ["rois"]
    assert pool.pooling_param.pad == 3
    assert pool.pooling_param.pool == caffe_pb2.PoolingParameter.STOCHASTIC
    assert "pad" not in layers
    # the net-level input without dims is simply dropped (a legacy caffemodel)
    assert len(net.input) == 0


@pytest.mark.parametrize("v0_type", sorted(V0_LAYER_TYPES))
def test_every_v0_type(v0_type):
    net = parse_net(f'layers {{ layer {{ name: "x" type: "{v0_type}" }} }}')
    upgrade_net(net)
    v1_enum = V0_LAYER_TYPES[v0_type]
    assert net.layer[0].type == V1_LAYER_TYPE_NAMES[v1_enum]


def test_v0_field_for_the_wrong_type_is_dropped_with_an_error(caplog):
    net = parse_net(
        'layers { layer { name: "r" type: "relu" num_output: 3 new_num: 2 } '
        'bottom: "a" top: "a" }\ninput: "a"'
    )
    with caplog.at_level(logging.INFO, logger="caffepy"):
        assert upgrade_net(net, "old.prototxt")
    layer = net.layer[0]
    assert layer.type == "ReLU"
    assert not layer.HasField("convolution_param")
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("num_output for layer type relu" in m for m in errors)
    assert any("new_num for layer type relu" in m for m in errors)
    assert any("had one or more problems upgrading V0NetParameter" in m for m in errors)


def test_v0_every_field_has_a_destination():
    """Each V0 field is mapped (or, like Caffe, knowingly dropped)."""
    handled = set(upgrade.v0._V0_DIRECT_FIELDS) | set(upgrade.v0._V0_FIELD_TARGETS)
    fields = {f.name for f in caffe_pb2.V0LayerParameter.DESCRIPTOR.fields}
    assert fields == handled
    for targets in upgrade.v0._V0_FIELD_TARGETS.values():
        for sub_name, field_name in targets.values():
            sub = caffe_pb2.V1LayerParameter.DESCRIPTOR.fields_by_name[sub_name]
            if field_name is not None:
                assert field_name in sub.message_type.fields_by_name


def test_v0_unknown_type():
    net = parse_net('layers { layer { name: "c" type: "convv" } }')
    with pytest.raises(PrototxtError, match=r"old\.prototxt: .*'c'.*'convv'.*'conv'"):
        upgrade_net(net, "old.prototxt")


def test_v0_padding_into_a_non_conv_layer():
    net = parse_net(
        'input: "x" '
        'layers { layer { name: "p" type: "padding" pad: 1 } bottom: "x" top: "y" } '
        'layers { layer { name: "r" type: "relu" } bottom: "y" top: "z" }'
    )
    with pytest.raises(PrototxtError, match=r"'p' feeds layer 'r' of type 'relu'"):
        upgrade_net(net)
    # refused before anything changed
    assert len(net.layers) == 2 and len(net.layer) == 0


@pytest.mark.parametrize(
    "text, match",
    [
        ('layers { layer { name: "t" } }', r"'t' has no type"),
        (
            (
                'input: "x" input: "w" '
                'layers { layer { name: "p" type: "padding" } bottom: "x" top: "y" } '
                'layers { layer { name: "c" type: "conv" } bottom: "y" bottom: "w" }'
            ),
            r"'c' reads a padding layer's output and 2 bottoms",
        ),
        (
            (
                'input: "x" '
                'layers { layer { name: "p" type: "padding" } bottom: "x" top: "y" '
                'top: "y2" } layers { layer { name: "c" type: "conv" } bottom: "y" }'
            ),
            r"padding layer 'p' has 1 bottoms and 2 tops",
        ),
    ],
)
def test_v0_malformed(text, match):
    with pytest.raises(PrototxtError, match=match):
        upgrade_net(parse_net(text))


def test_v0_unknown_bottom():
    net = parse_net('layers { layer { name: "r" type: "relu" } bottom: "nowhere" }')
    with pytest.raises(PrototxtError, match=r"'r' reads blob 'nowhere'"):
        upgrade_net(net)


def test_v0_entry_without_layer_block():
    net = parse_net(
        'layers { layer { name: "a" type: "relu" } } layers { name: "b" type: RELU }'
    )
    with pytest.raises(PrototxtError, match="mixes the V0 and V1 layer formats"):
        upgrade_net(net)


def test_v0_input_dims_become_an_input_layer():
    net = parse_net(
        'name: "deploy" input: "data" input_dim: 1 input_dim: 3 input_dim: 32 '
        "input_dim: 32 force_backward: true "
        'layers { layer { name: "conv" type: "conv" num_output: 4 kernelsize: 3 } '
        'bottom: "data" top: "conv" }'
    )
    upgrade_net(net)
    assert net.force_backward is True
    assert [layer.name for layer in net.layer] == ["input", "conv"]
    assert list(net.layer[0].input_param.shape[0].dim) == [1, 3, 32, 32]


# ------------------------------------------------------------------------ V1
V1_NET = """
name: "V1Net"
layers {
  name: "mnist" type: DATA top: "data" top: "label"
  data_param { source: "train_lmdb" backend: LMDB batch_size: 64 scale: 0.5
               mean_file: "mean.binaryproto" crop_size: 20 mirror: true }
  include { phase: TRAIN }
}
layers {
  name: "mnist_test" type: DATA top: "data" top: "label"
  data_param { source: "test_lmdb" batch_size: 100 }
  transform_param { scale: 0.25 }
  include { phase: TEST }
}
layers {
  name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1"
  blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0
  param: "conv1_w" param: "conv1_b"
  blob_share_mode: STRICT blob_share_mode: PERMISSIVE
  convolution_param { num_output: 20 kernel_size: 5 stride: 1
                      weight_filler { type: "xavier" } }
}
layers {
  name: "ip" type: INNER_PRODUCT bottom: "conv1" top: "ip"
  blobs_lr: 3
  inner_product_param { num_output: 10 }
  exclude { stage: "deploy" }
}
layers {
  name: "loss" type: SOFTMAX_LOSS bottom: "ip" bottom: "label" top: "loss"
  loss_weight: 0.5
  loss_param { ignore_label: 255 normalize: false }
}
"""


def test_v1_net_upgrades_field_by_field(caplog):
    net = parse_net(V1_NET)
    assert net_needs_upgrade(net)
    with caplog.at_level(logging.INFO, logger="caffepy"):
        assert upgrade_net(net, "v1.prototxt") is True
    messages = [r.getMessage() for r in caplog.records]
    assert (
        "Attempting to upgrade input file specified using deprecated "
        "V1LayerParameter: v1.prototxt" in messages
    )
    assert any(m.startswith("Successfully upgraded file") for m in messages)
    assert any("transformation parameters: v1.prototxt" in m for m in messages)
    assert len(net.layers) == 0 and net.name == "V1Net"
    layers = by_name(net)

    train = layers["mnist"]
    assert train.type == "Data"
    assert [r.phase for r in train.include] == [caffe_pb2.TRAIN]
    dp = train.data_param
    assert (dp.source, dp.batch_size, dp.backend) == (
        "train_lmdb",
        64,
        caffe_pb2.DataParameter.LMDB,
    )
    for name in ("scale", "mean_file", "crop_size", "mirror"):
        assert not dp.HasField(name)
    t = train.transform_param
    assert (t.scale, t.mean_file, t.crop_size, t.mirror) == (
        0.5,
        "mean.binaryproto",
        20,
        True,
    )
    test = layers["mnist_test"]
    assert test.transform_param.scale == 0.25
    assert [r.phase for r in test.include] == [caffe_pb2.TEST]

    conv = layers["conv1"]
    assert conv.type == "Convolution"
    assert list(conv.bottom) == ["data"] and list(conv.top) == ["conv1"]
    assert specs(conv) == [("conv1_w", 1.0, 1.0), ("conv1_b", 2.0, 0.0)]
    assert [p.share_mode for p in conv.param] == [
        caffe_pb2.ParamSpec.STRICT,
        caffe_pb2.ParamSpec.PERMISSIVE,
    ]
    assert conv.convolution_param.num_output == 20
    assert list(conv.convolution_param.kernel_size) == [5]
    assert conv.convolution_param.weight_filler.type == "xavier"

    ip = layers["ip"]
    assert ip.type == "InnerProduct"
    assert specs(ip) == [(None, 3.0, None)]
    assert [list(r.stage) for r in ip.exclude] == [["deploy"]]
    assert ip.inner_product_param.num_output == 10

    loss = layers["loss"]
    assert loss.type == "SoftmaxWithLoss"
    assert list(loss.loss_weight) == [0.5]
    assert loss.loss_param.ignore_label == 255
    assert loss.loss_param.normalize is False

    assert upgrade_net(net) is False


def test_v1_text_matches_hand_written_current_form():
    net = parse_net(
        'layers { name: "c" type: CONVOLUTION bottom: "x" top: "c" '
        "blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0 "
        "convolution_param { num_output: 2 kernel_size: 3 } }"
    )
    upgrade_net(net)
    expected = parse_net(
        'layer { name: "c" type: "Convolution" bottom: "x" top: "c" '
        "param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 } "
        "convolution_param { num_output: 2 kernel_size: 3 } }"
    )
    assert net == expected


def test_every_v1_type_has_a_name():
    assert set(caffe_pb2.V1LayerParameter.LayerType.keys()) == set(V1_LAYER_TYPE_NAMES)


@pytest.mark.parametrize("enum_name", sorted(V1_LAYER_TYPE_NAMES))
def test_every_v1_type(enum_name):
    net = parse_net(f'layers {{ name: "x" type: {enum_name} }}')
    upgrade_net(net)
    assert net.layer[0].type == V1_LAYER_TYPE_NAMES[enum_name]
    assert net.layer[0].HasField("type")


def test_v1_type_names_spot_checks():
    assert V1_LAYER_TYPE_NAMES["CONVOLUTION"] == "Convolution"
    assert V1_LAYER_TYPE_NAMES["SOFTMAX_LOSS"] == "SoftmaxWithLoss"
    assert V1_LAYER_TYPE_NAMES["IM2COL"] == "Im2col"
    assert V1_LAYER_TYPE_NAMES["HDF5_DATA"] == "HDF5Data"
    assert V1_LAYER_TYPE_NAMES["ABSVAL"] == "AbsVal"
    assert V1_LAYER_TYPE_NAMES["TANH"] == "TanH"


V1_PARAM_FIELDS = sorted(
    f.name
    for f in caffe_pb2.V1LayerParameter.DESCRIPTOR.fields
    if f.name.endswith("_param")
)


@pytest.mark.parametrize("field", V1_PARAM_FIELDS)
def test_every_v1_param_message_is_copied(field):
    v1 = caffe_pb2.NetParameter()
    layer = v1.layers.add(name="x", type=caffe_pb2.V1LayerParameter.CONVOLUTION)
    getattr(layer, field).SetInParent()
    original = caffe_pb2.V1LayerParameter()
    original.CopyFrom(layer)
    upgrade_net(v1)
    assert v1.layer[0].HasField(field)
    assert getattr(v1.layer[0], field) == getattr(original, field)


def test_v1_param_values_are_copied():
    net = parse_net(
        'layers { name: "e" type: ELTWISE bottom: "a" bottom: "b" top: "e" '
        "eltwise_param { operation: MAX coeff: 1 coeff: -1 } }"
        'layers { name: "s" type: SLICE bottom: "e" top: "s1" top: "s2" '
        "slice_param { slice_dim: 2 slice_point: 3 } }"
        'layers { name: "d" type: DUMMY_DATA top: "d" '
        "dummy_data_param { num: 2 channels: 3 height: 4 width: 5 "
        'data_filler { type: "gaussian" } } }'
    )
    upgrade_net(net)
    layers = by_name(net)
    assert layers["e"].eltwise_param.operation == caffe_pb2.EltwiseParameter.MAX
    assert list(layers["e"].eltwise_param.coeff) == [1, -1]
    assert layers["s"].slice_param.slice_dim == 2
    assert list(layers["s"].slice_param.slice_point) == [3]
    dd = layers["d"].dummy_data_param
    assert (list(dd.num), list(dd.channels), list(dd.height), list(dd.width)) == (
        [2],
        [3],
        [4],
        [5],
    )
    assert dd.data_filler[0].type == "gaussian"


def test_v1_data_transformation_for_image_and_window_data():
    net = parse_net(
        'layers { name: "i" type: IMAGE_DATA top: "a" top: "b" '
        'image_data_param { source: "l.txt" crop_size: 10 mirror: true } }'
        'layers { name: "w" type: WINDOW_DATA top: "c" top: "d" '
        'window_data_param { source: "w.txt" scale: 3 mean_file: "m" } }'
    )
    upgrade_net(net)
    layers = by_name(net)
    assert layers["i"].transform_param.crop_size == 10
    assert layers["i"].transform_param.mirror is True
    assert not layers["i"].image_data_param.HasField("crop_size")
    assert layers["w"].transform_param.scale == 3
    assert layers["w"].transform_param.mean_file == "m"
    assert not layers["w"].window_data_param.HasField("mean_file")
    assert layers["w"].window_data_param.source == "w.txt"


def test_mixed_layer_and_layers_is_refused():
    net = parse_net(
        'layer { name: "a" type: "ReLU" bottom: "x" top: "x" } '
        'layers { name: "b" type: RELU bottom: "x" top: "x" }'
    )
    with pytest.raises(PrototxtError) as err:
        upgrade_net(net, "mixed.prototxt")
    message = str(err.value)
    assert message.startswith("mixed.prototxt: ")
    assert "mixes the current 'layer'" in message
    assert "and the legacy 'layers'" in message
    assert "use one" in message


# -------------------------------------------------------------------- inputs
def test_input_dims_become_a_leading_input_layer():
    net = parse_net(
        'input: "data" input_dim: 10 input_dim: 3 input_dim: 227 input_dim: 227 '
        'input: "im_info" input_dim: 1 input_dim: 3 input_dim: 1 input_dim: 1 '
        'layer { name: "relu" type: "ReLU" bottom: "data" top: "data" }'
    )
    assert net_needs_upgrade(net)
    assert upgrade_net(net)
    first = net.layer[0]
    assert (first.name, first.type) == ("input", "Input")
    assert list(first.top) == ["data", "im_info"]
    assert [list(s.dim) for s in first.input_param.shape] == [
        [10, 3, 227, 227],
        [1, 3, 1, 1],
    ]
    assert net.layer[1].name == "relu"
    assert not (net.input or net.input_dim or net.input_shape)


def test_input_shape_becomes_an_input_layer():
    net = parse_net(
        'input: "x" input_shape { dim: 2 dim: 5 } '
        'layers { name: "ip" type: INNER_PRODUCT bottom: "x" top: "y" }'
    )
    upgrade_net(net)
    assert [layer.type for layer in net.layer] == ["Input", "InnerProduct"]
    assert list(net.layer[0].input_param.shape[0].dim) == [2, 5]


def test_input_names_alone_are_dropped():
    net = parse_net('input: "data" layer { name: "r" type: "ReLU" }')
    assert upgrade_net(net)
    assert [layer.name for layer in net.layer] == ["r"]
    assert len(net.input) == 0


@pytest.mark.parametrize(
    "text, match",
    [
        ('input: "a" input_dim: 1 input_dim: 2', r"2 input_dim value\(s\); expected 4"),
        (
            'input: "a" input: "b" input_shape { dim: 1 }',
            r"2 input\(s\) but 1 input_shape",
        ),
    ],
)
def test_input_counts_must_fit(text, match):
    # a V1 layer too: the net must be refused before any step changes it
    net = parse_net(text + ' layers { name: "r" type: RELU bottom: "a" top: "a" }')
    before = net.SerializeToString()
    with pytest.raises(PrototxtError, match=match):
        upgrade_net(net)
    assert net.SerializeToString() == before


# ----------------------------------------------------------------- BatchNorm
def test_batch_norm_param_specs_are_frozen(caplog):
    net = parse_net(
        'layer { name: "bn" type: "BatchNorm" bottom: "x" top: "x" '
        'param { name: "m" lr_mult: 0 } param { lr_mult: 0 } param { lr_mult: 0 } }'
        'layer { name: "bn2" type: "BatchNorm" bottom: "x" top: "x" '
        "param { lr_mult: 0 } }"
    )
    assert net_needs_upgrade(net)
    with caplog.at_level(logging.INFO, logger="caffepy"):
        assert upgrade_net(net, "bn.prototxt")
    assert any("batch norm" in r.getMessage() for r in caplog.records)
    bn, bn2 = net.layer
    assert specs(bn) == [("m", 0.0, 0.0), (None, 0.0, 0.0), (None, 0.0, 0.0)]
    # not the legacy three-spec form: left alone
    assert specs(bn2) == [(None, 0.0, None)]
    assert not net_needs_upgrade(net)
    assert upgrade_net(net) is False


# --------------------------------------------------------------- caffemodels
def _blob(shape, rng):
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend(shape)
    blob.data.extend(rng.standard_normal(int(np.prod(shape))).astype(np.float32))
    return blob


def test_v1_caffemodel_keeps_its_blobs():
    rng = np.random.default_rng(1701)
    v1 = caffe_pb2.NetParameter(name="m")
    conv = v1.layers.add(name="conv", type=caffe_pb2.V1LayerParameter.CONVOLUTION)
    conv.bottom.append("data")
    conv.top.append("conv")
    conv.blobs.add().CopyFrom(_blob((4, 3, 3, 3), rng))
    conv.blobs.add().CopyFrom(_blob((4,), rng))
    conv.blobs_lr.extend([1, 2])
    ip = v1.layers.add(name="ip", type=caffe_pb2.V1LayerParameter.INNER_PRODUCT)
    legacy = ip.blobs.add(num=1, channels=1, height=5, width=6)
    legacy.data.extend(rng.standard_normal(30).astype(np.float32))
    v1.input.append("data")  # a legacy caffemodel keeps only the input names
    expected = [[b.SerializeToString() for b in layer.blobs] for layer in v1.layers]

    net = caffe_pb2.NetParameter.FromString(v1.SerializeToString())
    assert upgrade_net_binary(net)
    assert [layer.name for layer in net.layer] == ["conv", "ip"]
    assert [layer.type for layer in net.layer] == ["Convolution", "InnerProduct"]
    got = [[b.SerializeToString() for b in layer.blobs] for layer in net.layer]
    assert got == expected
    assert list(net.layer[1].blobs[0].data) == list(legacy.data)
    assert net.layer[1].blobs[0].height == 5
    assert specs(net.layer[0]) == [(None, 1.0, None), (None, 2.0, None)]
    assert len(net.input) == 0


def test_v0_caffemodel_keeps_its_blobs():
    rng = np.random.default_rng(1701)
    v0 = caffe_pb2.NetParameter()
    entry = v0.layers.add()
    entry.layer.name, entry.layer.type = "conv1", "conv"
    entry.layer.num_output = 2
    weights = _blob((2, 1, 3, 3), rng)
    entry.layer.blobs.add().CopyFrom(weights)
    entry.layer.blobs_lr.extend([1, 2])
    entry.bottom.append("data")
    v0.input.append("data")
    net = caffe_pb2.NetParameter.FromString(v0.SerializeToString())
    upgrade_net_binary(net, "old.caffemodel")
    assert net.layer[0].blobs[0] == weights
    assert net.layer[0].type == "Convolution"
    assert specs(net.layer[0]) == [(None, 1.0, None), (None, 2.0, None)]


def _downgrade_to_v1(net):
    """Write a current-format net the V1 way (the inverse of the upgrade)."""
    to_enum = {name: enum for enum, name in V1_LAYER_TYPE_NAMES.items()}
    v1 = caffe_pb2.NetParameter(name=net.name)
    for layer in net.layer:
        old = v1.layers.add(name=layer.name)
        old.type = caffe_pb2.V1LayerParameter.LayerType.Value(to_enum[layer.type])
        old.bottom.extend(layer.bottom)
        old.top.extend(layer.top)
        old.blobs.extend(layer.blobs)
        for spec in layer.param:
            old.blobs_lr.append(spec.lr_mult)
            old.weight_decay.append(spec.decay_mult)
        for field, value in layer.ListFields():
            if field.name.endswith("_param"):
                getattr(old, field.name).CopyFrom(value)
    return v1


def test_real_caffe_model_round_trips_through_v1():
    require_fixtures()
    path = FIXTURES / "lenet" / "lenet_iter_1000.caffemodel"
    original = caffe_pb2.NetParameter.FromString(path.read_bytes())
    assert not net_needs_upgrade(original)
    v1 = _downgrade_to_v1(original)
    net = caffe_pb2.NetParameter.FromString(v1.SerializeToString())
    upgrade_net_binary(net, str(path))
    assert [(x.name, x.type) for x in net.layer] == [
        (x.name, x.type) for x in original.layer
    ]
    for got, want in zip(net.layer, original.layer, strict=True):
        assert list(got.blobs) == list(want.blobs)
        assert list(got.bottom) == list(want.bottom)
        assert list(got.top) == list(want.top)
    assert sum(len(b.data) for x in net.layer for b in x.blobs) > 400_000


# ----------------------------------------------------------------- current
def test_current_format_is_left_alone():
    text = (
        'name: "n" layer { name: "in" type: "Input" top: "x" '
        "input_param { shape { dim: 1 dim: 2 } } } "
        'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" '
        "param { lr_mult: 1 } inner_product_param { num_output: 3 } }"
    )
    net = parse_net(text)
    assert not net_needs_upgrade(net)
    assert upgrade_net(net) is False
    assert net == parse_net(text)


# -------------------------------------------------------------------- solver
@pytest.mark.parametrize(
    "enum_name, expected",
    [
        ("SGD", "SGD"),
        ("NESTEROV", "Nesterov"),
        ("ADAGRAD", "AdaGrad"),
        ("RMSPROP", "RMSProp"),
        ("ADADELTA", "AdaDelta"),
        ("ADAM", "Adam"),
    ],
)
def test_solver_type_upgrade(enum_name, expected, caplog):
    solver = text_format.Parse(
        f"base_lr: 0.1 solver_type: {enum_name}", caffe_pb2.SolverParameter()
    )
    assert solver_needs_upgrade(solver)
    with caplog.at_level(logging.INFO, logger="caffepy"):
        assert upgrade_solver(solver, "solver.prototxt") is True
    assert solver.type == expected
    assert not solver.HasField("solver_type")
    assert any("'solver_type' field (enum)': solver.prototxt" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    assert not solver_needs_upgrade(solver)
    assert upgrade_solver(solver) is False


def test_every_solver_type_has_a_name():
    assert set(caffe_pb2.SolverParameter.SolverType.keys()) == set(
        upgrade.SOLVER_TYPE_NAMES
    )


def test_solver_type_and_type_that_disagree_are_refused():
    solver = text_format.Parse(
        'solver_type: ADAM type: "SGD"', caffe_pb2.SolverParameter()
    )
    with pytest.raises(PrototxtError, match=r"s\.prototxt: .*ADAM.*'SGD'.*disagree"):
        upgrade_solver(solver, "s.prototxt")


def test_solver_type_and_type_that_agree_are_accepted():
    solver = text_format.Parse(
        'solver_type: NESTEROV type: "Nesterov"', caffe_pb2.SolverParameter()
    )
    assert upgrade_solver(solver)
    assert solver.type == "Nesterov" and not solver.HasField("solver_type")


def test_current_solver_is_left_alone():
    solver = text_format.Parse('type: "Adam"', caffe_pb2.SolverParameter())
    assert not solver_needs_upgrade(solver)
    assert upgrade_solver(solver) is False
    assert solver.type == "Adam"


# ---------------------------------------------------------- unmappable fields
def test_unmappable_v0_field_is_refused_before_any_change(monkeypatch):
    # with BVLC's schema every V0 field has a destination; pretend one has not
    monkeypatch.delitem(upgrade.v0._V0_FIELD_TARGETS, "group")
    net = parse_net('layers { layer { name: "c" type: "conv" group: 2 } }')
    before = net.SerializeToString()
    with pytest.raises(UnsupportedError, match=r"V0 layer 'c' sets 'group'"):
        upgrade_net(net)
    assert net.SerializeToString() == before


def test_unmappable_v1_field_is_refused_before_any_change(monkeypatch):
    plain = tuple(f for f in upgrade.v1._V1_PLAIN_FIELDS if f != "loss_weight")
    monkeypatch.setattr(upgrade.v1, "_V1_PLAIN_FIELDS", plain)
    net = parse_net(
        'layers { name: "a" type: RELU } layers { name: "l" type: EUCLIDEAN_LOSS '
        "loss_weight: 2 }"
    )
    before = net.SerializeToString()
    with pytest.raises(UnsupportedError, match=r"V1 layer 'l' sets 'loss_weight'"):
        upgrade_net(net)
    assert net.SerializeToString() == before


def test_v1_fields_beside_a_v0_block_are_dropped_with_an_error(caplog):
    net = parse_net(
        'layers { layer { name: "r" type: "relu" } blobs_lr: 1 bottom: "a" top: "a" } '
        'input: "a"'
    )
    with caplog.at_level(logging.ERROR, logger="caffepy"):
        upgrade_net(net)
    assert net.layer[0].type == "ReLU" and not net.layer[0].param
    assert any("'blobs_lr'" in r.getMessage() for r in caplog.records)
