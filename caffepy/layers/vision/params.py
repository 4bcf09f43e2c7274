"""Checks shared by the vision layers that own parameter blobs."""

from __future__ import annotations

from collections.abc import Sequence

from caffepy.errors import LayerError
from caffepy.layer import Layer


def check_param_shapes(layer: Layer, expected: Sequence[Sequence[int]]) -> None:
    """Parameter blobs given by the Net (copied or shared) must fit the layer.

    Raises:
        LayerError: a wrong number of blobs, or a blob of another shape.
    """
    if len(layer.blobs) != len(expected):
        raise LayerError(
            layer,
            f"has {len(layer.blobs)} parameter blob(s), expected {len(expected)} "
            f"(shapes {[tuple(s) for s in expected]})",
        )
    for j, (blob, shape) in enumerate(zip(layer.blobs, expected)):
        if tuple(blob.shape) != tuple(shape):
            raise LayerError(
                layer,
                f"parameter blob {j} has shape {blob.shape}, expected {tuple(shape)}",
            )
