"""LMDB reader (positions, wrap-around, errors) and writer (partial, map growth)."""

import os

import lmdb
import pytest

from caffepy.data.db import LEVELDB, LMDBReader, LMDBWriter
from caffepy.errors import DataError
from tests.data.common import raw_db, write_lmdb


def test_reads_in_key_order_and_wraps(tmp_path):
    # Written out of order: LMDB keeps keys sorted.
    path = write_lmdb(tmp_path / "db", [(k, k.encode()) for k in ["b", "c", "a"]])
    with LMDBReader(path) as reader:
        assert len(reader) == 3
        got = [reader.read()[0] for _ in range(7)]
        assert got == ["a", "b", "c", "a", "b", "c", "a"]
        assert reader.position == 1
        reader.seek(2)
        assert reader.peek() == ("c", b"c")
        reader.seek(0)
        assert reader.read() == ("a", b"a")
        with pytest.raises(DataError, match="position 3 is out of range"):
            reader.seek(3)


def test_reading_writes_nothing(tmp_path):
    # readonly=True, lock=False: works on read-only folders, creates no lock file.
    path, *_ = raw_db(tmp_path / "db", n=2)
    os.remove(os.path.join(path, "lock.mdb"))
    with LMDBReader(path) as reader:
        assert len(reader) == 2
    assert os.listdir(path) == ["data.mdb"]


def test_two_readers_of_one_database(tmp_path):
    # A train and a test net over one LMDB: LMDB refuses a second open of the
    # same environment in a process, so readers share it.
    path, *_ = raw_db(tmp_path / "db", n=3)
    a, b = LMDBReader(path), LMDBReader(str(tmp_path / "db") + "/")
    a.read()
    assert (a.position, b.position) == (1, 0)
    assert b.read()[0] == "00000000_img0.png"
    a.close()
    assert b.read()[0] == "00000001_img1.png"
    b.close()


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match="nope.*does not exist"):
        LMDBReader(str(tmp_path / "nope"))


def test_empty_database(tmp_path):
    env = lmdb.open(str(tmp_path / "empty"))
    env.close()
    with pytest.raises(DataError, match="empty.*is empty"):
        LMDBReader(str(tmp_path / "empty"))


def test_leveldb_folder_is_refused_with_advice(tmp_path):
    folder = tmp_path / "train_leveldb"
    folder.mkdir()
    (folder / "CURRENT").write_text("MANIFEST-000002\n")
    (folder / "MANIFEST-000002").write_bytes(b"\0")
    with pytest.raises(DataError, match="train_leveldb.*LevelDB.*--backend lmdb"):
        LMDBReader(str(folder), LEVELDB)


def test_folder_that_is_no_database(tmp_path):
    with pytest.raises(DataError, match="not an LMDB database"):
        LMDBReader(str(tmp_path))


def test_leveldb_backend_on_lmdb_folder_warns_and_reads(tmp_path):
    path, *_ = raw_db(tmp_path / "db", n=2)
    with pytest.warns(UserWarning, match="backend is LEVELDB.*reading it as LMDB"):
        reader = LMDBReader(path, LEVELDB)
    assert len(reader) == 2
    reader.close()


def test_writer_renames_when_complete(tmp_path):
    path = str(tmp_path / "out")
    writer = LMDBWriter(path, commit_every=2)
    for i in range(5):
        writer.put(f"{i:08d}", b"v%d" % i)
    # Not closed yet (a killed conversion): nothing at the final path.
    assert not os.path.exists(path) and os.path.isdir(path + ".partial")
    writer.close()
    assert not os.path.exists(path + ".partial")
    with LMDBReader(path) as reader:
        assert [k for k, _ in reader.items()] == [f"{i:08d}" for i in range(5)]


def test_writer_grows_the_map(tmp_path):
    path = str(tmp_path / "big")
    with LMDBWriter(path, map_size=1 << 16, commit_every=1000) as writer:
        for i in range(300):
            writer.put(f"{i:08d}", bytes(1000))
    assert writer.map_size > 1 << 16
    with LMDBReader(path) as reader:
        assert len(reader) == 300


def test_writer_refuses_existing_database(tmp_path):
    path, *_ = raw_db(tmp_path / "db", n=1)
    with pytest.raises(DataError, match="DB exists, refusing to overwrite"):
        LMDBWriter(path)
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with LMDBWriter(str(empty)) as writer:
        writer.put("k", b"v")
    assert os.path.isfile(empty / "data.mdb")


def test_writer_abort_on_error_leaves_nothing(tmp_path):
    path = str(tmp_path / "out")
    with pytest.raises(RuntimeError), LMDBWriter(path) as writer:
        writer.put("k", b"v")
        raise RuntimeError
    assert not os.path.exists(path) and not os.path.exists(path + ".partial")
