"""``caffepy summary``: shapes, parameters, FLOPs and memory of a net, no data needed.

The net is built with its data layers (``Data``, ``ImageData``) replaced by
``Input`` layers of the batch shape they would produce: read from the first
record of the database when it exists, else from ``crop_size``, the mean file
or ``mean_value`` count, and ``--input-shape``. Then, per layer: the output
shape(s), the parameter count, the forward FLOPs (a multiply-add counts as two
for Convolution, Deconvolution and InnerProduct; other layers are estimated at
about one operation per output element) and the memory of the activations it
creates, with the totals.

Where the database can be read, it is also checked against the net: the
crop size against the record size, the mean file's shape against the records,
and the classifier's ``num_output`` against the labels (max label + 1).
"""

import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from caffepy.errors import CaffepyError, DataError
from caffepy.tools.netsurgery import DATA_LAYER_TYPES as DATA_TYPES
from caffepy.tools.netsurgery import (
    LABEL_LAYERS,
    class_axis,
    data_to_input,
    input_shapes,
)

#: Records whose labels are read for the label check.
LABEL_RECORDS = 10000

_PLUMBING = {
    "Input",
    "Split",
    "Concat",
    "Slice",
    "Flatten",
    "Reshape",
    "Silence",
    "Crop",
    "Tile",
    "MemoryData",
    "DummyData",
    "ArgMax",
} | set(DATA_TYPES)
#: Rough operations per element of layers that are not one per element.
_ELEMENT_OPS = {"BatchNorm": 2, "MVN": 3, "Softmax": 3, "SoftmaxWithLoss": 4}


def parse_shape(text):
    """'C,H,W' or 'N,C,H,W' (commas, spaces or x between) -> tuple of ints."""
    if text is None or text == "":
        return None
    parts = [p for p in text.replace("x", ",").replace(" ", ",").split(",") if p]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise CaffepyError(
            f"input shape {text!r} is not a list of integers such as "
            "'3,224,224' or '64,1,28,28'"
        ) from None
    if len(shape) not in (3, 4) or min(shape) <= 0:
        raise CaffepyError(
            f"input shape {text!r}: expected 3 (C,H,W) or 4 (N,C,H,W) "
            "positive dimensions"
        )
    return shape


# -- what a data layer would produce ---------------------------------------------------
@dataclass
class DataInfo:
    """What is known about one data layer's records."""

    layer: str
    source: str = ""
    readable: bool = False
    count: int = 0
    record_shape: tuple = None  # C, H, W of the first record
    labels: np.ndarray = None  # labels of the first LABEL_RECORDS records
    batch_shape: tuple = None  # the data top's shape (None when unknown)
    how: str = ""  # where batch_shape came from
    warnings: list = field(default_factory=list)


def _read_db(info, dp, tp, label_records):
    from caffepy.data.datum import datum_to_array, parse_datum
    from caffepy.data.db import open_db_reader

    color = True if tp.force_color else (False if tp.force_gray else None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reader = open_db_reader(dp.source, dp.backend)
    info.warnings.extend(str(w.message) for w in caught)
    with reader:
        info.count = len(reader)
        labels = []
        for i, (key, value) in enumerate(reader.items()):
            name = f"record {key!r} of {dp.source!r}"
            datum = parse_datum(value, name)
            if i == 0:
                info.record_shape = tuple(datum_to_array(datum, name, color).shape)
            labels.append(datum.label)
            if i + 1 >= min(label_records, info.count):
                break
    info.labels = np.asarray(labels, np.int64)
    info.readable = True


def _mean_file_shape(path):
    from caffepy.io.blobproto import read_binaryproto

    mean = read_binaryproto(path)
    return tuple(mean.shape[1:] if mean.ndim == 4 else mean.shape)


def data_layer_info(lp, input_shape=None, label_records=LABEL_RECORDS):
    """A :class:`DataInfo` for a data layer: its records, if readable, and the
    batch shape of its data top (None when it cannot be told)."""
    tp = lp.transform_param
    info = DataInfo(lp.name)
    channels = hw = None
    if lp.type == "Data":
        dp = lp.data_param
        batch, info.source = int(dp.batch_size), dp.source
        if dp.source and os.path.exists(dp.source):
            try:
                _read_db(info, dp, tp, label_records)
            except DataError as err:
                info.warnings.append(str(err))
        if info.record_shape:
            channels, hw = info.record_shape[0], info.record_shape[1:]
            info.how = f"first record of {dp.source}"
    elif lp.type == "ImageData":
        ip = lp.image_data_param
        batch, info.source = int(ip.batch_size), ip.source
        channels = 3 if ip.is_color else 1
        if ip.new_height and ip.new_width:
            hw, info.how = (ip.new_height, ip.new_width), "new_height/new_width"
        elif ip.source and os.path.isfile(ip.source):
            from caffepy.data.datum import read_image
            from caffepy.data.sources import read_list_file

            try:
                first = read_list_file(ip.source)[0][0]
                img = read_image(os.path.join(ip.root_folder, first), 0, 0, ip.is_color)
                hw, info.how = tuple(img.shape[:2]), f"first image of {ip.source}"
            except (DataError, IndexError, OSError):
                pass
    else:
        batch = 1
        for sub in ("hdf5_data_param", "window_data_param"):
            if lp.HasField(sub) and getattr(lp, sub).batch_size:
                batch = int(getattr(lp, sub).batch_size)
    if channels is None and tp.mean_file and os.path.isfile(tp.mean_file):
        try:
            mshape = _mean_file_shape(tp.mean_file)
            channels, hw = mshape[0], hw or mshape[1:]
            info.how = info.how or f"mean file {tp.mean_file}"
        except (CaffepyError, OSError):
            pass
    if channels is None and len(tp.mean_value) > 1:
        channels = len(tp.mean_value)
    if tp.crop_size:
        hw = (tp.crop_size, tp.crop_size)
        info.how = info.how or "crop_size"
    if input_shape is not None:
        if len(input_shape) == 4:
            batch = input_shape[0]
        channels, hw = input_shape[-3], input_shape[-2:]
        info.how = "--input-shape"
    if channels is None and hw is not None:
        channels = 3
        info.warnings.append(
            f"layer '{lp.name}': the number of channels is unknown "
            "(no database, mean file or mean_value); assuming 3, "
            "pass --input-shape C,H,W to set it"
        )
    if channels is not None and hw is not None:
        info.batch_shape = (batch, int(channels)) + tuple(int(d) for d in hw)
    return info


def replace_data_layers(
    param, phase, input_shape=None, strict=True, label_records=LABEL_RECORDS
):
    """The phase's layers of ``param`` with data layers replaced by Input layers.

    Args:
        param: a NetParameter (upgraded).
        phase: caffepy.TRAIN or caffepy.TEST.
        input_shape: (C, H, W) or (N, C, H, W) for data layers whose shape cannot
            be read.
        strict: raise when a data layer's shape is unknown (else return None).

    Returns:
        (NetParameter or None, {layer name: DataInfo}).
    """
    from caffepy.net import filter_net
    from caffepy.proto import caffe_pb2

    state = caffe_pb2.NetState()
    state.CopyFrom(param.state)
    state.phase = int(phase)
    filtered = filter_net(param, state)
    infos = {}

    def shapes(lp):
        info = infos[lp.name] = data_layer_info(lp, input_shape, label_records)
        if info.batch_shape is None:
            if not strict:
                raise _UnknownShape
            raise CaffepyError(
                f"cannot tell the input shape of {lp.type} layer '{lp.name}': its "
                f"source {info.source!r} cannot be read and it has no crop_size; pass "
                "--input-shape C,H,W (or N,C,H,W)"
            )
        return input_shapes(info.batch_shape, len(lp.top))

    try:
        return data_to_input(filtered, shapes, DATA_TYPES), infos
    except _UnknownShape:
        return None, infos


class _UnknownShape(Exception):
    """A data layer's shape is unknown (``replace_data_layers(strict=False)``)."""


def build_shaped_net(param, phase, input_shape=None, strict=True):
    """A Net of ``param``'s phase with data layers replaced by Input layers.

    Returns (net or None, {layer name: DataInfo}); None only when ``strict`` is
    False and a data layer's shape is unknown.
    """
    from caffepy.net import Net

    shaped, infos = replace_data_layers(param, phase, input_shape, strict)
    if shaped is None:
        return None, infos
    return Net(param=shaped, phase=phase), infos


# -- per-layer numbers ---------------------------------------------------------------
def _kernel_area(lp, bottom):
    pp = lp.pooling_param
    if pp.global_pooling:
        return int(np.prod(bottom.shape[2:]))
    if pp.kernel_h and pp.kernel_w:
        return int(pp.kernel_h * pp.kernel_w)
    return int(pp.kernel_size) ** max(len(bottom.shape) - 2, 1)


def layer_flops(lp, layer, bottoms, tops):
    """Forward FLOPs of one layer (a multiply-add counts as 2 for conv and ip)."""
    t = lp.type
    if t in _PLUMBING or not tops:
        return 0
    if t == "Convolution" and layer.blobs:
        per_out = int(np.prod(layer.blobs[0].shape[1:]))
        return 2 * sum(top.count for top in tops) * per_out
    if t == "Deconvolution" and layer.blobs:
        per_in = int(np.prod(layer.blobs[0].shape[1:]))
        return 2 * sum(b.count for b in bottoms) * per_in
    if t == "InnerProduct" and layer.blobs:
        axis = bottoms[0].canonical_axis(lp.inner_product_param.axis)
        rows = bottoms[0].count_range(0, axis)
        return 2 * rows * layer.blobs[0].count
    if t == "Pooling":
        return tops[0].count * _kernel_area(lp, bottoms[0])
    if t == "LRN":
        return tops[0].count * (2 * int(lp.lrn_param.local_size) + 3)
    if t == "Eltwise":
        return tops[0].count * max(len(bottoms) - 1, 1)
    if t == "Scale":
        return tops[0].count * (2 if lp.scale_param.bias_term else 1)
    if lp.type in _ELEMENT_OPS:
        return bottoms[0].count * _ELEMENT_OPS[lp.type]
    if t in ("Accuracy",) or t.endswith("Loss"):
        return bottoms[0].count
    return tops[0].count


@dataclass
class LayerRow:
    name: str
    type: str
    shapes: list  # (top name, shape)
    params: int
    flops: int
    memory: int  # bytes of the new (not in-place) tops


@dataclass
class Summary:
    name: str
    phase: int
    rows: list
    infos: dict
    warnings: list
    notes: list
    itemsize: int = 4

    @property
    def total_params(self):
        return sum(r.params for r in self.rows)

    @property
    def total_flops(self):
        return sum(r.flops for r in self.rows)

    @property
    def total_memory(self):
        return sum(r.memory for r in self.rows)


def summarize_net(net, infos=None):
    """A :class:`Summary` of a built Net (its blobs already shaped)."""
    rows, seen = [], set()
    for li, layer in enumerate(net.layers):
        if li in net._split_layers:
            continue
        lp = net.layer_param[li]
        bottoms, tops = net.bottom_vecs[li], net.top_vecs[li]
        params = 0
        for blob in layer.blobs:
            key = id(blob.data.base if blob.data.base is not None else blob.data)
            if key not in seen:  # shared parameters count once
                seen.add(key)
                params += blob.count
        memory = sum(
            top.count * top.dtype.itemsize
            for top in tops
            if not any(top is b for b in bottoms)
        )
        rows.append(
            LayerRow(
                lp.name,
                lp.type,
                [(n, t.shape) for n, t in zip(lp.top, tops)],
                params,
                layer_flops(lp, layer, bottoms, tops),
                memory,
            )
        )
    summary = Summary(
        net.name, net.phase, rows, infos or {}, [], [], np.dtype(net.dtype).itemsize
    )
    return summary


def check_data(summary, net, param):
    """Warnings about each readable data layer vs the net (crop, mean, labels)."""
    from caffepy.net import filter_net
    from caffepy.proto import caffe_pb2

    state = caffe_pb2.NetState(phase=net.phase)
    layers = {lp.name: lp for lp in filter_net(param, state).layer}
    for name, info in summary.infos.items():
        lp = layers.get(name)
        summary.warnings.extend(info.warnings)
        if lp is None:
            continue
        tp = lp.transform_param
        if info.how:
            summary.notes.append(
                f"layer '{name}': input shape {_fmt_shape(info.batch_shape)}"
                f" from the {info.how}"
            )
        if not info.readable:
            if info.source:
                summary.notes.append(
                    f"layer '{name}': source {info.source!r} not "
                    "readable here, so it was not checked"
                )
            continue
        c, h, w = info.record_shape
        summary.notes.append(
            f"layer '{name}': {info.source} holds {info.count} records of {c}x{h}x{w}"
        )
        if tp.crop_size and (tp.crop_size > h or tp.crop_size > w):
            summary.warnings.append(
                f"layer '{name}': crop_size {tp.crop_size} is larger than the records "
                f"({h}x{w}); Caffe refuses this (lower crop_size or resize the images)"
            )
        if tp.mean_file:
            _check_mean_file(summary, name, tp.mean_file, (c, h, w))
        if len(tp.mean_value) not in (0, 1, c):
            summary.warnings.append(
                f"layer '{name}': {len(tp.mean_value)} mean_value entries for {c}-channel "
                "records; give one, or one per channel"
            )
        if len(lp.top) > 1 and info.labels is not None and len(info.labels):
            _check_labels(summary, net, layers, lp, info)


def _check_mean_file(summary, name, path, record_shape):
    if not os.path.isfile(path):
        summary.warnings.append(f"layer '{name}': mean file {path!r} does not exist")
        return
    try:
        mshape = _mean_file_shape(path)
    except (CaffepyError, OSError) as err:
        summary.warnings.append(
            f"layer '{name}': cannot read mean file {path!r}: {err}"
        )
        return
    if tuple(mshape) != tuple(record_shape):
        summary.warnings.append(
            f"layer '{name}': mean file {path} is {_fmt_shape(mshape)} but the records "
            f"are {_fmt_shape(record_shape)}; they must match (recompute it with "
            "`caffepy compute_image_mean`)"
        )


def _check_labels(summary, net, layers, lp, info):
    label_top = lp.top[1]
    lo, hi = int(info.labels.min()), int(info.labels.max())
    n = len(info.labels)
    read = f"the first {n} records" if n < info.count else f"all {n} records"
    for user in layers.values():
        if user.type not in LABEL_LAYERS or len(user.bottom) < 2:
            continue
        if user.bottom[1] != label_top or user.bottom[0] not in net.blobs:
            continue
        scores = net.blobs[user.bottom[0]]
        classes = scores.shape[scores.canonical_axis(class_axis(user))]
        what = f"'{user.bottom[0]}' (classifier of {user.type} '{user.name}')"
        if lo < 0 and not (
            user.loss_param.HasField("ignore_label")
            and user.loss_param.ignore_label == lo
        ):
            summary.warnings.append(
                f"layer '{lp.name}': labels in {read} go down to {lo}; class labels "
                "must be >= 0"
            )
        if hi >= classes:
            summary.warnings.append(
                f"layer '{lp.name}': labels in {read} reach {hi}, but {what} has "
                f"{classes} outputs; labels must be < num_output (set num_output to "
                f"at least {hi + 1})"
            )
        elif hi + 1 < classes:
            summary.notes.append(
                f"layer '{lp.name}': labels in {read} use {hi + 1} of the {classes} "
                f"outputs of {what}"
            )
        else:
            summary.notes.append(
                f"layer '{lp.name}': labels 0..{hi} fit the {classes} outputs of {what}"
            )
        break


def summarize(model, phase=None, input_shape=None, label_records=LABEL_RECORDS):
    """Build ``model`` (a path or NetParameter) without data and summarise it."""
    import caffepy
    from caffepy.io.prototxt import read_net
    from caffepy.net import Net

    phase = caffepy.TRAIN if phase is None else phase
    param = (
        read_net(os.fspath(model)) if isinstance(model, (str, os.PathLike)) else model
    )
    shaped, infos = replace_data_layers(param, phase, input_shape, True, label_records)
    net = Net(param=shaped, phase=phase)
    summary = summarize_net(net, infos)
    check_data(summary, net, param)
    return summary


# -- text --------------------------------------------------------------------------
def _fmt_shape(shape):
    if shape is None:
        return "?"
    return "x".join(str(d) for d in shape) if len(shape) else "scalar"


def human(n, unit=""):
    """1234567 -> '1.23 M' (or with a unit: '1.23 MB')."""
    n = float(n)
    for prefix in ("", "k", "M", "G", "T", "P"):
        if abs(n) < 1000 or prefix == "P":
            text = f"{n:.0f}" if prefix == "" else f"{n:.3g}"
            return f"{text} {prefix}{unit}".rstrip()
        n /= 1000.0


def format_summary(summary):
    """The summary as an aligned text table with totals, notes and warnings."""
    import caffepy

    rows = [("layer", "type", "output", "params", "FLOPs", "memory")]
    for r in summary.rows:
        first = True
        for tname, shape in r.shapes or [("", None)]:
            label = _fmt_shape(shape) if shape is not None else "-"
            if len(r.shapes) > 1:
                label = f"{label} ({tname})"
            if first:
                rows.append(
                    (
                        r.name,
                        r.type,
                        label,
                        f"{r.params:,}",
                        human(r.flops),
                        human(r.memory, "B"),
                    )
                )
                first = False
            else:
                rows.append(("", "", label, "", "", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    lines = []
    for k, row in enumerate(rows):
        lines.append(
            "  ".join(
                cell.ljust(widths[i]) if i < 3 else cell.rjust(widths[i])
                for i, cell in enumerate(row)
            ).rstrip()
        )
        if k == 0:
            lines.append("-" * len(lines[0]))
    batch = next(
        (
            r.shapes[0][1][0]
            for r in summary.rows
            if r.type == "Input" and r.shapes and r.shapes[0][1]
        ),
        None,
    )
    phase = "TRAIN" if summary.phase == caffepy.TRAIN else "TEST"
    per = f" for a batch of {batch}" if batch else ""
    lines.append("-" * len(lines[0]))
    lines.append(
        f"{summary.name or 'net'} ({phase}): {summary.total_params:,} parameters "
        f"({human(summary.total_params * summary.itemsize, 'B')}), "
        f"{human(summary.total_flops, 'FLOPs')} forward{per}, activations "
        f"{human(summary.total_memory, 'B')} (about twice that when training: "
        "each blob also holds a gradient)"
    )
    for note in summary.notes:
        lines.append(f"note: {note}")
    for warning in summary.warnings:
        lines.append(f"WARNING: {warning}")
    return "\n".join(lines)


def flops_per_image(summary):
    """Forward FLOPs divided by the batch size (None when no Input layer)."""
    batch = next(
        (
            r.shapes[0][1][0]
            for r in summary.rows
            if r.type == "Input" and r.shapes and r.shapes[0][1]
        ),
        None,
    )
    return summary.total_flops / batch if batch else None
