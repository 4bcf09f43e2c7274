"""kernels/tasks.py: a serial task run on the kernel threads through its address."""

import numba
import numpy as np
import pytest

from caffepy.kernels import tasks
from caffepy.kernels.config import njit


@njit
def _scale_rows(x, k, out, i, tid):
    for j in range(x.shape[1]):
        out[i, j] = x[i, j] * k
    out[i, x.shape[1]] = tid


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_launch_runs_every_index_once(dtype):
    x = np.arange(12, dtype=dtype).reshape(4, 3)
    out = np.full((4, 4), np.nan, dtype)
    tasks.launch(_scale_rows, (x, 2.0, out), 4)
    np.testing.assert_array_equal(out[:, :3], 2 * x)
    threads = numba.get_num_threads()
    assert ((out[:, 3] >= 0) & (out[:, 3] < threads)).all()
    # one compiled task per signature, found again by the next call
    assert tasks.address(_scale_rows, (x, 2.0, out)) == tasks.address(
        _scale_rows, (x.copy(), 3.0, out.copy())
    )


def test_a_task_takes_c_contiguous_arrays():
    x = np.zeros((4, 6))[:, ::2]
    out = np.zeros((4, 4))
    with pytest.raises(numba.core.errors.TypingError, match="C-contiguous"):
        tasks.launch(_scale_rows, (x, 2.0, out), 4)


def test_one_task_runs_on_the_calling_thread():
    x = np.arange(3, dtype=np.float64).reshape(1, 3)
    out = np.full((1, 4), np.nan)
    tasks.launch(_scale_rows, (x, 2.0, out), 1)
    np.testing.assert_array_equal(out, [[0.0, 2.0, 4.0, 0.0]])  # thread id 0


@njit
def _sum_into(x, out, i, tid):
    acc = 0.0
    for v in x:
        acc += v
    out[i] = acc


def test_arrays_are_addressed_as_numpy_sees_them():
    # views at an offset, read-only arrays and empty ones (the buffer protocol
    # refuses the last two; their address comes the slow way)
    base = np.arange(10, dtype=np.float64)
    frozen = base.copy()
    frozen.flags.writeable = False
    out = np.zeros(1)
    for x, want in ((base[4:7], 15.0), (frozen[1:3], 3.0), (base[:0], 0.0)):
        tasks.launch(_sum_into, (x, out), 1)
        assert out[0] == want
        assert tasks._data(x) == x.ctypes.data
