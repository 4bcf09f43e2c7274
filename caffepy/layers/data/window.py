"""WindowData: R-CNN's fine-tuning input, windows of images warped to a square.

The window file (``window_data_param.source``) repeats, for each image::

    # <image index>
    <image path>            (relative to root_folder)
    <channels> <height> <width>
    <number of windows>
    <label> <overlap> <x1> <y1> <x2> <y2>     (one line per window, inclusive box)

A window with ``overlap >= fg_threshold`` is foreground (its label must be > 0);
one with ``overlap < bg_threshold`` is background (label 0); others are unused.
"""

from __future__ import annotations

import math

import numpy as np

from caffepy import rng as _rng
from caffepy.errors import DataError, LayerError
from caffepy.layer import Layer
from caffepy.parallel.state import solver_count, solver_rank
from caffepy.phase import TRAIN
from caffepy.registry import register_layer


def _cround(value: float) -> int:
    """C's ``round``: halves away from zero (Python rounds them to even)."""
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def read_window_file(path: str) -> tuple[list, np.ndarray]:
    """Parse a window file.

    Returns:
        (images, windows): images[i] = (path, (channels, height, width)) in file
        order; windows an (M, 7) float array of (image index into ``images``,
        label, overlap, x1, y1, x2, y2).

    Raises:
        DataError: the file is missing, empty or malformed (naming the line).
    """
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as err:
        raise DataError(f"cannot open window file {path}: {err.strerror}") from None
    tokens = [(n, tok) for n, line in enumerate(lines, 1) for tok in line.split()]
    if not tokens:
        raise DataError(f"window file {path} is empty")
    pos = 0

    def take(what: str, kind=int):
        nonlocal pos
        if pos >= len(tokens):
            raise DataError(f"{path}: the file ends where {what} was expected")
        line, tok = tokens[pos]
        pos += 1
        if kind is str:
            return tok
        try:
            return kind(tok)
        except ValueError:
            raise DataError(
                f"{path}:{line}: expected {what} ({kind.__name__}), got {tok!r}"
            ) from None

    images, windows = [], []
    while pos < len(tokens):
        line, tag = tokens[pos]
        if take("'#'", str) != "#":
            raise DataError(f"{path}:{line}: expected '# <image index>', got {tag!r}")
        take("the image index")
        image = take("the image path", str)
        size = (take("channels"), take("height"), take("width"))
        for _ in range(take("the number of windows")):
            label, overlap = take("a label"), take("an overlap", float)
            box = [take(c) for c in ("x1", "y1", "x2", "y2")]
            windows.append([len(images), label, overlap, *box])
        images.append((image, size))
    return images, np.array(windows, np.float64).reshape(-1, 7)


@register_layer("WindowData")
class WindowDataLayer(Layer):
    """Batches of image windows sampled from a window file (Caffe's WindowData).

    Each batch has ``batch_size - int(batch_size * fg_fraction)`` background
    windows (label 0) then foreground ones, each drawn uniformly from its set.
    A window is cut from its image (read in colour, BGR) and warped bilinearly
    to ``crop_size`` x ``crop_size``. With ``context_pad`` > 0 or
    ``crop_mode: "square"`` the box is first grown about its centre (square:
    to its longer side) by ``crop_size / (crop_size - 2*context_pad)``; the part
    outside the image stays 0 in the output (the padding is mirrored with the
    window). Pixels become ``(pixel - mean) * scale``, the mean from
    ``transform_param.mean_file`` (its centre crop) or ``mean_value``.

    Parameters (``window_data_param``): ``source``, ``root_folder`` (""),
    ``batch_size``, ``fg_threshold`` (0.5), ``bg_threshold`` (0.5),
    ``fg_fraction`` (0.25), ``context_pad`` (0), ``crop_mode`` ("warp"),
    ``scale`` (1); ``transform_param``: ``crop_size`` (required), ``mirror``
    (random horizontal flips), ``mean_file`` / ``mean_value``. Random draws
    come from a generator seeded from :func:`caffepy.rng.get_rng` at setup.

    Tops: data (N, C, crop_size, crop_size) and label (N,). No gradient.

    Data-parallel training (TRAIN, N solvers): the windows are drawn as one
    process draws them, and rank r cuts batches r, r+N, ... of that stream.
    """

    exact_num_bottom = 0
    min_num_top = 1
    max_num_top = 2

    def setup(self, bottom, top):
        p = self.layer_param.window_data_param
        t = self.layer_param.transform_param
        if not p.source:
            raise LayerError(self, "window_data_param.source is empty")
        self.crop = int(t.crop_size or p.crop_size)
        if self.crop <= 0:
            raise LayerError(self, "transform_param.crop_size must be > 0, got 0")
        self.batch = int(p.batch_size)
        if self.batch <= 0:
            raise LayerError(self, f"batch_size must be > 0, got {self.batch}")
        if p.crop_mode not in ("warp", "square"):
            raise LayerError(
                self, f"crop_mode must be 'warp' or 'square', got {p.crop_mode!r}"
            )
        if 2 * p.context_pad >= self.crop:
            raise LayerError(
                self,
                f"context_pad ({p.context_pad}) must be less than half the "
                f"crop_size ({self.crop})",
            )
        self.images, windows = read_window_file(p.source)
        self.root = p.root_folder
        fg = windows[:, 2] >= p.fg_threshold
        bg = ~fg & (windows[:, 2] < p.bg_threshold)
        bad = fg & (windows[:, 1] <= 0)
        if bad.any():
            raise LayerError(
                self,
                f"{p.source}: foreground windows need a label > 0, got "
                f"{int(windows[bad][0, 1])}",
            )
        self.fg, self.bg = windows[fg], windows[bg].copy()
        self.bg[:, 1:3] = 0
        self.num_fg = int(np.float32(self.batch) * np.float32(p.fg_fraction))
        for name, group, n in (
            ("foreground", self.fg, self.num_fg),
            ("background", self.bg, self.batch - self.num_fg),
        ):
            if n and not len(group):
                raise LayerError(
                    self, f"{p.source} has no {name} windows, and a batch needs {n}"
                )
        self.mirror = bool(t.mirror or p.mirror)
        self.scale = np.float32(p.scale)
        self.context_pad = int(p.context_pad)
        self.square = p.crop_mode == "square"
        channels = self.images[0][1][0] if self.images else 3
        self.mean = self._mean(t, p, channels)
        self.gen = np.random.default_rng(int(_rng.get_rng().integers(2**63)))
        top[0].reshape((self.batch, channels, self.crop, self.crop))
        if len(top) > 1:
            top[1].reshape((self.batch,))

    def _mean(self, t, p, channels):
        """The (C, crop, crop) mean to subtract, or None."""
        mean_file = t.mean_file or p.mean_file
        if mean_file and len(t.mean_value):
            raise LayerError(self, "give mean_file or mean_value, not both")
        if mean_file:
            from caffepy.io.blobproto import read_binaryproto

            mean = np.asarray(read_binaryproto(mean_file), np.float32)
            mean = mean.reshape(mean.shape[-3:])
            off = (mean.shape[-1] - self.crop) // 2
            return mean[:, off : off + self.crop, off : off + self.crop]
        if len(t.mean_value):
            values = list(t.mean_value)
            if len(values) not in (1, channels):
                raise LayerError(
                    self,
                    f"mean_value needs 1 or {channels} values, got {len(values)}",
                )
            values = values * channels if len(values) == 1 else values
            return np.broadcast_to(
                np.float32(values)[:, None, None], (channels, self.crop, self.crop)
            )
        return None

    def reshape(self, bottom, top):
        """The tops keep their setup shapes."""

    def forward(self, bottom, top):
        data = np.zeros(top[0].shape, np.float32)
        labels = np.zeros(self.batch, np.float32)
        # Data-parallel (TRAIN): every rank draws the windows of the next N
        # batches alike (one seed) and cuts only batch ``rank`` of them, so the
        # ranks together see what one process with iter_size N sees.
        train = self.phase == TRAIN
        rank = solver_rank() if train else 0
        for b in range(solver_count() if train else 1):
            item = 0
            for group, count in (
                (self.bg, self.batch - self.num_fg),
                (self.fg, self.num_fg),
            ):
                for _ in range(count):
                    window = group[int(self.gen.integers(2**32)) % len(group)]
                    flip = self.mirror and int(self.gen.integers(2**32)) % 2 == 1
                    if b == rank:
                        self._warp(window, flip, data[item])
                        labels[item] = window[1]
                    item += 1
        top[0].data[...] = data
        if len(top) > 1:
            top[1].data[...] = labels

    def backward(self, top, propagate_down, bottom):
        """Data layers have no bottoms: nothing to propagate."""

    def _read(self, index: int) -> np.ndarray:
        import cv2

        # NOTE: Caffe prefixes root_folder as a string (no separator added).
        path = self.root + self.images[index][0]
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise DataError(
                f"{self.type} layer '{self.name}': cannot read image {path}"
            )
        return img

    def _warp(self, window, flip: bool, out: np.ndarray) -> None:
        """Cut, warp (and flip) one window into out (C, crop, crop), as Caffe."""
        import cv2

        img = self._read(int(window[0]))
        x1, y1, x2, y2 = (int(v) for v in window[3:7])
        crop = self.crop
        width, height = crop, crop
        pad_w = pad_h = 0
        if self.context_pad > 0 or self.square:
            f32 = np.float32
            context = f32(crop) / f32(crop - 2 * self.context_pad)
            half_h, half_w = f32(y2 - y1 + 1) / f32(2), f32(x2 - x1 + 1) / f32(2)
            cx, cy = f32(x1) + half_w, f32(y1) + half_h
            if self.square:
                half_h = half_w = max(half_h, half_w)
            x1, x2 = _cround(cx - half_w * context), _cround(cx + half_w * context)
            y1, y2 = _cround(cy - half_h * context), _cround(cy + half_h * context)
            full_h, full_w = y2 - y1 + 1, x2 - x1 + 1
            px1, py1 = max(0, -x1), max(0, -y1)
            px2 = max(0, x2 - img.shape[1] + 1)
            py2 = max(0, y2 - img.shape[0] + 1)
            x1, x2, y1, y2 = x1 + px1, x2 - px2, y1 + py1, y2 - py2
            sx, sy = f32(crop) / f32(full_w), f32(crop) / f32(full_h)
            width = _cround(f32(x2 - x1 + 1) * sx)
            height = _cround(f32(y2 - y1 + 1) * sy)
            pad_h = _cround(f32(py1) * sy)
            pad_w = _cround(f32(px2 if flip else px1) * sx)
            height = min(height, crop - pad_h)
            width = min(width, crop - pad_w)
        patch = img[y1 : y2 + 1, x1 : x2 + 1]
        patch = cv2.resize(patch, (width, height), interpolation=cv2.INTER_LINEAR)
        if flip:
            patch = patch[:, ::-1]
        chw = patch.reshape(height, width, -1).transpose(2, 0, 1).astype(np.float32)
        region = (
            slice(None),
            slice(pad_h, pad_h + height),
            slice(pad_w, pad_w + width),
        )
        if self.mean is not None:
            chw = chw - self.mean[region]
        out[region] = chw * self.scale
