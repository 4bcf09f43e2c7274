"""Tools for testing layers, public so users can test their own Python layers.

:class:`GradientChecker` is Caffe's: central differences of an objective over the
layer's tops, compared with the layer's backward, elementwise tolerance
``threshold * max(|analytic|, |numeric|, 1)``; :func:`layer_from_text` and
:func:`make_blobs` build what it checks; :func:`lazy_module` keeps optional oracles
(PyTorch) out of import time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from caffepy.blob import Blob
from caffepy.layer import Layer
from caffepy.phase import TRAIN
from caffepy.testing.gradient_check import GradientChecker, GradientCheckError
from caffepy.testing.oracle import LazyModule, lazy_module

__all__ = [
    "GradientCheckError",
    "GradientChecker",
    "LazyModule",
    "layer_from_text",
    "lazy_module",
    "make_blobs",
]


def layer_from_text(
    text: str, phase: int = TRAIN, dtype: npt.DTypeLike = np.float64
) -> Layer:
    """Create a layer from the text of a ``LayerParameter`` (e.g. ``'type: "ReLU"'``).

    The layer is named after its type (lower case) when the text names none; it is
    not set up (the checker, or ``layer.SetUp``, does that).
    """
    from google.protobuf import text_format

    from caffepy.proto import caffe_pb2
    from caffepy.registry import create_layer

    param = text_format.Parse(text, caffe_pb2.LayerParameter())
    if not param.name:
        param.name = param.type.lower() or "layer"
    layer: Layer = create_layer(param, phase, dtype)
    return layer


def make_blobs(
    *shapes: int | Sequence[int],
    dtype: npt.DTypeLike = np.float64,
    seed: int = 1701,
    low: float = -1.0,
    high: float = 1.0,
) -> list[Blob]:
    """Blobs of the given shapes with data drawn from U(low, high) (a fixed seed)."""
    gen = np.random.default_rng(seed)
    blobs = []
    for shape in shapes:
        blob = Blob(shape, dtype)
        blob.mutable_cpu_data()[...] = gen.uniform(low, high, shape)
        blobs.append(blob)
    return blobs
