"""detect: score given windows of images with a deploy net (pycaffe's
``detect.py`` in its ``--crop_mode list`` mode).

The input is a CSV file with a header naming the columns ``filename``, ``ymin``,
``xmin``, ``ymax``, ``xmax`` (any order, other columns ignored), one window per
row. Each window is cropped (with ``context_pad`` pixels of the net's input
showing context around it, mean-padded outside the image, as R-CNN), warped to
the net's input and scored. Windows are grouped by image, in the order images
first appear. Selective-search proposals (pycaffe's default crop mode) need
MATLAB code caffepy does not ship.

Outputs: a ``.csv`` with the columns ``filename,ymin,xmin,ymax,xmax,class0,...``,
or an HDF5 file (``.h5``/``.hdf5``, needs h5py) with the datasets ``filename``
(strings), ``window`` (N x 4 int, ymin xmin ymax xmax) and ``prediction``
(N x classes float32). pycaffe writes a pandas table; caffepy writes plain
datasets so no pandas is needed.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Sequence

log = logging.getLogger("caffepy")

COORD_COLS = ("ymin", "xmin", "ymax", "xmax")


def read_windows(path: str) -> list[tuple[str, list[tuple[int, ...]]]]:
    """``[(filename, [(ymin, xmin, ymax, xmax), ...]), ...]`` from a windows
    CSV, images in the order they first appear.

    Raises:
        DataError: an unreadable file, missing columns or a non-numeric
            coordinate (naming the line).
    """
    from caffepy.errors import DataError

    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise DataError(f"windows file {path}: {reason}") from None
    if not rows:
        raise DataError(f"windows file {path} is empty")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in ("filename", *COORD_COLS) if c not in header]
    if missing:
        raise DataError(
            f"windows file {path}: the header {header} lacks {missing}; expected "
            "filename,ymin,xmin,ymax,xmax"
        )
    cols = [header.index(c) for c in ("filename", *COORD_COLS)]
    windows: dict[str, list[tuple[int, ...]]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        try:
            cells = [row[c].strip() for c in cols]
            window = tuple(int(float(v)) for v in cells[1:])
        except (IndexError, ValueError):
            raise DataError(
                f"{path}:{line}: expected a file name and four numbers, got {row}"
            ) from None
        windows.setdefault(cells[0], []).append(window)
    return list(windows.items())


def write_detections(path: str, detections: list[dict]) -> None:
    """Write the detections as CSV (``.csv``) or HDF5 (``.h5``, ``.hdf5``)."""
    import numpy as np

    from caffepy.errors import DataError
    from caffepy.io.atomic import atomic_write_bytes, atomic_write_text

    lower = str(path).lower()
    windows = np.array([d["window"] for d in detections], dtype=np.int64)
    scores = np.array([d["prediction"] for d in detections], dtype=np.float32)
    names = [str(d["filename"]) for d in detections]
    if lower.endswith(".csv"):
        classes = [f"class{k}" for k in range(scores.shape[1] if scores.ndim else 0)]
        text = io.StringIO()
        out = csv.writer(text, lineterminator="\n")
        out.writerow(["filename", *COORD_COLS, *classes])
        for name, window, row in zip(names, windows, scores):
            out.writerow([name, *window.tolist(), *(repr(float(s)) for s in row)])
        atomic_write_text(path, text.getvalue())
    elif lower.endswith((".h5", ".hdf5")):
        from caffepy.io.hdf5 import h5py_module

        h5py = h5py_module()
        buf = io.BytesIO()
        with h5py.File(buf, "w") as f:
            f.create_dataset("filename", data=names, dtype=h5py.string_dtype())
            f.create_dataset("window", data=windows.reshape(-1, 4))
            f.create_dataset("prediction", data=scores)
        atomic_write_bytes(path, buf.getvalue())
    else:
        raise DataError(
            f"detect: output {path}: write .csv, .h5 or .hdf5 (the extension "
            "picks the format)"
        )


def detect(
    input_file: str,
    output_file: str,
    model_def: str,
    pretrained_model: str | None = None,
    crop_mode: str = "list",
    mean_file: str = "",
    input_scale: float | None = None,
    raw_scale: float | None = 255.0,
    channel_swap: Sequence[int] | None = None,
    context_pad: int = 16,
    gpu: int | None = None,
) -> tuple[int, float]:
    """Score the windows of ``input_file`` and write them to ``output_file``.

    Args:
        input_file: the windows CSV (see the module docstring).
        output_file: ``.csv``, ``.h5`` or ``.hdf5``.
        model_def: the deploy prototxt (a square input).
        pretrained_model: its .caffemodel (None: the fillers' weights).
        crop_mode: "list" (windows from the CSV); "selective_search" is not
            available.
        mean_file: a ``.npy`` or ``.binaryproto`` mean whose per-channel means
            are subtracted ("" for none).
        input_scale, raw_scale: as :func:`caffepy.tools.classify.classify`.
        channel_swap: the input channel order (None: 2,1,0 for a 3-channel
            input, else no swap).
        context_pad: pixels of context around each window (0: the bare window).
        gpu: run on this GPU (None: the CPU).

    Returns:
        (number of windows, seconds taken).

    Raises:
        UnsupportedError: ``crop_mode`` "selective_search".
        DataError: a bad windows file, mean file or output extension.
    """
    from caffepy.errors import DataError, UnsupportedError
    from caffepy.pycaffe.detector import Detector
    from caffepy.tools.classify import load_mean
    from caffepy.tools.device import use_gpu

    if crop_mode == "selective_search":
        raise UnsupportedError(
            "detect: --crop_mode selective_search is not available (it needs "
            "selective_search_ijcv_with_python and MATLAB); compute windows "
            "elsewhere and pass them as a CSV with --crop_mode list"
        )
    if crop_mode != "list":
        raise DataError(f"detect: unknown --crop_mode {crop_mode!r}; expected list")
    if not str(input_file).lower().endswith(".csv"):
        raise DataError(
            f"detect: {input_file}: --crop_mode list reads a .csv of "
            "filename,ymin,xmin,ymax,xmax rows"
        )
    if not str(output_file).lower().endswith((".csv", ".h5", ".hdf5")):
        raise DataError(
            f"detect: output {output_file}: write .csv, .h5 or .hdf5 (the extension "
            "picks the format)"
        )
    images_windows = read_windows(input_file)
    if not images_windows:
        raise DataError(f"detect: {input_file} lists no windows")
    use_gpu(gpu)
    start = time.time()
    detector = Detector(
        model_def,
        pretrained_model,
        mean=load_mean(mean_file) if mean_file else None,
        input_scale=input_scale,
        raw_scale=raw_scale,
        context_pad=context_pad,
    )
    in_ = detector.inputs[0]
    shape = detector.blobs[in_].data.shape
    if context_pad and (len(shape) != 4 or shape[2] != shape[3]):
        raise DataError(
            f"detect: --context_pad needs a square N x C x S x S input, the net's "
            f"{in_!r} is {tuple(shape)}; use --context_pad 0"
        )
    if context_pad and 2 * context_pad >= shape[3]:
        raise DataError(
            f"detect: --context_pad {context_pad} leaves no room for the window in "
            f"the net's {shape[3]} x {shape[3]} input; use less than {shape[3] / 2:g}"
        )
    if channel_swap is None and shape[1] == 3:
        channel_swap = (2, 1, 0)
    if channel_swap:
        detector.transformer.set_channel_swap(in_, tuple(channel_swap))
        detector.configure_crop(context_pad)  # the padding mean depends on it
    detections = detector.detect_windows(images_windows)
    seconds = time.time() - start
    log.info("Processed %d windows in %.3f s.", len(detections), seconds)
    write_detections(output_file, detections)
    return len(detections), seconds


def format_detected(count: int, seconds: float, output_file: str) -> str:
    """The summary line ``caffepy detect`` prints."""
    return f"Scored {count} windows in {seconds:.3f} s; wrote {output_file}"
