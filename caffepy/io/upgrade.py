"""Upgrades of legacy net and solver definitions, as Caffe's ``upgrade_proto.cpp``.

A ``NetParameter`` read from a prototxt or a ``.caffemodel`` may use one of
Caffe's older forms; :func:`upgrade_net` rewrites it in place into the current
form, in Caffe's order (``UpgradeNetAsNeeded``):

1. V0 -> V1: ``layers { layer { type: "conv" kernelsize: 5 ... } }``. Padding
   layers are folded into the conv/pool layer they feed (``pad``); the flat V0
   fields move into the V1 ``*_param`` messages; the V0 type name ("conv",
   "innerproduct", ...) becomes the V1 enum (CONVOLUTION, INNER_PRODUCT, ...).
2. Data transformation: ``scale``, ``mean_file``, ``crop_size`` and ``mirror``
   inside a V1 DATA / IMAGE_DATA / WINDOW_DATA layer's ``*_param`` move into
   ``transform_param``.
3. V1 -> V2: ``layers { type: CONVOLUTION blobs_lr: 1 weight_decay: 1 }`` ->
   ``layer { type: "Convolution" param { lr_mult: 1 decay_mult: 1 } }``, with
   ``param`` names and ``blob_share_mode`` merged into the same ``ParamSpec``s,
   and the learned ``blobs`` (a V1 ``.caffemodel``'s weights) carried along.
4. Inputs: the net-level ``input`` + ``input_dim`` / ``input_shape`` become one
   ``Input`` layer named "input", placed first.
5. BatchNorm: a ``BatchNorm`` layer declaring three ``param`` specs (the old way
   of freezing its statistics) gets ``lr_mult: 0 decay_mult: 0`` on all three,
   as Caffe's mainline ``UpgradeNetBatchNorm`` does (names are kept, so blobs
   shared by name stay shared).

:func:`upgrade_solver` turns the legacy ``solver_type`` enum into the ``type``
string. Progress is logged on the "caffepy" logger with Caffe's messages.

Where caffepy departs from Caffe it refuses what Caffe would silently mangle:
a net mixing ``layer`` and ``layers`` (Caffe drops the ``layer`` entries), a
V0 net with an entry lacking its ``layer { }`` (Caffe produces a layer without
a type), and a solver whose ``solver_type`` and ``type`` disagree (Caffe
refuses both set at all; agreeing values are accepted here). A V0 net's other
net-level fields are kept (Caffe keeps only name, inputs and force_backward).
"""

import logging

from caffepy.errors import PrototxtError, UnsupportedError, did_you_mean
from caffepy.proto import caffe_pb2

__all__ = [
    "SOLVER_TYPE_NAMES",
    "V0_LAYER_TYPES",
    "V1_LAYER_TYPE_NAMES",
    "net_needs_upgrade",
    "solver_needs_upgrade",
    "upgrade_net",
    "upgrade_net_binary",
    "upgrade_solver",
]

log = logging.getLogger("caffepy")

_V1 = caffe_pb2.V1LayerParameter

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

#: V0 type name -> V1 ``LayerType`` enum name (Caffe's UpgradeV0LayerType).
#: "padding" is not here: padding layers are folded away before this mapping.
V0_LAYER_TYPES = {
    "accuracy": "ACCURACY",
    "bnll": "BNLL",
    "concat": "CONCAT",
    "conv": "CONVOLUTION",
    "data": "DATA",
    "dropout": "DROPOUT",
    "euclidean_loss": "EUCLIDEAN_LOSS",
    "flatten": "FLATTEN",
    "hdf5_data": "HDF5_DATA",
    "hdf5_output": "HDF5_OUTPUT",
    "im2col": "IM2COL",
    "images": "IMAGE_DATA",
    "infogain_loss": "INFOGAIN_LOSS",
    "innerproduct": "INNER_PRODUCT",
    "lrn": "LRN",
    "multinomial_logistic_loss": "MULTINOMIAL_LOGISTIC_LOSS",
    "pool": "POOLING",
    "relu": "RELU",
    "sigmoid": "SIGMOID",
    "softmax": "SOFTMAX",
    "softmax_loss": "SOFTMAX_LOSS",
    "split": "SPLIT",
    "tanh": "TANH",
    "window_data": "WINDOW_DATA",
}

#: Legacy ``SolverParameter.solver_type`` enum name -> ``type`` string.
SOLVER_TYPE_NAMES = {
    "SGD": "SGD",
    "NESTEROV": "Nesterov",
    "ADAGRAD": "AdaGrad",
    "RMSPROP": "RMSProp",
    "ADADELTA": "AdaDelta",
    "ADAM": "Adam",
}

# Where each flat V0 field goes in a V1 layer: {V0 type: (V1 sub-message,
# field there)}; the key None means "for every type" (the transformation
# fields); a field of None copies the whole V0 message into the sub-message.
# An empty dict means no V0 type uses the field (Caffe ignores it).
_V0_FIELD_TARGETS = {
    "num_output": {
        "conv": ("convolution_param", "num_output"),
        "innerproduct": ("inner_product_param", "num_output"),
    },
    "biasterm": {
        "conv": ("convolution_param", "bias_term"),
        "innerproduct": ("inner_product_param", "bias_term"),
    },
    "weight_filler": {
        "conv": ("convolution_param", "weight_filler"),
        "innerproduct": ("inner_product_param", "weight_filler"),
    },
    "bias_filler": {
        "conv": ("convolution_param", "bias_filler"),
        "innerproduct": ("inner_product_param", "bias_filler"),
    },
    "pad": {"conv": ("convolution_param", "pad"), "pool": ("pooling_param", "pad")},
    "kernelsize": {
        "conv": ("convolution_param", "kernel_size"),
        "pool": ("pooling_param", "kernel_size"),
    },
    "group": {"conv": ("convolution_param", "group")},
    "stride": {
        "conv": ("convolution_param", "stride"),
        "pool": ("pooling_param", "stride"),
    },
    "pool": {"pool": ("pooling_param", "pool")},
    "dropout_ratio": {"dropout": ("dropout_param", "dropout_ratio")},
    "local_size": {"lrn": ("lrn_param", "local_size")},
    "alpha": {"lrn": ("lrn_param", "alpha")},
    "beta": {"lrn": ("lrn_param", "beta")},
    "k": {"lrn": ("lrn_param", "k")},
    "source": {
        "data": ("data_param", "source"),
        "hdf5_data": ("hdf5_data_param", "source"),
        "images": ("image_data_param", "source"),
        "window_data": ("window_data_param", "source"),
        "infogain_loss": ("infogain_loss_param", "source"),
    },
    "scale": {None: ("transform_param", "scale")},
    "meanfile": {None: ("transform_param", "mean_file")},
    "batchsize": {
        "data": ("data_param", "batch_size"),
        "hdf5_data": ("hdf5_data_param", "batch_size"),
        "images": ("image_data_param", "batch_size"),
        "window_data": ("window_data_param", "batch_size"),
    },
    "cropsize": {None: ("transform_param", "crop_size")},
    "mirror": {None: ("transform_param", "mirror")},
    "rand_skip": {
        "data": ("data_param", "rand_skip"),
        "images": ("image_data_param", "rand_skip"),
    },
    "shuffle_images": {"images": ("image_data_param", "shuffle")},
    "new_height": {"images": ("image_data_param", "new_height")},
    "new_width": {"images": ("image_data_param", "new_width")},
    "concat_dim": {"concat": ("concat_param", "concat_dim")},
    "det_fg_threshold": {"window_data": ("window_data_param", "fg_threshold")},
    "det_bg_threshold": {"window_data": ("window_data_param", "bg_threshold")},
    "det_fg_fraction": {"window_data": ("window_data_param", "fg_fraction")},
    "det_context_pad": {"window_data": ("window_data_param", "context_pad")},
    "det_crop_mode": {"window_data": ("window_data_param", "crop_mode")},
    "hdf5_output_param": {"hdf5_output": ("hdf5_output_param", None)},
    # The old Reshape dims: no V0 layer type read them; Caffe drops them.
    "new_num": {},
    "new_channels": {},
}
# V0 fields copied as they are (name, type and the per-blob lists).
_V0_DIRECT_FIELDS = ("name", "type", "blobs", "blobs_lr", "weight_decay")

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


# --------------------------------------------------------------------- checks
def _is_set(message, field):
    if field.is_repeated:
        return len(getattr(message, field.name)) > 0
    return message.HasField(field.name)


def _needs_v0_to_v1(net):
    return any(entry.HasField("layer") for entry in net.layers)


def _needs_data_upgrade(net):
    for entry in net.layers:
        sub = _DATA_LAYER_PARAMS.get(entry.type)
        if sub and any(getattr(entry, sub).HasField(f) for f in _TRANSFORM_FIELDS):
            return True
    return False


def _needs_v1_to_v2(net):
    return len(net.layers) > 0


def _needs_input_upgrade(net):
    return len(net.input) > 0


def _batch_norm_needs_upgrade(layer):
    return (
        layer.type == "BatchNorm"
        and len(layer.param) == 3
        and not all(p.lr_mult == 0 and p.decay_mult == 0 for p in layer.param)
    )


def _needs_batch_norm_upgrade(net):
    return any(_batch_norm_needs_upgrade(layer) for layer in net.layer)


def net_needs_upgrade(net_param):
    """Whether :func:`upgrade_net` would change ``net_param`` (Caffe's NetNeedsUpgrade).

    Unlike Caffe, a BatchNorm layer whose three param specs already say
    ``lr_mult: 0 decay_mult: 0`` does not count: upgrading it changes nothing.
    """
    return (
        _needs_v0_to_v1(net_param)
        or _needs_data_upgrade(net_param)
        or _needs_v1_to_v2(net_param)
        or _needs_input_upgrade(net_param)
        or _needs_batch_norm_upgrade(net_param)
    )


# ------------------------------------------------------------------ V0 -> V1
def _v0_label(entry, index):
    name = entry.layer.name if entry.HasField("layer") else entry.name
    return f"'{name}'" if name else f"#{index}"


def _plan_v0_padding(net, source):
    """Validate a V0 net and plan the folding of its padding layers.

    Caffe's UpgradeV0PaddingLayers: a "padding" layer is dropped and its ``pad``
    given to the conv or pool layer that reads its top, which reads the padding
    layer's bottom instead.

    Returns:
        (dropped, fixes): the indices of the padding layers, and for each layer
        index fed by one, ``(pad, {bottom index: new bottom name})``.
    """
    last_top = {name: None for name in net.input}  # blob -> producing layer index
    dropped, fixes = set(), {}
    for i, entry in enumerate(net.layers):
        label = _v0_label(entry, i)
        if not entry.HasField("layer"):
            raise PrototxtError(
                f"'layers' entry {label} has no V0 'layer {{ ... }}' block while other "
                "entries do: the file mixes the V0 and V1 layer formats; use one",
                path=source,
            )
        v0 = entry.layer
        if not v0.HasField("type"):
            raise PrototxtError(f"V0 layer {label} has no type", path=source)
        if v0.type != "padding" and v0.type not in V0_LAYER_TYPES:
            raise PrototxtError(
                f"V0 layer {label} has unknown type '{v0.type}'; expected one of "
                f"{', '.join(sorted(V0_LAYER_TYPES))} or padding"
                + did_you_mean(v0.type, V0_LAYER_TYPES),
                path=source,
            )
        for field, _ in v0.ListFields():
            if field.name not in _V0_DIRECT_FIELDS + tuple(_V0_FIELD_TARGETS):
                raise UnsupportedError(
                    f"V0 layer {label} sets '{field.name}', a V0 field caffepy "
                    "cannot map"
                )
        if v0.type == "padding":
            dropped.add(i)
        for j, blob in enumerate(entry.bottom):
            if blob not in last_top:
                raise PrototxtError(
                    f"V0 layer {label} reads blob '{blob}', which no earlier layer "
                    "or net input produces",
                    path=source,
                )
            src_index = last_top[blob]
            if src_index is None or src_index not in dropped:
                continue
            src = net.layers[src_index]
            if v0.type not in ("conv", "pool"):
                raise PrototxtError(
                    f"V0 padding layer {_v0_label(src, src_index)} feeds layer {label} "
                    f"of type '{v0.type}'; only conv and pool layers can absorb "
                    "padding",
                    path=source,
                )
            if len(entry.bottom) != 1:
                raise PrototxtError(
                    f"V0 layer {label} reads a padding layer's output and "
                    f"{len(entry.bottom)} bottoms; a padded layer takes exactly one",
                    path=source,
                )
            if len(src.bottom) != 1 or len(src.top) != 1:
                raise PrototxtError(
                    f"V0 padding layer {_v0_label(src, src_index)} has "
                    f"{len(src.bottom)} bottoms and {len(src.top)} tops; "
                    "expected one of each",
                    path=source,
                )
            renames = fixes[i][1] if i in fixes else {}
            fixes[i] = (src.layer.pad, renames)
            renames[j] = src.bottom[0]
        for blob in entry.top:
            last_top[blob] = i
    return dropped, fixes


def _assign(message, field_name, value):
    """Set, append or copy ``value`` into ``message.field_name`` by its kind."""
    field = message.DESCRIPTOR.fields_by_name[field_name]
    if field.is_repeated:
        getattr(message, field_name).append(value)
    elif field.type == field.TYPE_MESSAGE:
        getattr(message, field_name).CopyFrom(value)
    else:
        setattr(message, field_name, value)


def _upgrade_v0_layer(entry, out, pad=None, renames=None, label="?"):
    """Caffe's UpgradeV0LayerParameter: one V0 connection into the V1 ``out``.

    Fields that make no sense for the layer's type are dropped with an error in
    the log, as Caffe does (V0 Caffe ignored them too). Returns whether every
    field set was mapped.
    """
    renames = renames or {}
    out.bottom.extend(renames.get(j, b) for j, b in enumerate(entry.bottom))
    out.top.extend(entry.top)
    v0 = entry.layer
    ok = True
    for field in entry.DESCRIPTOR.fields:
        if field.name not in ("bottom", "top", "layer") and _is_set(entry, field):
            log.error(
                "V0 layer %s also sets the V1 field '%s'; ignored, as Caffe does",
                label,
                field.name,
            )
            ok = False
    if v0.HasField("name"):
        out.name = v0.name
    ltype = v0.type
    if v0.HasField("type"):
        out.type = _V1.LayerType.Value(V0_LAYER_TYPES[ltype])
    out.blobs.extend(v0.blobs)
    out.blobs_lr.extend(v0.blobs_lr)
    out.weight_decay.extend(v0.weight_decay)

    set_fields = {f.name: value for f, value in v0.ListFields()}
    if pad is not None:
        set_fields["pad"] = pad
    for name, value in set_fields.items():
        if name in _V0_DIRECT_FIELDS:
            continue
        targets = _V0_FIELD_TARGETS[name]
        target = targets.get(None) or targets.get(ltype)
        if target is None:
            log.error(
                "Unknown parameter %s for layer type %s (V0 layer %s)",
                name,
                ltype,
                label,
            )
            ok = False
            continue
        sub_name, field_name = target
        sub = getattr(out, sub_name)
        if field_name is None:
            sub.CopyFrom(value)
        else:
            if name == "pool":  # same value names in both enums
                value = caffe_pb2.PoolingParameter.PoolMethod.Value(
                    caffe_pb2.V0LayerParameter.PoolMethod.Name(value)
                )
            _assign(sub, field_name, value)
    return ok


def _upgrade_v0_net(net, source):
    """Caffe's UpgradeV0Net, in place. Returns whether every field was mapped."""
    dropped, fixes = _plan_v0_padding(net, source)
    count = len(net.layers)
    ok = True
    for i in range(count):
        if i in dropped:
            continue
        entry = net.layers[i]
        pad, renames = fixes.get(i, (None, None))
        ok &= _upgrade_v0_layer(
            entry, net.layers.add(), pad, renames, _v0_label(entry, i)
        )
    del net.layers[:count]
    return ok


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


# --------------------------------------------------------------------- inputs
def _check_input(net, source):
    """Refuse net-level inputs whose shapes do not fit their number."""
    n_inputs = len(net.input)
    if len(net.input_shape) and len(net.input_shape) != n_inputs:
        raise PrototxtError(
            f"the net declares {n_inputs} input(s) but {len(net.input_shape)} "
            "input_shape(s); give one input_shape per input",
            path=source,
        )
    if not len(net.input_shape) and len(net.input_dim) not in (0, 4 * n_inputs):
        raise PrototxtError(
            f"the net declares {n_inputs} input(s) but {len(net.input_dim)} "
            f"input_dim value(s); expected {4 * n_inputs} (four per input: N C H W)",
            path=source,
        )


def _upgrade_input(net):
    """Caffe's UpgradeNetInput: net-level inputs become a leading Input layer.

    With neither ``input_shape`` nor ``input_dim`` (a legacy ``.caffemodel``
    keeps only the input names) the inputs are simply removed.
    """
    n_inputs = len(net.input)
    has_shape, has_dim = len(net.input_shape) > 0, len(net.input_dim) > 0
    if has_shape or has_dim:
        layer = caffe_pb2.LayerParameter(name="input", type="Input")
        layer.top.extend(net.input)
        for i in range(n_inputs):
            shape = layer.input_param.shape.add()
            if has_shape:
                shape.CopyFrom(net.input_shape[i])
            else:
                shape.dim.extend(net.input_dim[4 * i : 4 * i + 4])
        net.layer.insert(0, layer)
    for name in ("input", "input_shape", "input_dim"):
        net.ClearField(name)


# ------------------------------------------------------------------ BatchNorm
def _upgrade_batch_norm(net):
    """Caffe's UpgradeNetBatchNorm: freeze the three statistics blobs."""
    for layer in net.layer:
        if _batch_norm_needs_upgrade(layer):
            for spec in layer.param:
                spec.lr_mult = 0
                spec.decay_mult = 0


# ----------------------------------------------------------------- the driver
def upgrade_net(net_param, source=None):
    """Upgrade a ``NetParameter`` in place to the current format (UpgradeNetAsNeeded).

    Args:
        net_param: a ``caffe_pb2.NetParameter`` as parsed from a prototxt or a
            ``.caffemodel``; rewritten in place.
        source: the file it came from, for log lines and error messages.

    Returns:
        bool: whether anything changed.

    Raises:
        PrototxtError: a definition Caffe could not upgrade either (unknown V0
            type, padding feeding a non-conv layer, input dims that do not come
            in fours) or would silently mangle (``layer`` mixed with ``layers``).
        UnsupportedError: a legacy field caffepy has no mapping for.
    """
    name = source if source is not None else "<net>"
    if len(net_param.layer) and len(net_param.layers):
        raise PrototxtError(
            f"the net mixes the current 'layer' ({len(net_param.layer)}) and the "
            f"legacy 'layers' ({len(net_param.layers)}) fields; use one (Caffe "
            "would ignore every 'layer' entry)",
            path=source,
        )
    if _needs_input_upgrade(net_param):
        _check_input(net_param, source)  # before any step changes the net
    changed = False
    if _needs_v0_to_v1(net_param):
        log.info(
            "Attempting to upgrade input file specified using deprecated "
            "V0LayerParameter: %s",
            name,
        )
        if _upgrade_v0_net(net_param, source):
            log.info(
                "Successfully upgraded file specified using deprecated V0LayerParameter"
            )
        else:
            log.error(
                "Warning: had one or more problems upgrading V0NetParameter to "
                "NetParameter (see above); continuing anyway."
            )
        log.warning(
            "Note that future Caffe releases will not support V0NetParameter; use "
            "'caffepy upgrade_net_proto_text' for prototxt and 'caffepy "
            "upgrade_net_proto_binary' for model weights to upgrade this and any "
            "other net protos to the new format."
        )
        changed = True
    if _needs_data_upgrade(net_param):
        log.info(
            "Attempting to upgrade input file specified using deprecated "
            "transformation parameters: %s",
            name,
        )
        _upgrade_data_transformation(net_param)
        log.info(
            "Successfully upgraded file specified using deprecated data "
            "transformation parameters."
        )
        log.warning(
            "Note that future Caffe releases will only support transform_param "
            "messages for transformation fields."
        )
        changed = True
    if _needs_v1_to_v2(net_param):
        log.info(
            "Attempting to upgrade input file specified using deprecated "
            "V1LayerParameter: %s",
            name,
        )
        _upgrade_v1_net(net_param, source)
        log.info(
            "Successfully upgraded file specified using deprecated V1LayerParameter"
        )
        changed = True
    if _needs_input_upgrade(net_param):
        log.info(
            "Attempting to upgrade input file specified using deprecated "
            "input fields: %s",
            name,
        )
        _upgrade_input(net_param)
        log.info("Successfully upgraded file specified using deprecated input fields.")
        log.warning(
            "Note that future Caffe releases will only support input layers and "
            "not input fields."
        )
        changed = True
    if _needs_batch_norm_upgrade(net_param):
        log.info(
            "Attempting to upgrade batch norm layers using deprecated params: %s",
            name,
        )
        _upgrade_batch_norm(net_param)
        log.info("Successfully upgraded batch norm layers using deprecated params.")
        changed = True
    return changed


def upgrade_net_binary(net_param, source=None):
    """Upgrade a ``NetParameter`` read from a ``.caffemodel``; see :func:`upgrade_net`.

    The same steps as for a prototxt: a V0 or V1 model's learned blobs travel
    with their layers into ``layer[i].blobs``.
    """
    return upgrade_net(net_param, source if source is not None else "<caffemodel>")


# --------------------------------------------------------------------- solver
def solver_needs_upgrade(solver_param):
    """Whether the solver uses the legacy ``solver_type`` enum (Caffe's
    SolverNeedsTypeUpgrade)."""
    return solver_param.HasField("solver_type")


def upgrade_solver(solver_param, source=None):
    """Turn a legacy ``solver_type`` enum into the ``type`` string, in place.

    Args:
        solver_param: a ``caffe_pb2.SolverParameter``.
        source: the file it came from, for log lines and error messages.

    Returns:
        bool: whether anything changed.

    Raises:
        PrototxtError: ``solver_type`` and ``type`` are both set and disagree.
    """
    if not solver_needs_upgrade(solver_param):
        return False
    name = source if source is not None else "<solver>"
    enum_name = caffe_pb2.SolverParameter.SolverType.Name(solver_param.solver_type)
    new_type = SOLVER_TYPE_NAMES[enum_name]
    if solver_param.HasField("type") and solver_param.type != new_type:
        raise PrototxtError(
            f"the solver sets both the legacy solver_type ({enum_name}, i.e. "
            f"'{new_type}') and type ('{solver_param.type}'), which disagree; "
            "remove solver_type",
            path=source,
        )
    log.info(
        "Attempting to upgrade input file specified using deprecated "
        "'solver_type' field (enum)': %s",
        name,
    )
    solver_param.type = new_type
    solver_param.ClearField("solver_type")
    log.info(
        "Successfully upgraded file specified using deprecated 'solver_type' "
        "field (enum) to 'type' field (string)."
    )
    log.warning(
        "Note that future Caffe releases will only support 'type' field (string) "
        "for a solver's type."
    )
    return True
