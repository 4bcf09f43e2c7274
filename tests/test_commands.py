"""The train-side commands on a small LeNet: test, time, finetune --freeze/--lr-mult,
convert_imageset and compute_image_mean through the CLI."""

import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from caffepy.io.blobproto import array_from_proto, read_binaryproto
from caffepy.io.prototxt import read_weights
from tests.conftest import ROOT

FASHION = "/usr/share/datasets/fashion-mnist"


def run(*args, cwd, ok=True):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run(
        [sys.executable, "-m", "caffepy.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    if ok:
        assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    if not os.path.isdir(FASHION):
        if os.environ.get("CI"):
            raise RuntimeError(f"{FASHION} missing in CI")
        pytest.skip("dataset-fashion-mnist is not installed")
    from caffepy.tools.fashion_mnist import make_fashion_mnist_lmdbs

    w = tmp_path_factory.mktemp("cmd")
    shutil.copytree(
        ROOT / "models" / "lenet",
        w / "models" / "lenet",
        ignore=shutil.ignore_patterns("snapshots"),
    )
    make_fashion_mnist_lmdbs(
        str(w / "data"), source_dir=FASHION, download=False, limit=400
    )
    solver = (w / "models/lenet/solver_2000.prototxt").read_text()
    solver = (
        solver.replace("max_iter: 2000", "max_iter: 30")
        .replace("snapshot: 2000", "snapshot: 30")
        .replace("test_interval: 1000", "test_interval: 30")
        .replace("test_iter: 100", "test_iter: 2")
    )
    (w / "models/lenet/tiny.prototxt").write_text(solver)
    run("train", "--solver", "models/lenet/tiny.prototxt", cwd=w)
    return w


def test_test_command_scores(work):
    res = run(
        "test",
        "--model",
        "models/lenet/train_val.prototxt",
        "--weights",
        "models/lenet/snapshots/lenet_iter_30.caffemodel",
        "--iterations",
        "2",
        cwd=work,
    )
    lines = dict(line.split(" = ") for line in res.stdout.splitlines() if " = " in line)
    assert 0 <= float(lines["accuracy"]) <= 1 and float(lines["loss"]) > 0


def test_time_command_reports_layers_and_frozen_skip(work):
    res = run(
        "time",
        "--model",
        "models/lenet/finetune_train_val.prototxt",
        "--iterations",
        "2",
        cwd=work,
    )
    out = res.stdout
    for layer in ("conv1", "pool2", "ip1", "ip2_ft", "loss"):
        assert layer in out
    conv1 = next(line for line in out.splitlines() if line.strip().startswith("conv1"))
    assert "no backward" in conv1, "frozen bottom layers must cost no backward work"
    assert "Average Forward-Backward" in out


def test_finetune_freeze_and_lr_mult(work):
    src = "models/lenet/snapshots/lenet_iter_30.caffemodel"
    solver = (
        (work / "models/lenet/tiny.prototxt")
        .read_text()
        .replace('snapshots/lenet"', 'snapshots/frozen"')
    )
    (work / "models/lenet/tiny_ft.prototxt").write_text(solver)
    res = run(
        "finetune",
        "--solver",
        "models/lenet/tiny_ft.prototxt",
        "--weights",
        src,
        "--freeze",
        "conv*",
        "--lr-mult",
        "ip2=10",
        cwd=work,
    )
    assert "conv1" in res.stderr and "copied" in res.stderr
    before = {lp.name: lp.blobs for lp in read_weights(work / src).layer}
    after = {
        lp.name: lp.blobs
        for lp in read_weights(
            work / "models/lenet/snapshots/frozen_iter_30.caffemodel"
        ).layer
    }
    for name in ("conv1", "conv2"):
        np.testing.assert_array_equal(
            array_from_proto(before[name][0]), array_from_proto(after[name][0])
        )
    assert not np.array_equal(
        array_from_proto(before["ip2"][0]), array_from_proto(after["ip2"][0])
    )
    bad = run(
        "finetune",
        "--solver",
        "models/lenet/tiny_ft.prototxt",
        "--weights",
        src,
        "--lr-mult",
        "ip2",
        cwd=work,
        ok=False,
    )
    assert bad.returncode == 2 and "PATTERN=MULT" in bad.stderr


def test_convert_imageset_and_mean_commands(tmp_path):
    gen = np.random.default_rng(1701)
    root = tmp_path / "imgs"
    root.mkdir()
    lines = []
    for i in range(6):
        img = gen.integers(0, 256, (10 + i, 12, 3), dtype=np.uint8)
        cv2.imwrite(str(root / f"im{i}.png"), img)
        lines.append(f"im{i}.png {i % 3}")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    res = run(
        "convert_imageset",
        "--resize_height",
        "8",
        "--resize_width",
        "8",
        str(root) + "/",
        str(tmp_path / "list.txt"),
        str(tmp_path / "db"),
        cwd=tmp_path,
    )
    assert "6" in res.stdout
    again = run(
        "convert_imageset",
        str(root) + "/",
        str(tmp_path / "list.txt"),
        str(tmp_path / "db"),
        cwd=tmp_path,
        ok=False,
    )
    assert again.returncode == 1 and "exists" in again.stderr
    res = run(
        "compute_image_mean",
        str(tmp_path / "db"),
        str(tmp_path / "mean.bp"),
        cwd=tmp_path,
    )
    mean = read_binaryproto(tmp_path / "mean.bp")
    assert mean.shape == (1, 3, 8, 8)
    assert "channel [2]" in res.stdout
