"""Normalization layers: BatchNorm, Scale, Bias, LRN, MVN (BVLC Caffe semantics).

BatchNorm has no scale/shift of its own (a following Scale layer with
``bias_term: true`` learns them) and keeps its statistics in three blobs that
are never learned. Scale and Bias broadcast a parameter (or a second bottom)
over the axes of the first bottom that it does not cover. The numeric work is
one op of the active backend (:mod:`caffepy.backend`) per pass.

Importing this package registers its layer types.
"""

from caffepy.layers.normalization import (  # noqa: F401
    batch_norm,
    bias,
    lrn,
    mvn,
    scale,
)
