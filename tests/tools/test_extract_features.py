"""extract_features: the records Caffe's tools/extract_features wrote, and errors."""

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from caffepy.cli import cli
from caffepy.errors import DataError, NetError
from caffepy.proto import caffe_pb2
from caffepy.tools.extract_features import _legacy_chw, extract_features
from tests.conftest import FIXTURES, require_fixtures

FACTS = FIXTURES / "caffe-golden-2" / "facts"


def _records(path):
    import lmdb

    env = lmdb.open(str(path), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            return [(k.decode(), bytes(v)) for k, v in txn.cursor()]
    finally:
        env.close()


def _arrays():
    with np.load(FACTS / "extract_features.npz") as npz:
        return dict(npz)


@pytest.fixture
def workdir(tmp_path):
    """The fact's net, weights and input LMDB in a writable folder."""
    require_fixtures()
    src = FACTS / "extract_features"
    for name in ("feat_net.prototxt", "feat_net.caffemodel", "lmdb_in"):
        copy = shutil.copytree if (src / name).is_dir() else shutil.copyfile
        copy(src / name, tmp_path / name)
    return tmp_path


def _check_like_caffe(ours_path, blob, facts, arrays):
    caffe = _records(FACTS / "extract_features" / f"feat_{blob}")
    ours = _records(ours_path)
    info = facts["output_dbs"][f"feat_{blob}"]
    assert [k for k, _ in ours] == [k for k, _ in caffe] == info["keys"]
    values = np.array(
        [caffe_pb2.Datum.FromString(v).float_data for _, v in ours], np.float32
    )
    np.testing.assert_allclose(
        values, arrays[f"feat_{blob}/float_data"], rtol=1e-5, atol=1e-6
    )
    for (_, mine), (_, theirs), chw in zip(ours, caffe, arrays[f"feat_{blob}/chw"]):
        datum = caffe_pb2.Datum.FromString(mine)
        assert [datum.channels, datum.height, datum.width] == list(chw)
        assert not datum.HasField("label") and not datum.HasField("encoded")
        assert datum.data == b""
        # Same fields in the same encoding: with Caffe's float values in place
        # of ours (they may differ in the last bits), the bytes are Caffe's.
        del datum.float_data[:]
        datum.float_data.extend(caffe_pb2.Datum.FromString(theirs).float_data)
        assert datum.SerializeToString() == theirs


def test_records_match_caffe(workdir, monkeypatch):
    facts = json.loads((FACTS / "extract_features.json").read_text())
    arrays = _arrays()
    monkeypatch.chdir(workdir)
    counts = extract_features(
        "feat_net.caffemodel",
        "feat_net.prototxt",
        ["fc", "pool1"],
        ["feat_fc", "feat_pool1"],
        4,
    )
    assert counts == {"feat_fc": 8, "feat_pool1": 8}
    for blob in ("fc", "pool1"):
        _check_like_caffe(workdir / f"feat_{blob}", blob, facts, arrays)


def test_cli_writes_the_same_records(workdir, monkeypatch):
    facts = json.loads((FACTS / "extract_features.json").read_text())
    arrays = _arrays()
    monkeypatch.chdir(workdir)
    args = ["feat_net.caffemodel", "feat_net.prototxt", "pool1", "out_pool1", "4"]
    res = CliRunner().invoke(cli, ["extract_features", *args])
    assert res.exit_code == 0, res.output
    assert "Wrote 8 records of blob pool1 to out_pool1" in res.output
    _check_like_caffe(workdir / "out_pool1", "pool1", facts, arrays)


def test_refuses_existing_db_and_bad_names(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    net = ("feat_net.caffemodel", "feat_net.prototxt")
    with pytest.raises(NetError, match="one database per blob"):
        extract_features(*net, ["fc", "pool1"], ["a"], 1)
    with pytest.raises(NetError, match="did you mean 'pool1'"):
        extract_features(*net, ["pol1"], ["a"], 1)
    (workdir / "taken").mkdir()
    (workdir / "taken" / "x").write_text("x")
    with pytest.raises(DataError, match="DB exists"):
        extract_features(*net, ["fc"], ["taken"], 1)
    assert not (workdir / "a").exists() and not (workdir / "a.partial").exists()


def test_legacy_shape():
    assert _legacy_chw((5, 4), "fc") == (4, 1, 1)
    assert _legacy_chw((5, 2, 3), "x") == (2, 3, 1)
    assert _legacy_chw((5, 2, 3, 4), "x") == (2, 3, 4)
    with pytest.raises(DataError, match="5 axes"):
        _legacy_chw((1, 2, 3, 4, 5), "x")
