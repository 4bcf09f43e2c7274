"""HDF5Data and HDF5Output layers, checked against a naive row walk."""

import numpy as np
import pytest

import caffepy
from caffepy.errors import LayerError
from caffepy.io.prototxt import parse_net_text

h5py = pytest.importorskip("h5py")


def _files(folder, rows=(5, 3), shape=(2, 3)):
    """.h5 files whose rows are numbered (data[r] == global row id) and a list."""
    names, start = [], 0
    for i, n in enumerate(rows):
        name = str(folder / f"part{i}.h5")
        ids = np.arange(start, start + n, dtype=np.float32)
        with h5py.File(name, "w") as f:
            data = np.broadcast_to(ids[:, None, None], (n, *shape)).astype(np.float32)
            f.create_dataset("data", data=data)
            f.create_dataset("label", data=ids.astype(np.int32))  # ints: cast
        names.append(name)
        start += n
    listfile = folder / "list.txt"
    listfile.write_text("\n".join(names) + "\n\n")
    return str(listfile)


def _data_net(listfile, batch=3, shuffle=False):
    text = f"""
    layer {{ name: "h5" type: "HDF5Data" top: "data" top: "label"
      hdf5_data_param {{ source: "{listfile}" batch_size: {batch}
        shuffle: {str(shuffle).lower()} }} }}"""
    return caffepy.Net(param=parse_net_text(text), phase=caffepy.TRAIN)


def test_batches_run_across_files_and_wrap(tmp_path):
    listfile = _files(tmp_path, rows=(5, 3))
    net = _data_net(listfile, batch=3)
    assert net.blobs["data"].shape == (3, 2, 3)
    assert net.blobs["label"].shape == (3,)
    walk = [r % 8 for r in range(30)]  # the naive order: all rows, file by file
    for k in range(10):
        net.forward()
        want = walk[3 * k : 3 * k + 3]
        np.testing.assert_array_equal(net.blobs["label"].data, want)
        np.testing.assert_array_equal(net.blobs["data"].data[:, 1, 2], want)


def test_shuffle_visits_every_row_once_per_pass_and_is_repeatable(tmp_path):
    listfile = _files(tmp_path, rows=(4, 4))

    def labels(seed):
        caffepy.set_random_seed(seed)
        net = _data_net(listfile, batch=4, shuffle=True)
        out = []
        for _ in range(6):
            net.forward()
            out.extend(net.blobs["label"].data.tolist())
        return out

    a = labels(5)
    for p in range(3):  # each 8-row pass is a permutation of all rows
        assert sorted(a[8 * p : 8 * p + 8]) == list(range(8))
    assert a != [r % 8 for r in range(24)]
    assert labels(5) == a
    assert labels(6) != a


def test_state_resumes_the_same_batches(tmp_path):
    listfile = _files(tmp_path, rows=(5, 3))
    net = _data_net(listfile, batch=3, shuffle=True)
    layer = net.layers[0]
    net.forward()
    state = layer.state()
    expected = []
    for _ in range(4):
        net.forward()
        expected.append(net.blobs["label"].data.copy())
    other = _data_net(listfile, batch=3, shuffle=True)
    other.layers[0].set_state(state)
    for want in expected:
        other.forward()
        np.testing.assert_array_equal(other.blobs["label"].data, want)


def test_missing_listed_file_is_one_clear_line(tmp_path):
    listfile = tmp_path / "list.txt"
    listfile.write_text(str(tmp_path / "gone.h5") + "\n")
    with pytest.raises(
        LayerError, match=r"HDF5Data layer 'h5'.*gone\.h5.*does not exist"
    ):
        _data_net(listfile)


def test_corrupt_h5_is_one_clear_line(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"garbage, not HDF5")
    listfile = tmp_path / "list.txt"
    listfile.write_text(f"{bad}\n")
    with pytest.raises(LayerError, match=r"bad\.h5.*not a readable HDF5 file") as info:
        _data_net(listfile)
    assert "\n" not in str(info.value)


def test_empty_list_and_missing_dataset(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(LayerError, match="at least 1 HDF5 filename"):
        _data_net(empty)
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("data", data=np.zeros((2, 1), np.float32))
    listfile = tmp_path / "list.txt"
    listfile.write_text(f"{tmp_path / 'x.h5'}\n")
    with pytest.raises(LayerError, match="has no dataset 'label'"):
        _data_net(listfile)


def _output_net(path, shapes):
    dims = "".join("shape { " + "".join(f"dim: {d} " for d in s) + "} " for s in shapes)
    text = f"""
    layer {{ name: "in" type: "Input" top: "a" top: "b" input_param {{ {dims} }} }}
    layer {{ name: "out" type: "HDF5Output" bottom: "a" bottom: "b"
      hdf5_output_param {{ file_name: "{path}" }} }}"""
    return caffepy.Net(param=parse_net_text(text), phase=caffepy.TEST)


def test_output_writes_4d_datasets_once(tmp_path):
    path = tmp_path / "out.h5"
    net = _output_net(path, [(2, 3), (2,)])
    a = np.random.rand(2, 3).astype(np.float32)
    net.blobs["a"].data[...] = a
    net.blobs["b"].data[...] = [4, 5]
    net.forward()
    with pytest.raises(LayerError, match="already holds the datasets"):
        net.forward()
    net.close()
    with h5py.File(path, "r") as f:
        assert f["data"].shape == (2, 3, 1, 1) and f["label"].shape == (2, 1, 1, 1)
        np.testing.assert_array_equal(f["data"][()].reshape(2, 3), a)
        np.testing.assert_array_equal(f["label"][()].ravel(), [4, 5])


def test_output_refuses_mismatched_rows_and_5d(tmp_path):
    with pytest.raises(LayerError, match="same number of rows"):
        _output_net(tmp_path / "o.h5", [(2, 3), (3,)]).forward()
    with pytest.raises(LayerError, match="5 axes"):
        _output_net(tmp_path / "p.h5", [(1, 1, 1, 1, 2), (1,)]).forward()
