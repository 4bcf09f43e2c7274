"""Data layers: the inputs of a net.

- :mod:`~caffepy.layers.data.prefetching`: ``Data`` (an LMDB of Datum) and
  ``ImageData`` (a list of image files), read and transformed ahead by a
  prefetch thread; ``close()`` stops it.
- :mod:`~caffepy.layers.data.inputs`: ``Input`` (tops the user fills) and
  ``DummyData`` (tops fillers fill).
- :mod:`~caffepy.layers.data.memory`: ``MemoryData`` (batches from arrays given
  to ``set_input_arrays``).

Importing this package registers these layer types.
"""

from caffepy.layers.data import inputs, memory, prefetching  # noqa: F401
