"""pycaffe's ``caffe.Classifier``: a Net that classifies images, with the
Transformer's preprocessing and center or ten-crop (oversampled) prediction."""

from __future__ import annotations

from typing import Any

import numpy as np

from caffepy.errors import CaffepyError
from caffepy.net import Net
from caffepy.phase import TEST
from caffepy.pycaffe import io as caffe_io


class Classifier(Net):
    """A deploy net (TEST phase) that predicts class scores for images.

    Args:
        model_file: the deploy prototxt (its first input is the image batch).
        pretrained_file: the .caffemodel (None: the fillers' weights).
        image_dims: (height, width) images are resized to before cropping
            (default: the input's size, so nothing is cropped away).
        mean, input_scale, raw_scale, channel_swap: the Transformer's settings
            (see :class:`caffepy.pycaffe.io.Transformer`).
    """

    def __init__(
        self,
        model_file: str,
        pretrained_file: str | None = None,
        image_dims: Any = None,
        mean: np.ndarray | None = None,
        input_scale: float | None = None,
        raw_scale: float | None = None,
        channel_swap: Any = None,
    ) -> None:
        Net.__init__(self, model_file, TEST, weights=pretrained_file)
        if not self.inputs:
            raise CaffepyError(f"Classifier: the net {model_file} has no input blob")
        in_ = self.inputs[0]
        self.transformer = caffe_io.Transformer({in_: self.blobs[in_].data.shape})
        self.transformer.set_transpose(in_, (2, 0, 1))
        if mean is not None:
            self.transformer.set_mean(in_, mean)
        if input_scale is not None:
            self.transformer.set_input_scale(in_, input_scale)
        if raw_scale is not None:
            self.transformer.set_raw_scale(in_, raw_scale)
        if channel_swap is not None:
            self.transformer.set_channel_swap(in_, channel_swap)
        self.crop_dims = np.array(self.blobs[in_].data.shape[2:])
        self.image_dims = np.array(self.crop_dims if image_dims is None else image_dims)

    def predict(self, inputs: list, oversample: bool = True) -> np.ndarray:
        """Class scores, one row per image (H x W x K arrays): the mean over ten
        crops with ``oversample``, else of the center crop."""
        if not len(inputs):
            raise CaffepyError("Classifier.predict: no images given")
        h, w = (int(d) for d in self.image_dims)
        batch = np.zeros((len(inputs), h, w, inputs[0].shape[2]), dtype=np.float32)
        for i, image in enumerate(inputs):
            batch[i] = caffe_io.resize_image(image, (h, w))
        ch, cw = (int(d) for d in self.crop_dims)
        if oversample:
            batch = caffe_io.oversample(batch, (ch, cw))
        else:
            top, left = int((h - ch) / 2), int((w - cw) / 2)
            batch = batch[:, top : top + ch, left : left + cw, :]
        in_ = self.inputs[0]
        caffe_in = np.stack([self.transformer.preprocess(in_, x) for x in batch])
        scores = self.forward_all(**{in_: caffe_in})[self.outputs[0]]
        if oversample:
            scores = scores.reshape((len(scores) // 10, 10, -1)).mean(1)
        return scores
