"""caffepy classify: pycaffe's classify.py against a numpy oracle of the same
preprocessing (crops, mirror, channel swap, scales, mean) on a linear net."""

import numpy as np
import pytest
from click.testing import CliRunner

from caffepy.cli import cli
from caffepy.errors import DataError
from caffepy.tools.classify import classify, load_mean

DEPLOY = """name: "tiny"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 3 dim: 6 dim: 6 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "score"
        inner_product_param { num_output: 4 } }
"""
CLASSES = 4


@pytest.fixture
def tiny_net(tmp_path):
    """A deploy net scoring W @ x + b, with known W and b saved as weights."""
    import caffepy

    model = tmp_path / "deploy.prototxt"
    model.write_text(DEPLOY)
    net = caffepy.Net(str(model), caffepy.TEST)
    rng = np.random.default_rng(3)
    weight = rng.uniform(-1, 1, (CLASSES, 3 * 6 * 6)).astype(np.float32)
    bias = rng.uniform(-1, 1, CLASSES).astype(np.float32)
    net.params["ip"][0].data[...] = weight
    net.params["ip"][1].data[...] = bias
    weights = tmp_path / "tiny.caffemodel"
    net.save(str(weights))
    return str(model), str(weights), weight, bias


def oracle(images, weight, bias, oversample, raw_scale, swap, mean, input_scale):
    """Loops over crops: W @ preprocess(crop) + b, averaged over the crops."""
    out = []
    for im in images:  # 8 x 8 x 3, so no resize
        corners = [(0, 0), (0, 2), (2, 0), (2, 2), (1, 1)]
        if not oversample:
            corners = [(1, 1)]
        crops = [im[y : y + 6, x : x + 6] for y, x in corners]
        if oversample:
            crops += [c[:, ::-1] for c in crops]
        scores = []
        for crop in crops:
            x = crop.transpose(2, 0, 1)[list(swap)].astype(np.float64) * raw_scale
            x = (x - np.asarray(mean, np.float64)[:, None, None]) * input_scale
            scores.append(weight.astype(np.float64) @ x.reshape(-1) + bias)
        out.append(np.mean(scores, axis=0))
    return np.array(out)


def _images(n=3, seed=5):
    return np.random.default_rng(seed).uniform(0, 1, (n, 8, 8, 3)).astype(np.float32)


@pytest.mark.parametrize("center_only", [False, True])
def test_npy_inputs_match_oracle(tiny_net, tmp_path, center_only):
    model, weights, weight, bias = tiny_net
    images = _images()
    np.save(tmp_path / "in.npy", images)
    mean = np.random.default_rng(1).uniform(0, 200, (3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "mean.npy", mean)
    out = tmp_path / "pred.npy"
    result = classify(
        [str(tmp_path / "in.npy")],
        str(out),
        model,
        weights,
        center_only=center_only,
        images_dim=(8, 8),
        mean_file=str(tmp_path / "mean.npy"),
        input_scale=0.5,
        raw_scale=255.0,
    )
    want = oracle(
        images,
        weight,
        bias,
        not center_only,
        255.0,
        (2, 1, 0),  # the default for a 3-channel input
        mean.mean(axis=(1, 2)),
        0.5,
    )
    saved = np.load(out)
    assert saved.shape == (3, CLASSES) and saved.dtype == np.float32
    np.testing.assert_allclose(saved, want, rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(result.predictions, saved)
    assert result.names == [f"{tmp_path / 'in.npy'}[{i}]" for i in range(3)]


def test_folder_of_pngs_and_top_k_labels(tiny_net, tmp_path):
    import cv2

    model, weights, weight, bias = tiny_net
    pixels = (_images(seed=9) * 255).round().astype(np.uint8)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, rgb in enumerate(pixels):
        cv2.imwrite(str(folder / f"im{i}.png"), rgb[:, :, ::-1])  # OpenCV's BGR
    (folder / "ignored.txt").write_text("not an image")
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nbird\nfish\n")
    out = tmp_path / "pred.npy"
    args = [
        "classify",
        str(folder),
        str(out),
        "--model_def",
        model,
        "--pretrained_model",
        weights,
        "--images_dim",
        "8,8",
        "--ext",
        "png",
        "--channel_swap",
        "0,1,2",
        "--raw_scale",
        "1",
        "--labels",
        str(labels),
        "--top-k",
        "2",
    ]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    want = oracle(pixels / 255.0, weight, bias, True, 1.0, (0, 1, 2), [0, 0, 0], 1.0)
    np.testing.assert_allclose(np.load(out), want, rtol=1e-4, atol=1e-4)
    names = ["cat", "dog", "bird", "fish"]
    lines = [line for line in res.output.splitlines() if ".png:" in line]
    assert len(lines) == 3
    for i, (line, row) in enumerate(zip(lines, want)):
        best = np.argsort(-row)[:2]
        assert line.startswith(f"{folder / f'im{i}.png'}: {names[best[0]]} (")
        assert f", {names[best[1]]} (" in line


def test_binaryproto_mean_is_per_channel(tmp_path):
    from caffepy.io.blobproto import write_binaryproto

    mean = np.random.default_rng(2).uniform(0, 255, (3, 5, 4)).astype(np.float32)
    np.save(tmp_path / "m.npy", mean)
    write_binaryproto(str(tmp_path / "m.binaryproto"), mean[None])
    want = mean.reshape(3, -1).mean(1)
    np.testing.assert_allclose(load_mean(str(tmp_path / "m.npy")), want, rtol=1e-6)
    got = load_mean(str(tmp_path / "m.binaryproto"))
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_errors(tiny_net, tmp_path):
    model, weights, _, _ = tiny_net
    np.save(tmp_path / "in.npy", _images(1))
    with pytest.raises(DataError, match="smaller than the net's input"):
        classify([str(tmp_path / "in.npy")], None, model, weights, images_dim=(4, 4))
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\n")
    with pytest.raises(DataError, match="names 2 classes but the net scores 4"):
        classify(
            [str(tmp_path / "in.npy")],
            None,
            model,
            weights,
            images_dim=(8, 8),
            labels=str(labels),
        )
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no \*\.jpg images"):
        classify([str(tmp_path / "empty")], None, model, weights, images_dim=(8, 8))
    res = CliRunner().invoke(
        cli, ["classify", "x.npy", "o.npy", "--model_def", model, "--images_dim", "8"]
    )
    assert res.exit_code == 2 and "expected 2 integers" in res.output
