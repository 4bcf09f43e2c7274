"""Data layers: the inputs of a net.

- :mod:`~caffepy.layers.data.prefetching`: ``Data`` (an LMDB of Datum) and
  ``ImageData`` (a list of image files), read and transformed ahead by a
  prefetch thread; ``close()`` stops it.
- :mod:`~caffepy.layers.data.inputs`: ``Input`` (tops the user fills) and
  ``DummyData`` (tops fillers fill).
- :mod:`~caffepy.layers.data.memory`: ``MemoryData`` (batches from arrays given
  to ``set_input_arrays``).
- :mod:`~caffepy.layers.data.hdf5`: ``HDF5Data`` (rows of .h5 files a list
  names) and ``HDF5Output`` (bottoms written into a .h5 file).
- :mod:`~caffepy.layers.data.window`: ``WindowData`` (R-CNN windows of images).

Importing this package registers these layer types.
"""

from caffepy.layers.data import hdf5, inputs, memory, prefetching, window  # noqa: F401
