"""HDF5 cases and facts written by BVLC Caffe (fixtures/caffe-golden-2): HDF5Data
across files, what HDF5Output wrote, HDF5 snapshots and save_hdf5 layouts."""

import json
import shutil

import numpy as np
import pytest

import caffepy
from tests.conftest import FIXTURES, require_fixtures

h5py = pytest.importorskip("h5py")

GOLDEN2 = FIXTURES / "caffe-golden-2"
FACTS = GOLDEN2 / "facts"


def _groups(npz):
    out = {}
    for key in npz.files:
        kind, _, rest = key.partition("/")
        out.setdefault(kind, {})[rest] = npz[key]
    return out


def test_hdf5_data_batches_across_files(monkeypatch):
    require_fixtures()
    folder = GOLDEN2 / "layers"
    monkeypatch.chdir(folder)
    meta = json.loads((folder / "hdf5_data.json").read_text())
    arrays = _groups(np.load(folder / "hdf5_data.npz"))
    with caffepy.Net("hdf5_data.prototxt", caffepy.TEST) as net:
        for i in range(3):
            net.forward()
            for top in meta["blobs"]:
                want = arrays["batches"][f"{i}/{top}"]
                assert net.blobs[top].shape == want.shape
                np.testing.assert_array_equal(net.blobs[top].data, want, err_msg=top)
    for top in meta["blobs"]:
        np.testing.assert_array_equal(
            arrays["data"][top], arrays["batches"][f"0/{top}"]
        )


def test_hdf5_output_writes_what_caffe_wrote(tmp_path, monkeypatch):
    require_fixtures()
    folder = GOLDEN2 / "layers"
    for name in ("hdf5_output.prototxt", "hdf5_output.json", "hdf5_output.npz"):
        shutil.copy(folder / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    meta = json.loads((tmp_path / "hdf5_output.json").read_text())
    arrays = _groups(np.load(tmp_path / "hdf5_output.npz"))
    with caffepy.Net("hdf5_output.prototxt", caffepy.TEST) as net:
        for name, value in arrays["input"].items():
            net.blobs[name].data[...] = value
        net.forward_prefilled()
    with h5py.File(tmp_path / "hdf5_output_written.h5", "r") as f:
        assert sorted(f) == sorted(meta["h5_datasets"])
        for name, spec in meta["h5_datasets"].items():
            assert list(f[name].shape) == spec["shape"]
            assert f[name].dtype == np.dtype(spec["dtype"])
            np.testing.assert_array_equal(f[name][()], arrays["h5"][name])


def _layout(path):
    """A file's layout in the facts' form (kind, members, shape, dtype)."""
    out = {}

    def visit(name, obj):
        key = "/" + name
        if isinstance(obj, h5py.Group):
            out[key] = {"kind": "group", "members": sorted(obj)}
        else:
            out[key] = {
                "kind": "dataset",
                "shape": list(obj.shape),
                "dtype": obj.dtype.str if obj.dtype.kind == "S" else obj.dtype.name,
            }

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return out


def _expected(facts):
    out = {}
    for key, spec in facts.items():
        if key == "/":
            continue
        entry = {k: v for k, v in spec.items() if k in ("kind", "members", "shape")}
        if "dtype" in spec:
            entry["dtype"] = spec["dtype"]
        if "members" in entry:
            entry["members"] = sorted(entry["members"])
        out[key] = entry
    return out


@pytest.fixture
def hdf5_facts(tmp_path, monkeypatch):
    require_fixtures()
    for path in (FACTS / "hdf5").iterdir():
        shutil.copy(path, tmp_path / path.name)
    monkeypatch.chdir(tmp_path)
    return json.loads((FACTS / "hdf5_layout.json").read_text())


def _solver(solver_file):
    """A solver from a facts' solver file (built as BINARYPROTO, switched to HDF5:
    the format matters only when snapshotting)."""
    from caffepy.io.prototxt import read_solver
    from caffepy.solvers import get_solver

    param = read_solver(solver_file)
    fmt = param.snapshot_format
    param.snapshot_format = param.BINARYPROTO
    solver = get_solver(param)
    solver.param.snapshot_format = fmt
    return solver


def test_save_hdf5_layout_matches_caffe(hdf5_facts, tmp_path):
    from caffepy.io.hdf5 import save_net_hdf5

    with caffepy.Net("debug_net.prototxt", caffepy.TRAIN) as net:
        net.copy_from("debug_init.caffemodel")
        net.forward()
        net.backward()
        save_net_hdf5(net, tmp_path / "mine.h5")
    want = _expected(hdf5_facts["net_save_hdf5"]["layout"])
    assert _layout(tmp_path / "mine.h5") == want
    # Caffe's own file has the same layout, read by the same helper.
    assert _layout(tmp_path / "net_save_hdf5.h5") == want


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_bvlc_hdf5_snapshot_resumes(hdf5_facts, kind):
    facts = hdf5_facts[f"snapshot_{kind}"]
    solver = _solver(facts["solver"])
    solver.restore(f"snap_{kind}_iter_2.solverstate.h5")
    assert solver.iter == facts["restore_ok_iter"]
    with h5py.File(f"snap_{kind}_iter_2.caffemodel.h5", "r") as f:
        for name in ("ip1", "ip2"):
            for j in range(2):
                np.testing.assert_array_equal(
                    solver.net.params[name][j].data, f[f"data/{name}/{j}"][()]
                )
    with h5py.File(f"snap_{kind}_iter_2.solverstate.h5", "r") as f:
        assert solver.current_step == int(f["current_step"][0])
        for i, h in enumerate(solver.history):
            np.testing.assert_array_equal(solver.ops.to_host(h), f[f"history/{i}"][()])
    solver.step(1)
    assert solver.iter == 3


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_hdf5_snapshot_layout_matches_caffe(hdf5_facts, tmp_path, kind):
    facts = hdf5_facts[f"snapshot_{kind}"]
    solver = _solver(facts["solver"])
    solver.net.copy_from("debug_init.caffemodel")
    solver.solve()
    model, state = facts["files"]
    for name in (model, state):
        assert _layout(tmp_path / name) == _expected(facts[name]), name
    with h5py.File(tmp_path / state, "r") as f:
        assert f["learned_net"][()] == model.encode()
        assert f["learned_net"].id.get_type().get_strpad() == h5py.h5t.STR_NULLTERM
        assert int(f["iter"][0]) == 2
        assert int(f["current_step"][0]) == facts[state]["/current_step"]["value"][0]
    # Caffe's biases after two iterations from the same initial weights.
    with h5py.File(tmp_path / model, "r") as f:
        for layer in ("ip1", "ip2"):
            np.testing.assert_allclose(
                f[f"data/{layer}/1"][()],
                facts[model][f"/data/{layer}/1"]["value"],
                rtol=1e-4,
                atol=1e-6,
            )


def test_own_hdf5_snapshot_resumes_like_an_uninterrupted_run(hdf5_facts, tmp_path):
    caffepy.set_random_seed(3)
    straight = _solver("solver_sgd.prototxt")
    straight.param.snapshot = 0
    straight.param.snapshot_after_train = False
    straight.net.copy_from("debug_init.caffemodel")
    straight.step(3)

    caffepy.set_random_seed(3)
    first = _solver("solver_sgd.prototxt")
    first.net.copy_from("debug_init.caffemodel")
    first.step(2)
    model, state = first.snapshot()
    assert (model, state) == (
        "snap_sgd_iter_2.caffemodel.h5",
        "snap_sgd_iter_2.solverstate.h5",
    )
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    resumed = _solver("solver_sgd.prototxt")
    resumed.restore(state)
    assert (resumed.iter, resumed.current_step) == (2, first.current_step)
    resumed.step(1)
    for name in ("ip1", "ip2"):
        for a, b in zip(straight.net.params[name], resumed.net.params[name]):
            np.testing.assert_allclose(a.data, b.data, rtol=1e-6, atol=1e-7)
