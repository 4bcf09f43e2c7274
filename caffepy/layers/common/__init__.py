"""Common layers: Softmax, blob plumbing (Concat, Slice, Split, Flatten, Reshape,
Crop, Tile, Silence, BatchReindex, Filter), Eltwise, ArgMax, Reduction and
Parameter — Caffe's ``common_layers.hpp`` family before it split its headers. (Input, DummyData and
MemoryData live with the data layers.)

Each layer describes its shapes and calls the active backend
(:mod:`caffepy.backend`): one op per piece of numeric work, or a small
``ops.xp`` expression for plain copies, so the same code runs on every device.

Importing this package registers its layer types.
"""

from caffepy.layers.common import (  # noqa: F401
    argmax,
    batch_reindex,
    concat,
    crop,
    eltwise,
    filter,
    parameter,
    reduction,
    reshape,
    softmax,
    split,
    tile,
)
