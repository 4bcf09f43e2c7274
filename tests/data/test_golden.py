"""The Caffe golden data pipeline: stored LMDBs and Data-layer batches.

Driven by the fixtures' own json/npz files (see the golden README, section 3).
"""

import json

import numpy as np
import pytest

import caffepy
from caffepy.data.datum import datum_to_array, parse_datum
from caffepy.data.db import LMDBReader
from tests.conftest import GOLDEN

DATA = GOLDEN / "data"
CASES = sorted(p.stem for p in DATA.glob("data_*.json") if p.stem != "data_pipeline")
DBS = sorted(p.stem for p in DATA.glob("lmdb_*.npz"))


@pytest.mark.parametrize("case", CASES or [None])
def test_data_net_batches(golden, monkeypatch, case):
    if case is None:
        pytest.fail(f"no data_*.json cases in {DATA}")
    meta = json.loads((DATA / f"{case}.json").read_text())
    ref = np.load(DATA / f"{case}.npz")
    monkeypatch.chdir(DATA)  # paths in the prototxt are relative to data/
    net = caffepy.Net(f"{case}.prototxt", getattr(caffepy, meta["phase"]))
    try:
        for k in range(meta["batches_recorded"]):
            net.forward()
            np.testing.assert_allclose(
                net.blobs["data"].data,
                ref["batch/data"][k],
                rtol=0,
                atol=1e-6,
                err_msg=f"batch {k}",
            )
            np.testing.assert_array_equal(
                net.blobs["label"].data, ref["batch/label"][k]
            )
    finally:
        for layer in net.data_layers:
            layer.close()


@pytest.mark.parametrize("db", DBS or [None])
def test_stored_lmdb_decodes_as_recorded(golden, db):
    if db is None:
        pytest.fail(f"no lmdb_*.npz in {DATA}")
    ref = np.load(DATA / f"{db}.npz")
    with LMDBReader(str(DATA / db)) as reader:
        records = list(reader.items())
    assert [k for k, _ in records] == list(ref["keys"])
    for i, (key, value) in enumerate(records):
        datum = parse_datum(value, key)
        assert datum.label == ref["label"][i]
        assert datum.encoded == ref["encoded"][i]
        assert (datum.channels, datum.height, datum.width) == (
            ref["channels"][i],
            ref["height"][i],
            ref["width"][i],
        )
        if datum.encoded:
            assert datum.data == ref[f"datum_bytes/{i}"].tobytes()
            np.testing.assert_array_equal(
                datum_to_array(datum, key), ref[f"decoded/{i}"]
            )
        else:
            np.testing.assert_array_equal(
                datum_to_array(datum, key), ref[f"datum_data/{i}"]
            )
