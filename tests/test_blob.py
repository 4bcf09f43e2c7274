import numpy as np
import pytest

from caffepy.blob import Blob
from caffepy.errors import CaffepyError


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reshape_reuses_buffer_and_keeps_dtype(dtype):
    b = Blob((2, 3, 4), dtype)
    assert b.shape == (2, 3, 4) and b.count == 24 and b.num_axes == 3
    assert b.data.dtype == dtype
    b.data[...] = 1
    mem = b.data_mem
    b.reshape(4, 3)
    assert b.data_mem is mem, "shrinking must not reallocate"
    assert np.all(b.data == 1), "data is kept when it fits"
    b.reshape((5, 5))
    assert b.count == 25 and b.data_mem is not mem


def test_diff_is_lazy_and_sized():
    b = Blob((3,))
    assert not b.has_diff
    b.diff[...] = 2
    assert b.has_diff and b.diff.shape == (3,)
    b.reshape(2)
    assert b.diff.shape == (2,)


def test_count_range_and_axes():
    b = Blob((2, 3, 4, 5))
    assert b.count_range(1) == 60 and b.count_range(1, 3) == 12
    assert b.canonical_axis(-1) == 3
    assert (b.num, b.channels, b.height, b.width) == (2, 3, 4, 5)
    with pytest.raises(CaffepyError, match="out of range"):
        b.canonical_axis(4)


def test_share_data_and_diff():
    a, b = Blob((2, 2)), Blob((2, 2))
    b.share_data(a)
    b.share_diff(a)
    a.data[...] = 7
    a.diff[...] = 3
    assert np.all(b.data == 7) and np.all(b.diff == 3)


def test_absurd_shape_refused_before_allocation():
    with pytest.raises(CaffepyError, match="elements"):
        Blob((100000, 100000, 1000))
    with pytest.raises(CaffepyError, match="negative"):
        Blob((2, -1))
