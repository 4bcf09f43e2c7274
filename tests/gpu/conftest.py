"""GPU-mode tests: numba's CUDA simulator stands in for a GPU unless
``CAFFEPY_TEST_REAL_GPU`` is set (tests/conftest.py sets NUMBA_ENABLE_CUDASIM
before numba is imported). Keep every case tiny: the simulator is slow."""

import pytest

from caffepy import syncedmem
from caffepy.backend import mode


@pytest.fixture
def gpu():
    """GPU mode on device 0 for one test, the copy counters reset; CPU after."""
    from caffepy.backend import cuda

    try:
        cuda.check_available(0)
    except cuda.GpuUnavailableError as exc:
        pytest.skip(str(exc))
    mode.set_device(0)
    mode.set_mode_gpu()
    syncedmem.reset_copy_counts()
    try:
        yield mode.ops()
    finally:
        mode.set_mode_cpu()
