"""caffe.io: the behaviour of BVLC's python/caffe/test/test_io.py, the Transformer,
and the image helpers, against direct numpy computations."""

import cv2
import numpy as np
import pytest

import caffe
import caffe.io

pb = caffe.proto.caffe_pb2


def test_blobproto_legacy_shape():
    blob = pb.BlobProto()
    blob.data.extend(np.zeros(100).tolist())
    blob.num, blob.channels, blob.height, blob.width = 1, 1, 10, 10
    assert caffe.io.blobproto_to_array(blob).shape == (1, 1, 10, 10)


def test_blobproto_shape():
    blob = pb.BlobProto()
    blob.data.extend(np.arange(100.0).tolist())
    blob.shape.dim.extend([10, 10])
    arr = caffe.io.blobproto_to_array(blob)
    np.testing.assert_array_equal(arr, np.arange(100.0).reshape(10, 10))


def test_blobproto_without_shape_is_an_error():
    blob = pb.BlobProto()
    blob.data.extend(np.zeros(100).tolist())
    with pytest.raises(ValueError):
        caffe.io.blobproto_to_array(blob)


def test_blobproto_scalar():
    blob = pb.BlobProto()
    blob.data.append(123.0)
    assert caffe.io.blobproto_to_array(blob) == 123


def test_blobproto_round_trip_with_diff():
    x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
    blob = caffe.io.array_to_blobproto(x, diff=2 * x)
    np.testing.assert_allclose(caffe.io.blobproto_to_array(blob), x)
    np.testing.assert_allclose(
        caffe.io.blobproto_to_array(blob, return_diff=True), 2 * x
    )


def test_blobprotovector_round_trip():
    arrays = [np.ones((2, 3)), np.arange(4.0).reshape(1, 4)]
    data = caffe.io.arraylist_to_blobprotovector_str(arrays)
    back = caffe.io.blobprotovector_str_to_arraylist(data)
    for a, b in zip(arrays, back):
        np.testing.assert_array_equal(a, b)


def test_datum_label_only_when_given():
    d1 = caffe.io.array_to_datum(np.ones((10, 10, 3)), label=1)
    d2 = caffe.io.array_to_datum(np.ones((10, 10, 3)))
    assert len(d1.SerializeToString()) > len(d2.SerializeToString())
    assert not d2.HasField("label")


def test_datum_round_trips():
    u8 = np.random.default_rng(1).integers(0, 256, size=(3, 4, 5), dtype=np.uint8)
    d = caffe.io.array_to_datum(u8, label=7)
    assert d.data == u8.tobytes() and len(d.float_data) == 0 and d.label == 7
    np.testing.assert_array_equal(caffe.io.datum_to_array(d), u8)
    f = np.random.default_rng(2).normal(size=(2, 3, 4))
    d = caffe.io.array_to_datum(f)
    assert len(d.data) == 0
    np.testing.assert_allclose(
        caffe.io.datum_to_array(d), f.astype(np.float32), rtol=1e-6
    )
    with pytest.raises(ValueError):
        caffe.io.array_to_datum(np.ones((3, 4)))


def test_encoded_datum_is_decoded():
    img = np.random.default_rng(3).integers(0, 256, size=(6, 5, 3), dtype=np.uint8)
    ok, png = cv2.imencode(".png", img)
    d = pb.Datum(data=png.tobytes(), encoded=True)
    np.testing.assert_array_equal(caffe.io.datum_to_array(d), img.transpose(2, 0, 1))


@pytest.fixture
def transformer():
    t = caffe.io.Transformer({"data": (1, 3, 6, 5)})
    t.set_transpose("data", (2, 0, 1))
    t.set_channel_swap("data", (2, 1, 0))
    t.set_raw_scale("data", 255)
    t.set_mean("data", np.array([10.0, 20.0, 30.0]))
    t.set_input_scale("data", 0.5)
    return t


def test_preprocess_in_pycaffe_order(transformer):
    img = np.random.default_rng(4).uniform(size=(6, 5, 3)).astype(np.float32)
    kept = img.copy()
    out = transformer.preprocess("data", img)
    chw = img.transpose(2, 0, 1)[::-1] * 255
    expected = (chw - np.array([10.0, 20.0, 30.0])[:, None, None]) * 0.5
    assert out.dtype == np.float32 and out.shape == (3, 6, 5)
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    np.testing.assert_array_equal(img, kept)  # the caller's image is untouched
    np.testing.assert_allclose(transformer.deprocess("data", out), img, atol=1e-5)


def test_preprocess_resizes_to_the_input(transformer):
    img = np.random.default_rng(5).uniform(size=(12, 10, 3)).astype(np.float32)
    out = transformer.preprocess("data", img)
    assert out.shape == (3, 6, 5)


def test_transformer_checks_its_settings(transformer):
    with pytest.raises(ValueError, match="not one of the net inputs"):
        transformer.preprocess("image", np.zeros((6, 5, 3)))
    with pytest.raises(ValueError, match="axes"):
        transformer.set_transpose("data", (1, 0))
    with pytest.raises(ValueError, match="channels"):
        transformer.set_channel_swap("data", (1, 0))
    with pytest.raises(ValueError, match="channels"):
        transformer.set_mean("data", np.zeros(4))


def test_elementwise_mean_is_resized():
    t = caffe.io.Transformer({"data": (1, 3, 4, 4)})
    t.set_mean("data", np.ones((3, 8, 8)) * np.array([1.0, 2.0, 3.0])[:, None, None])
    assert t.mean["data"].shape == (3, 4, 4)
    np.testing.assert_allclose(t.mean["data"][:, 0, 0], [1, 2, 3], rtol=1e-6)


def test_resize_image_matches_bilinear_on_a_ramp():
    ramp = np.tile(np.arange(4, dtype=np.float32), (4, 1))[:, :, None]
    out = caffe.io.resize_image(ramp, (4, 8))
    assert out.shape == (4, 8, 1) and out.dtype == np.float32
    # pixel centres: x_in = (x_out + 0.5) / 2 - 0.5, clamped at the border
    x = np.clip((np.arange(8) + 0.5) / 2 - 0.5, 0, 3)
    np.testing.assert_allclose(out[0, :, 0], x, atol=1e-5)
    const = caffe.io.resize_image(np.full((3, 3, 5), 7.0), (2, 6))
    assert const.shape == (2, 6, 5) and (const == 7).all()
    many = caffe.io.resize_image(
        np.random.default_rng(6).uniform(size=(5, 5, 7)), (3, 3)
    )
    assert many.shape == (3, 3, 7)


def test_oversample_takes_corners_center_and_mirrors():
    img = np.arange(6 * 8 * 2, dtype=np.float32).reshape(6, 8, 2)
    crops = caffe.io.oversample([img, img + 1], (4, 4))
    assert crops.shape == (20, 4, 4, 2)
    corners = [img[:4, :4], img[:4, 4:], img[2:, :4], img[2:, 4:], img[1:5, 2:6]]
    for i, c in enumerate(corners):
        np.testing.assert_array_equal(crops[i], c)
        np.testing.assert_array_equal(crops[5 + i], c[:, ::-1])
    np.testing.assert_array_equal(crops[10], img[:4, :4] + 1)


def test_load_image(tmp_path):
    rgb = np.random.default_rng(7).integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
    path = str(tmp_path / "x.png")
    cv2.imwrite(path, rgb[:, :, ::-1])  # OpenCV writes BGR
    img = caffe.io.load_image(path)
    assert img.shape == (5, 4, 3) and img.dtype == np.float32
    np.testing.assert_allclose(img, rgb / 255.0, atol=1e-6)
    gray = caffe.io.load_image(path, color=False)
    assert gray.shape == (5, 4, 1)
    weights = np.array([0.2125, 0.7154, 0.0721])
    np.testing.assert_allclose(gray[:, :, 0], (rgb / 255.0) @ weights, atol=1e-5)
    cv2.imwrite(path, rgb[:, :, 0])
    assert caffe.io.load_image(path).shape == (5, 4, 3)
