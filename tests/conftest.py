import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / ".." / "shared"
FIXTURES = SHARED / "fixtures"
GOLDEN = FIXTURES / "caffe-golden"
SEED = 1701


def require_fixtures():
    if not FIXTURES.is_dir():
        if os.environ.get("CI"):
            raise RuntimeError(f"{FIXTURES} is missing in CI")
        pytest.skip(f"{FIXTURES} absent (a checkout without ../shared)")


@pytest.fixture(autouse=True)
def _seed():
    """One seed for every test: numpy's legacy RNG and caffepy's."""
    from caffepy import rng

    np.random.seed(SEED)
    rng.set_random_seed(SEED)
    yield


@pytest.fixture
def golden():
    require_fixtures()
    return GOLDEN
