"""classify: class scores of images with a deploy net (pycaffe's ``classify.py``).

Inputs are image files, folders (their ``*.<ext>`` files, sorted) or a ``.npy``
array of H x W x K images in [0, 1]. Each image is resized to ``images_dim`` and
scored on the center crop of the net's input size, or (the default) averaged over
ten crops: the four corners and the center, and their mirror images. The scores
go to a ``.npy`` file (N x classes), in input order.
"""

from __future__ import annotations

import glob
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("caffepy")


@dataclass
class Classified:
    """What :func:`classify` found.

    Attributes:
        names: the input each row of ``predictions`` belongs to (a file name,
            or ``file.npy[i]``).
        predictions: N x classes float32 scores.
        seconds: how long the prediction took.
        top: per input, its best (label, score) pairs when labels were given.
    """

    names: list[str]
    predictions: Any
    seconds: float
    top: list[list[tuple[str, float]]] = field(default_factory=list)

    def format(self) -> str:
        """The top-k lines (``name: label (score), ...``), one per input."""
        return "\n".join(
            f"{name}: " + ", ".join(f"{label} ({score:.5f})" for label, score in best)
            for name, best in zip(self.names, self.top)
        )


def load_mean(path: str) -> Any:
    """The per-channel mean (K,) of a mean file: a K x H x W ``.npy`` (as pycaffe's
    ilsvrc_2012_mean.npy) or a ``.binaryproto`` (1 x K x H x W, as
    compute_image_mean writes); a (K,) ``.npy`` is taken as it is."""
    import numpy as np

    from caffepy.errors import DataError

    if str(path).lower().endswith(".binaryproto"):
        from caffepy.io.blobproto import read_binaryproto

        mean = read_binaryproto(path)
        mean = mean.reshape(mean.shape[-3:]) if mean.ndim >= 3 else mean
    else:
        try:
            mean = np.load(path)
        except (OSError, ValueError) as err:
            raise DataError(
                f"mean file {path}: cannot read a .npy array ({err})"
            ) from None
    mean = np.asarray(mean, dtype=np.float32)
    if mean.ndim == 1:
        return mean
    if mean.ndim != 3:
        raise DataError(
            f"mean file {path}: expected a K x H x W mean (or K values), got shape "
            f"{mean.shape}"
        )
    return mean.mean(1).mean(1)


def read_labels(path: str) -> list[str]:
    """Class names, one per line (line i names class i; blank lines are kept as
    empty names so the numbering stays)."""
    from caffepy.errors import DataError

    try:
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f.read().splitlines()]
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise DataError(f"labels file {path}: {reason}") from None


def load_inputs(
    paths: Sequence[str], ext: str = "jpg", color: bool = True
) -> tuple[list[str], list[Any]]:
    """The images named by ``paths`` (files, folders, ``.npy`` arrays), with a
    name for each, in order."""
    import numpy as np

    from caffepy.errors import DataError
    from caffepy.pycaffe.io import load_image

    names: list[str] = []
    images: list[Any] = []
    for path in paths:
        path = os.path.expanduser(path)
        if path.lower().endswith("npy"):
            array = np.load(path)
            if array.ndim == 3:
                array = array[None]
            if array.ndim != 4:
                raise DataError(
                    f"{path}: expected N x H x W x K images, got shape {array.shape}"
                )
            log.info("Loading file: %s", path)
            names.extend(f"{path}[{i}]" for i in range(len(array)))
            images.extend(np.asarray(a, np.float32) for a in array)
        elif os.path.isdir(path):
            log.info("Loading folder: %s", path)
            files = sorted(glob.glob(os.path.join(glob.escape(path), "*." + ext)))
            if not files:
                raise DataError(f"folder {path} has no *.{ext} images (see --ext)")
            names.extend(files)
            images.extend(load_image(f, color) for f in files)
        else:
            if not os.path.isfile(path):
                raise DataError(f"classify: input {path}: no such file or folder")
            log.info("Loading file: %s", path)
            names.append(path)
            images.append(load_image(path, color))
    return names, images


def _top_k(predictions: Any, labels: list[str], k: int) -> list:
    import numpy as np

    from caffepy.errors import DataError

    if len(labels) < predictions.shape[1]:
        raise DataError(
            f"the labels file names {len(labels)} classes but the net scores "
            f"{predictions.shape[1]}"
        )
    out = []
    for row in predictions:
        best = np.argsort(-row, kind="stable")[:k]
        out.append([(labels[i], float(row[i])) for i in best])
    return out


def classify(
    inputs: Sequence[str],
    output: str | None,
    model_def: str,
    pretrained_model: str | None = None,
    center_only: bool = False,
    images_dim: Sequence[int] | None = (256, 256),
    mean_file: str = "",
    input_scale: float | None = None,
    raw_scale: float | None = 255.0,
    channel_swap: Sequence[int] | None = None,
    ext: str = "jpg",
    gpu: int | None = None,
    labels: str | None = None,
    top_k: int = 5,
) -> Classified:
    """Score images with a deploy net and save the scores.

    Args:
        inputs: image files, folders or ``.npy`` arrays of H x W x K images.
        output: the file to write the N x classes scores to, in ``.npy``
            format (None: do not save).
        model_def: the deploy prototxt (its first input is the image batch).
        pretrained_model: its .caffemodel (None: the fillers' weights).
        center_only: score the center crop only, not the mean of ten crops.
        images_dim: (height, width) images are resized to before cropping
            (None: the net's input size).
        mean_file: a ``.npy`` or ``.binaryproto`` mean; its per-channel means
            are subtracted ("" for none).
        input_scale: multiply by this after the mean is subtracted.
        raw_scale: multiply the [0, 1] images by this before the mean.
        channel_swap: the input channel order (None: 2,1,0, RGB to Caffe's BGR,
            for a 3-channel input, else no swap).
        ext: the image extension looked for in folders.
        gpu: run on this GPU (None: the CPU).
        labels: a file of class names, line i naming class i, for the top-k.
        top_k: how many of the best classes to report per image.

    Returns:
        The input names, the scores, the time taken and the top-k labels.

    Raises:
        DataError: unreadable inputs or mean file, or fewer labels than classes.
        NetError: a net without an input blob.
    """
    import numpy as np

    from caffepy.errors import DataError
    from caffepy.pycaffe.classifier import Classifier
    from caffepy.tools.device import use_gpu

    use_gpu(gpu)
    mean = load_mean(mean_file) if mean_file else None
    if pretrained_model is None:
        log.warning("classify: no --pretrained_model, using the fillers' weights")
    classifier = Classifier(
        model_def,
        pretrained_model,
        image_dims=None if images_dim is None else tuple(images_dim),
        mean=mean,
        input_scale=input_scale,
        raw_scale=raw_scale,
        channel_swap=None,
    )
    in_ = classifier.inputs[0]
    crop = tuple(int(d) for d in classifier.crop_dims)
    if any(i < c for i, c in zip(classifier.image_dims, crop)):
        raise DataError(
            f"classify: --images_dim {tuple(int(d) for d in classifier.image_dims)} "
            f"is smaller than the net's input {crop}; crops need at least that"
        )
    channels = classifier.blobs[in_].data.shape[1]
    if channel_swap is None and channels == 3:
        channel_swap = (2, 1, 0)
    if channel_swap:
        classifier.transformer.set_channel_swap(in_, tuple(channel_swap))
    names, images = load_inputs(inputs, ext, color=channels != 1)
    if not images:
        raise DataError("classify: no input images")
    log.info("Classifying %d inputs.", len(images))
    start = time.time()
    predictions = np.asarray(classifier.predict(images, not center_only))
    seconds = time.time() - start
    log.info("Done in %.2f s.", seconds)
    result = Classified(names, predictions, seconds)
    if labels:
        result.top = _top_k(predictions, read_labels(labels), top_k)
    if output:
        import io

        from caffepy.io.atomic import atomic_write_bytes

        buf = io.BytesIO()
        np.save(buf, predictions)
        log.info("Saving results into %s", output)
        atomic_write_bytes(output, buf.getvalue())
    return result
