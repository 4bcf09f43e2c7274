"""The main job end to end, through the `caffepy` command: LeNet on Fashion-MNIST
to >= 0.87 test accuracy in 2,000 iterations, fine-tuning with frozen layers, and
a resumed run that ends bit-identical to an uninterrupted one."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from caffepy.io.blobproto import array_from_proto
from caffepy.io.prototxt import read_weights
from tests.conftest import ROOT

FASHION = "/usr/share/datasets/fashion-mnist"


def caffepy_cmd(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run(
        [sys.executable, "-m", "caffepy.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=1500,
        env=env,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A working directory laid out as the repository: models/lenet and data/."""
    if not os.path.isdir(FASHION):
        if os.environ.get("CI"):
            raise RuntimeError(f"{FASHION} missing in CI: .ci/run installs it")
        pytest.skip("dataset-fashion-mnist is not installed")
    work = tmp_path_factory.mktemp("lenet")
    shutil.copytree(
        ROOT / "models" / "lenet",
        work / "models" / "lenet",
        ignore=shutil.ignore_patterns("snapshots"),
    )
    caffepy_cmd("data", "fashion-mnist", "data", "--no-download", cwd=work)
    return work


def weights(path):
    net = read_weights(path)
    return {
        lp.name: [array_from_proto(b) for b in lp.blobs] for lp in net.layer if lp.blobs
    }


@pytest.mark.slow
def test_train_lenet_2000_then_finetune(workdir):
    caffepy_cmd("train", "--solver", "models/lenet/solver_2000.prototxt", cwd=workdir)
    snap = workdir / "models/lenet/snapshots"
    model = snap / "lenet_iter_2000.caffemodel"
    assert model.is_file() and (snap / "lenet_iter_2000.solverstate").is_file()
    records = [
        json.loads(line)
        for line in (snap / "lenet_metrics.jsonl").read_text().splitlines()
    ]
    tests = [r for r in records if "test/accuracy" in r]
    assert [r["iter"] for r in tests] == [0, 1000, 2000]
    assert tests[-1]["test/accuracy"] >= 0.87, tests
    assert sum(1 for r in records if "loss" in r) == 2000

    res = caffepy_cmd(
        "finetune",
        "--solver",
        "models/lenet/finetune_solver.prototxt",
        "--weights",
        str(model),
        cwd=workdir,
    )
    assert "ip2_ft" in res.stderr and "new" in res.stderr  # the weights table
    before, after = weights(model), weights(snap / "lenet_ft_iter_500.caffemodel")
    for frozen in ("conv1", "conv2"):
        for a, b in zip(before[frozen], after[frozen]):
            np.testing.assert_array_equal(a, b)  # bit-identical
    assert not np.array_equal(before["ip1"][0], after["ip1"][0])
    ft = [
        json.loads(line)
        for line in (snap / "lenet_ft_metrics.jsonl").read_text().splitlines()
    ]
    assert [r for r in ft if "test/accuracy" in r][-1]["test/accuracy"] >= 0.85


def _short_solver(work, filename, prefix, max_iter, snapshot):
    text = (work / "models/lenet/solver_2000.prototxt").read_text()
    text = text.replace("max_iter: 2000", f"max_iter: {max_iter}")
    text = text.replace("snapshot: 2000", f"snapshot: {snapshot}")
    text = text.replace("test_interval: 1000", "test_interval: 25")
    text = text.replace("test_iter: 100", "test_iter: 2")
    text = text.replace('snapshots/lenet"', f'snapshots/{prefix}"')
    path = work / "models" / "lenet" / f"{filename}.prototxt"
    path.write_text(text + "random_seed: 7\n")
    return str(path.relative_to(work))


def test_resume_is_bit_identical(workdir):
    """Stopped at 15 and resumed, a run ends bit-identical to the uninterrupted one
    (the data cursor and random state are restored, unlike in BVLC Caffe)."""
    caffepy_cmd(
        "train", "--solver", _short_solver(workdir, "full", "full", 40, 40), cwd=workdir
    )
    caffepy_cmd(
        "train", "--solver", _short_solver(workdir, "p15", "part", 15, 15), cwd=workdir
    )
    snap = workdir / "models/lenet/snapshots"
    caffepy_cmd(
        "train",
        "--solver",
        _short_solver(workdir, "p40", "part", 40, 40),
        "--snapshot",
        str(snap / "part_iter_15.solverstate"),
        cwd=workdir,
    )
    a = weights(snap / "full_iter_40.caffemodel")
    b = weights(snap / "part_iter_40.caffemodel")
    assert a.keys() == b.keys()
    for name in a:
        for x, y in zip(a[name], b[name]):
            np.testing.assert_array_equal(x, y)
