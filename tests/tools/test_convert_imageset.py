"""convert_imageset: Caffe's golden databases, cv2 read-back, options and errors."""

import json
import logging
import os
import shlex

import cv2
import lmdb
import numpy as np
import pytest

from caffepy import rng as caffe_rng
from caffepy.data.datum import datum_to_array, parse_datum
from caffepy.data.db import LMDBReader
from caffepy.errors import DataError, UnsupportedError
from caffepy.tools.convert_imageset import convert_imageset


def raw_records(path):
    env = lmdb.open(str(path), readonly=True, lock=False)
    with env.begin() as txn:
        items = [(bytes(k), bytes(v)) for k, v in txn.cursor()]
    env.close()
    return items


def parse_command(cmd):
    """convert_imageset's gflags command line -> (positional, keyword arguments)."""
    positional, kwargs = [], {}
    for arg in shlex.split(cmd)[1:]:
        if not arg.startswith("--"):
            positional.append(arg)
            continue
        name, _, value = arg[2:].partition("=")
        if name in ("resize_height", "resize_width"):
            kwargs[name] = int(value)
        elif name in ("encode_type", "backend"):
            kwargs[name] = value
        else:
            kwargs[name] = True
    return positional, kwargs


def test_reproduces_the_golden_databases(golden, tmp_path, monkeypatch):
    data = golden / "data"
    meta = json.loads((data / "data_pipeline.json").read_text())
    monkeypatch.chdir(data)  # ROOTFOLDER "images/" and list.txt are relative
    for name, cmd in meta["convert_imageset"].items():
        (root, listfile, _), kwargs = parse_command(cmd)
        stats = convert_imageset(
            root, listfile, str(tmp_path / name), progress=False, **kwargs
        )
        assert stats["written"] == meta["lmdb"][name]["n_records"]
        assert stats["skipped"] == 0
        # Keys, labels, Datum fields and pixels: byte-identical records.
        assert raw_records(tmp_path / name) == raw_records(data / name), name


def make_images(folder):
    gen = np.random.default_rng(0)
    folder.mkdir()
    specs = {
        "a.png": (7, 9, 3),
        "b.png": (5, 6),
        "c.jpg": (8, 8, 3),
        "d e.png": (6, 4, 3),
    }
    for name, shape in specs.items():
        cv2.imwrite(str(folder / name), gen.integers(0, 256, shape, np.uint8))
    (folder / "list.txt").write_text("a.png 3\nb.png 1\n\nc.jpg 0\nd e.png 7\n")
    return folder, list(specs)


@pytest.mark.parametrize("gray", [False, True])
@pytest.mark.parametrize("resize", [(0, 0), (5, 7)])
def test_read_back_equals_cv2(tmp_path, gray, resize):
    folder, names = make_images(tmp_path / "imgs")
    db = tmp_path / "db"
    convert_imageset(
        str(folder) + "/",
        folder / "list.txt",
        db,
        gray=gray,
        resize_height=resize[0],
        resize_width=resize[1],
        progress=False,
    )
    with LMDBReader(str(db)) as reader:
        records = list(reader.items())
    assert [k for k, _ in records] == [f"{i:08d}_{n}" for i, n in enumerate(names)]
    flag = cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR
    for (key, value), name, label in zip(records, names, [3, 1, 0, 7]):
        img = cv2.imread(str(folder / name), flag)
        if resize[0]:
            img = cv2.resize(img, (resize[1], resize[0]))
        img = img[None] if img.ndim == 2 else img.transpose(2, 0, 1)
        datum = parse_datum(value)
        assert datum.label == label and not datum.encoded
        np.testing.assert_array_equal(datum_to_array(datum, key), img)


def test_encoded_keeps_or_reencodes(tmp_path):
    folder, names = make_images(tmp_path / "imgs")
    convert_imageset(
        str(folder) + "/",
        folder / "list.txt",
        tmp_path / "png",
        encode_type="png",
        progress=False,
    )
    with LMDBReader(str(tmp_path / "png")) as reader:
        records = [parse_datum(v) for _, v in reader.items()]
    for datum, name in zip(records, names):
        assert datum.encoded and datum.channels == 0
        raw = (folder / name).read_bytes()
        if name.endswith(".png"):
            assert datum.data == raw  # the original file
        else:  # a JPEG re-encoded as PNG: lossless copy of cv2's decoding
            assert datum.data[:4] == b"\x89PNG"
            want = cv2.imread(str(folder / name), cv2.IMREAD_COLOR).transpose(2, 0, 1)
            np.testing.assert_array_equal(datum_to_array(datum, name, True), want)
    # With a resize, every record is re-encoded (at the new size).
    convert_imageset(
        str(folder) + "/",
        folder / "list.txt",
        tmp_path / "small",
        encoded=True,
        resize_height=3,
        resize_width=4,
        progress=False,
    )
    with LMDBReader(str(tmp_path / "small")) as reader:
        shapes = {datum_to_array(parse_datum(v), k).shape for k, v in reader.items()}
    assert shapes == {(3, 3, 4)}


def test_unreadable_images_are_skipped_and_counted(tmp_path, caplog):
    folder, _ = make_images(tmp_path / "imgs")
    (folder / "b.png").write_bytes(b"not a png")
    with caplog.at_level(logging.WARNING):
        stats = convert_imageset(
            str(folder) + "/", folder / "list.txt", tmp_path / "db", progress=False
        )
    assert (stats["written"], stats["skipped"]) == (3, 1)
    assert stats["skipped_paths"] == [str(folder) + "/b.png"]
    assert "b.png" in caplog.text
    with LMDBReader(str(tmp_path / "db")) as reader:
        keys = [k for k, _ in reader.items()]
    assert keys == ["00000000_a.png", "00000002_c.jpg", "00000003_d e.png"]


def test_shuffle_is_seeded(tmp_path):
    folder, _ = make_images(tmp_path / "imgs")
    keys = []
    for run in range(2):
        caffe_rng.set_random_seed(5)
        db = tmp_path / f"db{run}"
        convert_imageset(
            str(folder) + "/", folder / "list.txt", db, shuffle=True, progress=False
        )
        with LMDBReader(str(db)) as reader:
            keys.append([k for k, _ in reader.items()])
    assert keys[0] == keys[1]
    assert sorted(k[9:] for k in keys[0]) == ["a.png", "b.png", "c.jpg", "d e.png"]


def test_refuses_an_existing_database(tmp_path):
    folder, _ = make_images(tmp_path / "imgs")
    args = (str(folder) + "/", folder / "list.txt", tmp_path / "db")
    convert_imageset(*args, progress=False)
    with pytest.raises(
        DataError,
        match="DB exists, refusing to overwrite; remove it or choose another path",
    ):
        convert_imageset(*args, progress=False)


def test_killed_conversion_leaves_no_database(tmp_path, monkeypatch):
    import caffepy.data.datum as datum_mod

    folder, _ = make_images(tmp_path / "imgs")
    calls = []
    real = datum_mod.read_image

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(datum_mod, "read_image", dying)
    with pytest.raises(KeyboardInterrupt):
        convert_imageset(
            str(folder) + "/", folder / "list.txt", tmp_path / "db", progress=False
        )
    assert not os.path.exists(tmp_path / "db")


def test_errors(tmp_path):
    folder, _ = make_images(tmp_path / "imgs")
    with pytest.raises(DataError, match="check_size"):
        convert_imageset(
            str(folder) + "/",
            folder / "list.txt",
            tmp_path / "a",
            check_size=True,
            progress=False,
        )
    with pytest.raises(UnsupportedError, match="lmdb or leveldb"):
        convert_imageset(
            str(folder) + "/", folder / "list.txt", tmp_path / "b", backend="hdf5"
        )
    with pytest.raises(DataError, match="none of the 4 images.*could be read"):
        convert_imageset(
            "/nowhere/", folder / "list.txt", tmp_path / "c", progress=False
        )
    assert not os.path.exists(tmp_path / "c")
    with pytest.raises(DataError, match="cannot read list file"):
        convert_imageset(str(folder), tmp_path / "missing.txt", tmp_path / "d")
