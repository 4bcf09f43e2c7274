"""compute_image_mean: Caffe's golden mean files, exact sums, errors."""

import json

import numpy as np
import pytest

from caffepy.errors import DataError
from caffepy.io.blobproto import read_binaryproto
from caffepy.proto import caffe_pb2
from caffepy.tools.compute_image_mean import compute_image_mean
from tests.data.common import raw_db, write_lmdb


def test_golden_mean_files(golden, tmp_path):
    data = golden / "data"
    meta = json.loads((data / "data_pipeline.json").read_text())["compute_image_mean"]
    for db, info in meta.items():
        if info["returncode"] != 0:
            # Caffe aborts on these (records of different sizes); we raise.
            with pytest.raises(DataError, match="records of one size"):
                compute_image_mean(str(data / db))
            continue
        out = tmp_path / info["file"]
        mean, channel_means = compute_image_mean(str(data / db), str(out))
        assert mean.shape == tuple(info["blob_shape"]) and mean.dtype == np.float32
        want = read_binaryproto(data / info["file"])
        np.testing.assert_allclose(mean, want, rtol=1e-6)
        # Caffe printed 6 significant digits of its float accumulation: the same.
        assert [float(f"{m:.6g}") for m in channel_means] == info[
            "printed_channel_means"
        ]
        proto = caffe_pb2.BlobProto.FromString(out.read_bytes())
        assert not proto.HasField("shape")  # legacy 4-D fields, as Caffe writes
        assert [proto.num, proto.channels, proto.height, proto.width] == info[
            "legacy_4d_fields"
        ]
        np.testing.assert_allclose(read_binaryproto(out), want, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_mean_of_a_small_database(tmp_path, dtype):
    path, images, _, _ = raw_db(tmp_path / "db", n=9, shape=(2, 3, 4), dtype=dtype)
    mean, channel_means = compute_image_mean(path)
    want = images.astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(mean[0], want, rtol=1e-6)
    np.testing.assert_allclose(channel_means, want.mean(axis=(1, 2)), rtol=1e-6)


def test_errors(tmp_path):
    with pytest.raises(DataError, match="nodb.*does not exist"):
        compute_image_mean(str(tmp_path / "nodb"))
    write_lmdb(tmp_path / "empty", [])
    with pytest.raises(DataError, match="is empty"):
        compute_image_mean(str(tmp_path / "empty"))
    from caffepy.data.datum import array_to_datum

    records = [
        ("0", array_to_datum(np.zeros((1, 2, 2), np.uint8)).SerializeToString()),
        ("1", array_to_datum(np.zeros((1, 3, 2), np.uint8)).SerializeToString()),
    ]
    path = write_lmdb(tmp_path / "mixed", records)
    with pytest.raises(
        DataError, match="record '1' of .* is 1x3x2 .* first record '0' is 1x2x2"
    ):
        compute_image_mean(path)
