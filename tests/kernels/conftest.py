"""Fixtures shared by the kernel tests."""

import numba
import pytest


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    before = numba.get_num_threads()
    n = min(request.param, numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(n)
    yield n
    numba.set_num_threads(before)
