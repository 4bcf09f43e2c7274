"""V1 -> V2: the data-transformation fields into ``transform_param`` (Caffe's
``UpgradeNetDataTransformation``), then V1 ``layers`` into ``layer`` (Caffe's
``UpgradeV1Net``), learned blobs carried along."""

from caffepy.errors import UnsupportedError
from caffepy.io.upgrade.common import _V1, _is_set
from caffepy.proto import caffe_pb2

#: V1 ``LayerType`` enum name -> current type string (Caffe's UpgradeV1LayerType).
V1_LAYER_TYPE_NAMES = {
    "NONE": "",
    "ABSVAL": "AbsVal",
    "ACCURACY": "Accuracy",
    "ARGMAX": "ArgMax",
    "BNLL": "BNLL",
    "CONCAT": "Concat",
    "CONTRASTIVE_LOSS": "ContrastiveLoss",
    "CONVOLUTION": "Convolution",
    "DECONVOLUTION": "Deconvolution",
    "DATA": "Data",
    "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss",
    "ELTWISE": "Eltwise",
    "EXP": "Exp",
    "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data",
    "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss",
    "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss",
    "INNER_PRODUCT": "InnerProduct",
    "LRN": "LRN",
    "MEMORY_DATA": "MemoryData",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN",
    "POOLING": "Pooling",
    "POWER": "Power",
    "RELU": "ReLU",
    "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss",
    "SILENCE": "Silence",
    "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss",
    "SPLIT": "Split",
    "SLICE": "Slice",
    "TANH": "TanH",
    "WINDOW_DATA": "WindowData",
    "THRESHOLD": "Threshold",
}

# V1 fields other than the *_param messages that the V1 -> V2 step maps.
_V1_PLAIN_FIELDS = (
    "bottom",
    "top",
    "name",
    "include",
    "exclude",
    "type",
    "blobs",
    "param",
    "blob_share_mode",
    "blobs_lr",
    "weight_decay",
    "loss_weight",
)

# V1 data layer types whose *_param held the transformation fields.
_DATA_LAYER_PARAMS = {
    _V1.DATA: "data_param",
    _V1.IMAGE_DATA: "image_data_param",
    _V1.WINDOW_DATA: "window_data_param",
}
_TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")


def _needs_data_upgrade(net):
    for entry in net.layers:
        sub = _DATA_LAYER_PARAMS.get(entry.type)
        if sub and any(getattr(entry, sub).HasField(f) for f in _TRANSFORM_FIELDS):
            return True
    return False


def _needs_v1_to_v2(net):
    return len(net.layers) > 0


# ---------------------------------------------------- data transformation
def _upgrade_data_transformation(net):
    """Caffe's UpgradeNetDataTransformation, in place."""
    for entry in net.layers:
        sub_name = _DATA_LAYER_PARAMS.get(entry.type)
        if sub_name is None:
            continue
        sub, transform = getattr(entry, sub_name), entry.transform_param
        # NOTE: Caffe's mutable_*() calls create both messages even when nothing
        # moves; the upgraded text then shows them (empty), as Caffe's does.
        sub.SetInParent()
        transform.SetInParent()
        for name in _TRANSFORM_FIELDS:
            if sub.HasField(name):
                setattr(transform, name, getattr(sub, name))
                sub.ClearField(name)


# ------------------------------------------------------------------ V1 -> V2
def _check_v1_layer(entry, index, source):
    label = f"'{entry.name}'" if entry.name else f"#{index}"
    layer_fields = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
    for field in entry.DESCRIPTOR.fields:
        if not _is_set(entry, field) or field.name in _V1_PLAIN_FIELDS:
            continue
        if not (field.name.endswith("_param") and field.name in layer_fields):
            raise UnsupportedError(
                f"V1 layer {label} sets '{field.name}', a V1 field caffepy cannot map"
            )


def _upgrade_v1_layer(v1, layer):
    """Caffe's UpgradeV1LayerParameter: one V1 layer into the current ``layer``."""
    layer.bottom.extend(v1.bottom)
    layer.top.extend(v1.top)
    if v1.HasField("name"):
        layer.name = v1.name
    layer.include.extend(v1.include)
    layer.exclude.extend(v1.exclude)
    if v1.HasField("type"):
        layer.type = V1_LAYER_TYPE_NAMES[_V1.LayerType.Name(v1.type)]
    layer.blobs.extend(v1.blobs)

    def spec(i):
        while len(layer.param) <= i:
            layer.param.add()
        return layer.param[i]

    for i, name in enumerate(v1.param):
        spec(i).name = name
    for i, mode in enumerate(v1.blob_share_mode):
        spec(i).share_mode = caffe_pb2.ParamSpec.DimCheckMode.Value(
            _V1.DimCheckMode.Name(mode)
        )
    for i, lr in enumerate(v1.blobs_lr):
        spec(i).lr_mult = lr
    for i, decay in enumerate(v1.weight_decay):
        spec(i).decay_mult = decay
    layer.loss_weight.extend(v1.loss_weight)
    for field, value in v1.ListFields():
        if field.name.endswith("_param"):
            getattr(layer, field.name).CopyFrom(value)


def _upgrade_v1_net(net, source):
    """Caffe's UpgradeV1Net, in place (the blobs move along with their layers)."""
    for i, entry in enumerate(net.layers):
        _check_v1_layer(entry, i, source)
    for entry in net.layers:
        _upgrade_v1_layer(entry, net.layer.add())
    net.ClearField("layers")
