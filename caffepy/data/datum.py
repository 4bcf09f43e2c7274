"""Datum <-> numpy, and image decoding as Caffe's ``io.cpp`` does it.

A ``Datum`` holds one image: raw ``uint8`` pixels in C x H x W order (colour in
OpenCV's BGR order) with ``channels/height/width``, or ``float_data``, or, with
``encoded: true``, the bytes of an image file (PNG, JPEG, ...) that are decoded
with OpenCV (``cv2.imdecode``) when read.
"""

import os

import numpy as np

from caffepy.errors import DataError

#: A Datum may not declare more values than this (refused before allocating).
MAX_DATUM_COUNT = 2**31 - 1


#: The most pixels an encoded image may declare before OpenCV refuses to decode it
#: (OpenCV's own default is 2^30, 3 GiB for a colour image); the environment
#: variable OPENCV_IO_MAX_IMAGE_PIXELS, read when cv2 is first imported,
#: overrides it.
MAX_IMAGE_PIXELS = 2**27


_CV2 = []


def opencv():
    """The ``cv2`` module, imported once with caffepy's pixel limit."""
    if _CV2:
        return _CV2[0]
    # NOTE: an encoded record's header can declare any size; this makes OpenCV
    # refuse absurd ones before allocating (only if cv2 is not imported yet).
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))
    try:
        import cv2
    except ImportError:  # pragma: no cover - a dependency of caffepy
        raise DataError(
            "decoding images needs OpenCV: pip install opencv-python-headless"
        ) from None
    _CV2.append(cv2)
    return cv2


_cv2 = opencv


def image_flag(color):
    """The cv2 read flag: True -> colour (3 channels), False -> gray, None -> native."""
    cv2 = _cv2()
    if color is None:
        return cv2.IMREAD_ANYCOLOR
    return cv2.IMREAD_COLOR if color else cv2.IMREAD_GRAYSCALE


def hwc_to_chw(img):
    """An OpenCV image (H x W or H x W x C) as a C x H x W array (a view)."""
    if img.ndim == 2:
        return img[None]
    return img.transpose(2, 0, 1)


def decode_image(buf, color=None, name="image"):
    """Decode encoded image bytes into a C x H x W uint8 array (BGR for colour).

    Args:
        buf: the bytes of an image file.
        color: True (force 3 channels), False (force gray) or None (as stored).
        name: what to call the image in an error (a key or a path).
    """
    cv2 = _cv2()
    arr = np.frombuffer(buf, np.uint8)
    try:
        img = cv2.imdecode(arr, image_flag(color)) if arr.size else None
    except cv2.error as err:  # e.g. a header declaring too many pixels
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else "?"
        raise DataError(
            f"{name}: cannot decode the encoded image ({len(buf)} bytes): {reason}"
        ) from None
    if img is None:
        raise DataError(f"{name}: cannot decode the encoded image ({len(buf)} bytes)")
    if img.dtype != np.uint8:  # 16-bit PNG etc.: Caffe's Mat would be CV_16U too
        raise DataError(f"{name}: decoded image has dtype {img.dtype}, expected 8-bit")
    return hwc_to_chw(img)


def read_image(path, height=0, width=0, color=True):
    """Caffe's ReadImageToCVMat: cv2.imread, then a bilinear resize when both
    ``height`` and ``width`` are positive. Returns H x W (x C) or None."""
    cv2 = _cv2()
    try:
        img = cv2.imread(path, image_flag(color))
    except cv2.error:  # e.g. a header declaring too many pixels
        return None
    if img is None:
        return None
    if height > 0 and width > 0:
        img = cv2.resize(img, (width, height))
    return img


def check_declared_size(channels, height, width, name="datum"):
    """Return channels*height*width, refusing negative or absurd sizes."""
    if channels < 0 or height < 0 or width < 0:
        raise DataError(f"{name} declares a negative size {channels}x{height}x{width}")
    count = channels * height * width
    if count > MAX_DATUM_COUNT:
        raise DataError(
            f"{name} declares an absurd size {channels}x{height}x{width} "
            f"({count} values, the limit is {MAX_DATUM_COUNT})"
        )
    return count


def parse_datum(value, name="datum"):
    """Parse serialized Datum bytes, with an error naming the record."""
    from google.protobuf.message import DecodeError

    from caffepy.proto import caffe_pb2

    datum = caffe_pb2.Datum()
    try:
        datum.ParseFromString(value)
    except DecodeError:
        raise DataError(f"{name} is not a Datum ({len(value)} bytes)") from None
    return datum


def datum_to_array(datum, name="datum", color=None):
    """The image of a Datum as a C x H x W array.

    Raw records give uint8 (a read-only view of the Datum's bytes) or float32
    (``float_data``); encoded records are decoded with OpenCV, natively
    (``color=None``) or forced to colour (True) / gray (False).

    Raises:
        DataError: the data length does not match channels*height*width, or an
            encoded record cannot be decoded. The message starts with ``name``
            (e.g. "record '00000001_a.png' of 'train_lmdb'").
    """
    if datum.encoded:
        return decode_image(datum.data, color, name=name)
    c, h, w = datum.channels, datum.height, datum.width
    count = check_declared_size(c, h, w, name)
    if datum.data:
        size = len(datum.data)
        if size != count:
            raise DataError(
                f"{name}: data holds {size} bytes but channels*height*width "
                f"is {c}x{h}x{w} = {count}"
            )
        if count == 0:
            raise DataError(f"{name} is empty (shape {c}x{h}x{w})")
        return np.frombuffer(datum.data, np.uint8).reshape(c, h, w)
    size = len(datum.float_data)
    if size != count or count == 0:
        raise DataError(
            f"{name}: float_data holds {size} values but "
            f"channels*height*width is {c}x{h}x{w} = {count}"
        )
    return np.asarray(datum.float_data, np.float32).reshape(c, h, w)


def array_to_datum(array, label=0, datum=None):
    """A Datum holding a C x H x W uint8 array (Caffe's CVMatToDatum + label).

    Floating arrays go to ``float_data``. The fields are set in Caffe's way
    (``encoded: false`` is written explicitly), so serialized records are
    byte-identical to convert_imageset's.
    """
    from caffepy.proto import caffe_pb2

    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise DataError(f"a Datum holds a C x H x W image, got shape {array.shape}")
    datum = datum if datum is not None else caffe_pb2.Datum()
    datum.Clear()
    datum.channels, datum.height, datum.width = (int(d) for d in array.shape)
    if array.dtype == np.uint8:
        datum.data = np.ascontiguousarray(array).tobytes()
    else:
        datum.float_data.extend(array.astype(np.float32).reshape(-1).tolist())
    datum.label = int(label)
    datum.encoded = False
    return datum


def encoded_datum(data, label=0, datum=None):
    """A Datum holding encoded image bytes (Caffe's ReadFileToDatum)."""
    from caffepy.proto import caffe_pb2

    datum = datum if datum is not None else caffe_pb2.Datum()
    datum.Clear()
    datum.data = bytes(data)
    datum.label = int(label)
    datum.encoded = True
    return datum


# -- serialized records without protobuf objects (convert_imageset) -------------
_INT32 = (-(2**31), 2**31 - 1)
_SMALL = [bytes([i]) for i in range(128)]


def _varint(value):
    """Protobuf's varint of an int32/int64 field (negative: ten bytes)."""
    if 0 <= value < 128:
        return _SMALL[value]
    value &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _check_label(label):
    label = int(label)
    if not _INT32[0] <= label <= _INT32[1]:
        raise DataError(f"label {label} does not fit a Datum's int32 label")
    return label


#: Serialized record heads by (shape, itemsize) and label tails by label: the
#: parts of a raw record that repeat from image to image (convert_imageset
#: writes thousands of one shape; building them took a third of its Python time).
_RAW_HEADS: dict = {}
_LABEL_TAILS: dict = {}


def raw_datum_bytes(array, label=0):
    """``array_to_datum(array, label).SerializeToString()`` for a uint8
    C x H x W (or H x W) array, built directly: the same bytes, fields in
    number order (channels, height, width, data, label, ``encoded: false``)."""
    if array.ndim == 2:
        array = array[None]
    key = (array.shape, array.itemsize)
    head = _RAW_HEADS.get(key)
    if head is None:
        c, h, w = array.shape
        head = b"".join(
            (
                b"\x08",
                _varint(c),
                b"\x10",
                _varint(h),
                b"\x18",
                _varint(w),
                b"\x22",
                _varint(c * h * w * array.itemsize),
            )
        )
        if len(_RAW_HEADS) < 64:
            _RAW_HEADS[key] = head
    tail = _LABEL_TAILS.get(label)
    if tail is None:
        tail = b"\x28" + _varint(_check_label(label)) + b"\x38\x00"
        if len(_LABEL_TAILS) < 4096:
            _LABEL_TAILS[label] = tail
    return b"".join((head, np.ascontiguousarray(array).tobytes(), tail))


def encoded_datum_bytes(data, label=0):
    """``encoded_datum(data, label).SerializeToString()``, built directly."""
    data = bytes(data)
    return b"".join(
        (
            b"\x22",
            _varint(len(data)),
            data,
            b"\x28",
            _varint(_check_label(label)),
            b"\x38\x01",
        )
    )


# -- batches of raw records without a protobuf object each (the Data layer) -----
def _wire_varint(buf, pos):
    """(value, next position) of the varint at ``pos`` (IndexError past the end)."""
    value = shift = 0
    while shift < 70:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
    raise ValueError("varint longer than 10 bytes")


def data_span(value):
    """(start, size) of the last ``data`` field (4) in serialized Datum bytes,
    walking the wire format; None when there is none or the bytes are not a
    sequence of fields."""
    pos, end, span = 0, len(value), None
    try:
        while pos < end:
            tag, pos = _wire_varint(value, pos)
            wire = tag & 7
            if wire == 0:
                _, pos = _wire_varint(value, pos)
            elif wire == 2:
                size, pos = _wire_varint(value, pos)
                if tag >> 3 == 4:
                    span = (pos, size)
                pos += size
            elif wire in (1, 5):
                pos += 8 if wire == 1 else 4
            else:
                return None
            if pos > end:
                return None
    except (IndexError, ValueError):
        return None
    return span


class RawBatchParser:
    """Pixels and labels of a batch of serialized raw Datum records, with one
    protobuf parse per distinct header and label instead of one per record.

    Records written by Caffe or caffepy (convert_imageset, ``caffepy data``)
    of one image size share every byte before their pixels (channels, height,
    width, the data field's tag and length): the *header*. What follows the
    pixels (the label, ``encoded: false``) takes a few values (one per label).
    Protobuf reads a message split at a field boundary as the merge of its two
    parts, so parsing the header and each distinct tail once gives every
    record's fields. Any other batch (encoded images, float_data, sizes that
    differ, bytes that do not parse) is left to the caller (``None``), which
    reads it record by record and reports the bad one.
    """

    #: Distinct tails remembered (labels, mostly); the cache restarts beyond.
    MAX_TAILS = 4096

    def __init__(self):
        self._header = None  # bytes before the pixels
        self._shape = None  # (C, H, W)
        self._size = 0  # C*H*W
        self._label = 0  # the header's label (when a tail sets none)
        self._tails = {}  # tail bytes -> label, or None for a tail refused

    def _learn(self, value):
        """Take the header of ``value``; False when it is no raw image."""
        from google.protobuf.message import DecodeError

        from caffepy.proto import caffe_pb2

        self._header, self._tails = None, {}
        span = data_span(value)
        if span is None:
            return False
        start, size = span
        datum = caffe_pb2.Datum()
        try:
            datum.ParseFromString(value[: start + size])
        except DecodeError:
            return False
        shape = (datum.channels, datum.height, datum.width)
        if (
            datum.encoded
            or datum.float_data
            or len(datum.data) != size
            or min(shape) <= 0
            or shape[0] * shape[1] * shape[2] != size
            or size > MAX_DATUM_COUNT
        ):
            return False
        self._header, self._shape, self._size = value[:start], shape, size
        self._label = datum.label
        return True

    def _tail_label(self, tail):
        """The label of a record ending in ``tail``; None when the tail sets
        anything but a label (or ``encoded: false``) or does not parse."""
        from google.protobuf.message import DecodeError

        from caffepy.proto import caffe_pb2

        datum = caffe_pb2.Datum()
        try:
            datum.ParseFromString(tail)
        except DecodeError:
            return None
        for name in ("channels", "height", "width", "data"):
            if datum.HasField(name):
                return None
        if datum.float_data or datum.encoded:
            return None
        return datum.label if datum.HasField("label") else self._label

    def parse(self, values):
        """Read a batch of serialized records.

        Args:
            values: the records' bytes.

        Returns:
            ``(buf, offsets, labels, shape)``: the records joined into one
            writable uint8 array, the (N,) int64 offset of each record's
            C x H x W pixels in it, the (N,) int64 labels and (C, H, W); or
            None when the batch is not raw images of one shape.
        """
        import operator

        n = len(values)
        if not n:
            return None
        header = self._header
        if header is None or not values[0].startswith(header):
            if not self._learn(values[0]):
                return None
            header = self._header
        if not all(map(operator.methodcaller("startswith", header), values)):
            return None
        lengths = np.fromiter(map(len, values), np.int64, n)
        cut = len(header) + self._size
        if int(lengths.min()) < cut:
            return None
        tails = list(map(operator.itemgetter(slice(cut, None)), values))
        known = self._tails
        labels = list(map(known.get, tails))
        if None in labels:
            if len(known) > self.MAX_TAILS:
                known.clear()
            for tail in set(tails):
                if tail not in known:
                    known[tail] = self._tail_label(tail)
            labels = list(map(known.get, tails))
            if None in labels:
                return None
        bounds = np.zeros(n, np.int64)
        np.cumsum(lengths[:-1], out=bounds[1:])
        # NOTE: a bytearray keeps the array writable, the kernels' usual type.
        buf = np.frombuffer(bytearray().join(values), np.uint8)
        offsets = bounds + len(header)
        return buf, offsets, np.array(labels, np.int64), self._shape
