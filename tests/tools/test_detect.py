"""caffepy detect: pycaffe's detect.py (--crop_mode list) against a numpy oracle
on a linear net, CSV and HDF5 outputs, and its errors."""

import csv

import numpy as np
import pytest
from click.testing import CliRunner

from caffepy.cli import cli
from caffepy.errors import DataError, UnsupportedError
from caffepy.tools.detect import detect, read_windows
from tests.tools.test_classify import CLASSES, tiny_net  # noqa: F401 (fixture)

WINDOWS = [  # ymin, xmin, ymax, xmax: 6 x 6 windows, so no resize
    ("a.png", (0, 0, 6, 6)),
    ("b.png", (3, 5, 9, 11)),
    ("a.png", (6, 8, 12, 14)),
]


@pytest.fixture
def scene(tmp_path, monkeypatch):
    """Two RGB images and a windows CSV (columns in another order than pycaffe's)."""
    import cv2

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(4)
    pixels = {}
    for name in ("a.png", "b.png"):
        rgb = rng.integers(0, 256, (12, 14, 3), dtype=np.uint8)
        cv2.imwrite(name, rgb[:, :, ::-1])  # OpenCV writes BGR
        pixels[name] = rgb / 255.0
    with open("windows.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["xmin", "ymin", "filename", "xmax", "ymax", "note"])
        for name, (y0, x0, y1, x1) in WINDOWS:
            out.writerow([x0, y0, name, x1, y1, "x"])
    return pixels


def _oracle(pixels, weight, bias):
    """Windows grouped by image in first-appearance order, W @ x + b each."""
    rows = []
    for image in ("a.png", "b.png"):
        for name, (y0, x0, y1, x1) in WINDOWS:
            if name != image:
                continue
            crop = pixels[name][y0:y1, x0:x1]
            x = crop.transpose(2, 0, 1)[[2, 1, 0]] * 255.0
            rows.append((name, (y0, x0, y1, x1), weight @ x.reshape(-1) + bias))
    return rows


def test_read_windows_groups_by_image(scene):
    assert read_windows("windows.csv") == [
        ("a.png", [(0, 0, 6, 6), (6, 8, 12, 14)]),
        ("b.png", [(3, 5, 9, 11)]),
    ]


def test_csv_output_matches_oracle(scene, tiny_net):  # noqa: F811
    model, weights, weight, bias = tiny_net
    res = CliRunner().invoke(
        cli,
        [
            "detect",
            "windows.csv",
            "out.csv",
            "--model_def",
            model,
            "--pretrained_model",
            weights,
            "--context_pad",
            "0",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "Scored 3 windows" in res.output
    with open("out.csv", newline="") as f:
        rows = list(csv.reader(f))
    classes = [f"class{k}" for k in range(CLASSES)]
    assert rows[0] == ["filename", "ymin", "xmin", "ymax", "xmax", *classes]
    want = _oracle(scene, weight, bias)
    assert len(rows) == 1 + len(want)
    for row, (name, window, scores) in zip(rows[1:], want):
        assert row[0] == name and tuple(int(v) for v in row[1:5]) == window
        got = np.array([float(v) for v in row[5:]])
        np.testing.assert_allclose(got, scores, rtol=1e-4, atol=1e-3)


def test_hdf5_output(scene, tiny_net):  # noqa: F811
    import h5py

    model, weights, weight, bias = tiny_net
    count, _ = detect("windows.csv", "out.h5", model, weights, context_pad=0)
    assert count == 3
    want = _oracle(scene, weight, bias)
    with h5py.File("out.h5", "r") as f:
        names = [n.decode() for n in f["filename"][()]]
        assert names == [name for name, _, _ in want]
        np.testing.assert_array_equal(f["window"][()], [w for _, w, _ in want])
        np.testing.assert_allclose(
            f["prediction"][()], [s for _, _, s in want], rtol=1e-4, atol=1e-3
        )


def test_context_pad_runs(scene, tiny_net):  # noqa: F811
    model, weights, _, _ = tiny_net
    assert detect("windows.csv", "out.csv", model, weights, context_pad=1)[0] == 3
    with pytest.raises(DataError, match="leaves no room"):
        detect("windows.csv", "out.csv", model, weights, context_pad=3)


def test_errors(scene, tiny_net):  # noqa: F811
    model, weights, _, _ = tiny_net
    with pytest.raises(UnsupportedError, match="selective_search is not available"):
        detect("windows.csv", "o.csv", model, weights, crop_mode="selective_search")
    with pytest.raises(DataError, match=r"write \.csv, \.h5 or \.hdf5"):
        detect("windows.csv", "o.txt", model, weights)
    with open("bad.csv", "w") as f:
        f.write("filename,ymin,xmin,ymax\na.png,1,2,3\n")
    with pytest.raises(DataError, match="lacks \\['xmax'\\]"):
        detect("bad.csv", "o.csv", model, weights)
    with open("bad2.csv", "w") as f:
        f.write("filename,ymin,xmin,ymax,xmax\na.png,1,2,three,4\n")
    with pytest.raises(DataError, match="bad2.csv:2:"):
        read_windows("bad2.csv")
