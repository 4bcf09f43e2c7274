"""DataTransformer against Caffe's loops (data_transformer.cpp), and its errors."""

import numpy as np
import pytest
from google.protobuf import text_format

from caffepy import TEST, TRAIN
from caffepy.data.transformer import DataTransformer
from caffepy.errors import DataError, LayerError
from caffepy.io.blobproto import write_binaryproto
from caffepy.proto import caffe_pb2


def make(text, phase=TEST, seed=0, dtype=np.float32):
    param = text_format.Parse(text, caffe_pb2.TransformationParameter())
    return DataTransformer(param, phase, np.random.default_rng(seed), dtype)


def caffe_transform(img, crop, h_off, w_off, mirror, mean, scale, dtype):
    """data_transformer.cpp's loop, element by element (mean: C x H x W or None)."""
    c_, h_, w_ = img.shape
    height, width = (crop, crop) if crop else (h_, w_)
    out = np.empty((c_, height, width), dtype)
    for c in range(c_):
        for h in range(height):
            for w in range(width):
                x = dtype(img[c, h_off + h, w_off + w])
                m = dtype(0) if mean is None else dtype(mean[c, h_off + h, w_off + w])
                out[c, h, width - 1 - w if mirror else w] = (x - m) * dtype(scale)
    return out


@pytest.fixture
def images():
    return np.random.default_rng(3).integers(0, 256, (4, 3, 7, 6), dtype=np.uint8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_center_crop_mean_file_scale(tmp_path, images, dtype):
    mean = np.random.default_rng(4).uniform(0, 255, (1, 3, 7, 6)).astype(np.float32)
    write_binaryproto(tmp_path / "mean.binaryproto", mean)
    tr = make(
        f'crop_size: 4 scale: 0.0078125 mean_file: "{tmp_path}/mean.binaryproto"',
        dtype=dtype,
    )
    out = tr.transform(images)
    assert out.dtype == dtype and out.shape == (4, 3, 4, 4)
    for i, img in enumerate(images):
        # TEST: centre crop, h_off = (7 - 4) // 2 = 1, w_off = (6 - 4) // 2 = 1
        want = caffe_transform(img, 4, 1, 1, False, mean[0], 0.0078125, dtype)
        np.testing.assert_array_equal(out[i], want)


@pytest.mark.parametrize("values", [[100.0], [10.0, 20.0, 30.0]])
def test_mean_values(images, values):
    text = " ".join(f"mean_value: {v}" for v in values) + " scale: 2"
    out = make(text).transform(images)
    mean = np.broadcast_to(np.asarray(values, np.float32)[:, None, None], (3, 7, 6))
    for i, img in enumerate(images):
        want = caffe_transform(img, 0, 0, 0, False, mean, 2.0, np.float32)
        np.testing.assert_array_equal(out[i], want)


def test_train_crop_and_mirror_are_valid_and_seeded(images):
    text = "crop_size: 4 mirror: true mean_value: 5"
    out = make(text, TRAIN, seed=11).transform(images)
    # Every item is one of the possible crops (and flips) of its image ...
    seen = set()
    for i, img in enumerate(images):
        matches = [
            (h, w, m)
            for h in range(4)
            for w in range(3)
            for m in (False, True)
            if np.array_equal(
                out[i], caffe_transform(img, 4, h, w, m, None, 1.0, np.float32) - 5
            )
        ]
        assert matches, f"item {i} is no crop of its image"
        seen.update(matches)
    # ... the same seed gives the same batch, another seed another one.
    np.testing.assert_array_equal(out, make(text, TRAIN, seed=11).transform(images))
    assert not np.array_equal(out, make(text, TRAIN, seed=12).transform(images))


def test_mirror_statistics():
    img = np.arange(2 * 4, dtype=np.uint8).reshape(1, 1, 2, 4)
    batch = np.repeat(img, 400, axis=0)
    out = make("mirror: true", TRAIN).transform(batch)
    flipped = np.all(out[:, 0, :, 0] == img[0, 0, :, -1], axis=1)
    assert 150 < flipped.sum() < 250
    assert np.all(np.all(out[~flipped] == img[0], axis=(1, 2, 3)))


def test_different_sizes_with_crop(images):
    a = images[0]
    b = np.random.default_rng(5).integers(0, 256, (3, 9, 8), dtype=np.uint8)
    tr = make("crop_size: 5 mean_value: 1 mean_value: 2 mean_value: 3")
    out = tr.transform([a, b])
    mean = np.broadcast_to(np.array([1, 2, 3], np.float32)[:, None, None], (3, 9, 8))
    np.testing.assert_array_equal(
        out[0], caffe_transform(a, 5, 1, 0, False, mean, 1.0, np.float32)
    )
    np.testing.assert_array_equal(
        out[1], caffe_transform(b, 5, 2, 1, False, mean, 1.0, np.float32)
    )


def test_float_input(images):
    x = images.astype(np.float32) / 7
    out = make("scale: 3", dtype=np.float64).transform(x)
    np.testing.assert_array_equal(out, (x.astype(np.float64)) * 3.0)


def test_errors(tmp_path, images):
    names = [f"record 'k{i}'" for i in range(4)]
    with pytest.raises(DataError, match="crop_size 8 is larger than record 'k0'"):
        make("crop_size: 8").transform(images, names=names)
    with pytest.raises(DataError, match="2 mean_value but record 'k0' has 3 channels"):
        make("mean_value: 1 mean_value: 2").transform(images, names=names)
    write_binaryproto(tmp_path / "m.binaryproto", np.zeros((1, 3, 5, 5), np.float32))
    with pytest.raises(DataError, match="m.binaryproto.*3x5x5.*record 'k0' is 3x7x6"):
        make(f'mean_file: "{tmp_path}/m.binaryproto"').transform(images, names=names)
    with pytest.raises(DataError, match="'k1' is 3x9x8 but record 'k0' is 3x7x6"):
        make("").transform([images[0], np.zeros((3, 9, 8), np.uint8)], names=names)
    with pytest.raises(DataError, match="record 'k1' has 1 channel.*force_color"):
        make("crop_size: 2").transform(
            [images[0], np.zeros((1, 9, 8), np.uint8)], names=names
        )
    with pytest.raises(DataError, match="cannot read mean file .*missing.binaryproto"):
        make(f'mean_file: "{tmp_path}/missing.binaryproto"')
    with pytest.raises(DataError, match="mean_file or mean_value, not both"):
        make(f'mean_file: "{tmp_path}/m.binaryproto" mean_value: 3')
    with pytest.raises(DataError, match="force_color and force_gray"):
        make("force_color: true force_gray: true")


def test_parameter_errors_name_the_layer():
    class Owner:
        name, type = "mydata", "Data"

    param = text_format.Parse(
        "force_color: true force_gray: true", caffe_pb2.TransformationParameter()
    )
    with pytest.raises(LayerError, match="Data layer 'mydata'"):
        DataTransformer(param, TRAIN, owner=Owner())
