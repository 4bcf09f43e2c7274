"""caffepy.io.hdf5: Caffe's HDF5 weights and solver-state files."""

import os

import numpy as np
import pytest

import caffepy
from caffepy.errors import SolverError, WeightsError
from caffepy.io import hdf5
from caffepy.io.prototxt import parse_net_text

h5py = pytest.importorskip("h5py")

NET = """
name: "tiny"
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "x" top: "a"
  param { name: "w" } param { name: "b" }
  inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 1 }
    bias_filler { type: "gaussian" std: 1 } } }
layer { name: "ip1b" type: "InnerProduct" bottom: "x" top: "b"
  param { name: "w" } param { name: "b" }
  inner_product_param { num_output: 4 } }
layer { name: "relu" type: "ReLU" bottom: "a" top: "a" }
layer { name: "ip2" type: "InnerProduct" bottom: "a" top: "y"
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 1 }
    bias_filler { type: "gaussian" std: 1 } } }
"""


def _net(text=NET):
    return caffepy.Net(param=parse_net_text(text), phase=caffepy.TEST)


def test_save_layout_every_layer_a_group_shared_params_at_owner(tmp_path):
    net = _net()
    path = tmp_path / "w.caffemodel.h5"
    hdf5.save_net_hdf5(net, path)
    with h5py.File(path, "r") as f:
        assert list(f) == ["data"]
        assert sorted(f["data"]) == ["in", "ip1", "ip1b", "ip2", "relu", "x_in_0_split"]
        assert sorted(f["data/ip1"]) == ["0", "1"]
        assert len(f["data/ip1b"]) == 0  # shares w and b with ip1
        assert len(f["data/relu"]) == 0
        np.testing.assert_array_equal(f["data/ip2/0"][()], net.params["ip2"][0].data)
        assert f["data/ip2/0"].shape == (2, 4)
        assert f["data/ip2/0"].dtype == np.float32
        assert not f.attrs.keys()
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_write_diff_adds_a_diff_group(tmp_path):
    net = _net()
    net.params["ip2"][1].diff[...] = [1.5, -2.0]
    hdf5.save_net_hdf5(net, tmp_path / "w.h5", write_diff=True)
    with h5py.File(tmp_path / "w.h5", "r") as f:
        np.testing.assert_array_equal(f["diff/ip2/1"][()], [1.5, -2.0])


def test_round_trip_through_copy_from(tmp_path):
    src, dst = _net(), _net()
    path = tmp_path / "w.caffemodel.h5"
    hdf5.save_net_hdf5(src, path)
    assert not np.array_equal(src.params["ip2"][0].data, dst.params["ip2"][0].data)
    report = dst.copy_from(str(path))
    assert report["copied"] == ["ip1", "ip2"]
    for name in ("ip1", "ip1b", "ip2"):
        for a, b in zip(src.params[name], dst.params[name]):
            np.testing.assert_array_equal(a.data, b.data)


def test_net_weights_argument_accepts_h5(tmp_path):
    src = _net()
    path = tmp_path / "w.h5"
    hdf5.save_net_hdf5(src, path)
    net = caffepy.Net(param=parse_net_text(NET), phase=caffepy.TEST, weights=str(path))
    np.testing.assert_array_equal(net.params["ip1"][0].data, src.params["ip1"][0].data)


def test_load_ignores_unknown_layers_and_checks_shapes(tmp_path):
    path = tmp_path / "w.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data/other/0", data=np.ones(3, np.float32))
        f.create_dataset("data/ip2/0", data=np.ones((2, 5), np.float32))
    with pytest.raises(WeightsError, match=r"w\.h5.*param 0 of layer 'ip2'.*\(2, 5\)"):
        _net().copy_from(str(path))
    with h5py.File(path, "w") as f:
        f.create_dataset("data/other/0", data=np.ones(3, np.float32))
        f.create_dataset("data/ip2/0", data=np.full((2, 4), 7, np.float64))
        f.create_dataset("data/ip2/1", data=np.zeros(2, np.float32))
    net = _net()
    report = net.copy_from(str(path))
    assert report == {"copied": ["ip2"], "ignored": ["other"]}
    assert (net.params["ip2"][0].data == 7).all()


def test_load_refuses_a_missing_owned_param_and_extra_datasets(tmp_path):
    path = tmp_path / "w.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data/ip2/0", data=np.ones((2, 4), np.float32))
    with pytest.raises(WeightsError, match="layer 'ip2' has no dataset '1'"):
        _net().copy_from(str(path))
    with h5py.File(path, "w") as f:
        for j in range(3):
            f.create_dataset(f"data/ip2/{j}", data=np.ones(2, np.float32))
    with pytest.raises(WeightsError, match="layer 'ip2' has 3 parameter datasets"):
        _net().copy_from(str(path))


def test_corrupt_and_missing_files_are_one_clear_line(tmp_path):
    bad = tmp_path / "bad.caffemodel.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 40)
    for path, pattern in (
        (bad, r"bad\.caffemodel\.h5.*not a readable HDF5 file"),
        (tmp_path / "none.h5", r"none\.h5.*does not exist"),
    ):
        with pytest.raises(WeightsError, match=pattern) as info:
            _net().copy_from(str(path))
        assert "\n" not in str(info.value)
    with h5py.File(tmp_path / "nodata.h5", "w") as f:
        f.create_dataset("x", data=[1])
    with pytest.raises(WeightsError, match="no /data group"):
        _net().copy_from(str(tmp_path / "nodata.h5"))


def test_duplicate_layer_names_refused_before_writing(tmp_path):
    net = _net()
    net.layers[4].name = "ip1"  # as a net with two layers of one name
    with pytest.raises(WeightsError, match="two layers named 'ip1'"):
        hdf5.save_net_hdf5(net, tmp_path / "dup.h5")
    assert not os.listdir(tmp_path)


def test_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "w.h5"
    path.write_bytes(b"old")

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    net = _net()
    monkeypatch.setattr(hdf5, "write_net_hdf5", boom)
    with pytest.raises(OSError):
        hdf5.save_net_hdf5(net, path)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["w.h5"]


def test_solverstate_round_trip_and_caffe_types(tmp_path):
    path = tmp_path / "s.solverstate.h5"
    history = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(2, np.float32)]
    hdf5.write_solverstate_hdf5(path, 7, "p_iter_7.caffemodel.h5", history, 3)
    with h5py.File(path, "r") as f:
        assert f["iter"].shape == (1,) and f["iter"].dtype == np.int32
        assert f["current_step"].shape == (1,) and f["current_step"].dtype == np.int32
        assert f["learned_net"].shape == ()
        assert f["learned_net"].dtype == np.dtype("S23")  # NUL included, as H5LT
        assert sorted(f["history"]) == ["0", "1"]
    state = hdf5.read_solverstate_hdf5(path)
    assert (state.iter, state.current_step) == (7, 3)
    assert state.learned_net == "p_iter_7.caffemodel.h5"
    for a, b in zip(state.history, history):
        np.testing.assert_array_equal(a, b)


def test_solverstate_errors(tmp_path):
    model = tmp_path / "m.caffemodel.h5"
    hdf5.save_net_hdf5(_net(), model)
    with pytest.raises(SolverError, match="is a .caffemodel.h5.*solverstate.h5"):
        hdf5.read_solverstate_hdf5(model)
    junk = tmp_path / "j.solverstate.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(SolverError, match=r"j\.solverstate\.h5.*not a readable HDF5"):
        hdf5.read_solverstate_hdf5(junk)


def test_missing_h5py_names_the_extra(monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "h5py":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(
        caffepy.errors.CaffepyError, match=r"pip install 'caffepy\[hdf5\]'"
    ):
        hdf5.h5py_module()
