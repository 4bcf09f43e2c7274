"""V0 -> V1: the flat V0 ``layer { }`` entries become V1 ``layers`` (Caffe's
``UpgradeV0Net``), padding layers folded into the layer they feed."""

from caffepy.errors import PrototxtError, UnsupportedError, did_you_mean
from caffepy.io.upgrade.common import _V1, _is_set, log
from caffepy.proto import caffe_pb2

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


def _needs_v0_to_v1(net):
    return any(entry.HasField("layer") for entry in net.layers)


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
