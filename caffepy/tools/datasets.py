"""Caffe's example data sets -> databases of Datum, as Caffe's converters build them.

- MNIST (``examples/mnist/convert_mnist_data.cpp``): the four IDX files
  (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, plain or ``.gz``) ->
  ``mnist_train_<backend>`` and ``mnist_test_<backend>``: keys ``%08d`` (the item
  index), Datum 1 x rows x cols uint8 pixels and the label.
- CIFAR-10 (``examples/cifar10/convert_cifar_data.cpp``): the binary batches
  ``data_batch_1.bin`` .. ``data_batch_5.bin`` and ``test_batch.bin`` (records of
  one label byte and 3072 pixel bytes, R then G then B planes of 32 x 32) ->
  ``cifar10_train_<backend>`` (keys ``%05d``, ``file * 10000 + item``) and
  ``cifar10_test_<backend>`` (keys ``%05d``), Datum 3 x 32 x 32 in the file's
  channel order; then ``mean.binaryproto`` of the train set, as
  ``create_cifar10.sh`` does.
- CIFAR-100 (no converter in Caffe; the same Datum layout): ``train.bin`` and
  ``test.bin`` (records of a coarse label byte, a fine label byte and 3072 pixel
  bytes) -> ``cifar100_train_<backend>`` and ``cifar100_test_<backend>``, keys
  ``%05d``, the fine label (or the coarse one), and ``cifar100_mean.binaryproto``.
- MNIST pairs (``examples/siamese/convert_mnist_siamese_data.cpp``): the same IDX
  files -> ``mnist_siamese_train_<backend>`` and ``mnist_siamese_test_<backend>``
  (LevelDB by default, as Caffe's example): as many records as images, keys
  ``%08d``, Datum 2 x rows x cols (image ``i`` then image ``j``), label 1 when the
  two digits match, else 0; see :func:`siamese_pairs` for how the pairs are drawn.
- Fashion-MNIST: :mod:`caffepy.tools.fashion_mnist` (IDX files as MNIST).

Nothing is downloaded here: a missing file is a DataError that names every
file looked for and where.
"""

from __future__ import annotations

import gzip
import logging
import os
import struct
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from caffepy.errors import DataError

log = logging.getLogger(__name__)

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CIFAR10_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST = "test_batch.bin"
CIFAR100_FILES = {"train": "train.bin", "test": "test.bin"}
CIFAR_SIZE = 32
CIFAR_BYTES = 3 * CIFAR_SIZE * CIFAR_SIZE
_IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}


# -- IDX files (MNIST, Fashion-MNIST) ------------------------------------------------
def _open(path: str) -> Any:
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def find_file(folder: str, name: str) -> str | None:
    """The path of ``name`` or ``name.gz`` in ``folder``, or None."""
    for candidate in (name, name + ".gz"):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    return None


def read_idx_header(path: str) -> tuple[int, ...]:
    """The dimensions an IDX file declares (e.g. (60000, 28, 28)).

    Raises:
        DataError: not a uint8 IDX file (the magic names what was found).
    """
    try:
        with _open(path) as f:
            head = f.read(4)
            if len(head) < 4:
                raise DataError(f"{path}: not an IDX file (too short)")
            (magic,) = struct.unpack(">I", head)
            ndim = magic & 0xFF
            if magic >> 8 != 0x08 or ndim not in _IDX_MAGIC:
                raise DataError(f"{path}: not a uint8 IDX file (magic {magic:#010x})")
            dims = struct.unpack(f">{ndim}I", f.read(4 * ndim))
    except (OSError, EOFError, struct.error) as err:
        raise DataError(f"{path}: cannot read IDX header: {err}") from None
    return dims


def read_idx(path: str, limit: int | None = None) -> np.ndarray:
    """Read a uint8 IDX file (images N x rows x cols, or labels N) into an array.

    Args:
        path: the file (plain or .gz).
        limit: read only the first ``limit`` items.

    Raises:
        DataError: not an IDX file, or truncated.
    """
    dims = read_idx_header(path)
    n = dims[0] if limit is None else min(dims[0], int(limit))
    item = int(np.prod(dims[1:], dtype=np.int64))
    want = n * item
    try:
        with _open(path) as f:
            f.read(4 + 4 * len(dims))
            raw = f.read(want)
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: cannot read: {err}") from None
    if len(raw) != want:
        raise DataError(f"{path}: truncated ({len(raw)} of {want} data bytes)")
    return np.frombuffer(raw, np.uint8).reshape((n,) + tuple(dims[1:]))


def _missing(what: str, folders: Iterable[str], names: Iterable[str], hint: str):
    where = " or ".join(repr(f) for f in folders)
    return DataError(
        f"{what} files not found: looked for {', '.join(names)} in {where}; {hint}"
    )


# -- writing ------------------------------------------------------------------------
def _db_name(prefix: str, split: str, backend: str) -> str:
    return f"{prefix}_{split}_{backend}"


def write_records(
    db_path: str,
    images: np.ndarray,
    labels: np.ndarray,
    key_format: str,
    backend: str = "lmdb",
    first_key: int = 0,
    writer: Any = None,
) -> int:
    """Write ``images`` (N x C x H x W uint8, or N x H x W: one channel) with
    ``labels`` as Datum records keyed ``key_format % (first_key + i)``.

    Returns:
        the number of records written.
    """
    from caffepy.data.db import open_db_writer
    from caffepy.proto import caffe_pb2

    if images.ndim == 3:
        images = images[:, None]
    n, c, h, w = images.shape
    datum = caffe_pb2.Datum()
    datum.channels, datum.height, datum.width = c, h, w
    own = writer is None
    writer = open_db_writer(db_path, backend) if own else writer
    try:
        for i in range(n):
            datum.data = images[i].tobytes()
            datum.label = int(labels[i])
            writer.put(key_format % (first_key + i), datum.SerializeToString())
    except BaseException:
        if own:
            writer.abort()
        raise
    if own:
        writer.close()
    return n


# -- MNIST ---------------------------------------------------------------------------
def _mnist_splits(
    source_dir: str,
    files: dict[str, tuple[str, str]],
    prefix: str,
    limit: int | None,
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(split, N x rows x cols images, N labels) per split, after checking that
    every file is there (all missing ones named in one DataError)."""
    needed = [name for pair in files.values() for name in pair]
    found = {name: find_file(source_dir, name) for name in needed}
    if not all(found.values()):
        raise _missing(
            prefix.upper() if prefix == "mnist" else prefix,
            [source_dir],
            [n + "[.gz]" for n in needed if not found[n]],
            "download them (Caffe's data/mnist/get_mnist.sh, "
            "http://yann.lecun.com/exdb/mnist/) and give their folder",
        )
    for split, (images_name, labels_name) in files.items():
        images_path, labels_path = str(found[images_name]), str(found[labels_name])
        images = read_idx(images_path, limit)
        labels = read_idx(labels_path, limit)
        if images.ndim != 3 or labels.ndim != 1 or len(labels) != len(images):
            raise DataError(
                f"{images_path} ({images.shape}) and {labels_path} ({labels.shape}) "
                "do not match: expected N x rows x cols images and N labels"
            )
        yield split, images, labels


def convert_mnist(
    source_dir: str,
    out_dir: str | None = None,
    backend: str = "lmdb",
    limit: int | None = None,
    prefix: str = "mnist",
    files: dict[str, tuple[str, str]] = MNIST_FILES,
) -> dict[str, Any]:
    """Write ``<prefix>_train_<backend>`` and ``<prefix>_test_<backend>`` from the
    IDX files in ``source_dir`` (Caffe's ``convert_mnist_data``, run twice as
    ``create_mnist.sh`` does).

    Args:
        source_dir: the folder of the four IDX files (plain or .gz).
        out_dir: the folder for the databases (default: ``source_dir``).
        backend: "lmdb" or "leveldb".
        limit: write only the first ``limit`` items of each set.
        prefix: the databases' name prefix.
        files: the (images, labels) file names per split.

    Returns:
        ``{"train": path, "test": path, "train_count": n, "test_count": n}``.

    Raises:
        DataError: files missing (all named), malformed or not matching, or an
            existing database.
    """
    out_dir = os.fspath(out_dir or source_dir)
    splits = _mnist_splits(source_dir, files, prefix, limit)
    result: dict[str, Any] = {}
    for split, images, labels in splits:
        os.makedirs(out_dir, exist_ok=True)
        db_path = os.path.join(out_dir, _db_name(prefix, split, backend))
        result[f"{split}_count"] = write_records(
            db_path, images, labels, "%08d", backend
        )
        result[split] = db_path
        log.info("wrote %s (%d records)", db_path, len(images))
    return result


def siamese_pairs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The item pairs (i, j) of Caffe's ``convert_mnist_siamese_data``: for each
    record, ``i = rand() % n`` then ``j = rand() % n``, drawn with replacement.

    ``rand()`` is Caffe's ``caffe_rng_rand()``, a 32-bit ``boost::mt19937``. Caffe's
    converter seeds it from system entropy on every run, so its pairs cannot be
    reproduced; caffepy draws from the same generator (MT19937 seeded as
    ``Caffe::set_random_seed(seed)`` seeds it, via NumPy's ``RandomState``, whose
    integer seeding is MT19937's ``init_genrand``), so a given seed gives the pairs
    BVLC's converter would draw after that call.

    Args:
        n: the number of items (and of pairs).
        seed: the generator's seed (0 .. 2**32 - 1).

    Returns:
        two int64 arrays of ``n`` item indices (first and second image).
    """
    raw = np.random.RandomState(seed).randint(0, 2**32, size=2 * n, dtype=np.uint32)
    picks = (raw % np.uint32(max(n, 1))).astype(np.int64)
    return picks[0::2], picks[1::2]


def convert_mnist_siamese(
    source_dir: str,
    out_dir: str | None = None,
    backend: str = "leveldb",
    limit: int | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """Write ``mnist_siamese_train_<backend>`` and ``mnist_siamese_test_<backend>``
    (Caffe's ``convert_mnist_siamese_data``, run twice as
    ``create_mnist_siamese.sh`` does) from MNIST's IDX files.

    Each set of N images gives N records keyed ``%08d``: a Datum of 2 x rows x cols
    (the images of a random pair, one per channel) labelled 1 when their digits
    match, else 0. Both sets draw their pairs from a generator seeded with
    ``seed`` (see :func:`siamese_pairs`).

    Args:
        source_dir: the folder of the four IDX files (plain or .gz).
        out_dir: the folder for the databases (default: ``source_dir``).
        backend: "leveldb" (Caffe's example) or "lmdb".
        limit: use only the first ``limit`` images of each set.
        seed: the pairs' seed; None draws one from system entropy, as Caffe does
            (the seed used is returned, so the databases can be rebuilt).

    Returns:
        ``{"train": path, "test": path, "train_count": n, "test_count": n,
        "seed": seed}``.

    Raises:
        DataError: files missing (all named), malformed or not matching, a seed
            outside 0 .. 2**32 - 1, or an existing database.
    """
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    if not 0 <= int(seed) < 2**32:
        raise DataError(f"mnist-siamese: seed must be in 0 .. 2**32 - 1, got {seed}")
    out_dir = os.fspath(out_dir or source_dir)
    result: dict[str, Any] = {"seed": int(seed)}
    for split, images, labels in _mnist_splits(source_dir, MNIST_FILES, "MNIST", limit):
        first, second = siamese_pairs(len(images), int(seed))
        pairs = np.stack([images[first], images[second]], axis=1)
        same = (labels[first] == labels[second]).astype(np.int64)
        os.makedirs(out_dir, exist_ok=True)
        db_path = os.path.join(out_dir, _db_name("mnist_siamese", split, backend))
        result[f"{split}_count"] = write_records(db_path, pairs, same, "%08d", backend)
        result[split] = db_path
        log.info("wrote %s (%d pairs)", db_path, len(pairs))
    return result


# -- CIFAR ---------------------------------------------------------------------------
def _cifar_folder(source_dir: str, names: Iterable[str], subfolder: str) -> str | None:
    for folder in (source_dir, os.path.join(source_dir, subfolder)):
        if all(os.path.isfile(os.path.join(folder, n)) for n in names):
            return folder
    return None


def read_cifar(
    path: str, label_bytes: int = 1, label_index: int = 0, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Records of a CIFAR binary file: (N x 3 x 32 x 32 uint8 images, N labels).

    Args:
        path: the .bin file.
        label_bytes: label bytes per record (1 for CIFAR-10, 2 for CIFAR-100).
        label_index: which label byte to keep (CIFAR-100: 0 coarse, 1 fine).
        limit: read only the first ``limit`` records.

    Raises:
        DataError: unreadable, or a size that is not a whole number of records.
    """
    record = label_bytes + CIFAR_BYTES
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror or err}") from None
    if not raw or len(raw) % record:
        raise DataError(
            f"{path}: {len(raw)} bytes is not a whole number of {record}-byte CIFAR "
            "records; the file is truncated or not a CIFAR binary batch"
        )
    rows = np.frombuffer(raw, np.uint8).reshape(-1, record)
    if limit is not None:
        rows = rows[: int(limit)]
    images = rows[:, label_bytes:].reshape(-1, 3, CIFAR_SIZE, CIFAR_SIZE)
    return images, rows[:, label_index].astype(np.int64)


def _write_mean(db_path: str, out_path: str, backend: str) -> None:
    from caffepy.tools.compute_image_mean import compute_image_mean

    compute_image_mean(db_path, out_path, backend)


def convert_cifar10(
    source_dir: str,
    out_dir: str | None = None,
    backend: str = "lmdb",
    limit: int | None = None,
    mean: bool = True,
) -> dict[str, Any]:
    """Write ``cifar10_train_<backend>``, ``cifar10_test_<backend>`` (and
    ``mean.binaryproto``) from CIFAR-10's binary batches (Caffe's
    ``convert_cifar_data`` and ``create_cifar10.sh``).

    Args:
        source_dir: the folder of the batches (or its ``cifar-10-batches-bin``).
        out_dir: the folder for the databases (default: ``source_dir``).
        backend: "lmdb" or "leveldb".
        limit: write only the first ``limit`` records of each batch file.
        mean: also write the train set's mean image.

    Raises:
        DataError: batches missing (all named) or malformed, an existing database.
    """
    from caffepy.data.db import open_db_writer

    names = CIFAR10_TRAIN + (CIFAR10_TEST,)
    folder = _cifar_folder(source_dir, names, "cifar-10-batches-bin")
    if folder is None:
        raise _missing(
            "CIFAR-10",
            [source_dir, os.path.join(source_dir, "cifar-10-batches-bin")],
            names,
            "download the binary version (cifar-10-binary.tar.gz, Caffe's "
            "data/cifar10/get_cifar10.sh), unpack it and give its folder",
        )
    out_dir = os.fspath(out_dir or source_dir)
    os.makedirs(out_dir, exist_ok=True)
    train = os.path.join(out_dir, _db_name("cifar10", "train", backend))
    count = 0
    with open_db_writer(train, backend) as writer:
        for fileid, name in enumerate(CIFAR10_TRAIN):
            images, labels = read_cifar(os.path.join(folder, name), limit=limit)
            # NOTE: Caffe numbers records fileid * 10000 + item: with `limit` the
            # keys keep that numbering (gaps), so records keep their Caffe keys.
            write_records(
                train, images, labels, "%05d", backend, fileid * 10000, writer
            )
            count += len(images)
    test = os.path.join(out_dir, _db_name("cifar10", "test", backend))
    images, labels = read_cifar(os.path.join(folder, CIFAR10_TEST), limit=limit)
    result: dict[str, Any] = {
        "train": train,
        "test": test,
        "train_count": count,
        "test_count": write_records(test, images, labels, "%05d", backend),
    }
    if mean:
        result["mean"] = os.path.join(out_dir, "mean.binaryproto")
        _write_mean(train, result["mean"], backend)
    return result


def convert_cifar100(
    source_dir: str,
    out_dir: str | None = None,
    backend: str = "lmdb",
    limit: int | None = None,
    label: str = "fine",
    mean: bool = True,
) -> dict[str, Any]:
    """Write ``cifar100_train_<backend>`` and ``cifar100_test_<backend>`` (and
    ``cifar100_mean.binaryproto``) from CIFAR-100's ``train.bin``/``test.bin``,
    in CIFAR-10's layout (keys ``%05d``, Datum 3 x 32 x 32).

    Args:
        label: "fine" (100 classes) or "coarse" (20 superclasses).
        Others: as :func:`convert_cifar10`.

    Raises:
        DataError: files missing (all named) or malformed, a bad ``label``.
    """
    if label not in ("fine", "coarse"):
        raise DataError(f"CIFAR-100 label must be 'fine' or 'coarse', got {label!r}")
    names = tuple(CIFAR100_FILES.values())
    folder = _cifar_folder(source_dir, names, "cifar-100-binary")
    if folder is None:
        raise _missing(
            "CIFAR-100",
            [source_dir, os.path.join(source_dir, "cifar-100-binary")],
            names,
            "download the binary version (cifar-100-binary.tar.gz), unpack it and "
            "give its folder",
        )
    out_dir = os.fspath(out_dir or source_dir)
    os.makedirs(out_dir, exist_ok=True)
    result: dict[str, Any] = {}
    for split, name in CIFAR100_FILES.items():
        images, labels = read_cifar(
            os.path.join(folder, name), 2, 1 if label == "fine" else 0, limit
        )
        db_path = os.path.join(out_dir, _db_name("cifar100", split, backend))
        result[split] = db_path
        result[f"{split}_count"] = write_records(
            db_path, images, labels, "%05d", backend
        )
    if mean:
        result["mean"] = os.path.join(out_dir, "cifar100_mean.binaryproto")
        _write_mean(result["train"], result["mean"], backend)
    return result


def format_result(name: str, result: dict[str, Any]) -> str:
    """One line per database written."""
    lines = [
        f"{name} {split}: {result[f'{split}_count']} records in {result[split]}"
        for split in ("train", "test")
        if split in result
    ]
    if result.get("mean"):
        lines.append(f"{name} mean image: {result['mean']}")
    if "seed" in result:
        lines.append(f"{name} pairs drawn with --seed {result['seed']}")
    return "\n".join(lines)
