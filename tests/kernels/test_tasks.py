"""kernels/tasks.py: a serial task run on the kernel threads through its address."""

import ctypes

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


@pytest.fixture(params=["packed", "compiled"])
def stored(request, monkeypatch):
    """Parallel launches' arguments stored by _pack (a signature's first
    launches) or by the compiled _put (once it is hot)."""
    monkeypatch.setattr(
        tasks, "HOT_LAUNCHES", 1 if request.param == "compiled" else 10**9
    )
    return request.param


def _launch_twice(task, args, n):
    # the first launch of a signature is packed in Python; with HOT_LAUNCHES
    # 1 the second is stored by _put
    tasks.launch(task, args, n)
    tasks.launch(task, args, n)
    if n > 1:
        assert tasks._lookup(task, args).put == (tasks.HOT_LAUNCHES == 1)


@pytest.mark.parametrize("n", [1, 3])
def test_arrays_are_addressed_as_numpy_sees_them(n, stored):
    # views at an offset, read-only arrays and empty ones, on the calling
    # thread (n=1) and through the stored arguments of a parallel launch
    base = np.arange(10, dtype=np.float64)
    frozen = base.copy()
    frozen.flags.writeable = False
    for x, want in ((base[4:7], 15.0), (frozen[1:3], 3.0), (base[:0], 0.0)):
        out = np.full(n, np.nan)
        _launch_twice(_sum_into, (x, out), n)
        np.testing.assert_array_equal(out, want)
        assert tasks._data(x) == x.ctypes.data  # what _pack stores


@njit
def _mixed(flag, small, k, f, x, big, out, i, tid):
    out[i, 0] = 1.0 if flag else -1.0
    out[i, 1] = small
    out[i, 2] = k
    out[i, 3] = f
    out[i, 4] = x[i, 1]
    out[i, 5] = big


@pytest.mark.parametrize("n", [1, 4])
def test_scalars_of_every_width_reach_the_task(n, stored):
    # booleans, 8-, 32- and 64-bit numbers between arrays: each at the offset
    # Numba's data model gives it in the stored arguments
    x = np.arange(8, dtype=np.float32).reshape(4, 2)
    out = np.zeros((4, 6))
    args = (True, np.int8(-3), np.int32(7), np.float32(0.5), x, 2**40, out)
    _launch_twice(_mixed, args, n)
    want = np.array([[1.0, -3.0, 7.0, 0.5, x[i, 1], 2.0**40] for i in range(n)])
    np.testing.assert_array_equal(out[:n], want)
    assert not out[n:].any()


def test_the_compiled_store_writes_the_packed_bytes():
    # _put (compiled, Numba's data model) and _pack (struct, native alignment)
    # agree byte for byte, so _entry reads the same arguments either way
    x = np.arange(6, dtype=np.float32).reshape(2, 3)[1:]
    frozen = np.zeros((2, 2, 2), np.int64)
    frozen.flags.writeable = False
    args = (True, x, np.int16(-2), 0.25, frozen, np.float32(3.0), 7, np.zeros(0))
    found = tasks._lookup(_mixed_store, args)
    packed = (tasks._BYTE * found.layout.size)()
    tasks._pack(found.layout, args, packed)
    put = (tasks._BYTE * found.layout.size)()
    tasks._put(ctypes.addressof(put), args)
    assert bytes(put) == bytes(packed)


@njit
def _mixed_store(flag, x, small, f, frozen, g, k, empty, i, tid):
    pass
