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


def _cv2():
    # NOTE: an encoded record's header can declare any size; this makes OpenCV
    # refuse absurd ones before allocating (only if cv2 is not imported yet).
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))
    try:
        import cv2
    except ImportError:  # pragma: no cover - a dependency of caffepy
        raise DataError(
            "decoding images needs OpenCV: pip install opencv-python-headless"
        ) from None
    return cv2


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
