"""The bad-input catalogue: every case in ``tests/bad_inputs/`` through the CLI.

Each case folder holds the broken input files and a ``case.json``:

    about    the mistake, in one sentence
    recipe   optional [[recipe, path, {kwargs}], ...]: binary inputs built at
             test time (see ``bad_inputs/recipes.py``)
    args     the ``caffepy`` command line, run in a copy of the folder
    expect   substrings that must all appear in the one error line
    expect_any  optional substrings of which at least one must appear there
    needs    optional "no_gpu": run only where no GPU is usable
    env      optional environment variables of the command (CAFFEPY_MEMORY_LIMIT)
    address_space  optional bytes of address space the command may map
             (RLIMIT_AS): a refusal that comes too late fails to allocate
             instead of filling the machine's memory
    exit     the exit code (default 1: a caffepy error; click's usage errors are 2)

A case passes when the command exits with that code, prints no traceback, and
one line of its stderr (``caffepy: error: ...`` or click's ``Error: ...``) holds
every expected substring.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bad_inputs.recipes import build, release_locks

ROOT = Path(__file__).resolve().parents[1]
CASES_DIR = Path(__file__).resolve().parent / "bad_inputs"
CASES = sorted(p.name for p in CASES_DIR.iterdir() if (p / "case.json").is_file())


def _load(name):
    with open(CASES_DIR / name / "case.json", encoding="utf-8") as f:
        return json.load(f)


def _limit_address_space(nbytes):
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (nbytes, nbytes))

    return limit


def run_cli(args, cwd, timeout=120, extra_env=None, address_space=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    env.pop("CAFFEPY_DEBUG", None)
    # NOTE: the GPU tests may run numba's CUDA simulator; a user's command does not.
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, "-m", "caffepy.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=address_space and _limit_address_space(int(address_space)),
    )


def error_line(stderr):
    """The error line of a failed command (caffepy's or click's), or None."""
    for line in reversed(stderr.splitlines()):
        if line.startswith(("caffepy: error: ", "Error: ")):
            return line
    return None


def test_catalogue_is_large_enough():
    assert len(CASES) >= 40, f"only {len(CASES)} cases in {CASES_DIR}"
    for name in CASES:
        case = _load(name)
        assert case.get("about") and case.get("args"), name
        assert case.get("expect") or case.get("expect_any"), name


def _gpu_present():
    return os.path.exists("/dev/nvidia0") or bool(
        os.environ.get("CAFFEPY_TEST_REAL_GPU")
    )


@pytest.mark.parametrize("name", CASES)
def test_bad_input(name, tmp_path):
    case = _load(name)
    if case.get("needs") == "no_gpu" and _gpu_present():
        pytest.skip("a GPU is present: this case needs a machine without one")
    work = tmp_path / name
    shutil.copytree(CASES_DIR / name, work)
    try:
        build(work, case.get("recipe", []))
        res = run_cli(
            case["args"],
            cwd=work,
            extra_env=case.get("env"),
            address_space=case.get("address_space"),
        )
    finally:
        release_locks()
    out = res.stdout + res.stderr
    assert "Traceback" not in out, out
    assert res.returncode == case.get("exit", 1), out
    line = error_line(res.stderr)
    assert line is not None, f"no error line in:\n{res.stderr}"
    missing = [s for s in case.get("expect", []) if s not in line]
    assert not missing, f"{missing} not in the error line:\n{line}"
    anyof = case.get("expect_any", [])
    assert not anyof or any(s in line for s in anyof), (
        f"none of {anyof} in the error line:\n{line}"
    )
