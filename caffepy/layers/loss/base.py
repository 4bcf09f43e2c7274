"""What the loss layers share: Caffe's normalization rule, label checks, and the
label geometry of a prediction blob."""

from __future__ import annotations

from caffepy.errors import LayerError, ShapeError
from caffepy.layer import LossLayer, canonical_axis

# LossParameter.NormalizationMode
FULL, VALID, BATCH_SIZE, NONE = 0, 1, 2, 3
_NORM_NAMES = {FULL: "FULL", VALID: "VALID", BATCH_SIZE: "BATCH_SIZE", NONE: "NONE"}


def normalization_mode(layer, default: int = VALID) -> int:
    """Caffe's rule: ``normalization`` if given, else legacy ``normalize``
    (true -> VALID, false -> BATCH_SIZE), else ``default``."""
    lp = layer.layer_param.loss_param
    if lp.HasField("normalization"):
        mode = lp.normalization
    elif lp.HasField("normalize"):
        mode = VALID if lp.normalize else BATCH_SIZE
    else:
        mode = default
    if mode not in _NORM_NAMES:
        raise LayerError(layer, f"unknown normalization mode {mode}")
    return mode


def normalizer(
    mode: int, outer: int, inner: int, ignore_label: int | None
) -> float | None:
    """Caffe's ``get_normalizer`` where it is known before the data is: the
    divisor, or None for "the number of non-ignored positions" (VALID with an
    ignore_label; the loss op counts them on the device).

    NOTE: max(1, .) as Caffe, so a batch with every label ignored gives a zero
    loss and gradient instead of NaN.
    """
    if mode == FULL:
        n = outer * inner
    elif mode == VALID:
        if ignore_label is not None:
            return None
        n = outer * inner
    elif mode == BATCH_SIZE:
        n = outer
    else:
        n = 1
    return float(max(1, n))


def get_ignore_label(layer) -> int | None:
    """``loss_param.ignore_label``, or None when unset."""
    lp = layer.layer_param.loss_param
    return int(lp.ignore_label) if lp.HasField("ignore_label") else None


def check_labels(
    layer, ops, labels, num_classes: int, ignore: int | None = None
) -> None:
    """Refuse a label outside [0, num_classes) (other than ``ignore``)."""
    value = ops.check_labels(labels, num_classes, ignore)
    if value is not None:
        raise LayerError(
            layer,
            f"label {value:g} is out of range: expected an integer in [0, "
            f"{num_classes})"
            + ("" if ignore is None else f" or the ignore_label {ignore}"),
        )


def label_geometry(layer, bottom, axis_param: int, what: str):
    """(axis, outer, channels, inner) of bottom[0]; the label count must be
    outer * inner."""
    axis = canonical_axis(layer, bottom[0], axis_param)
    outer = bottom[0].count_range(0, axis)
    inner = bottom[0].count_range(axis + 1)
    if outer * inner != bottom[1].count:
        raise ShapeError(
            layer,
            f"{what} bottom shape {bottom[0].shape} needs {outer * inner} labels "
            f"(one per position outside axis {axis}) but the label bottom has shape "
            f"{bottom[1].shape} ({bottom[1].count})",
        )
    return axis, outer, bottom[0].shape[axis], inner


def per_item_reshape(layer, bottom, top, what: str) -> None:
    """LossLayer.reshape plus one label per item: sets ``layer.num`` and
    ``layer.dim`` (predictions flattened to (num, dim))."""
    LossLayer.reshape(layer, bottom, top)
    layer.num = bottom[0].shape[0] if bottom[0].num_axes else 1
    if bottom[1].count != layer.num:
        raise ShapeError(
            layer,
            f"needs one label per item: {what} {bottom[0].shape}, labels "
            f"{bottom[1].shape}",
        )
    layer.dim = bottom[0].count // max(layer.num, 1)
