"""Fashion-MNIST IDX files -> LMDB databases (synthetic IDX files; the real ones
from Debian's dataset-fashion-mnist when installed)."""

import gzip
import os
import struct
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from caffepy.data.datum import datum_to_array, parse_datum
from caffepy.data.db import LMDBReader
from caffepy.errors import DataError
from caffepy.tools import fashion_mnist as fm


def write_idx(path, array, gz):
    head = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    data = head + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.fixture
def idx_dir(tmp_path):
    """Synthetic IDX files: 30 train and 12 test images, gz and plain mixed."""
    folder = tmp_path / "idx"
    folder.mkdir()
    gen = np.random.default_rng(0)
    sets = {}
    for split, n in (("train", 30), ("test", 12)):
        images = gen.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = gen.integers(0, 10, n, dtype=np.uint8)
        img_name, lab_name = fm.FILES[split]
        write_idx(folder / img_name, images, gz=split == "train")
        write_idx(folder / lab_name, labels, gz=split == "test")
        sets[split] = images, labels
    return folder, sets


def read_db(path):
    with LMDBReader(path) as reader:
        return [(k, parse_datum(v)) for k, v in reader.items()]


def test_writes_both_databases(idx_dir, tmp_path):
    folder, sets = idx_dir
    out = tmp_path / "out"
    result = fm.make_fashion_mnist_lmdbs(out, source_dir=str(folder), download=False)
    assert result["created"]
    assert (result["train_count"], result["test_count"]) == (30, 12)
    for split in ("train", "test"):
        images, labels = sets[split]
        records = read_db(result[split])
        assert [k for k, _ in records] == [f"{i:08d}" for i in range(len(images))]
        for i, (key, datum) in enumerate(records):
            assert (datum.channels, datum.height, datum.width) == (1, 28, 28)
            assert datum.label == labels[i]
            np.testing.assert_array_equal(datum_to_array(datum, key)[0], images[i])
    # A second call finds both complete and returns at once.
    start = time.perf_counter()
    again = fm.make_fashion_mnist_lmdbs(out, source_dir=str(folder), download=False)
    assert not again["created"] and time.perf_counter() - start < 1.0
    # Without the source files too.
    assert not fm.make_fashion_mnist_lmdbs(
        out, source_dir=str(tmp_path / "none"), download=False
    )["created"]


def test_limit_and_count_mismatch(idx_dir, tmp_path):
    folder, _ = idx_dir
    out = tmp_path / "out"
    result = fm.make_fashion_mnist_lmdbs(out, source_dir=str(folder), limit=5)
    assert len(read_db(result["train"])) == 5 and len(read_db(result["test"])) == 5
    with pytest.raises(DataError, match="exists with 5 records, expected 30"):
        fm.make_fashion_mnist_lmdbs(out, source_dir=str(folder))


def test_missing_files_without_download(tmp_path):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        fm.make_fashion_mnist_lmdbs(
            tmp_path / "out", source_dir=str(tmp_path), download=False
        )


def test_failed_download_says_what_to_install(tmp_path, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(
        DataError,
        match="download of http.*train-images-idx3-ubyte.gz"
        " failed.*apt-get install dataset-fashion",
    ):
        fm.make_fashion_mnist_lmdbs(tmp_path / "out", source_dir=str(tmp_path))


def test_download_goes_to_the_cache(idx_dir, tmp_path, monkeypatch):
    folder, _ = idx_dir

    class Response:
        def __init__(self, data):
            self.data = data

        def read(self):
            return self.data

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def fake(url, timeout=None):
        name = url.rsplit("/", 1)[1][:-3]
        path = folder / name
        data = (
            path.read_bytes()
            if path.exists()
            else gzip.decompress((folder / (name + ".gz")).read_bytes())
        )
        return Response(gzip.compress(data))

    monkeypatch.setattr(urllib.request, "urlopen", fake)
    out = tmp_path / "out"
    result = fm.make_fashion_mnist_lmdbs(out, source_dir=str(tmp_path / "none"))
    assert result["source_dir"] == str(out / "fashion-mnist")
    assert result["train_count"] == 30


def test_malformed_idx(tmp_path):
    bad = tmp_path / "x"
    bad.write_bytes(b"\0\0\x08\x03" + struct.pack(">3I", 10, 28, 28) + b"\0" * 100)
    with pytest.raises(DataError, match="truncated"):
        fm.read_idx(str(bad))
    bad.write_bytes(b"GIF89a")
    with pytest.raises(DataError, match="not a uint8 IDX file"):
        fm.read_idx(str(bad))


@pytest.mark.skipif(
    not os.path.isdir(fm.DEFAULT_SOURCE_DIR),
    reason="dataset-fashion-mnist is not installed",
)
def test_real_files(tmp_path):
    result = fm.make_fashion_mnist_lmdbs(tmp_path, limit=20, download=False)
    images = fm.read_idx(
        os.path.join(fm.DEFAULT_SOURCE_DIR, "t10k-images-idx3-ubyte.gz"), limit=20
    )
    records = read_db(result["test"])
    assert len(records) == 20
    np.testing.assert_array_equal(datum_to_array(records[7][1])[0], images[7])
