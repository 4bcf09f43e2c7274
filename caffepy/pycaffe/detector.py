"""pycaffe's ``caffe.Detector``: classify given windows of images (R-CNN style),
each window warped to the net's input, optionally with context around it."""

from __future__ import annotations

from typing import Any

import numpy as np

from caffepy.errors import CaffepyError
from caffepy.net import Net
from caffepy.phase import TEST
from caffepy.pycaffe import io as caffe_io


class Detector(Net):
    """A deploy net (TEST phase) scoring windows of images.

    Args:
        model_file, pretrained_file: the deploy prototxt and its .caffemodel.
        mean, input_scale, raw_scale, channel_swap: the Transformer's settings.
        context_pad: pixels of the (square) net input that show context around
            the window, as R-CNN's feature extraction (None or 0: none); the
            part outside the image is filled with the mean.
    """

    def __init__(
        self,
        model_file: str,
        pretrained_file: str | None = None,
        mean: np.ndarray | None = None,
        input_scale: float | None = None,
        raw_scale: float | None = None,
        channel_swap: Any = None,
        context_pad: int | None = None,
    ) -> None:
        Net.__init__(self, model_file, TEST, weights=pretrained_file)
        if not self.inputs:
            raise CaffepyError(f"Detector: the net {model_file} has no input blob")
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
        self.configure_crop(context_pad)

    def detect_windows(self, images_windows: Any) -> list[dict]:
        """Score windows: ``images_windows`` is ``[(image path, [window, ...]),
        ...]`` with windows ``(ymin, xmin, ymax, xmax)``; returns one dict per
        window: ``{"filename", "window", "prediction"}``, in order."""
        images_windows = [(f, [np.asarray(w) for w in ws]) for f, ws in images_windows]
        crops = []
        for filename, windows in images_windows:
            image = caffe_io.load_image(filename).astype(np.float32)
            crops.extend(self.crop(image, window) for window in windows)
        if not crops:
            return []
        in_ = self.inputs[0]
        caffe_in = np.stack([self.transformer.preprocess(in_, c) for c in crops])
        predictions = self.forward_all(**{in_: caffe_in})[self.outputs[0]]
        detections, ix = [], 0
        for filename, windows in images_windows:
            for window in windows:
                detections.append(
                    {
                        "window": window,
                        "prediction": predictions[ix],
                        "filename": filename,
                    }
                )
                ix += 1
        return detections

    def detect_selective_search(self, image_fnames: list) -> list[dict]:
        """pycaffe's selective-search proposals need MATLAB code caffepy does not
        ship; give windows to :meth:`detect_windows` instead."""
        raise CaffepyError(
            "Detector.detect_selective_search needs selective_search_ijcv_with_python "
            "(MATLAB); compute windows elsewhere and call detect_windows"
        )

    def crop(self, im: np.ndarray, window: Any) -> np.ndarray:
        """The window ``(ymin, xmin, ymax, xmax)`` of ``im``; with context_pad, a
        crop of the net's input size holding the enlarged window, mean-padded
        where it leaves the image."""
        window = np.asarray(window)
        if not self.context_pad:
            return im[window[0] : window[2], window[1] : window[3]]
        size = self.blobs[self.inputs[0]].shape[3]  # a square input
        scale = size / (1.0 * size - self.context_pad * 2)
        half_h = (window[2] - window[0] + 1) / 2.0
        half_w = (window[3] - window[1] + 1) / 2.0
        center = (window[0] + half_h, window[1] + half_w)
        box = np.round(
            np.tile(center, 2) + scale * np.array((-half_h, -half_w, half_h, half_w))
        )
        scale_h = size / (box[2] - box[0] + 1)
        scale_w = size / (box[3] - box[1] + 1)
        pad_y = int(round(max(0, -box[0]) * scale_h))  # rows outside the image
        pad_x = int(round(max(0, -box[1]) * scale_w))
        im_h, im_w = im.shape[:2]
        box = np.clip(box, 0.0, [im_h, im_w, im_h, im_w]).astype(int)
        clip_h, clip_w = box[2] - box[0] + 1, box[3] - box[1] + 1
        if clip_h <= 0 or clip_w <= 0:
            raise CaffepyError(f"Detector.crop: window {window.tolist()} is empty")
        crop_h = min(int(round(clip_h * scale_h)), size - pad_y)
        crop_w = min(int(round(clip_w * scale_w)), size - pad_x)
        context = caffe_io.resize_image(
            im[box[0] : box[2], box[1] : box[3]], (crop_h, crop_w)
        )
        out = np.ones(self.crop_dims, dtype=np.float32) * self.crop_mean
        out[pad_y : pad_y + crop_h, pad_x : pad_x + crop_w] = context
        return out

    def configure_crop(self, context_pad: int | None) -> None:
        """Set the crop size (the input's, as H x W x K) and, with context, the
        mean in image space that pads crops leaving the image."""
        in_ = self.inputs[0]
        tpose = self.transformer.transpose[in_]
        inv = np.argsort(tpose)
        self.crop_dims = np.array(self.blobs[in_].data.shape[1:])[inv]
        self.context_pad = context_pad
        if not context_pad:
            return
        mean = self.transformer.mean.get(in_)
        if mean is None:
            self.crop_mean = np.zeros(self.crop_dims, dtype=np.float32)
            return
        crop_mean = np.broadcast_to(mean, self.blobs[in_].data.shape[1:])
        crop_mean = crop_mean.transpose(inv).astype(np.float32)
        swap = self.transformer.channel_swap.get(in_)
        if swap is not None:
            crop_mean = crop_mean[:, :, np.argsort(swap)]
        raw_scale = self.transformer.raw_scale.get(in_)
        if raw_scale is not None:
            crop_mean = crop_mean / raw_scale
        self.crop_mean = crop_mean
