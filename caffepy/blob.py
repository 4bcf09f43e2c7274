"""Blob: an N-d array of data with a matching gradient (diff), as in Caffe.

A Blob keeps one flat buffer for data and one for diff and hands out views of the
current shape, so reshaping to a smaller or equal size never reallocates (the
steady state of training allocates nothing). Shapes are tuples of ints, NCHW for
images.
"""

import numpy as np

from caffepy.errors import CaffepyError

#: A blob may not declare more elements than this (refused before allocation).
MAX_BLOB_COUNT = 2**31 - 1


class Blob:
    """Data and diff arrays of one shape.

    Args:
        shape: initial shape (tuple of non-negative ints); () is a scalar blob.
        dtype: float32 (default) or float64.
    """

    __slots__ = ("_shape", "_count", "_data_buf", "_diff_buf", "_data", "_diff", "dtype")

    def __init__(self, shape=(), dtype=np.float32):
        self.dtype = np.dtype(dtype)
        self._data_buf = np.zeros(0, self.dtype)
        self._diff_buf = None
        self._shape = None
        self.reshape(shape)

    # -- shape -----------------------------------------------------------------
    def reshape(self, *shape):
        """Set the shape; the data is kept (not zeroed) when it fits the buffer."""
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
            shape = shape[0]
        shape = tuple(int(d) for d in shape)
        if shape == self._shape:
            return
        count = 1
        for d in shape:
            if d < 0:
                raise CaffepyError(f"blob shape {shape} has a negative dimension")
            count *= d
        if count > MAX_BLOB_COUNT:
            raise CaffepyError(
                f"blob shape {shape} has {count} elements, more than the limit "
                f"{MAX_BLOB_COUNT}"
            )
        if count > self._data_buf.size:
            self._data_buf = np.zeros(count, self.dtype)
        if self._diff_buf is not None and count > self._diff_buf.size:
            self._diff_buf = None
        self._shape, self._count = shape, count
        self._data = self._data_buf[:count].reshape(shape)
        self._diff = None if self._diff_buf is None else self._diff_buf[:count].reshape(shape)

    def reshape_like(self, other):
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
            raise CaffepyError(f"axis {axis} out of range for a blob of shape {self._shape}")
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
    @property
    def data(self):
        return self._data

    @data.setter
    def data(self, value):
        self._data[...] = value

    @property
    def diff(self):
        if self._diff is None:
            # NOTE: the diff buffer is allocated on first use, so forward-only nets
            # (deploy, test) never pay for gradients.
            self._diff_buf = np.zeros(self._data_buf.size, self.dtype)
            self._diff = self._diff_buf[: self._count].reshape(self._shape)
        return self._diff

    @diff.setter
    def diff(self, value):
        self.diff[...] = value

    # Caffe's SyncedMemory accessors (host side; GPU mode adds the device side).
    def cpu_data(self):
        return self._data

    def mutable_cpu_data(self):
        return self._data

    def cpu_diff(self):
        return self.diff

    def mutable_cpu_diff(self):
        return self.diff

    @property
    def has_diff(self):
        return self._diff is not None

    def share_data(self, other):
        """Make this blob's data the same memory as other's (shapes must match)."""
        self.reshape(other.shape)
        self._data_buf, self._data = other._data_buf, other._data

    def share_diff(self, other):
        self.reshape(other.shape)
        other.diff  # noqa: B018 - allocate
        self._diff_buf, self._diff = other._diff_buf, other._diff

    def __repr__(self):
        return f"Blob(shape={self._shape}, dtype={self.dtype.name})"

    def __len__(self):
        return self._shape[0] if self._shape else 0
