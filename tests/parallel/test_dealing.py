"""HDF5Data, ImageData and WindowData deal their records round-robin across ranks.

Ranks are simulated in one process through caffepy.parallel.state. Oracle: the
single-process stream of the same layer with the same seed (Caffe's
``DataLayer::Skip``/``HDF5DataLayer::Skip``: rank r of N keeps stream record k
when k % N == r). A group of N batches of the ranks holds the records of N
single-process batches, and between forwards every rank stands at the start of
the next group, so a rank-0 state resumes with any number of ranks.
"""

import numpy as np
import pytest

import caffepy
from caffepy import TRAIN, Blob
from caffepy.parallel import state
from caffepy.testing import layer_from_text

SEED = 1701


@pytest.fixture(autouse=True)
def _one_process():
    yield
    state.set_solver_count(1)
    state.set_solver_rank(0)


def _as_rank(rank, size):
    state.set_solver_count(size)
    state.set_solver_rank(rank)


def _build(text, ntop=2):
    caffepy.set_random_seed(SEED)
    layer = layer_from_text(text, TRAIN, np.float32)
    top = [Blob((0,), np.float32) for _ in range(ntop)]
    layer.SetUp([], top)
    return layer, top


def _labels(layer, top, batches):
    out = []
    for _ in range(batches):
        layer.Forward([], top)
        out.append(top[1].data.astype(int).tolist())
    return out


def _close(layer):
    if hasattr(layer, "close"):
        layer.close()


def _check_dealt(text, batch, size, groups=3):
    """Every rank's k-th batch holds stream records kBN + r + iN; a rank-0 state
    resumes in one process and in three ranks where the stream was."""
    _as_rank(0, 1)
    layer, top = _build(text)
    stream = sum(_labels(layer, top, size * groups + 6), [])
    _close(layer)
    states = []
    for rank in range(size):
        _as_rank(rank, size)
        layer, top = _build(text)
        got = _labels(layer, top, groups)
        for k, labels in enumerate(got):
            start = k * batch * size + rank
            assert labels == stream[start : start + batch * size : size], (rank, k)
        states.append(layer.state())
        _close(layer)
    # Between forwards every rank stands at the same place.
    assert all(s == states[0] for s in states)
    g = groups * batch * size
    _as_rank(0, 1)
    alone, top = _build(text)
    alone.set_state(states[0])
    assert _labels(alone, top, 1)[0] == stream[g : g + batch]
    _close(alone)
    for rank in range(3):
        _as_rank(rank, 3)
        layer, top = _build(text)
        layer.set_state(states[0])
        assert _labels(layer, top, 1)[0] == stream[g + rank : g + rank + 3 * batch : 3]
        _close(layer)


# -- HDF5Data ------------------------------------------------------------------
def _h5_list(folder, rows=(5, 3, 4)):
    h5py = pytest.importorskip("h5py")
    names, start = [], 0
    for i, n in enumerate(rows):
        name = str(folder / f"part{i}.h5")
        ids = np.arange(start, start + n, dtype=np.float32)
        with h5py.File(name, "w") as f:
            f.create_dataset("data", data=np.repeat(ids[:, None], 2, axis=1))
            f.create_dataset("label", data=ids)
        names.append(name)
        start += n
    listfile = folder / "list.txt"
    listfile.write_text("\n".join(names) + "\n")
    return listfile


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("size", [2, 3])
def test_hdf5_data_deals_rows_across_the_files(tmp_path, shuffle, size):
    listfile = _h5_list(tmp_path)
    text = (
        'name: "h5" type: "HDF5Data" top: "data" top: "label" '
        f'hdf5_data_param {{ source: "{listfile}" batch_size: 3 '
        f"shuffle: {str(shuffle).lower()} }}"
    )
    _check_dealt(text, 3, size)


def test_hdf5_data_ranks_partition_each_pass(tmp_path):
    listfile = _h5_list(tmp_path, rows=(4, 4))  # 8 rows, 2 ranks x batch 2 x 2
    text = (
        'name: "h5" type: "HDF5Data" top: "data" top: "label" '
        f'hdf5_data_param {{ source: "{listfile}" batch_size: 2 shuffle: true }}'
    )
    seen = []
    for rank in range(2):
        _as_rank(rank, 2)
        layer, top = _build(text)
        seen += sum(_labels(layer, top, 2), [])
    assert sorted(seen) == list(range(8))  # one pass, no row twice


# -- ImageData -----------------------------------------------------------------
def _images(folder, n=7):
    cv2 = pytest.importorskip("cv2")
    folder.mkdir()
    gen = np.random.default_rng(7)
    lines = []
    for i in range(n):
        cv2.imwrite(
            str(folder / f"im{i}.png"), gen.integers(0, 256, (4, 5, 3), np.uint8)
        )
        lines.append(f"im{i}.png {i}")
    (folder / "list.txt").write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("size", [2, 3])
def test_image_data_deals_lines(tmp_path, shuffle, size):
    folder = _images(tmp_path / "imgs")
    text = (
        'name: "img" type: "ImageData" top: "data" top: "label" '
        f'image_data_param {{ source: "{folder}/list.txt" root_folder: "{folder}/" '
        f"batch_size: 2 shuffle: {str(shuffle).lower()} }}"
    )
    _check_dealt(text, 2, size)


# -- WindowData ----------------------------------------------------------------
def _windows(folder):
    cv2 = pytest.importorskip("cv2")
    lines = []
    for i in range(3):
        cv2.imwrite(str(folder / f"w{i}.png"), np.full((20, 20, 3), 40 * i, np.uint8))
        lines += [f"# {i}", f"w{i}.png", "3 20 20", "2"]
        lines += [f"{i + 1} 0.9 0 0 9 9", "4 0.1 5 5 14 14"]
    (folder / "windows.txt").write_text("\n".join(lines) + "\n")
    return (
        'name: "w" type: "WindowData" top: "data" top: "label" '
        "transform_param { crop_size: 6 mirror: true } "
        f'window_data_param {{ source: "{folder}/windows.txt" root_folder: '
        f'"{folder}/" batch_size: 4 fg_fraction: 0.75 }}'
    )


def _window_batches(text, n):
    layer, top = _build(text)
    out = []
    for _ in range(n):
        layer.Forward([], top)
        out.append((top[0].data.copy(), top[1].data.copy()))
    return out


def test_window_data_deals_batches(tmp_path):
    text = _windows(tmp_path)
    _as_rank(0, 1)
    stream = _window_batches(text, 6)
    assert len({tuple(lab.tolist()) for _, lab in stream}) > 1  # the draws vary
    for rank in range(2):
        _as_rank(rank, 2)
        for k, (data, labels) in enumerate(_window_batches(text, 3)):
            want_data, want_labels = stream[2 * k + rank]
            np.testing.assert_array_equal(labels, want_labels)
            np.testing.assert_array_equal(data, want_data)


def test_ranks_agree_on_a_seed_for_their_shuffles():
    from caffepy.parallel import launch
    from caffepy.parallel.comm import Communicator
    from caffepy.proto import caffe_pb2

    class RankOne(Communicator):
        size, rank = 2, 1

        def allgather(self, obj, what=""):
            return [1234, obj]  # rank 0 drew 1234

    param = caffe_pb2.SolverParameter()  # random_seed -1: each rank would differ
    launch.agree_on_seed(RankOne(), param)
    assert param.random_seed == 1234
    param.random_seed = 5
    launch.agree_on_seed(RankOne(), param)
    assert param.random_seed == 5
