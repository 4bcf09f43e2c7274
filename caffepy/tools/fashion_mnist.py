"""Fashion-MNIST -> two LMDB databases of Datum, as Caffe's convert_mnist_data.

Reads the four IDX files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each plain or ``.gz``)
from Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/
fashion-mnist``), from a folder you give, or downloaded from the Fashion-MNIST
mirror. Writes ``fashion_mnist_train_lmdb`` (60,000 records) and
``fashion_mnist_test_lmdb`` (10,000): keys ``%08d``, Datum 1 x 28 x 28 uint8
with the label, committed every 1000 records. The IDX readers live in
:mod:`caffepy.tools.datasets` (with MNIST and CIFAR), re-exported here.
"""

import logging
import os

from caffepy.errors import DataError
from caffepy.tools.datasets import find_file as _find
from caffepy.tools.datasets import read_idx, read_idx_header

__all__ = ["make_fashion_mnist_lmdbs", "read_idx", "read_idx_header"]

log = logging.getLogger(__name__)

DEFAULT_SOURCE_DIR = "/usr/share/datasets/fashion-mnist"
MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DB_NAMES = {"train": "fashion_mnist_train_lmdb", "test": "fashion_mnist_test_lmdb"}
_INSTALL_HINT = (
    "install the data set with `apt-get install dataset-fashion-mnist` (files in "
    f"{DEFAULT_SOURCE_DIR}) or put the four IDX files in a folder and pass it as "
    "source_dir"
)


def _download(folder):
    """Download the four .gz files into folder; DataError with advice on failure."""
    import urllib.error
    import urllib.request

    os.makedirs(folder, exist_ok=True)
    for images, labels in FILES.values():
        for name in (images, labels):
            target = os.path.join(folder, name + ".gz")
            if os.path.isfile(target):
                continue
            url = MIRROR + name + ".gz"
            log.info("downloading %s", url)
            try:
                with urllib.request.urlopen(url, timeout=60) as resp:
                    data = resp.read()
            except (urllib.error.URLError, OSError, ValueError) as err:
                raise DataError(
                    f"Fashion-MNIST files not found and the download of {url} failed "
                    f"({getattr(err, 'reason', err)}); {_INSTALL_HINT}"
                ) from None
            from caffepy.io.atomic import atomic_write_bytes

            atomic_write_bytes(target, data)


def _existing_folder(source_dir, out_dir):
    """The folder that holds all four IDX files (source_dir or the download cache)."""
    needed = [name for pair in FILES.values() for name in pair]
    for folder in (source_dir, os.path.join(out_dir, "fashion-mnist")):
        if folder and all(_find(folder, name) for name in needed):
            return folder
    return None


def _write_db(db_path, images, labels, progress_name):
    from caffepy.data.db import LMDBWriter
    from caffepy.proto import caffe_pb2

    n, rows, cols = images.shape
    datum = caffe_pb2.Datum()
    datum.channels, datum.height, datum.width = 1, rows, cols
    with LMDBWriter(db_path) as writer:
        for i in range(n):
            datum.data = images[i].tobytes()
            datum.label = int(labels[i])
            writer.put(f"{i:08d}", datum.SerializeToString())
    log.info("wrote %s (%d records)", progress_name, n)


def make_fashion_mnist_lmdbs(
    out_dir, source_dir=DEFAULT_SOURCE_DIR, download=True, limit=None
):
    """Write fashion_mnist_train_lmdb and fashion_mnist_test_lmdb into out_dir.

    Returns quickly when both exist with the expected number of records.

    Args:
        out_dir: the folder for the two databases (created if needed).
        source_dir: the folder of the IDX files (plain or .gz).
        download: fetch the files from the Fashion-MNIST mirror when they are not
            in ``source_dir`` (kept in ``out_dir/fashion-mnist``).
        limit: write only the first ``limit`` images of each set.

    Returns:
        dict: ``train`` and ``test`` (database paths), ``train_count``,
        ``test_count``, ``source_dir`` (where the IDX files were read, None when
        nothing had to be read) and ``created`` (False when both existed).

    Raises:
        DataError: IDX files absent (and not downloadable) or malformed; an
            existing database that holds another number of records.
    """
    from caffepy.data.db import count_records

    out_dir = os.fspath(out_dir)
    paths = {split: os.path.join(out_dir, DB_NAMES[split]) for split in FILES}
    result = {
        "train": paths["train"],
        "test": paths["test"],
        "created": False,
        "source_dir": None,
    }
    folder = _existing_folder(source_dir, out_dir)
    if folder is None:
        # No source to compare with: databases are renamed into place only when
        # complete, so existing non-empty ones are taken as they are.
        counts = {split: count_records(path) for split, path in paths.items()}
        if all(counts.values()):
            result.update({f"{split}_count": n for split, n in counts.items()})
            return result
        if not download:
            raise DataError(
                f"Fashion-MNIST IDX files not found in {source_dir!r}; {_INSTALL_HINT}"
            )
        folder = os.path.join(out_dir, "fashion-mnist")
        _download(folder)
    result["source_dir"] = folder
    for split, (images_name, labels_name) in FILES.items():
        images_path = _find(folder, images_name)
        labels_path = _find(folder, labels_name)
        n = read_idx_header(images_path)[0]
        expected = n if limit is None else min(n, int(limit))
        result[f"{split}_count"] = expected
        db_path = paths[split]
        if os.path.isdir(db_path) and os.listdir(db_path):
            have = count_records(db_path)
            if have == expected:
                continue
            raise DataError(
                f"{db_path} exists with {have} records, expected {expected}; remove "
                "it to rebuild"
            )
        images = read_idx(images_path, limit)
        labels = read_idx(labels_path, limit)
        if images.ndim != 3 or labels.shape != images.shape[:1]:
            raise DataError(
                f"{images_path} ({images.shape}) and {labels_path} ({labels.shape}) "
                "do not match"
            )
        _write_db(db_path, images, labels, DB_NAMES[split])
        result["created"] = True
    return result
