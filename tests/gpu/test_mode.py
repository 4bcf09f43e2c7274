"""Mode and device API (pycaffe names) and the one-line GPU errors."""

import builtins

import pytest

import caffepy
from caffepy.backend import cuda, mode
from caffepy.errors import CaffepyError, GpuUnavailableError


def test_gpu_error_is_a_caffepy_error():
    assert issubclass(GpuUnavailableError, CaffepyError)


def test_set_mode_gpu_and_back(gpu):
    assert mode.get_mode() == mode.GPU and gpu.name == "cuda"
    caffepy.set_mode_cpu()
    assert mode.ops().name == "cpu"
    caffepy.set_device(0)
    caffepy.set_mode_gpu()
    assert mode.ops().name == "cuda"


def test_missing_device_is_one_line(gpu):
    with pytest.raises(GpuUnavailableError) as err:
        cuda.check_available(3)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("device 3 does not exist (")
    with pytest.raises(GpuUnavailableError):
        caffepy.set_device(3)
    mode.set_device(0)


def test_missing_packages_say_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_gpu(name, *args, **kwargs):
        if name in ("numba.cuda", "cupy") or (
            name == "numba" and args and args[2] and "cuda" in args[2]
        ):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gpu)
    with pytest.raises(GpuUnavailableError) as err:
        cuda.check_available(0)
    assert "pip install 'caffepy[gpu]'" in str(err.value)
    assert "\n" not in str(err.value)
    assert mode.get_mode() == mode.CPU


def test_no_device(monkeypatch):
    fake = type(
        "FakeCuda", (), {"is_available": staticmethod(lambda: False), "gpus": []}
    )
    monkeypatch.setattr(cuda.memory, "import_numba_cuda", lambda: fake)
    with pytest.raises(GpuUnavailableError, match=r"^no CUDA device"):
        cuda.check_available(0)


def test_device_query_lists_properties(gpu):
    text = cuda.device_query(0)
    assert "Device id: 0" in text and "Major revision number" in text
    assert "Total global memory" in text
