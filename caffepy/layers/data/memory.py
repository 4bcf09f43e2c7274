"""MemoryData: batches from arrays held in memory (pycaffe's set_input_arrays)."""

from __future__ import annotations

import logging

import numpy as np

from caffepy import backend
from caffepy.errors import LayerError
from caffepy.layer import Layer
from caffepy.registry import register_layer

log = logging.getLogger("caffepy")


@register_layer("MemoryData")
class MemoryDataLayer(Layer):
    """Batches from arrays held in memory (pycaffe ``net.set_input_arrays``).

    Parameters (``memory_data_param``): ``batch_size``, ``channels``, ``height``,
    ``width`` (no defaults: all must be positive).

    Tops: data (batch_size, channels, height, width) and label (batch_size,).
    Each forward yields the next ``batch_size`` rows of the arrays given to
    :meth:`set_input_arrays`, wrapping around at the end.

    NOTE: as Caffe's ``MemoryDataLayer::Reset`` (which pycaffe's
    ``set_input_arrays`` calls), the arrays are used as they are: a
    ``transform_param`` is NOT applied to them (Caffe logs a warning; so do we).
    """

    uses_ops = ("copy", "from_host")

    exact_num_bottom = 0
    exact_num_top = 2

    def setup(self, bottom, top):
        p = self.layer_param.memory_data_param
        self.batch_size, self.channels = int(p.batch_size), int(p.channels)
        self.height, self.width = int(p.height), int(p.width)
        if self.batch_size * self.channels * self.height * self.width <= 0:
            raise LayerError(
                self,
                "memory_data_param batch_size, channels, height and width must all be "
                f"positive, got {self.batch_size}, {self.channels}, {self.height}, "
                f"{self.width}",
            )
        self._data = self._labels = None
        self._pos = 0
        self._n = 0
        top[0].reshape(self.batch_size, self.channels, self.height, self.width)
        top[1].reshape(self.batch_size)

    def set_input_arrays(self, data, labels):
        """Use ``data`` (N, C, H, W) and ``labels`` (N,) as the source of batches.

        As pycaffe: both float32 and C-contiguous, N a multiple of batch_size; the
        arrays are referenced, not copied (in a float32 net), so keep them alive
        and unchanged while the net runs. Restarts at the first batch.
        """
        if not isinstance(data, np.ndarray) or not isinstance(labels, np.ndarray):
            raise LayerError(
                self, "set_input_arrays needs numpy arrays for data and labels"
            )
        for name, arr in (("data", data), ("labels", labels)):
            if arr.dtype != np.float32:
                raise LayerError(self, f"{name} array must be float32, got {arr.dtype}")
            if not arr.flags.c_contiguous:
                raise LayerError(self, f"{name} array must be C contiguous")
        want = (self.channels, self.height, self.width)
        if data.ndim != 4 or data.shape[1:] != want:
            raise LayerError(
                self,
                f"data array has shape {data.shape}, expected (N, {want[0]}, {want[1]}, "
                f"{want[2]})",
            )
        if labels.ndim == 4 and labels.shape[1:] == (1, 1, 1):
            labels = labels.reshape(-1)
        if labels.ndim != 1:
            raise LayerError(
                self,
                f"labels array has shape {labels.shape}, expected (N,) or (N, 1, 1, 1)",
            )
        n = data.shape[0]
        if labels.shape[0] != n:
            raise LayerError(
                self,
                f"data and labels must have the same first dimension, got {n} and "
                f"{labels.shape[0]}",
            )
        if n == 0 or n % self.batch_size:
            raise LayerError(
                self,
                f"the first dimension of the input arrays ({n}) must be a positive "
                f"multiple of batch_size {self.batch_size}",
            )
        if self.layer_param.HasField("transform_param"):
            log.warning(
                "%s layer '%s' does not transform array data on set_input_arrays",
                self.type,
                self.name,
            )
        self._data = np.asarray(data, self.dtype)
        self._labels = np.asarray(labels, self.dtype)
        self._n = n
        self._pos = 0

    def reshape(self, bottom, top):
        top[0].reshape(self.batch_size, self.channels, self.height, self.width)
        top[1].reshape(self.batch_size)

    def forward(self, bottom, top):
        if self._data is None:
            raise LayerError(
                self, "has no data: call set_input_arrays(data, labels) before forward"
            )
        ops = backend.ops()
        b, p = self.batch_size, self._pos
        ops.copy(ops.from_host(self._data[p : p + b]), ops.mutable_data(top[0]))
        ops.copy(ops.from_host(self._labels[p : p + b]), ops.mutable_data(top[1]))
        self._pos = (p + b) % self._n

    def backward(self, top, propagate_down, bottom):
        pass
