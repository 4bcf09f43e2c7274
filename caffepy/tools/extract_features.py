"""extract_features: run a net and store blobs' values, item by item, in databases.

Caffe's ``tools/extract_features.cpp``: the net (TEST phase, its own data layers
feeding it) runs ``num_mini_batches`` forwards; for each named blob every batch
item becomes one Datum record of a new database, keyed by the running record
index as ten zero-padded digits (``0000000000``, ...). A record's ``float_data``
holds the item's values in C order; ``channels``/``height``/``width`` are the
blob's legacy 4-D sizes (an ``N x 4`` blob gives 4 x 1 x 1); ``label``,
``data`` and ``encoded`` are left unset, so the records are byte-identical to
Caffe's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

log = logging.getLogger("caffepy")


def _legacy_chw(shape: Sequence[int], blob: str) -> tuple[int, int, int]:
    """Caffe's ``channels()``, ``height()``, ``width()`` of a blob (1 past its
    last axis; more than 4 axes has no legacy shape)."""
    from caffepy.errors import DataError

    if len(shape) > 4:
        raise DataError(
            f"extract_features: blob {blob!r} has {len(shape)} axes {tuple(shape)}; "
            "a Datum holds at most 4 (N x C x H x W)"
        )
    dims = [int(d) for d in shape[1:]] + [1, 1, 1]
    return dims[0], dims[1], dims[2]


def _feature_record(values, chw: tuple[int, int, int]) -> bytes:
    """One serialized Datum with only channels, height, width and float_data."""
    from caffepy.proto import caffe_pb2

    datum = caffe_pb2.Datum()
    datum.channels, datum.height, datum.width = chw
    datum.float_data.extend(values.tolist())
    return datum.SerializeToString()


def extract_features(
    weights: str,
    model: str,
    blob_names: Sequence[str],
    db_paths: Sequence[str],
    num_mini_batches: int,
    backend: str = "lmdb",
    gpu: int | None = None,
    threads: int = 0,
) -> dict[str, int]:
    """Forward ``model`` ``num_mini_batches`` times and write each blob's items.

    Args:
        weights: the trained .caffemodel, copied into the net by layer name.
        model: the net prototxt; built in the TEST phase, its data layers
            supply the batches.
        blob_names: the blobs to extract, one database each.
        db_paths: the databases to create, one per blob (they must not exist).
        num_mini_batches: how many forwards.
        backend: "lmdb" or "leveldb".
        gpu: run on this GPU (None: the CPU).
        threads: CPU threads (0: all cores).

    Returns:
        The number of records written per database path.

    Raises:
        NetError: different numbers of blob names and databases, or a blob the
            net does not have.
        DataError: a database that exists already, an unknown backend, or a
            blob with more than 4 axes.
    """
    import numpy as np

    import caffepy
    from caffepy.data.db import db_is_nonempty, open_db_writer
    from caffepy.errors import DataError, NetError, did_you_mean
    from caffepy.tools.device import set_threads, use_gpu

    blob_names, db_paths = list(blob_names), list(db_paths)
    if len(blob_names) != len(db_paths) or not blob_names:
        raise NetError(
            f"extract_features: {len(blob_names)} blob name(s) {blob_names} but "
            f"{len(db_paths)} database(s) {db_paths}; give one database per blob"
        )
    if int(num_mini_batches) < 0:
        raise NetError(
            f"extract_features: num_mini_batches must be 0 or more, got "
            f"{num_mini_batches}"
        )
    if str(backend).lower() not in ("lmdb", "leveldb"):
        raise DataError(
            f"extract_features: unknown backend {backend!r}; expected lmdb or leveldb"
        )
    for path in db_paths:
        if db_is_nonempty(path):
            raise DataError(
                f"extract_features: {path}: DB exists, refusing to overwrite; "
                "remove it or choose another path"
            )
    set_threads(threads)
    use_gpu(gpu)
    net = caffepy.Net(model, caffepy.TEST, weights=weights)
    for name in blob_names:
        if name not in net.blobs:
            raise NetError(
                f"extract_features: unknown feature blob name {name!r} in the network "
                f"{model}{did_you_mean(name, list(net.blobs))}"
            )
    counts = dict.fromkeys(db_paths, 0)
    writers = []
    try:
        for path in db_paths:
            log.info("Opening dataset %s", path)
            writers.append(open_db_writer(path, str(backend).lower()))
        log.info("Extracting Features")
        for _ in range(int(num_mini_batches)):
            net.forward_prefilled()
            for name, path, writer in zip(blob_names, db_paths, writers):
                data = np.asarray(net.blobs[name].data, dtype=np.float32)
                chw = _legacy_chw(data.shape, name)
                items = data.reshape(data.shape[0] if data.ndim else 1, -1)
                for item in items:
                    writer.put(f"{counts[path]:010d}", _feature_record(item, chw))
                    counts[path] += 1
        for name, path, writer in zip(blob_names, db_paths, writers):
            writer.close()
            log.info(
                "Extracted features of %d query images for feature blob %s",
                counts[path],
                name,
            )
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    log.info("Successfully extracted the features!")
    return counts


def format_counts(counts: dict[str, int], blob_names: Sequence[str]) -> str:
    """One line per database: how many records of which blob it holds."""
    return "\n".join(
        f"Wrote {n} records of blob {blob} to {path}"
        for blob, (path, n) in zip(blob_names, counts.items())
    )
