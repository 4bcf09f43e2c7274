"""bench/gpu.py: the one-line exit without a GPU, the table, the README block,
and (slow) the whole harness end to end on the simulator with CPU PyTorch."""

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

BENCH = ROOT / "bench"


@pytest.fixture
def gpu_bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import gpu

    return gpu


def _run(*args, timeout=600):
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    return subprocess.run(
        [sys.executable, str(BENCH / "gpu.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def test_without_a_gpu_it_says_so_in_one_line_and_exits_0(gpu_bench):
    if gpu_bench.unavailable() is None:
        pytest.skip("a usable GPU is present")
    proc = _run()
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench/gpu.py: skipped, ")


def _rounds(ms_c, ms_t):
    train = {"ms": ms_c, "mem_mib": 10.0, "graph": "yes", "first_iter_s": 3.0}
    return {
        "caffepy": [{"train:lenet:b64": train}],
        "torch": [{"train:lenet:b64": {"ms": ms_t, "mem_mib": 20.0,
                                       "first_iter_s": 2.0}}],
    }  # fmt: skip


def test_table_has_the_ratio_and_first_iteration(gpu_bench):
    case = {"id": "train:lenet:b64", "kind": "train", "model": "lenet", "batch": 64}
    text = gpu_bench.table([case], _rounds(1.0, 1.7))
    assert "| train lenet b64 | 1.00 | 1.70 | 1.70 | 10 | 20 | yes |" in text
    assert "caffepy 3.00 s, PyTorch 2.00 s" in text
    failed = gpu_bench.table([case], {"caffepy": [{}], "torch": [{}]})
    assert "| train lenet b64 | - | - | - | - | - | caffepy failed |" in failed
    skipped = {"train:lenet:b64": {"skipped": "out of the 9 s budget"}}
    text = gpu_bench.table([case], {"caffepy": [skipped], "torch": [skipped]})
    assert "| - | not run (out of the 9 s budget) |" in text


def test_write_readme_replaces_only_the_block(gpu_bench, tmp_path, monkeypatch):
    readme = tmp_path / "README.md"
    readme.write_text(
        f"# bench\nkeep\n{gpu_bench.BEGIN}\nold\n{gpu_bench.END}\nafter\n"
    )
    monkeypatch.setattr(gpu_bench, "README", str(readme))
    gpu_bench.write_readme("NEW TABLE")
    text = readme.read_text()
    assert "old" not in text and "NEW TABLE" in text
    assert text.startswith("# bench\nkeep\n") and text.endswith("after\n")


def test_the_real_readme_has_the_block(gpu_bench):
    text = (BENCH / "README.md").read_text()
    assert gpu_bench.BEGIN in text and gpu_bench.END in text


@pytest.mark.slow
def test_smoke_run_produces_a_table():
    proc = _run("--smoke")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "GPU: none (smoke run" in out
    for row in ("| train smoke b2 | ", "| deploy smoke b1 | "):
        line = next(ln for ln in out.splitlines() if ln.startswith(row))
        cells = [c.strip() for c in line.split("|")[2:5]]
        assert all(c != "-" for c in cells), line  # both timed, ratio computed
    assert "no: numba's CUDA simulator has no CUDA graphs" in out
