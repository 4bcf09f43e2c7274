"""DataTransformer: Caffe's ``data_transformer.cpp`` on whole batches.

For every image (C x H x W, uint8 or float), in this order:

1. mirror: when ``mirror`` is set, flip horizontally with probability 1/2 (Caffe
   draws it in both phases; it is off by default and usually set in TRAIN only);
2. crop: with ``crop_size`` k, a k x k window at a random offset in TRAIN
   (``h_off`` uniform in [0, H - k]) or the centre in TEST
   (``h_off = (H - k) // 2``, likewise ``w_off``);
3. ``value = (pixel - mean) * scale``, where the mean is ``mean_file`` (a
   C x H x W BlobProto as large as the *uncropped* image, indexed at the crop
   offset) or ``mean_value`` (one for all channels, or one per channel).

Arithmetic is in the output dtype, as Caffe's ``Dtype``, so float32 batches
match Caffe's bit for bit. ``force_color`` / ``force_gray`` choose how encoded
records are decoded (see :func:`caffepy.data.datum.datum_to_array`); they are
read from the parameter by the data sources.

Random draws come from the transformer's own ``numpy.random.Generator``, so a
prefetch thread never races the main thread's RNG, and the n-th batch is the
same for the same seed.
"""

import numpy as np

from caffepy.errors import DataError, LayerError
from caffepy.layer import TRAIN

_MEAN_CACHE_SIZE = 8


class DataTransformer:
    """Crop, mirror, mean subtraction and scaling of image batches.

    Args:
        param: a ``caffe_pb2.TransformationParameter`` (defaults from the proto:
            scale 1, mirror false, crop_size 0, no mean, no forced colour).
        phase: ``caffepy.TRAIN`` (random crop) or ``caffepy.TEST`` (centre crop).
        rng: the ``numpy.random.Generator`` for mirror and crop draws; by
            default one seeded from :func:`caffepy.rng.get_rng`.
        dtype: float32 or float64, the dtype of the output batches.
        owner: the layer, to name it in parameter errors.

    Raises:
        LayerError: contradictory parameters (mean_file with mean_value,
            force_color with force_gray).
        DataError: an unreadable mean file.
    """

    def __init__(self, param, phase=TRAIN, rng=None, dtype=np.float32, owner=None):
        self.phase = phase
        self.dtype = np.dtype(dtype)
        self.scale = self.dtype.type(param.scale)
        self.mirror = bool(param.mirror)
        self.crop_size = int(param.crop_size)
        self.mean_values = np.asarray(param.mean_value, self.dtype)
        self.mean_file = param.mean_file or None
        if param.force_color and param.force_gray:
            self._param_error("cannot set both force_color and force_gray", owner)
        #: How to decode encoded records: True colour, False gray, None native.
        self.color = None
        if param.force_color or param.force_gray:
            self.color = bool(param.force_color)
        self.mean = None
        if self.mean_file:
            if self.mean_values.size:
                self._param_error(
                    f"give mean_file or mean_value, not both (got mean_file "
                    f"{self.mean_file!r} and {self.mean_values.size} mean_value)",
                    owner,
                )
            self.mean = self._read_mean(self.mean_file)
        if rng is None:
            from caffepy.rng import get_rng

            rng = np.random.default_rng(int(get_rng().integers(2**63)))
        self.rng = rng
        self._mean_cache = {}

    @staticmethod
    def _param_error(message, owner):
        if owner is not None:
            raise LayerError(owner, f"transform_param: {message}")
        raise DataError(f"transform_param: {message}")

    def _read_mean(self, path):
        from caffepy.io.blobproto import read_binaryproto

        mean = read_binaryproto(path)
        # NOTE: Caffe reads the legacy 4-D blob (1 x C x H x W) and indexes its
        # first image; a 3-D C x H x W blob is accepted too.
        if mean.ndim == 4 and mean.shape[0] >= 1:
            mean = mean[0]
        if mean.ndim != 3:
            raise DataError(
                f"mean file {path!r} has shape {mean.shape}, expected 1 x C x H x W"
            )
        return np.ascontiguousarray(mean, self.dtype)

    # -- shapes ----------------------------------------------------------------
    def output_shape(self, shape, name="image"):
        """The C x h x w an image of shape C x H x W becomes (crop applied).

        Raises:
            DataError: crop_size larger than the image.
        """
        c, h, w = shape
        k = self.crop_size
        if not k:
            return (c, h, w)
        if k > h or k > w:
            raise DataError(
                f"crop_size {k} is larger than {name} ({c}x{h}x{w}); use a smaller "
                "crop_size or resize the images"
            )
        return (c, k, k)

    def check_image(self, shape, name="image"):
        """The output shape of an image of ``shape``, after checking that the
        crop and the mean fit it (a data layer calls this at setup, on its
        first record, so a misfit is reported before training starts).

        Raises:
            DataError: crop_size larger than the image, a mean file of another
                shape, a mean_value count that is neither 1 nor C.
        """
        out = self.output_shape(shape, name)
        self._mean_for(tuple(shape), name)
        return out

    def _mean_for(self, shape, name):
        """The C x H x W mean array (in the output dtype) for images of ``shape``."""
        if self.mean is not None:
            if self.mean.shape != tuple(shape):
                have = "x".join(map(str, self.mean.shape))
                raise DataError(
                    f"mean file {self.mean_file!r} is {have} but {name} is "
                    f"{'x'.join(map(str, shape))}; the mean must have the uncropped "
                    "image's shape"
                )
            return self.mean
        mean = self._mean_cache.get(shape)
        if mean is None:
            c = shape[0]
            values = self.mean_values
            if values.size not in (0, 1, c):
                raise DataError(
                    f"transform_param has {values.size} mean_value but {name} has {c} "
                    f"channel{'s' if c != 1 else ''}; give 1 mean_value (for all "
                    "channels)" + (f" or {c} (one per channel)" if c > 1 else "")
                )
            mean = np.zeros(shape, self.dtype)
            if values.size == 1:
                mean.fill(values[0])
            elif values.size:
                mean[...] = values[:, None, None]
            if len(self._mean_cache) >= _MEAN_CACHE_SIZE:
                self._mean_cache.clear()
            self._mean_cache[shape] = mean
        return mean

    # -- transform ---------------------------------------------------------------
    def _draw(self, n, heights, widths):
        """Mirror flags and crop offsets for n images (arrays of their sizes)."""
        rng = self.rng
        if self.mirror:
            mirror = rng.integers(0, 2, n).astype(bool)
        else:
            mirror = np.zeros(n, bool)
        k = self.crop_size
        if not k:
            zeros = np.zeros(n, np.int64)
            return mirror, zeros, zeros
        if self.phase == TRAIN:
            h_off = rng.integers(0, heights - k + 1, n).astype(np.int64)
            w_off = rng.integers(0, widths - k + 1, n).astype(np.int64)
        else:
            h_off = np.broadcast_to((heights - k) // 2, (n,)).astype(np.int64)
            w_off = np.broadcast_to((widths - k) // 2, (n,)).astype(np.int64)
        return mirror, h_off, w_off

    def transform(self, images, out=None, names=None):
        """Transform a batch.

        Args:
            images: an (N, C, H, W) array, or a list of N C x H x W arrays (sizes
                may differ when crop_size is set; channels may not).
            out: (N, C, h, w) array of the transformer's dtype to write, or None.
            names: N names (keys, paths) for error messages.

        Returns:
            ``out``: the transformed batch.

        Raises:
            DataError: crop larger than an image, a mean of another shape,
                mean_value count not 1 or C, images of different channels (or of
                different sizes without crop_size).
        """

        def name(i):
            return names[i] if names is not None else f"image {i}"

        if not isinstance(images, np.ndarray):
            shapes = [im.shape for im in images]
            if len(set(shapes)) == 1:
                images = np.stack(images)
            else:
                return self._transform_mixed(images, shapes, out, name)
        n = images.shape[0]
        images = np.ascontiguousarray(images)
        step = int(np.prod(images.shape[1:]))
        offsets = np.arange(0, n * step, step, dtype=np.int64)
        return self.transform_flat(
            images.reshape(-1), offsets, tuple(images.shape[1:]), out, names
        )

    def transform_flat(self, src, offsets, shape, out=None, names=None):
        """Transform a batch of images that lie in one flat array.

        Args:
            src: 1-D uint8 or float array; image i is the C x H x W block (C
                order) from ``src[offsets[i]]``.
            offsets: (N,) int64 start of each image.
            shape: (C, H, W) of every image.
            out: (N, C, h, w) array of the transformer's dtype to write, or None.
            names: N names for error messages (only the first is used).

        Returns:
            ``out``: the transformed batch.

        Raises:
            DataError: as :meth:`transform`.
        """
        from caffepy.kernels.data import transform_batch

        n = len(offsets)
        first = names[0] if names is not None else "image 0"
        out_shape = (n,) + self.output_shape(shape, first)
        mean = self._mean_for(shape, first)
        out = self._check_out(out, out_shape)
        mirror, h_off, w_off = self._draw(n, shape[1], shape[2])
        target = out if out.flags.c_contiguous else np.empty(out_shape, self.dtype)
        transform_batch(
            src, offsets, shape[1], shape[2], h_off, w_off, mirror, mean, self.scale,
            target,
        )  # fmt: skip
        if target is not out:
            out[...] = target
        return out

    def _check_out(self, out, shape):
        if out is None:
            return np.empty(shape, self.dtype)
        if out.shape != shape or out.dtype != self.dtype:
            raise DataError(
                f"transform output is {out.shape} {out.dtype}, expected {shape} "
                f"{self.dtype}"
            )
        return out

    def _transform_mixed(self, images, shapes, out, name):
        """Images of different sizes: crop each (views), then one batched kernel."""
        from caffepy.kernels.data import transform_batch

        n = len(images)
        c0 = shapes[0][0]
        for i, s in enumerate(shapes):
            if s[0] != c0:
                raise DataError(
                    f"{name(i)} has {s[0]} channel(s) but {name(0)} has {c0}; set "
                    "force_color or force_gray in transform_param"
                )
            if self.mean is not None:
                self._mean_for(s, name(i))  # raises: the mean fits one size only
            self.output_shape(s, name(i))
        if not self.crop_size:
            i = next(i for i, s in enumerate(shapes) if s != shapes[0])
            raise DataError(
                f"{name(i)} is {'x'.join(map(str, shapes[i]))} but {name(0)} is "
                f"{'x'.join(map(str, shapes[0]))}; a batch needs one size: set "
                "crop_size, or resize the images when converting"
            )
        k = self.crop_size
        heights = np.array([s[1] for s in shapes], np.int64)
        widths = np.array([s[2] for s in shapes], np.int64)
        mirror, h_off, w_off = self._draw(n, heights, widths)
        crops = np.stack(
            [
                im[:, ho : ho + k, wo : wo + k]
                for im, ho, wo in zip(images, h_off, w_off)
            ]
        )
        out = self._check_out(out, (n, c0, k, k))
        zeros = np.zeros(n, np.int64)
        mean = self._mean_for((c0, k, k), name(0))
        target = out if out.flags.c_contiguous else np.empty(out.shape, self.dtype)
        offsets = np.arange(n, dtype=np.int64) * (c0 * k * k)
        transform_batch(
            crops.reshape(-1), offsets, k, k, zeros, zeros, mirror, mean, self.scale,
            target,
        )  # fmt: skip
        if target is not out:
            out[...] = target
        return out
