"""SyncedMemory's head state machine, copy counts, and the Blob's device side."""

import numpy as np
import pytest

from caffepy import syncedmem
from caffepy.blob import Blob
from caffepy.errors import CaffepyError
from caffepy.syncedmem import (
    HEAD_AT_CPU,
    HEAD_AT_GPU,
    SYNCED,
    UNINITIALIZED,
    SyncedMemory,
)


@pytest.fixture(autouse=True)
def _counts():
    syncedmem.reset_copy_counts()


def test_head_moves_and_copies_only_when_needed():
    mem = SyncedMemory(4)
    assert mem.head is UNINITIALIZED and not mem.has_cpu and not mem.has_gpu
    mem.mutable_cpu_data()[:] = [1, 2, 3, 4]
    assert mem.head is HEAD_AT_CPU and not mem.has_gpu
    g = mem.gpu_data()
    assert mem.head is SYNCED
    assert syncedmem.copy_counts() == {
        "h2d": 1,
        "d2h": 0,
        "h2d_bytes": 16,
        "d2h_bytes": 0,
    }
    mem.gpu_data()
    mem.cpu_data()
    assert syncedmem.copy_counts()["h2d"] == 1, "synced: no copy"
    mem.mutable_gpu_data()[...] = g * 2
    assert mem.head is HEAD_AT_GPU
    np.testing.assert_array_equal(mem.cpu_data(), [2, 4, 6, 8])
    assert mem.head is SYNCED and syncedmem.copy_counts()["d2h"] == 1
    mem.mutable_cpu_data()
    assert mem.head is HEAD_AT_CPU
    mem.cpu_data()
    assert syncedmem.copy_counts()["d2h"] == 1
    syncedmem.reset_copy_counts()
    assert syncedmem.copy_counts()["h2d"] == 0


def test_uninitialized_gpu_side_is_zeroed_without_copy():
    mem = SyncedMemory(3)
    assert np.all(memory_host(mem.gpu_data()) == 0)
    assert mem.head is HEAD_AT_GPU and not mem.has_cpu
    assert np.all(mem.cpu_data() == 0)
    assert syncedmem.copy_counts()["h2d"] == 0


def memory_host(arr):
    from caffepy.backend.cuda import memory

    return memory.to_host(arr)


def test_blob_host_views_follow_the_device():
    b = Blob((2, 3))
    b.data[...] = 1
    g = b.mutable_gpu_data()
    assert g.shape == (2, 3) and b.data_mem.head is HEAD_AT_GPU
    g[...] = 5
    assert np.all(b.cpu_data() == 5)
    assert b.data_mem.head is SYNCED
    b.data  # noqa: B018 - pycaffe's view marks the host as head
    assert b.data_mem.head is HEAD_AT_CPU
    assert not b.has_diff
    b.mutable_gpu_diff()[...] = 2
    assert b.has_diff and np.all(b.diff == 2)


def test_share_keeps_own_shape_and_needs_equal_counts():
    a, b = Blob((2, 6)), Blob((3, 4))
    a.data[...] = np.arange(12).reshape(2, 6)
    b.share_data(a)
    b.share_diff(a)
    assert b.shape == (3, 4)
    np.testing.assert_array_equal(b.data.ravel(), np.arange(12))
    a.mutable_gpu_data()[...] = 7
    assert np.all(b.data == 7), "shared memory: b sees a's device write"
    b.diff[...] = 3
    assert np.all(a.diff == 3)
    with pytest.raises(CaffepyError, match="counts must match"):
        Blob((5,)).share_data(a)


def test_cpu_only_use_never_imports_gpu_packages():
    import subprocess
    import sys

    code = (
        "import sys; from caffepy.blob import Blob; b = Blob((3,)); b.data[...] = 1;"
        "b.diff; assert 'numba.cuda' not in sys.modules and 'cupy' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
