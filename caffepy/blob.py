"""Blob: an N-d array of data with a matching gradient (diff), as in Caffe.

A Blob keeps its data and its diff each in one flat
:class:`~caffepy.syncedmem.SyncedMemory` (host and device copies, synced on
demand) and hands out views of the current shape, so reshaping to a smaller or
equal size never reallocates (the steady state of training allocates nothing).
Shapes are tuples of ints, NCHW for images.

``blob.data`` / ``blob.diff`` are pycaffe's host views: reading them syncs the
host and, as pycaffe's ``mutable_cpu_data``, makes the host the head.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from caffepy.errors import CaffepyError
from caffepy.syncedmem import (
    HEAD_AT_CPU,
    HEAD_AT_GPU,
    SyncedMemory,
    current_budget,
    format_size,
)

#: A blob may not declare more elements than this (refused before allocation).
MAX_BLOB_COUNT = 2**31 - 1

#: Bytes per element a filler holds besides the blob while it fills it (its
#: float64 values; the cast copy is counted by the blob's own item size).
FILL_SCRATCH_BYTES = 8


def _as_shape(shape: tuple) -> tuple[int, ...]:
    """``reshape``'s arguments as a tuple of ints: ``(2, 3)`` or ``((2, 3),)``."""
    if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
        shape = shape[0]
    return tuple(map(int, shape))


class Blob:
    """Data and diff arrays of one shape, each synced between host and device.

    Args:
        shape: initial shape (tuple of non-negative ints); () is a scalar blob.
        dtype: float32 (default) or float64.
    """

    __slots__ = (
        "_shape",
        "_count",
        "_dmem",
        "_gmem",
        "_data",
        "_diff",
        "_gdata",
        "_gdiff",
        "dtype",
    )

    def __init__(self, shape: Any = (), dtype: Any = np.float32):
        self.dtype = np.dtype(dtype)
        self._dmem = SyncedMemory(0, self.dtype)
        # NOTE: the diff memory is allocated on first use (SyncedMemory is lazy),
        # so forward-only nets (deploy, test) never pay for gradients.
        self._gmem = SyncedMemory(0, self.dtype)
        self._shape: tuple[int, ...] | None = None
        # NOTE: a blob made with its shape is a layer's parameter (BlobVec.add_blob;
        # a net's tops start empty), and its filler draws float64 values of that
        # shape and casts them: the build budget checks those bytes too.
        self._set_shape(_as_shape((shape,)), FILL_SCRATCH_BYTES + self.dtype.itemsize)

    # -- shape -----------------------------------------------------------------
    def reshape(self, *shape: Any) -> None:
        """Set the shape; the data is kept (not zeroed) when it fits the buffer."""
        shape = _as_shape(shape)
        if shape != self._shape:
            self._set_shape(shape, 0)

    def _set_shape(self, shape: tuple[int, ...], scratch_per_item: int) -> None:
        count = 1
        for d in shape:
            if d < 0:
                raise CaffepyError(f"blob shape {shape} has a negative dimension")
            count *= d
        if count > self._dmem.size:
            # NOTE: counted where the size is known, before anything is allocated
            # (SyncedMemory is lazy); only growth is counted, so the reshapes of
            # training cost nothing here.
            budget = current_budget()
            if budget is not None:
                budget.reserve(
                    count * self.dtype.itemsize,
                    shape,
                    self.dtype,
                    scratch=count * scratch_per_item,
                )
                if self._dmem.size:
                    budget.release(self._dmem.nbytes)
            if count > MAX_BLOB_COUNT:
                nbytes = count * self.dtype.itemsize
                raise CaffepyError(
                    f"blob shape {shape} has {count} elements ({nbytes} bytes, "
                    f"{format_size(nbytes)}), more than the limit {MAX_BLOB_COUNT}"
                )
            self._dmem = SyncedMemory(count, self.dtype)
        if count > self._gmem.size:
            self._gmem = SyncedMemory(count, self.dtype)
        self._shape, self._count = shape, count
        self._data = self._gdata = self._diff = self._gdiff = None

    def reshape_like(self, other: Blob) -> None:
        self.reshape(other.shape)

    @property
    def shape(self):
        return self._shape

    @property
    def count(self):
        return self._count

    @property
    def num_axes(self):
        return len(self._shape)

    def count_range(self, start, end=None):
        """Product of the dimensions in [start, end)."""
        n = 1
        for d in self._shape[start:end]:
            n *= d
        return n

    def canonical_axis(self, axis):
        """Map a possibly negative axis index to [0, num_axes)."""
        n = len(self._shape)
        if not -n <= axis < max(n, 1):
            raise CaffepyError(
                f"axis {axis} out of range for a blob of shape {self._shape}"
            )
        return axis + n if axis < 0 else axis

    # Caffe's legacy 4-D accessors.
    def _legacy(self, i):
        n = len(self._shape)
        if n > 4:
            raise CaffepyError(f"legacy accessor on a {n}-D blob")
        i = i + n if i < 0 else i
        if i < 0:
            return 1
        return self._shape[i] if i < n else 1

    @property
    def num(self):
        return self._legacy(0)

    @property
    def channels(self):
        return self._legacy(1)

    @property
    def height(self):
        return self._legacy(2)

    @property
    def width(self):
        return self._legacy(3)

    # -- arrays ----------------------------------------------------------------
    # NOTE: the views of the current shape are cached and rebuilt (cheaply) after a
    # reshape or share; the hot path is two attribute checks.
    def _view(self, buf: Any) -> Any:
        return buf[: self._count].reshape(self._shape)

    @property
    def data(self) -> np.ndarray:
        """pycaffe's host view of the data (synced to the host; the host is head)."""
        d = self._data
        if d is not None and self._dmem.head is HEAD_AT_CPU:
            return d
        d = self._data = self._view(self._dmem.mutable_cpu_data())
        return d

    @data.setter
    def data(self, value: Any) -> None:
        self.data[...] = value

    @property
    def diff(self) -> np.ndarray:
        """pycaffe's host view of the diff (allocated zeroed on first use)."""
        d = self._diff
        if d is not None and self._gmem.head is HEAD_AT_CPU:
            return d
        d = self._diff = self._view(self._gmem.mutable_cpu_data())
        return d

    @diff.setter
    def diff(self, value: Any) -> None:
        self.diff[...] = value

    # Caffe's SyncedMemory accessors.
    def cpu_data(self) -> np.ndarray:
        """Host data for reading (device->host copy only if the device is head)."""
        d = self._data
        if d is not None and self._dmem.head is not HEAD_AT_GPU:
            return d
        d = self._data = self._view(self._dmem.cpu_data())
        return d

    def mutable_cpu_data(self) -> np.ndarray:
        return self.data

    def cpu_diff(self) -> np.ndarray:
        d = self._diff
        if d is not None and self._gmem.head is not HEAD_AT_GPU:
            return d
        d = self._diff = self._view(self._gmem.cpu_data())
        return d

    def mutable_cpu_diff(self) -> np.ndarray:
        return self.diff

    def gpu_data(self) -> Any:
        """Device data for reading (host->device copy only if the host is head)."""
        g = self._gdata
        if g is not None and self._dmem.head is not HEAD_AT_CPU:
            return g
        g = self._gdata = self._view(self._dmem.gpu_data())
        return g

    def mutable_gpu_data(self) -> Any:
        """Device data to be written: the device becomes the head."""
        g = self._gdata
        if g is not None and self._dmem.head is HEAD_AT_GPU:
            return g
        g = self._gdata = self._view(self._dmem.mutable_gpu_data())
        return g

    def gpu_diff(self) -> Any:
        g = self._gdiff
        if g is not None and self._gmem.head is not HEAD_AT_CPU:
            return g
        g = self._gdiff = self._view(self._gmem.gpu_data())
        return g

    def mutable_gpu_diff(self) -> Any:
        g = self._gdiff
        if g is not None and self._gmem.head is HEAD_AT_GPU:
            return g
        g = self._gdiff = self._view(self._gmem.mutable_gpu_data())
        return g

    @property
    def data_mem(self) -> SyncedMemory:
        """The SyncedMemory behind the data (Caffe's ``Blob::data()``)."""
        return self._dmem

    @property
    def diff_mem(self) -> SyncedMemory:
        """The SyncedMemory behind the diff (Caffe's ``Blob::diff()``)."""
        return self._gmem

    @property
    def has_diff(self) -> bool:
        return self._gmem.has_cpu or self._gmem.has_gpu

    def _check_share(self, other: Blob, what: str) -> None:
        if self._count != other._count:
            raise CaffepyError(
                f"share_{what}: this blob has {self._count} elements {self._shape}, "
                f"the other {other._count} {other._shape}; counts must match"
            )

    def share_data(self, other: Blob) -> None:
        """Make this blob's data the same memory as other's (Caffe's ShareData).

        This blob keeps its own shape; the counts must match.
        """
        self._check_share(other, "data")
        old = self._dmem
        if old is not other._dmem and not (old.has_cpu or old.has_gpu):
            budget = current_budget()
            if budget is not None:  # never allocated: it does not count
                budget.release(old.nbytes)
        self._dmem = other._dmem
        self._data = self._gdata = None

    def share_diff(self, other: Blob) -> None:
        """Make this blob's diff the same memory as other's (Caffe's ShareDiff)."""
        self._check_share(other, "diff")
        self._gmem = other._gmem
        self._diff = self._gdiff = None

    def share_diff_buffer(self, buf: np.ndarray) -> None:
        """Back the diff with the host buffer ``buf[:count]``, which other blobs
        share (their gradients never live at the same time: see
        :mod:`caffepy.netmemory`). The contents are left as they are; a reshape
        beyond ``count`` gives the blob a diff of its own again.

        Args:
            buf: a flat host array of this blob's dtype and at least ``count``
                elements.
        """
        if buf.dtype != self.dtype or buf.size < self._count:
            raise CaffepyError(
                f"share_diff_buffer: a buffer of {buf.size} x {buf.dtype} cannot "
                f"hold the diff of a blob of shape {self._shape} ({self.dtype})"
            )
        mem = SyncedMemory(self._count, self.dtype)
        mem.set_cpu_data(buf[: self._count])
        self._gmem = mem
        self._diff = self._gdiff = None

    def __repr__(self) -> str:
        return f"Blob(shape={self._shape}, dtype={self.dtype.name})"

    def __len__(self) -> int:
        return self._shape[0] if self._shape else 0
