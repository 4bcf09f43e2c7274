"""The Data layer's batch path (datum.py ``RawBatchParser``, sources.py
``_fill_raw`` / ``_read_lmdb``) against protobuf and the per-record path."""

import struct

import numpy as np
import pytest
from google.protobuf.message import DecodeError

from caffepy.data.datum import RawBatchParser, array_to_datum, encoded_datum
from caffepy.data.db import LMDBReader
from caffepy.data.prefetch import Batch
from caffepy.data.sources import DatumSource, _read_lmdb
from caffepy.data.transformer import DataTransformer
from caffepy.layer import TEST, TRAIN
from caffepy.proto import caffe_pb2
from tests.data.common import write_lmdb


def _varint(v):
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number, wire, payload):
    return _varint(number << 3 | wire) + payload


def _record_variants():
    """Serialized records: Caffe's own and every wire-format oddity."""
    gen = np.random.default_rng(3)
    img = gen.integers(0, 256, (2, 3, 4), dtype=np.uint8)
    raw = array_to_datum(img, 7).SerializeToString()
    pix = img.tobytes()
    v = {
        "raw": raw,
        "raw_negative_label": array_to_datum(img, -5).SerializeToString(),
        "raw_big_label": array_to_datum(img, 2**31 - 1).SerializeToString(),
        "float_data": array_to_datum(img.astype(np.float32), 3).SerializeToString(),
        "encoded": encoded_datum(b"\x89PNG not really", 2).SerializeToString(),
        "empty": b"",
        "only_label": _field(5, 0, _varint(9)),
        # fields out of order, the label twice (the last wins), data twice
        "reordered": (
            _field(5, 0, _varint(1))
            + _field(4, 2, _varint(3) + b"abc")
            + _field(3, 0, _varint(4))
            + _field(2, 0, _varint(3))
            + _field(1, 0, _varint(2))
            + _field(4, 2, _varint(len(pix)) + pix)
            + _field(5, 0, _varint(6))
        ),
        # unknown fields of every wire type are skipped
        "unknown_fields": raw
        + _field(9, 0, _varint(300))
        + _field(10, 1, b"\0" * 8)
        + _field(11, 2, _varint(2) + b"xy")
        + _field(12, 5, b"\0" * 4)
        + _field(1000, 0, _varint(1)),
        # int32 from a varint wider than 32 bits: protobuf keeps the low bits
        "wide_label": raw + _field(5, 0, _varint(2**40 + 17)),
        # a second data field after the label replaces the first
        "data_twice": raw + _field(4, 2, _varint(len(pix)) + pix[::-1]),
        "negative_channels": raw + _field(1, 0, _varint(-3)),
        "encoded_false": raw + _field(7, 0, _varint(0)),
        "encoded_two": raw + _field(7, 0, _varint(2)),
        "packed_floats": _field(6, 2, _varint(8) + struct.pack("<2f", 1.5, -2)),
        "unpacked_float": _field(6, 5, struct.pack("<f", 0.25)),
        "mismatched_sizes": array_to_datum(img[:, :2], 0).SerializeToString(),
        "wrong_length": _field(1, 0, _varint(1))
        + _field(2, 0, _varint(2))
        + _field(3, 0, _varint(2))
        + _field(4, 2, _varint(3) + b"abc"),
        "absurd_size": _field(1, 0, _varint(2**31 - 1))
        + _field(2, 0, _varint(2**31 - 1))
        + _field(3, 0, _varint(2**31 - 1))
        + _field(4, 2, _varint(1) + b"a"),
        # malformed: protobuf refuses these (or stores them as unknown fields)
        "truncated": raw[:-5],
        "truncated_varint": raw + b"\x28\xff",
        "group": raw + _field(8, 3, b"") + _field(8, 4, b""),
        "field_zero": b"\x00\x01" + raw,
        "overlong_varint": raw + b"\x28" + b"\xff" * 10 + b"\x01",
        "label_as_bytes": raw + _field(5, 2, _varint(1) + b"x"),
        "data_as_varint": raw + _field(4, 0, _varint(1)),
        "bad_wire_type": raw + _varint(5 << 3 | 6),
    }
    return v


def _fields(value):
    """What protobuf reads, or None when it refuses the bytes."""
    datum = caffe_pb2.Datum()
    try:
        datum.ParseFromString(value)
    except DecodeError:
        return None
    return datum


def _is_raw_image(datum):
    if datum is None:
        return False
    shape = (datum.channels, datum.height, datum.width)
    return (
        not datum.encoded
        and not datum.float_data
        and min(shape) > 0
        and len(datum.data) == shape[0] * shape[1] * shape[2]
    )


def _check_parse(values, parser=None):
    """Parse a batch; whatever the parser returns must be what protobuf reads."""
    parser = parser or RawBatchParser()
    got = parser.parse(values)
    datums = [_fields(v) for v in values]
    if got is None:
        return None
    buf, offsets, labels, shape = got
    assert buf.flags.writeable and offsets.dtype == labels.dtype == np.int64
    size = shape[0] * shape[1] * shape[2]
    for i, datum in enumerate(datums):
        assert _is_raw_image(datum)
        assert (datum.channels, datum.height, datum.width) == shape
        assert labels[i] == datum.label
        assert bytes(buf[offsets[i] : offsets[i] + size]) == datum.data
    return got


#: The variants that end like Caffe's records (the same bytes before the pixels).
CAFFE_HEADER = {
    "raw",
    "raw_negative_label",
    "raw_big_label",
    "unknown_fields",
    "wide_label",
    "encoded_false",
}


@pytest.mark.parametrize("name", sorted(_record_variants()))
def test_parser_agrees_with_protobuf(name):
    value = _record_variants()[name]
    got = _check_parse([value])
    # Caffe's layout takes the batch path; anything else may be left to protobuf
    # (what the parser does read, _check_parse compares with protobuf)
    if name in CAFFE_HEADER | {"reordered"}:
        assert got is not None, name
    if not _is_raw_image(_fields(value)):
        assert got is None, name


@pytest.mark.parametrize("name", sorted(_record_variants()))
def test_parser_on_a_batch_with_one_odd_record(name):
    """A Caffe record, then the variant, then Caffe records again: the batch
    path is taken only when all of them are raw images of one shape."""
    variants = _record_variants()
    raw = variants["raw"]
    values = [raw, variants[name], variants["raw_negative_label"]]
    got = _check_parse(values)
    if name in CAFFE_HEADER:
        assert got is not None, name
    if not _is_raw_image(_fields(variants[name])) or name == "mismatched_sizes":
        assert got is None, name


def test_parser_fuzzed_records_never_disagree():
    """Random byte changes of valid records, in batches behind a good one:
    whatever the parser reads is what protobuf reads."""
    gen = np.random.default_rng(1701)
    variants = _record_variants()
    base = [variants[k] for k in ("raw", "raw_negative_label", "reordered")]
    parser = RawBatchParser()
    taken = 0
    for _ in range(3000):
        value = bytearray(base[gen.integers(len(base))])
        for _ in range(gen.integers(1, 3)):
            if gen.random() < 0.7:
                value[gen.integers(len(value))] = gen.integers(256)
            else:
                value.insert(gen.integers(len(value) + 1), gen.integers(256))
        taken += _check_parse([variants["raw"], bytes(value)], parser) is not None
    assert taken > 100  # the mutations that keep a raw image (pixel bytes) pass


def test_parser_labels_and_headers_change():
    gen = np.random.default_rng(0)
    a = gen.integers(0, 256, (1, 4, 4), dtype=np.uint8)
    b = gen.integers(0, 256, (1, 4, 5), dtype=np.uint8)
    parser = RawBatchParser()
    labels = [0, 1, 127, 128, 2**31 - 1, -1, -(2**31), 5]
    same = [array_to_datum(a, i).SerializeToString() for i in labels]
    got = _check_parse(same, parser)
    assert list(got[2]) == labels
    assert (
        _check_parse(same + [array_to_datum(b, 0).SerializeToString()], parser) is None
    )
    other = [array_to_datum(b, i).SerializeToString() for i in range(3)]
    assert _check_parse(other, parser)[3] == (1, 4, 5)  # a new header is learnt
    assert _check_parse(same, parser)[3] == (1, 4, 4)
    assert parser.parse([]) is None
    # a header with the label before the pixels, records without a tail
    head = (
        _field(5, 0, _varint(4)) + _field(1, 0, _varint(1)) + _field(2, 0, _varint(4))
    )
    head += _field(3, 0, _varint(4))
    recs = [
        head + _field(4, 2, _varint(16) + bytes(range(i, i + 16))) for i in range(3)
    ]
    assert list(_check_parse(recs)[2]) == [4, 4, 4]
    # a truncated record that keeps the header is refused
    assert _check_parse(same[:2] + [same[2][:-6]]) is None


def _source(path, batch, transform="", phase=TEST, dtype=np.float32, seed=5):
    param = caffe_pb2.TransformationParameter()
    from google.protobuf import text_format

    text_format.Merge(transform, param)
    tr = DataTransformer(param, phase, rng=np.random.default_rng(seed), dtype=dtype)
    return DatumSource(path, batch, tr)


def _both_paths(path, batch, n, **kwargs):
    """n batches through fill() (the batch path) and through the per-record
    protobuf path, with their states."""
    fast, slow = _source(path, batch, **kwargs), _source(path, batch, **kwargs)
    out = []
    for _ in range(n):
        a, b = Batch(fast.transformer.dtype), Batch(slow.transformer.dtype)
        fast.fill(a)
        slow._fill_parsed(b, *slow._read())
        out.append((a, b, fast.state(), slow.state()))
    fast.close()
    slow.close()
    return out


@pytest.mark.parametrize(
    "transform, phase, dtype",
    [
        ("scale: 0.00390625", TRAIN, np.float32),
        (
            "crop_size: 3 mirror: true mean_value: 100 mean_value: 20 mean_value: 9",
            TRAIN,
            np.float32,
        ),
        ("crop_size: 4 mean_value: 7.5 scale: 0.5", TEST, np.float64),
        ("mirror: true", TRAIN, np.float64),
    ],
)
def test_batch_path_equals_protobuf_path(tmp_path, transform, phase, dtype):
    gen = np.random.default_rng(11)
    images = gen.integers(0, 256, (11, 3, 5, 7), dtype=np.uint8)
    labels = gen.integers(-3, 1000, 11)
    records = [
        (f"{i:08d}", array_to_datum(im, lab).SerializeToString())
        for i, (im, lab) in enumerate(zip(images, labels))
    ]
    path = write_lmdb(tmp_path / "db", records)
    for a, b, sa, sb in _both_paths(
        path, 4, 5, transform=transform, phase=phase, dtype=dtype
    ):
        assert a.data.data.dtype == dtype
        np.testing.assert_array_equal(a.data.data, b.data.data)
        np.testing.assert_array_equal(a.label.data, b.label.data)
        assert sa == sb


def test_batch_path_values(tmp_path):
    """The batch path's numbers, from the images themselves (not the other path)."""
    gen = np.random.default_rng(2)
    images = gen.integers(0, 256, (5, 1, 3, 3), dtype=np.uint8)
    records = [
        (f"{i:03d}", array_to_datum(im, 10 * i).SerializeToString())
        for i, im in enumerate(images)
    ]
    path = write_lmdb(tmp_path / "db", records)
    src = _source(path, 3, "scale: 0.25 mean_value: 1")
    batch = Batch()
    src.fill(batch)
    want = (images[:3].astype(np.float32) - 1) * np.float32(0.25)
    np.testing.assert_array_equal(batch.data.data, want)
    np.testing.assert_array_equal(batch.label.data, [0, 10, 20])
    src.fill(batch)  # wraps: records 3, 4, 0
    np.testing.assert_array_equal(batch.label.data, [30, 40, 0])
    assert src.state()["position"] == 1
    src.close()


@pytest.mark.parametrize(
    "odd",
    ["float_data", "encoded", "other_shape", "bad_length"],
)
def test_batches_with_other_records_fall_back_and_agree(tmp_path, odd):
    import cv2

    gen = np.random.default_rng(4)
    images = gen.integers(0, 256, (6, 3, 4, 4), dtype=np.uint8)
    values = [array_to_datum(im, i).SerializeToString() for i, im in enumerate(images)]
    if odd == "float_data":
        values[2] = array_to_datum(
            images[2].astype(np.float32) / 3, 2
        ).SerializeToString()
    elif odd == "encoded":
        ok, png = cv2.imencode(".png", images[2].transpose(1, 2, 0))
        values[2] = encoded_datum(png.tobytes(), 2).SerializeToString()
    elif odd == "other_shape":
        values[2] = array_to_datum(images[2][:, :3], 2).SerializeToString()
    else:
        values[2] = values[2][:-3]
    path = write_lmdb(tmp_path / "db", [(f"{i:02d}", v) for i, v in enumerate(values)])
    transform = "crop_size: 3 mirror: true" if odd == "other_shape" else "scale: 2"
    fast, slow = _source(path, 6, transform, TRAIN), _source(path, 6, transform, TRAIN)
    a, b = Batch(), Batch()
    keys, vals = slow._read()
    if odd == "bad_length":
        with pytest.raises(Exception) as slow_err:
            slow._fill_parsed(b, keys, vals)
        with pytest.raises(type(slow_err.value)) as fast_err:
            fast.fill(a)
        assert str(fast_err.value) == str(slow_err.value)
        assert "'02'" in str(fast_err.value)
    else:
        assert not fast._fill_raw(Batch(), keys, vals)
        slow._fill_parsed(b, keys, vals)
        fast.fill(a)
        np.testing.assert_array_equal(a.data.data, b.data.data)
        np.testing.assert_array_equal(a.label.data, b.label.data)
        assert fast.state() == slow.state()
    fast.close()
    slow.close()


@pytest.mark.parametrize("n, count", [(3, 7), (7, 7), (10, 7), (1, 1), (16, 3)])
def test_read_lmdb_is_read_repeated(tmp_path, n, count):
    records = [(f"{i:04d}".encode(), bytes([i]) * (i + 1)) for i in range(count)]
    path = write_lmdb(tmp_path / "db", records)
    a, b = LMDBReader(path), LMDBReader(path)
    try:
        for start in (0, count - 1, count // 2):
            a.seek(start)
            b.seek(start)
            for _ in range(3):
                keys, values = _read_lmdb(a, n)
                want = [b.read() for _ in range(n)]
                assert [k.decode() for k in keys] == [k for k, _ in want]
                assert values == [v for _, v in want]
                assert a.position == b.position
                assert a.peek() == b.peek()
    finally:
        a.close()
        b.close()
