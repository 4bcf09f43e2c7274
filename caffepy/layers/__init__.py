"""The built-in layers, grouped by family as Caffe's headers were:
neuron, normalization, vision, common, loss, data, recurrent, python.

Importing this package registers every layer type.
"""

from caffepy.layers import (  # noqa: F401
    common,
    data,
    loss,
    neuron,
    normalization,
    python,
    recurrent,
    vision,
)
