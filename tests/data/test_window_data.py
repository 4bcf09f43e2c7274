"""WindowData (R-CNN window files) on tiny images written by the test.

Uniform-colour images make the expected output independent of the resize: a
window of one colour warps to that colour, and the context padding Caffe leaves
at 0 is computed by hand from its rules in each test."""

from __future__ import annotations

import numpy as np
import pytest

import caffepy
from caffepy.blob import Blob
from caffepy.errors import DataError, LayerError
from caffepy.layer import TRAIN
from caffepy.testing import layer_from_text

cv2 = pytest.importorskip("cv2")

COLOURS = [(10, 20, 30), (200, 100, 50), (1, 2, 3)]  # BGR


@pytest.fixture
def images(tmp_path):
    """Three 20x20 uniform images; a window file with fg and bg windows."""
    for i, colour in enumerate(COLOURS):
        cv2.imwrite(
            str(tmp_path / f"im{i}.png"), np.full((20, 20, 3), colour, np.uint8)
        )
    text = (
        "# 0\nim0.png\n3 20 20\n2\n"
        "3 0.9 0 0 9 9\n"  # foreground, label 3
        "7 0.2 5 5 14 14\n"  # background (label forced to 0)
        "# 1\nim1.png\n3 20 20\n1\n"
        "5 0.7 2 3 12 15\n"  # foreground, label 5
        "# 2\nim2.png\n3 20 20\n2\n"
        "1 0.4 0 0 19 19\n"  # background
        "2 0.45 1 1 5 5\n"  # between bg_threshold 0.3 and fg 0.5: unused
    )
    (tmp_path / "windows.txt").write_text(text)
    return tmp_path


def _layer(folder, params="", transform="crop_size: 10", batch=8):
    text = (
        'name: "w" type: "WindowData" top: "data" top: "label" '
        f"transform_param {{ {transform} }} "
        f'window_data_param {{ source: "{folder}/windows.txt" root_folder: '
        f'"{folder}/" batch_size: {batch} {params} }}'
    )
    layer = layer_from_text(text, TRAIN)
    top = [Blob(), Blob()]
    layer.SetUp([], top)
    return layer, top


def _colour_of(item):
    """The colour (BGR) of a uniform item."""
    return tuple(int(v) for v in item[:, 5, 5])


def test_window_data_fg_bg_split_labels_and_warp(images):
    caffepy.set_random_seed(5)
    layer, top = _layer(images, "fg_threshold: 0.5 bg_threshold: 0.42")
    assert top[0].shape == (8, 3, 10, 10) and top[1].shape == (8,)
    seen = set()
    for _ in range(10):
        layer.Forward([], top)
        labels = top[1].data
        # int(8 * 0.25) = 2 foreground windows, after 6 background ones.
        np.testing.assert_array_equal(labels[:6], 0)
        assert set(labels[6:]) <= {3, 5}
        for item, label in zip(top[0].data, labels):
            colour = _colour_of(item)
            # warp mode, no context: the whole crop is the window's colour
            want = np.broadcast_to(np.reshape(colour, (3, 1, 1)), item.shape)
            np.testing.assert_array_equal(item, want)
            if label == 3:
                assert colour == COLOURS[0]
            elif label == 5:
                assert colour == COLOURS[1]
            else:  # background: image 0's or image 2's (0.45 is not < 0.42)
                assert colour in (COLOURS[0], COLOURS[2])
            seen.add((int(label), colour))
    assert seen == {(3, COLOURS[0]), (5, COLOURS[1]), (0, COLOURS[0]), (0, COLOURS[2])}


def test_window_data_context_pad_mean_scale_and_mirror(images):
    """Window (0,0)-(9,9) of image 0 with context_pad 2, crop 10: the grown box
    is (-3,-3)-(13,13), 17 wide; clipped to 0..13 it warps to round(14*10/17) =
    8 pixels after round(3*10/17) = 2 of zero padding (mirrored: after it)."""
    params = "fg_fraction: 1 context_pad: 2 scale: 0.5"
    transform = "crop_size: 10 mirror: true mean_value: 1 mean_value: 2 mean_value: 3"
    caffepy.set_random_seed(1)
    layer, top = _layer(images, params, transform, batch=16)
    layer.fg = layer.fg[:1]  # only the first foreground window
    want = (np.array(COLOURS[0], np.float32) - [1, 2, 3]) * 0.5
    flips = set()
    for _ in range(3):
        layer.Forward([], top)
        for item in top[0].data:
            np.testing.assert_array_equal(item[:, :2, :], 0)
            flipped = item[0, 5, 0] != 0
            flips.add(flipped)
            cols = slice(0, 8) if flipped else slice(2, 10)
            pad = slice(8, 10) if flipped else slice(0, 2)
            np.testing.assert_array_equal(item[:, 2:, pad], 0)
            np.testing.assert_allclose(
                item[:, 2:, cols], np.broadcast_to(want[:, None, None], (3, 8, 8))
            )
    assert flips == {True, False}


def test_window_data_square_mode_matches_the_square_crop(images, tmp_path):
    """crop_mode square: box x 8..11, y 5..14 grows to its longer side, 5..15
    in both axes: the output is that 11x11 square resized (a gradient image)."""
    gradient = np.zeros((20, 20, 3), np.uint8)
    gradient[..., 0] = np.arange(20)[None, :] * 10
    gradient[..., 1] = np.arange(20)[:, None] * 5
    cv2.imwrite(str(tmp_path / "grad.png"), gradient)
    (tmp_path / "windows.txt").write_text(
        "# 0\ngrad.png\n3 20 20\n1\n1 1.0 8 5 11 14\n"
    )
    layer, top = _layer(tmp_path, 'fg_fraction: 1 crop_mode: "square"', batch=1)
    layer.Forward([], top)
    want = cv2.resize(gradient[5:16, 5:16], (10, 10), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(top[0].data[0], want.transpose(2, 0, 1))
    # the same window in warp mode is the narrow box stretched: different
    layer, top = _layer(tmp_path, "fg_fraction: 1", batch=1)
    layer.Forward([], top)
    assert not np.array_equal(top[0].data[0], want.transpose(2, 0, 1))


def test_window_data_same_seed_same_batches(images):
    batches = []
    for _ in range(2):
        caffepy.set_random_seed(9)
        layer, top = _layer(images, "", "crop_size: 10 mirror: true")
        layer.Forward([], top)
        batches.append((top[0].data.copy(), top[1].data.copy()))
    np.testing.assert_array_equal(batches[0][0], batches[1][0])
    np.testing.assert_array_equal(batches[0][1], batches[1][1])


@pytest.mark.parametrize(
    "content, match",
    [
        ("", "is empty"),
        (
            "# 0\nim0.png\n3 20 20\n1\n3 0.9 0 zero 9 9\n",
            r"windows.txt:5: expected y1 \(int\), got .zero.",
        ),
        ("# 0\nim0.png\n3 20 20\n2\n3 0.9 0 0 9 9\n", "the file ends where a label"),
        ("0\nim0.png\n", r"windows.txt:1: expected '# <image index>'"),
    ],
)
def test_window_file_errors_name_the_line(images, content, match):
    (images / "windows.txt").write_text(content)
    with pytest.raises(DataError, match=match):
        _layer(images)


def test_window_data_parameter_errors(images):
    with pytest.raises(LayerError, match="crop_size must be > 0"):
        _layer(images, transform="mirror: false")
    with pytest.raises(LayerError, match="crop_mode must be 'warp' or 'square'"):
        _layer(images, 'crop_mode: "round"')
    with pytest.raises(LayerError, match="no foreground windows"):
        _layer(images, "fg_threshold: 0.95")
    (images / "windows.txt").write_text("# 0\nmissing.png\n3 20 20\n1\n1 0.1 0 0 3 3\n")
    layer, top = _layer(images, "fg_fraction: 0", batch=1)
    with pytest.raises(DataError, match="cannot read image .*missing.png"):
        layer.Forward([], top)
