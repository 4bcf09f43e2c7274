"""convert_imageset: images listed in a file -> an LMDB or LevelDB database of Datum.

Caffe's ``tools/convert_imageset.cpp``, record for record:

- the list file has ``path label`` lines (the label follows the last space);
  each image is ``root + path`` (string concatenation, as Caffe);
- keys are ``%08d_<path>`` with the line index (skipped images leave gaps);
- raw records hold uint8 C x H x W pixels, BGR for colour, read with
  ``cv2.imread`` (colour, or gray with ``gray=True``) and resized with
  ``cv2.resize`` (bilinear) when both resize_height and resize_width are set;
- encoded records (``encoded`` or an ``encode_type``) hold the original file's
  bytes when nothing was resized and the file's extension is ``encode_type``
  (or, with no encode_type, always), else the image re-encoded with
  ``cv2.imencode``;
- transactions are committed every 1000 records.

Images are decoded by a few threads (OpenCV releases the GIL), a chunk of lines
each, and the records written in line order; they are serialized directly
(:func:`~caffepy.data.datum.raw_datum_bytes`), the bytes protobuf would write.

The database is written to ``<db>.partial`` and renamed when complete.
"""

import collections
import contextlib
import functools
import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor

from caffepy.data import datum as _datum
from caffepy.data.db import db_is_nonempty, open_db_writer
from caffepy.data.sources import read_list_file
from caffepy.errors import DataError, UnsupportedError

log = logging.getLogger(__name__)

# NOTE: OpenCV loads with this module (the command's import), not inside the
# first conversion: the timed work is the images'.
_datum.opencv()


def _match_ext(path, encoding):
    """Caffe's matchExt: the file extension equals the encoding (jpeg ~ jpg)."""
    ext = path.rsplit(".", 1)[-1].lower() if "." in path else path.lower()
    encoding = encoding.lower()
    return ext == encoding or (encoding == "jpg" and ext == "jpeg")


def _guess_encoding(path, warn=True):
    if "." not in os.path.basename(path):
        if warn:
            log.warning("cannot guess the encoding of %r (no extension)", path)
        return ""
    return path.rsplit(".", 1)[-1].lower()


def _encode(path, img, is_color, height, width, encoding):
    """Encoded record bytes (Caffe's ReadImageToDatum with an encoding)."""
    import cv2

    keep = (img.ndim == 3 and img.shape[2] == 3) == is_color
    if keep and not height and not width and _match_ext(path, encoding):
        with open(path, "rb") as f:
            return f.read()
    ok, buf = cv2.imencode("." + encoding, img)
    if not ok:
        raise DataError(f"cannot encode {path!r} as {encoding!r}")
    return buf.tobytes()


def convert_imageset(
    root,
    listfile,
    db_path,
    gray=False,
    shuffle=False,
    resize_height=0,
    resize_width=0,
    check_size=False,
    encoded=False,
    encode_type="",
    backend="lmdb",
    progress=True,
    threads=None,
):
    """Convert the images of a list file into an LMDB or LevelDB database of Datum.

    Args:
        root: folder prefix joined to each listed path (as a string: give the
            trailing slash, e.g. "images/", as with Caffe).
        listfile: ``path label`` lines.
        db_path: the database folder to create (must not exist, or be empty).
        gray: read images as gray (1 channel) instead of colour (3, BGR).
        shuffle: shuffle the lines first (with caffepy's RNG,
            ``caffepy.set_random_seed`` makes it repeatable).
        resize_height, resize_width: resize to this size (both must be > 0).
        check_size: require every record to have the first record's size.
        encoded: store encoded image files instead of raw pixels.
        encode_type: the encoding ("png", "jpg", ...); implies ``encoded``.
        backend: "lmdb" or "leveldb" (the ``leveldb`` extra).
        progress: show a progress bar (only on a terminal).
        threads: threads decoding the images (default: one per core, at most
            8); the records are the same for any number.

    Returns:
        dict: ``db_path``, ``total`` (lines), ``written``, ``skipped`` (count) and
        ``skipped_paths``.

    Raises:
        DataError: unreadable or empty list file, an existing non-empty database,
            no readable image, or (with check_size) records of different sizes.
        UnsupportedError: a backend other than lmdb or leveldb.
    """
    if str(backend).lower() not in ("lmdb", "leveldb"):
        raise UnsupportedError(
            f"backend {backend!r}: caffepy writes lmdb or leveldb databases"
        )
    db_path = os.fspath(db_path)
    if db_is_nonempty(db_path):
        raise DataError(
            f"{db_path}: DB exists, refusing to overwrite; remove it or choose "
            "another path"
        )
    lines = read_list_file(listfile)
    if not lines:
        raise DataError(f"list file {listfile!r} lists no images")
    if shuffle:
        from caffepy.rng import get_rng

        lines = [lines[i] for i in get_rng().permutation(len(lines))]
    is_color = not gray
    height, width = max(0, int(resize_height)), max(0, int(resize_width))
    if not (height > 0 and width > 0):
        height = width = 0  # Caffe resizes only when both are given
    if encode_type and not encoded:
        log.info("encode_type %r given: storing encoded images", encode_type)
    encoded = bool(encoded or encode_type)
    root = os.fspath(root)
    convert = functools.partial(
        _convert_lines,
        root=root,
        is_color=is_color,
        height=height,
        width=width,
        encoded=encoded,
        encode_type=encode_type,
    )
    numbered = list(enumerate(lines))
    chunks = [numbered[i : i + _CHUNK] for i in range(0, len(numbered), _CHUNK)]
    show = bool(progress) and sys.stderr.isatty()
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=len(lines), desc="convert_imageset", unit="img")
    skipped, data_size = [], None
    raw_datum_bytes, hwc_to_chw = _datum.raw_datum_bytes, _datum.hwc_to_chw
    try:
        workers = _threads(threads)
        with (
            open_db_writer(db_path, str(backend).lower()) as writer,
            _switching(workers),
            _ordered_map(convert, chunks, workers) as results,
        ):
            for chunk, records in zip(chunks, results):
                for (line_id, (name, label)), (path, got) in zip(chunk, records):
                    if isinstance(got, BaseException):
                        raise got
                    if got is None:
                        log.warning("could not read image %r: skipped", path)
                        skipped.append(path)
                        continue
                    if encoded:
                        value, shape = got
                    else:
                        shape = got.shape
                        value = raw_datum_bytes(hwc_to_chw(got), label)
                    if encoded and not encode_type:
                        _guess_encoding(name)  # warns about a name without one
                    if check_size:
                        # NOTE: compares decoded sizes, so it also works for encoded
                        # records (Caffe compares the encoded byte count with 0 there
                        # and fails).
                        if data_size is None:
                            data_size = shape
                        elif shape != data_size:
                            raise DataError(
                                f"{path}: image is {shape}, but the first image was "
                                f"{data_size} (check_size); resize the images to one "
                                "size"
                            )
                    writer.put(f"{line_id:08d}_{name}", value)
                if bar is not None:
                    bar.update(len(chunk))
            if writer.count == 0:
                raise DataError(
                    f"none of the {len(lines)} images listed in {listfile!r} could "
                    f"be read (first: {skipped[0]!r}); is root {root!r} right?"
                )
    finally:
        if bar is not None:
            bar.close()
    if skipped:
        log.warning(
            "%d of %d images could not be read and were skipped",
            len(skipped),
            len(lines),
        )
    return {
        "db_path": db_path,
        "total": len(lines),
        "written": len(lines) - len(skipped),
        "skipped": len(skipped),
        "skipped_paths": skipped,
    }


#: Lines per decoding task.
_CHUNK = 64


def _threads(threads):
    """Decoding threads: ``threads``, or one per core this process may use."""
    if threads:
        return max(1, int(threads))
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def _convert_lines(chunk, root, is_color, height, width, encoded, encode_type):
    """[(path, image or record bytes)] of ``chunk``'s (index, (name, label))
    lines: the decoded image (raw records are built by the caller, in line
    order, so that these threads hold the GIL only between two decodes), the
    encoded record's bytes, None for an unreadable image, or an exception to
    raise for a record that cannot be made (raised in line order by the
    caller)."""
    out = []
    for _, (name, label) in chunk:
        path = root + name
        try:
            img = _datum.read_image(path, height, width, is_color)
            if img is None or not encoded:
                out.append((path, img))
                continue
            encoding = encode_type or _guess_encoding(name, warn=False)
            data = _encode(path, img, is_color, height, width, encoding)
            out.append((path, (_datum.encoded_datum_bytes(data, label), img.shape)))
        except Exception as err:  # noqa: BLE001 - re-raised in line order
            out.append((path, err))
    return out


#: The interpreter's thread switch interval while images are decoded on threads
#: (the default is 5 ms): this thread builds and writes the records, holding
#: the GIL, and a decoding thread whose image is done waits for it up to the
#: interval. 2,000 PNGs on 2 threads: 44-49K -> 52-56K images/s.
_SWITCH_INTERVAL = 0.0005


@contextlib.contextmanager
def _switching(threads):
    """Run with the short switch interval when several threads decode."""
    before = sys.getswitchinterval()
    if threads > 1:
        sys.setswitchinterval(min(before, _SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(before)


@contextlib.contextmanager
def _ordered_map(fn, items, threads):
    """``map(fn, items)`` computed by ``threads`` threads (OpenCV decodes
    without the GIL), yielded in order, at most ``2 * threads`` items ahead of
    the consumer."""
    if threads == 1:
        yield map(fn, items)
        return
    pool = ThreadPoolExecutor(threads, thread_name_prefix="caffepy-convert")

    def results():
        pending = collections.deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > 2 * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    try:
        yield results()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def format_stats(stats):
    """One line: how many files went into the database (and how many were skipped)."""
    skipped = stats.get("skipped", 0)
    return f"Processed {stats.get('written', 0)} files into {stats['db_path']}" + (
        f" ({skipped} skipped)" if skipped else ""
    )
