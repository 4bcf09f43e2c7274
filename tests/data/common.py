"""Helpers for the data tests: tiny LMDB databases and images in tmp_path."""

import lmdb
import numpy as np

from caffepy.data.datum import array_to_datum, encoded_datum


def write_lmdb(path, records):
    """Write (key, value bytes) records into a new LMDB database folder."""
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for key, value in records:
            txn.put(key.encode() if isinstance(key, str) else key, value)
    env.close()
    return str(path)


def raw_db(path, n=7, shape=(3, 6, 5), seed=0, dtype=np.uint8):
    """A database of n random raw records; returns (path, images, labels, keys)."""
    gen = np.random.default_rng(seed)
    if dtype == np.uint8:
        images = gen.integers(0, 256, (n,) + shape, dtype=np.uint8)
    else:
        images = gen.uniform(-1, 1, (n,) + shape).astype(dtype)
    labels = gen.integers(0, 10, n)
    keys = [f"{i:08d}_img{i}.png" for i in range(n)]
    records = [
        (k, array_to_datum(im, lab).SerializeToString())
        for k, im, lab in zip(keys, images, labels)
    ]
    return write_lmdb(path, records), images, labels, keys


def encoded_db(path, sizes, seed=0, channels=3):
    """A database of PNG-encoded records of the given (h, w) sizes."""
    import cv2

    gen = np.random.default_rng(seed)
    images, records = [], []
    for i, (h, w) in enumerate(sizes):
        shape = (h, w, channels) if channels == 3 else (h, w)
        img = gen.integers(0, 256, shape, dtype=np.uint8)
        ok, buf = cv2.imencode(".png", img)
        assert ok
        images.append(img)
        value = encoded_datum(buf.tobytes(), i).SerializeToString()
        records.append((f"{i:08d}", value))
    return write_lmdb(path, records), images


def layer_text(source, batch_size=3, transform="", extra="", phase_type="Data"):
    return (
        f'name: "data" type: "{phase_type}" top: "data" top: "label" '
        f"transform_param {{ {transform} }} "
        f'data_param {{ source: "{source}" batch_size: {batch_size} backend: LMDB '
        f"{extra} }}"
    )
