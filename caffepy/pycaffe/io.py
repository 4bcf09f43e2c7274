"""pycaffe's ``caffe.io``: proto/array converters, the input Transformer, images.

Arrays and protos:

- :func:`blobproto_to_array` / :func:`array_to_blobproto` (a BlobProto with the
  legacy num/channels/height/width fields is read as 4-D; otherwise its
  ``shape``), and the BlobProtoVector forms
  :func:`arraylist_to_blobprotovector_str` /
  :func:`blobprotovector_str_to_arraylist`;
- :func:`array_to_datum` / :func:`datum_to_array` (C x H x W; uint8 arrays go
  to ``data`` bytes, others to ``float_data``; the label is set only when given).

Images are H x W x K float32 (RGB, values in [0, 1] from :func:`load_image`);
the :class:`Transformer` turns them into a net's K x H x W input.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from caffepy.errors import CaffepyError
from caffepy.proto import caffe_pb2


class TransformerError(CaffepyError, ValueError):
    """A Transformer setting or input that does not fit the net's input."""


# -- protos <-> arrays -------------------------------------------------------------
def blobproto_to_array(blob: Any, return_diff: bool = False) -> np.ndarray:
    """The data (or diff) of a BlobProto as an array of its shape.

    A blob with the legacy ``num``/``channels``/``height``/``width`` fields is
    4-D; otherwise ``shape.dim`` gives the shape (none: a scalar, so a blob of
    several values and no shape raises ValueError, as pycaffe).
    """
    if return_diff:
        values = blob.diff if len(blob.diff) else blob.double_diff
    else:
        values = blob.data if len(blob.data) else blob.double_data
    arr = np.array(values, dtype=np.float64)
    legacy = any(blob.HasField(f) for f in ("num", "channels", "height", "width"))
    if legacy:
        return arr.reshape(blob.num, blob.channels, blob.height, blob.width)
    return arr.reshape(tuple(blob.shape.dim))


def array_to_blobproto(arr: np.ndarray, diff: np.ndarray | None = None) -> Any:
    """A BlobProto with ``arr``'s shape and values (and ``diff``'s, when given;
    it must have the same number of values)."""
    arr = np.asarray(arr)
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend(int(d) for d in arr.shape)
    blob.data.extend(arr.astype(np.float64).ravel().tolist())
    if diff is not None:
        blob.diff.extend(np.asarray(diff, dtype=np.float64).ravel().tolist())
    return blob


def arraylist_to_blobprotovector_str(arraylist: list) -> bytes:
    """Serialized BlobProtoVector of the arrays (what a net's blobs read)."""
    vec = caffe_pb2.BlobProtoVector()
    vec.blobs.extend(array_to_blobproto(a) for a in arraylist)
    return vec.SerializeToString()


def blobprotovector_str_to_arraylist(data: bytes) -> list[np.ndarray]:
    """The arrays of a serialized BlobProtoVector."""
    vec = caffe_pb2.BlobProtoVector()
    vec.ParseFromString(data)
    return [blobproto_to_array(b) for b in vec.blobs]


def array_to_datum(arr: np.ndarray, label: int | None = None) -> Any:
    """A Datum of a C x H x W array: uint8 as ``data`` bytes, any other dtype as
    ``float_data``; ``label`` only when given (an unset label is not stored).

    Raises:
        ValueError: ``arr`` is not 3-D.
    """
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise TransformerError(
            f"array_to_datum needs a C x H x W array, got shape {arr.shape}"
        )
    datum = caffe_pb2.Datum()
    datum.channels, datum.height, datum.width = (int(d) for d in arr.shape)
    if arr.dtype == np.uint8:
        datum.data = np.ascontiguousarray(arr).tobytes()
    else:
        datum.float_data.extend(arr.astype(np.float64).ravel().tolist())
    if label is not None:
        datum.label = int(label)
    return datum


def datum_to_array(datum: Any) -> np.ndarray:
    """A Datum's values as C x H x W: uint8 from ``data``, float from
    ``float_data``; an encoded image (``encoded: true``) is decoded to BGR, as
    Caffe's data layers do. The label is ``datum.label``."""
    if datum.encoded:
        import cv2

        img = cv2.imdecode(np.frombuffer(datum.data, np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise TransformerError("datum_to_array: the encoded image cannot be read")
        return (
            img[:, :, None].transpose(2, 0, 1)
            if img.ndim == 2
            else (img.transpose(2, 0, 1))
        )
    shape = (datum.channels, datum.height, datum.width)
    if len(datum.data):
        return np.frombuffer(datum.data, dtype=np.uint8).reshape(shape).copy()
    return np.array(datum.float_data, dtype=np.float64).reshape(shape)


# -- preprocessing -------------------------------------------------------------------
class Transformer:
    """Turn images into a net's inputs and back (pycaffe's ``caffe.io.Transformer``).

    ``preprocess(name, image)`` on an H' x W' x K image: to float32, resize to
    the input's H x W, transpose, swap channels, multiply by ``raw_scale``,
    subtract ``mean``, multiply by ``input_scale``; ``deprocess`` undoes it.

    Args:
        inputs: input blob name -> its shape (N, K, H, W), e.g.
            ``{"data": net.blobs["data"].data.shape}``.
    """

    def __init__(self, inputs: dict) -> None:
        self.inputs = {k: tuple(int(d) for d in v) for k, v in inputs.items()}
        self.transpose: dict = {}
        self.channel_swap: dict = {}
        self.raw_scale: dict = {}
        self.mean: dict = {}
        self.input_scale: dict = {}

    def _check_input(self, in_: str) -> None:
        if in_ not in self.inputs:
            raise TransformerError(
                f"{in_!r} is not one of the net inputs: {list(self.inputs)}"
            )

    def preprocess(self, in_: str, data: np.ndarray) -> np.ndarray:
        """An H' x W' x K image as the K x H x W float32 input ``in_`` expects."""
        self._check_input(in_)
        x = np.array(data, dtype=np.float32)  # a copy: the caller's stays as is
        in_dims = self.inputs[in_][2:]
        if x.shape[:2] != in_dims:
            x = resize_image(x, in_dims)
        if in_ in self.transpose:
            x = x.transpose(self.transpose[in_])
        if in_ in self.channel_swap:
            x = x[list(self.channel_swap[in_]), :, :]
        if in_ in self.raw_scale:
            x = x * self.raw_scale[in_]
        if in_ in self.mean:
            x = x - self.mean[in_]
        if in_ in self.input_scale:
            x = x * self.input_scale[in_]
        return np.ascontiguousarray(x, dtype=np.float32)

    def deprocess(self, in_: str, data: np.ndarray) -> np.ndarray:
        """Undo :meth:`preprocess` (except the resize): back to H x W x K."""
        self._check_input(in_)
        x = np.array(data).squeeze()
        if in_ in self.input_scale:
            x = x / self.input_scale[in_]
        if in_ in self.mean:
            x = x + self.mean[in_]
        if in_ in self.raw_scale:
            x = x / self.raw_scale[in_]
        if in_ in self.channel_swap:
            x = x[np.argsort(self.channel_swap[in_]), :, :]
        if in_ in self.transpose:
            x = x.transpose(np.argsort(self.transpose[in_]))
        return x

    def set_transpose(self, in_: str, order: Any) -> None:
        """Order of the image's axes in the input: (2, 0, 1) makes H x W x K
        into K x H x W."""
        self._check_input(in_)
        if len(order) != len(self.inputs[in_]) - 1:
            raise TransformerError(
                f"transpose order {tuple(order)} for {in_!r} needs "
                f"{len(self.inputs[in_]) - 1} axes, as the input "
                f"{self.inputs[in_]} without its batch axis"
            )
        self.transpose[in_] = tuple(order)

    def set_channel_swap(self, in_: str, order: Any) -> None:
        """Channel order after the transpose: (2, 1, 0) turns RGB into BGR."""
        self._check_input(in_)
        if len(order) != self.inputs[in_][1]:
            raise TransformerError(
                f"channel swap {tuple(order)} for {in_!r} needs "
                f"{self.inputs[in_][1]} channels, as the input"
            )
        self.channel_swap[in_] = tuple(order)

    def set_raw_scale(self, in_: str, scale: float) -> None:
        """Multiply the raw image by ``scale`` (255 for models trained on [0, 255]
        pixels, as CaffeNet), before the mean is subtracted."""
        self._check_input(in_)
        self.raw_scale[in_] = scale

    def set_mean(self, in_: str, mean: np.ndarray) -> None:
        """Subtract ``mean``: one value per channel (shape (K,)) or a K x H x W
        (or H x W) image, resized to the input's H x W when it differs."""
        self._check_input(in_)
        mean = np.asarray(mean)
        want = self.inputs[in_][1:]
        if mean.ndim == 1:
            if mean.shape[0] != want[0]:
                raise TransformerError(
                    f"mean of {mean.shape[0]} channels for {in_!r}, whose input "
                    f"has {want[0]}"
                )
            mean = mean[:, None, None]
        else:
            if mean.ndim == 2:
                mean = mean[None]
            if mean.ndim != 3:
                raise TransformerError(
                    f"mean for {in_!r} must be (K,), (H, W) or (K, H, W), got "
                    f"shape {mean.shape}"
                )
            if mean.shape != want:
                mean = resize_image(mean.transpose(1, 2, 0), want[1:]).transpose(
                    2, 0, 1
                )
        self.mean[in_] = mean

    def set_input_scale(self, in_: str, scale: float) -> None:
        """Multiply the input by ``scale`` after the mean is subtracted."""
        self._check_input(in_)
        self.input_scale[in_] = scale


# -- images --------------------------------------------------------------------------
def load_image(filename: str, color: bool = True) -> np.ndarray:
    """An image file as float32 in [0, 1]: H x W x 3 RGB (``color``, gray images
    repeated), or H x W x 1 intensity; an alpha channel is dropped."""
    import cv2

    img = cv2.imread(str(filename), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise CaffepyError(f"load_image: cannot read an image from {filename!r}")
    scale = float(np.iinfo(img.dtype).max) if img.dtype.kind in "ui" else 1.0
    img = img.astype(np.float32) / scale
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if img.ndim == 3 and img.shape[2] == 3:
        img = img[:, :, ::-1]  # OpenCV reads BGR
        if not color:
            img = img @ np.array([0.2125, 0.7154, 0.0721], np.float32)
    if img.ndim == 2:
        img = img[:, :, None]
    if color and img.shape[2] == 1:
        img = np.tile(img, (1, 1, 3))
    return np.ascontiguousarray(img, dtype=np.float32)


_INTERP = {0: "INTER_NEAREST", 1: "INTER_LINEAR", 3: "INTER_CUBIC"}


def resize_image(im: np.ndarray, new_dims: Any, interp_order: int = 1) -> np.ndarray:
    """Resize an H x W x K image to ``new_dims`` = (height, width), as float32;
    ``interp_order`` 0 nearest, 1 linear (default), 3 cubic (pixel centres
    aligned, as scikit-image)."""
    import cv2

    im = np.asarray(im, dtype=np.float32)
    h, w = int(new_dims[0]), int(new_dims[1])
    if interp_order not in _INTERP:
        raise TransformerError(
            f"resize_image: interp_order must be 0, 1 or 3, got {interp_order}"
        )
    if im.size and im.min() == im.max():  # a constant image stays constant
        return np.full((h, w) + im.shape[2:], im.flat[0], dtype=np.float32)
    flag = getattr(cv2, _INTERP[interp_order])
    k = im.shape[2] if im.ndim == 3 else 0
    if k > 512:  # OpenCV's limit on channels (CV_CN_MAX)
        parts = [
            resize_image(im[:, :, i : i + 512], (h, w), interp_order)
            for i in range(0, k, 512)
        ]
        return np.concatenate(parts, axis=2)
    out = cv2.resize(im, (w, h), interpolation=flag)
    if im.ndim == 3 and out.ndim == 2:
        out = out[:, :, None]
    return out.astype(np.float32, copy=False)


def oversample(images: Any, crop_dims: Any) -> np.ndarray:
    """Ten crops per image: the four corners and the centre, then the same five
    mirrored left-right; (10 N) x h x w x K float32."""
    h, w = int(crop_dims[0]), int(crop_dims[1])
    shape = np.asarray(images[0]).shape
    top, left = int((shape[0] - h) / 2), int((shape[1] - w) / 2)
    corners = [
        (0, 0),
        (0, shape[1] - w),
        (shape[0] - h, 0),
        (shape[0] - h, shape[1] - w),
        (top, left),
    ]
    crops = np.empty((10 * len(images), h, w, shape[-1]), dtype=np.float32)
    ix = 0
    for im in images:
        five = [np.asarray(im)[y : y + h, x : x + w, :] for y, x in corners]
        for crop in five:
            crops[ix] = crop
            ix += 1
        for crop in five:
            crops[ix] = crop[:, ::-1, :]
            ix += 1
    return crops


__all__ = [
    "Transformer",
    "TransformerError",
    "array_to_blobproto",
    "array_to_datum",
    "arraylist_to_blobprotovector_str",
    "blobproto_to_array",
    "blobprotovector_str_to_arraylist",
    "datum_to_array",
    "load_image",
    "oversample",
    "resize_image",
]
