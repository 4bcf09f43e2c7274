"""Data and ImageData layers: records, determinism, resume, prefetch, errors."""

import json
import threading

import cv2
import numpy as np
import pytest

from caffepy import TEST, TRAIN, Blob
from caffepy import rng as caffe_rng
from caffepy.errors import DataError, LayerError
from caffepy.testing import layer_from_text
from tests.data.common import encoded_db, layer_text, raw_db, write_lmdb


@pytest.fixture
def build():
    """Create and set up data layers; close them (stop their threads) afterwards."""
    layers = []

    def make(text, phase=TEST, ntop=2, dtype=np.float32):
        layer = layer_from_text(text, phase, dtype)
        layers.append(layer)
        top = [Blob((0,), dtype) for _ in range(ntop)]
        layer.SetUp([], top)
        return layer, top

    yield make
    for layer in layers:
        if hasattr(layer, "_finalizer"):
            layer.close()


def batches(layer, top, n):
    out = []
    for _ in range(n):
        layer.Forward([], top)
        out.append(tuple(t.data.copy() for t in top))
    return out


def test_data_layer_equals_direct_read(tmp_path, build):
    path, images, labels, _ = raw_db(tmp_path / "db", n=7)
    layer, top = build(layer_text(path, 3, "scale: 0.5"))
    assert top[0].shape == (3, 3, 6, 5) and top[1].shape == (3,)
    order = [0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4]  # wraps around at the end
    for k, (data, label) in enumerate(batches(layer, top, 4)):
        idx = order[3 * k : 3 * k + 3]
        np.testing.assert_array_equal(data, images[idx].astype(np.float32) * 0.5)
        np.testing.assert_array_equal(label, labels[idx])


def test_float64_and_single_top(tmp_path, build):
    path, images, _, _ = raw_db(tmp_path / "db", n=4)
    layer, top = build(
        layer_text(path, 2).replace(' top: "label"', ""), ntop=1, dtype=np.float64
    )
    layer.Forward([], top)
    assert top[0].data.dtype == np.float64
    np.testing.assert_array_equal(top[0].data, images[:2])


def test_float_data_records(tmp_path, build):
    path, images, _, _ = raw_db(tmp_path / "db", n=3, dtype=np.float32)
    layer, top = build(layer_text(path, 3, "scale: 2"))
    layer.Forward([], top)
    np.testing.assert_array_equal(top[0].data, images * 2)


TRAIN_T = "crop_size: 4 mirror: true mean_value: 10 scale: 0.25"


def test_train_crop_mirror_deterministic_with_seed(tmp_path, build):
    path, images, _, _ = raw_db(tmp_path / "db", n=5)
    runs = []
    for depth in (4, 0, 1):  # prefetched or synchronous: the same batches
        caffe_rng.set_random_seed(42)
        layer, top = build(layer_text(path, 2, TRAIN_T, f"prefetch: {depth}"), TRAIN)
        runs.append(batches(layer, top, 5))
    for other in runs[1:]:
        for (a, la), (b, lb) in zip(runs[0], other):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(la, lb)
    caffe_rng.set_random_seed(43)
    layer, top = build(layer_text(path, 2, TRAIN_T), TRAIN)
    assert any(
        not np.array_equal(a[0], b[0]) for a, b in zip(runs[0], batches(layer, top, 5))
    )
    # mirrors and crops did happen: some item differs from the centre crop
    centre = (images[:, :, 1:5, 0:4].astype(np.float32) - 10) * 0.25
    assert not np.array_equal(runs[0][0][0], centre[:2])


def test_state_resume_gives_the_same_next_batches(tmp_path, build):
    path, *_ = raw_db(tmp_path / "db", n=7)
    caffe_rng.set_random_seed(1)
    layer, top = build(layer_text(path, 3, TRAIN_T), TRAIN)
    batches(layer, top, 2)
    state = json.loads(json.dumps(layer.state()))  # JSON-able
    assert state["position"] == 6
    expected = batches(layer, top, 4)
    # A fresh layer (another seed) resumed from the state ...
    caffe_rng.set_random_seed(999)
    other, otop = build(layer_text(path, 3, TRAIN_T), TRAIN)
    batches(other, otop, 1)
    other.set_state(state)
    # ... and the same layer rewound.
    layer.set_state(state)
    for got in (batches(other, otop, 4), batches(layer, top, 4)):
        for (a, la), (b, lb) in zip(expected, got):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(la, lb)


def test_state_is_of_consumed_batches(tmp_path, build):
    path, *_ = raw_db(tmp_path / "db", n=50)
    layer, top = build(layer_text(path, 2, extra="prefetch: 4"))
    layer.Forward([], top)
    # The thread may have prefetched 4 more batches; the state counts one.
    assert layer.state()["position"] == 2


def test_rand_skip_in_train_only(tmp_path, build):
    path, images, _, _ = raw_db(tmp_path / "db", n=9)
    starts = set()
    for seed in range(8):
        caffe_rng.set_random_seed(seed)
        layer, top = build(layer_text(path, 1, extra="rand_skip: 5"), TRAIN)
        layer.Forward([], top)
        start = next(i for i in range(9) if np.array_equal(top[0].data[0], images[i]))
        starts.add(start)
        assert layer.state()["position"] == start + 1
    assert starts <= set(range(5)) and len(starts) > 1
    layer, top = build(layer_text(path, 1, extra="rand_skip: 5"), TEST)
    layer.Forward([], top)
    np.testing.assert_array_equal(top[0].data[0], images[0])


def test_train_and_test_layers_on_one_database(tmp_path, build):
    path, images, _, _ = raw_db(tmp_path / "db", n=6)
    train, ttop = build(layer_text(path, 4), TRAIN)
    test, etop = build(layer_text(path, 3), TEST)
    train.Forward([], ttop)
    test.Forward([], etop)
    train.Forward([], ttop)
    np.testing.assert_array_equal(etop[0].data, images[:3])
    np.testing.assert_array_equal(ttop[0].data, images[[4, 5, 0, 1]])


def test_encoded_records_of_different_sizes(tmp_path, build):
    path, imgs = encoded_db(tmp_path / "db", [(9, 8), (6, 7), (10, 12)])
    layer, top = build(layer_text(path, 3, "crop_size: 5 force_color: true"))
    assert top[0].shape == (3, 3, 5, 5)
    layer.Forward([], top)
    for i, img in enumerate(imgs):
        h, w = img.shape[:2]
        ho, wo = (h - 5) // 2, (w - 5) // 2
        np.testing.assert_array_equal(
            top[0].data[i], img[ho : ho + 5, wo : wo + 5].transpose(2, 0, 1)
        )
    gray, gtop = build(layer_text(path, 3, "crop_size: 5 force_gray: true"))
    assert gtop[0].shape == (3, 1, 5, 5)
    gray.Forward([], gtop)
    for i, img in enumerate(imgs):
        ho, wo = (img.shape[0] - 5) // 2, (img.shape[1] - 5) // 2
        g = cv2.imdecode(cv2.imencode(".png", img)[1], cv2.IMREAD_GRAYSCALE)
        np.testing.assert_array_equal(gtop[0].data[i, 0], g[ho : ho + 5, wo : wo + 5])


def test_close_stops_the_thread(tmp_path, build):
    path, *_ = raw_db(tmp_path / "db", n=4)
    layer, top = build(layer_text(path, 2))
    layer.Forward([], top)
    thread = layer._prefetcher._thread
    assert thread is not None and thread.is_alive()
    layer.close()
    assert not thread.is_alive()
    assert not any(t.name == "caffepy-data-data" for t in threading.enumerate())
    with pytest.raises(LayerError, match="closed"):
        layer.Forward([], top)


def test_errors(tmp_path, build):
    with pytest.raises(DataError, match="missing_db.*does not exist"):
        build(layer_text(str(tmp_path / "missing_db")))
    write_lmdb(tmp_path / "empty", [])
    with pytest.raises(DataError, match="empty.*is empty"):
        build(layer_text(str(tmp_path / "empty")))
    level = tmp_path / "old_leveldb"
    level.mkdir()
    (level / "CURRENT").write_text("MANIFEST-000001\n")
    (level / "MANIFEST-000001").write_bytes(b"")
    with pytest.raises(DataError, match="LevelDB database .*old_leveldb. is corrupt"):
        build(layer_text(str(level)).replace("backend: LMDB", ""))
    path, *_ = raw_db(tmp_path / "db", n=3, shape=(1, 5, 5))
    with pytest.raises(
        DataError,
        match="crop_size 6 is larger than record '00000000_img0.png' of '.*db'",
    ):
        build(layer_text(path, 2, "crop_size: 6"))
    with pytest.raises(
        LayerError, match="Data layer 'data'.*batch_size must be positive, got 0"
    ):
        build(layer_text(path, 0))


def test_leveldb_backend_on_lmdb_reads_with_a_warning(tmp_path, build):
    path, images, _, _ = raw_db(tmp_path / "db", n=3)
    with pytest.warns(UserWarning, match="reading it as LMDB"):
        layer, top = build(layer_text(path, 3).replace("backend: LMDB", ""))
    layer.Forward([], top)
    np.testing.assert_array_equal(top[0].data, images)


def test_bad_record_fails_in_forward_naming_the_key(tmp_path, build):
    from caffepy.data.datum import array_to_datum
    from caffepy.proto import caffe_pb2

    bad = caffe_pb2.Datum(channels=1, height=2, width=2, data=b"abc")
    good = array_to_datum(np.zeros((1, 2, 2), np.uint8))
    records = [
        ("00000000_ok", good.SerializeToString()),
        ("00000001_bad", bad.SerializeToString()),
    ]
    path = write_lmdb(tmp_path / "db", records)
    layer, top = build(layer_text(path, 1))
    layer.Forward([], top)
    for _ in range(2):  # the same error again on a retry
        with pytest.raises(DataError, match="'00000001_bad'.*3 bytes.*= 4"):
            layer.Forward([], top)


# -- ImageData ---------------------------------------------------------------------
def image_files(folder, n=5, gray_every=2):
    gen = np.random.default_rng(7)
    folder.mkdir()
    lines = []
    for i in range(n):
        h, w = 6 + i, 9 - i % 3
        shape = (h, w) if i % gray_every == 0 else (h, w, 3)
        cv2.imwrite(str(folder / f"im {i}.png"), gen.integers(0, 256, shape, np.uint8))
        lines.append(f"im {i}.png {i * 10}")
    (folder / "list.txt").write_text("\n".join(lines) + "\n")
    return folder


def image_text(folder, extra, transform="", batch=2):
    return (
        f'name: "img" type: "ImageData" top: "data" top: "label" '
        f"transform_param {{ {transform} }} "
        f'image_data_param {{ source: "{folder}/list.txt" root_folder: "{folder}/" '
        f"batch_size: {batch} {extra} }}"
    )


@pytest.mark.parametrize("is_color", [True, False])
def test_image_data_resize(tmp_path, build, is_color):
    folder = image_files(tmp_path / "imgs")
    flag = cv2.IMREAD_COLOR if is_color else cv2.IMREAD_GRAYSCALE
    extra = f"new_height: 7 new_width: 5 is_color: {str(is_color).lower()}"
    layer, top = build(image_text(folder, extra, batch=3))
    assert top[0].shape == (3, 3 if is_color else 1, 7, 5)
    data = batches(layer, top, 2)
    for k, i in enumerate([0, 1, 2, 3, 4, 0]):
        img = cv2.resize(cv2.imread(str(folder / f"im {i}.png"), flag), (5, 7))
        img = img[None] if img.ndim == 2 else img.transpose(2, 0, 1)
        np.testing.assert_array_equal(data[k // 3][0][k % 3], img)
        assert data[k // 3][1][k % 3] == i * 10


def test_image_data_shuffle_per_epoch_and_resume(tmp_path, build):
    folder = image_files(tmp_path / "imgs")
    layer, top = build(
        image_text(folder, "shuffle: true new_height: 4 new_width: 4", batch=5), TRAIN
    )
    epochs = [b[1] for b in batches(layer, top, 3)]
    for labels in epochs:
        assert sorted(labels) == [0, 10, 20, 30, 40]  # every image once per epoch
    assert len({tuple(e) for e in epochs}) > 1  # reshuffled
    layer.set_state(json.loads(json.dumps({**layer.state()})))
    state = layer.state()
    after = batches(layer, top, 2)
    layer.set_state(state)
    for a, b in zip(after, batches(layer, top, 2)):
        np.testing.assert_array_equal(a[0], b[0])


def test_image_data_errors(tmp_path, build):
    folder = image_files(tmp_path / "imgs")
    (folder / "im 3.png").unlink()
    layer, top = build(image_text(folder, "new_height: 4 new_width: 4", batch=2))
    layer.Forward([], top)
    with pytest.raises(DataError, match="cannot read image '.*im 3.png'"):
        layer.Forward([], top)
    with pytest.raises(LayerError, match="new_height and new_width"):
        build(image_text(folder, "new_height: 4"))
    with pytest.raises(DataError, match="cannot read list file"):
        build(image_text(tmp_path, ""))
    (folder / "list.txt").write_text("im 0.png\n")
    with pytest.raises(DataError, match="list.txt:1: expected 'path label'"):
        build(image_text(folder, ""))
