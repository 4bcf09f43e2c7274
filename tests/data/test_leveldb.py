"""LevelDB databases: reader, writer, Data layers, convert_imageset and
compute_image_mean with ``--backend leveldb``; the message without plyvel."""

import os

import numpy as np
import pytest

import caffepy
from caffepy.data.datum import array_to_datum
from caffepy.data.db import LEVELDB, LMDB, open_db_reader, open_db_writer
from caffepy.errors import DataError
from caffepy.io.prototxt import parse_net_text

plyvel = pytest.importorskip("plyvel")


def _write(path, n=5, shape=(1, 2, 3)):
    images = np.arange(n * int(np.prod(shape)), dtype=np.uint8).reshape(n, *shape)
    with open_db_writer(path, "leveldb") as writer:
        for i in range(n):
            writer.put(
                f"{i:08d}", array_to_datum(images[i], i * 10).SerializeToString()
            )
    return images


def test_writer_reader_round_trip_in_key_order(tmp_path):
    path = str(tmp_path / "db")
    _write(path, n=5)
    assert not os.path.exists(path + ".partial")
    raw = plyvel.DB(path)  # an independent reader: plyvel itself
    want = list(raw.iterator())
    raw.close()
    assert [k for k, _ in want] == [f"{i:08d}".encode() for i in range(5)]
    with open_db_reader(path, LEVELDB) as reader:
        assert len(reader) == 5
        got = [reader.read() for _ in range(7)]  # wraps around
        assert [k for k, _ in got] == [f"{i:08d}" for i in (0, 1, 2, 3, 4, 0, 1)]
        assert [v for _, v in got[:5]] == [v for _, v in want]
        reader.seek(3)
        assert reader.peek()[0] == "00000003" and reader.position == 3


def test_two_readers_share_one_handle_and_lmdb_backend_warns(tmp_path):
    path = str(tmp_path / "db")
    _write(path, n=3)
    a = open_db_reader(path, LEVELDB)
    with pytest.warns(UserWarning, match="backend is LMDB but the database is LevelDB"):
        b = open_db_reader(path, LMDB)
    assert a.read()[0] == b.read()[0] == "00000000"
    a.close()
    b.close()


def test_writer_refuses_existing_and_abort_discards(tmp_path):
    path = str(tmp_path / "db")
    _write(path, n=2)
    with pytest.raises(DataError, match="DB exists"):
        open_db_writer(path, "leveldb")
    other = str(tmp_path / "other")
    with pytest.raises(RuntimeError), open_db_writer(other, LEVELDB) as writer:
        writer.put("a", b"x")
        raise RuntimeError("killed")
    assert not os.path.exists(other) and not os.path.exists(other + ".partial")


def test_empty_and_corrupt_databases(tmp_path):
    empty = str(tmp_path / "empty")
    plyvel.DB(empty, create_if_missing=True).close()
    with pytest.raises(DataError, match="is empty"):
        open_db_reader(empty, LEVELDB)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "CURRENT").write_text("MANIFEST-000002\n")
    (bad / "MANIFEST-000002").write_text("x")
    with pytest.raises(DataError, match=r"LevelDB database .*bad. is corrupt") as info:
        open_db_reader(str(bad), LEVELDB)
    assert "\n" not in str(info.value)


def test_data_layer_reads_leveldb(tmp_path):
    path = str(tmp_path / "db")
    images = _write(path, n=4)
    text = f"""
    layer {{ name: "data" type: "Data" top: "data" top: "label"
      data_param {{ source: "{path}" backend: LEVELDB batch_size: 3 }} }}"""
    with caffepy.Net(param=parse_net_text(text), phase=caffepy.TEST) as net:
        net.forward()
        np.testing.assert_array_equal(net.blobs["data"].data, images[:3])
        np.testing.assert_array_equal(net.blobs["label"].data, [0, 10, 20])
        net.forward()
        np.testing.assert_array_equal(net.blobs["label"].data, [30, 0, 10])


def test_convert_imageset_and_mean_with_leveldb(tmp_path):
    import cv2

    from caffepy.tools.compute_image_mean import compute_image_mean
    from caffepy.tools.convert_imageset import convert_imageset

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    pics = [rng.integers(0, 256, (4, 5, 3), dtype=np.uint8) for _ in range(3)]
    for i, pic in enumerate(pics):
        cv2.imwrite(str(folder / f"p{i}.png"), pic)
    (folder / "list.txt").write_text("".join(f"p{i}.png {i}\n" for i in range(3)))
    db = str(tmp_path / "db")
    stats = convert_imageset(
        str(folder) + "/", folder / "list.txt", db, backend="leveldb", progress=False
    )
    assert stats["written"] == 3
    with open_db_reader(db, LEVELDB) as reader:
        assert [k for k, _ in reader.items()] == [f"{i:08d}_p{i}.png" for i in range(3)]
    mean, _ = compute_image_mean(db, None, "leveldb")
    want = np.mean([p.transpose(2, 0, 1).astype(np.float64) for p in pics], axis=0)
    np.testing.assert_allclose(mean[0], want, rtol=1e-6)


def test_missing_plyvel_names_the_extra(tmp_path, monkeypatch):
    import builtins

    path = str(tmp_path / "db")
    _write(path, n=1)
    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "plyvel":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    for call in (
        lambda: open_db_reader(path, LEVELDB),
        lambda: open_db_writer(str(tmp_path / "new"), "leveldb"),
    ):
        with pytest.raises(DataError, match=r"pip install 'caffepy\[leveldb\]'"):
            call()
