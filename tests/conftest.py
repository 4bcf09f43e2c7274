import os
import sys
from pathlib import Path

# NOTE: numba reads NUMBA_ENABLE_CUDASIM when it is first imported, so GPU-mode
# tests run on numba's CUDA simulator unless a real GPU is asked for.
if not os.path.exists("/dev/nvidia0") and not os.environ.get("CAFFEPY_TEST_REAL_GPU"):
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
    if "numba" in sys.modules:  # imported early by a filterwarnings category
        from numba.core import config as _numba_config

        _numba_config.reload_config()

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / ".." / "shared"
FIXTURES = SHARED / "fixtures"
GOLDEN = FIXTURES / "caffe-golden"
SEED = 1701

#: Suites that start a caffepy process per test (kill -9, signals, concurrent
#: readers, the bad-input catalogue, the commands end to end): marked slow, so
#: `make test-fast` (-m "not slow") skips them; `make test` runs everything.
SLOW_MODULES = {
    "tests/test_bad_inputs.py",
    "tests/test_commands.py",
    "tests/test_concurrency.py",
    "tests/test_crash_safety.py",
}


def pytest_addoption(parser):
    parser.addoption(
        "--no-torch",
        action="store_true",
        help="block `import torch` (as if it were not installed): oracle tests are "
        "skipped, every other test must run, and a module skipped whole fails",
    )


def pytest_configure(config):
    if config.getoption("--no-torch"):
        torch = sys.modules.get("torch")
        if torch is not None:
            raise pytest.UsageError("--no-torch: torch was imported before the tests")
        # NOTE: None in sys.modules makes `import torch` raise ImportError.
        sys.modules["torch"] = None


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.split("::", 1)[0] in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    report = yield
    # NOTE: without torch, a whole module skipped means it imports torch at the
    # top (or importorskips it): its gradient, error and in-place tests would then
    # silently not run. Report that as a collection error.
    blocked = collector.config.getoption("--no-torch")
    if blocked and report.skipped and "torch" in str(report.longrepr):
        report.outcome = "failed"
        report.longrepr = (
            f"{collector.nodeid}: skipped whole without torch ({report.longrepr}); "
            'import oracles lazily: torch = caffepy.testing.lazy_module("torch")'
        )
    return report


def require_fixtures():
    if not FIXTURES.is_dir():
        if os.environ.get("CI"):
            raise RuntimeError(f"{FIXTURES} is missing in CI")
        pytest.skip(f"{FIXTURES} absent (a checkout without ../shared)")


@pytest.fixture(autouse=True)
def _caffepy_logger():
    """Each test starts with the ``caffepy`` logger as it found it: a command run
    in-process (``cli.main``) points it at its own stream and stops propagation,
    which would hide later tests' records from ``caplog``."""
    import logging

    logger = logging.getLogger("caffepy")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    yield
    logger.handlers[:] = saved[0]
    logger.propagate, logger.level = saved[1], saved[2]


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
