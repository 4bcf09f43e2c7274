"""Datum <-> numpy, and the decoding of encoded records."""

import cv2
import numpy as np
import pytest

from caffepy.data.datum import (
    array_to_datum,
    datum_to_array,
    decode_image,
    encoded_datum,
    parse_datum,
)
from caffepy.errors import DataError
from caffepy.proto import caffe_pb2


def test_uint8_round_trip():
    img = np.random.default_rng(0).integers(0, 256, (3, 4, 5), dtype=np.uint8)
    datum = parse_datum(array_to_datum(img, 7).SerializeToString())
    assert (datum.channels, datum.height, datum.width, datum.label) == (3, 4, 5, 7)
    assert datum.HasField("encoded") and not datum.encoded
    out = datum_to_array(datum)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, img)


def test_float_data_round_trip():
    img = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    out = datum_to_array(array_to_datum(img, 1))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize("color", [None, True, False])
def test_encoded_matches_cv2(color):
    img = np.random.default_rng(1).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    buf = cv2.imencode(".png", img)[1].tobytes()
    flag = {
        None: cv2.IMREAD_ANYCOLOR,
        True: cv2.IMREAD_COLOR,
        False: cv2.IMREAD_GRAYSCALE,
    }[color]
    want = cv2.imdecode(np.frombuffer(buf, np.uint8), flag)
    want = want[None] if want.ndim == 2 else want.transpose(2, 0, 1)
    got = datum_to_array(encoded_datum(buf, 3), "rec", color)
    np.testing.assert_array_equal(got, want)


def test_gray_png_decodes_natively_to_one_channel():
    img = np.arange(12, dtype=np.uint8).reshape(3, 4)
    buf = cv2.imencode(".png", img)[1].tobytes()
    assert decode_image(buf, None).shape == (1, 3, 4)
    assert decode_image(buf, True).shape == (3, 3, 4)


def test_bad_data_length_names_the_record():
    datum = caffe_pb2.Datum(channels=3, height=4, width=5, data=b"\0" * 59)
    with pytest.raises(DataError, match="record 'k7'.*59 bytes.*3x4x5 = 60"):
        datum_to_array(datum, "record 'k7'")


def test_absurd_declared_size_is_refused():
    datum = caffe_pb2.Datum(channels=100000, height=100000, width=100000, data=b"x")
    with pytest.raises(DataError, match="absurd size"):
        datum_to_array(datum, "record 'big'")
    datum = caffe_pb2.Datum(channels=-1, height=2, width=2, data=b"x")
    with pytest.raises(DataError, match="negative"):
        datum_to_array(datum)


def test_empty_and_undecodable_records():
    with pytest.raises(DataError, match="empty|float_data"):
        datum_to_array(caffe_pb2.Datum(), "record 'e'")
    with pytest.raises(DataError, match="record 'x': cannot decode"):
        datum_to_array(encoded_datum(b"not an image"), "record 'x'")
    with pytest.raises(DataError, match="record 'y' is not a Datum"):
        parse_datum(b"\xff\xff\xff", "record 'y'")
