"""Trained weights into a Net by layer name: copied from a file or NetParameter
(Caffe's CopyTrainedLayersFrom) or shared with another net (ShareTrainedLayersWith).
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

from caffepy.errors import DataError, NetError, WeightsError
from caffepy.io.blobproto import array_from_proto, proto_shape

log = logging.getLogger("caffepy")


def copy_trained_layers(net: Any, weights: Any) -> dict:
    """Caffe's CopyTrainedLayersFrom: copy parameter blobs by layer name.

    Args:
        net: the :class:`caffepy.net.Net` to fill.
        weights: a .caffemodel path (as ``read_weights`` reads it), a
            ``.caffemodel.h5`` path (any path ending ``.h5``, as Caffe decides),
            or a NetParameter with blobs.

    Returns:
        ``{"copied": [layer names], "ignored": [source layers not in the net]}``.
    """
    if isinstance(weights, (str, os.PathLike)) and os.fspath(weights).endswith(".h5"):
        from caffepy.io.hdf5 import load_net_hdf5

        return load_net_hdf5(net, weights)
    if isinstance(weights, (str, os.PathLike)):
        from caffepy.io.prototxt import read_weights

        source = os.fspath(weights)
        weights = read_weights(source)
    else:
        source = "<NetParameter>"
    copied, ignored = [], []
    first = _first_layers(net)
    for src in weights.layer:
        target = first.get(src.name)
        if target is None:
            if src.blobs:
                log.info("Ignoring source layer %s", src.name)
            ignored.append(src.name)
            continue
        if not src.blobs:
            continue
        if len(src.blobs) != len(target.blobs):
            raise WeightsError(
                f"{source}: layer '{src.name}' has {len(src.blobs)} parameter "
                f"blobs, the net's layer has {len(target.blobs)}; to learn it from "
                "scratch rather than copy it, rename the layer"
            )
        for j, (bp, blob) in enumerate(zip(src.blobs, target.blobs)):
            shape = proto_shape(bp)
            if not _shapes_match(bp, shape, blob.shape):
                raise WeightsError(
                    f"{source}: cannot copy param {j} of layer '{src.name}': shape "
                    f"mismatch, source {shape} ({math.prod(shape)}) vs target "
                    f"{blob.shape} ({blob.count}); to learn this layer's parameters "
                    "from scratch rather than copying them, rename the layer"
                )
            try:
                values = array_from_proto(bp)
            except DataError as err:
                raise WeightsError(
                    f"{source}: param {j} of layer '{src.name}': {err}; the file "
                    "is truncated or corrupt"
                ) from None
            blob.data[...] = values.reshape(blob.shape)
        copied.append(src.name)
    return {"copied": copied, "ignored": ignored}


def share_trained_layers(net: Any, other: Any) -> None:
    """Caffe's ShareTrainedLayersWith: ``net``'s parameter blobs of each layer
    also in ``other`` (same name) use ``other``'s data memory; shapes must match.

    As Caffe, each source layer goes to the first layer of its name in ``net``
    (where names repeat, the last source layer of a name wins)."""
    first = _first_layers(net)
    for name, src in zip(other.layer_names, other.layers):
        layer = first.get(name)
        if layer is None or not len(layer.blobs):
            continue
        if len(src.blobs) != len(layer.blobs):
            raise NetError(
                f"layer '{name}': {len(src.blobs)} vs "
                f"{len(layer.blobs)} parameter blobs"
            )
        for mine, theirs in zip(layer.blobs, src.blobs):
            if mine.shape != theirs.shape:
                raise NetError(
                    f"layer '{name}': cannot share weights of shape "
                    f"{theirs.shape} with {mine.shape}"
                )
            mine.share_data(theirs)


def _first_layers(net: Any) -> dict[str, Any]:
    """Layer name -> the first layer of that name (Caffe's CopyTrainedLayersFrom
    searches the target's names from the start; names may repeat)."""
    first: dict[str, Any] = {}
    for name, layer in zip(net.layer_names, net.layers):
        first.setdefault(name, layer)
    return first


def _shapes_match(bp, proto_dims, blob_shape):
    if tuple(proto_dims) == tuple(blob_shape):
        return True
    if not bp.HasField("shape"):
        # Legacy 4-D blob: Caffe compares num/channels/height/width with the
        # blob's shape padded with 1s; older files also right-align them.
        n = len(blob_shape)
        if n <= 4:
            left = tuple(blob_shape) + (1,) * (4 - n)
            right = (1,) * (4 - n) + tuple(blob_shape)
            if tuple(proto_dims) in (left, right):
                return True
    return False
