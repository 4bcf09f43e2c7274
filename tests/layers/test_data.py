"""Input, DummyData and MemoryData (caffepy/layers/data/inputs.py, memory.py);
the prefetching Data and ImageData layers are tested in tests/data/test_layers.py."""

import numpy as np
import pytest

from caffepy import TEST, TRAIN
from caffepy.blob import Blob
from caffepy.errors import LayerError
from caffepy.testing import layer_from_text


def setup_forward(text, bottoms, ntop=1, dtype=np.float64, phase=TEST):
    layer = layer_from_text(text, phase, dtype)
    tops = [Blob((), dtype) for _ in range(ntop)]
    layer.SetUp(bottoms, tops)
    layer.Forward(bottoms, tops)
    return layer, tops


def test_input_shapes_and_user_reshape():
    layer, tops = setup_forward(
        'type: "Input" input_param { shape { dim: 2 dim: 3 } shape { dim: 2 } }', [], 2
    )
    assert tops[0].shape == (2, 3) and tops[1].shape == (2,)
    tops[0].reshape(5, 3)  # a user's reshape survives forward
    layer.Forward([], tops)
    assert tops[0].shape == (5, 3)
    _, tops = setup_forward('type: "Input" input_param { shape { dim: 4 } }', [], 3)
    assert [b.shape for b in tops] == [(4,)] * 3


def test_input_wrong_shape_count():
    with pytest.raises(LayerError, match="2 shapes for 3 tops"):
        setup_forward(
            'type: "Input" input_param { shape { dim: 1 } shape { dim: 2 } }', [], 3
        )


def test_dummy_data_default_and_constant():
    _, tops = setup_forward(
        'type: "DummyData" dummy_data_param { shape { dim: 2 dim: 3 } }', [], 2
    )
    for b in tops:
        assert b.shape == (2, 3) and not b.data.any()
    text = (
        'type: "DummyData" dummy_data_param { num: 2 channels: 3 height: 1 width: 4 '
        "num: 5 channels: 1 height: 1 width: 1 "
        'data_filler { type: "constant" value: 7 } }'
    )
    _, tops = setup_forward(text, [], 2)
    assert tops[0].shape == (2, 3, 1, 4) and tops[1].shape == (5, 1, 1, 1)
    assert (tops[0].data == 7).all() and (tops[1].data == 7).all()


def test_dummy_data_refills_random_but_not_constant():
    text = (
        'type: "DummyData" dummy_data_param { shape { dim: 3 dim: 4 } '
        'shape { dim: 2 } data_filler { type: "gaussian" } '
        'data_filler { type: "constant" value: 1 } }'
    )
    layer, tops = setup_forward(text, [], 2)
    first = tops[0].data.copy()
    tops[1].data[...] = 5  # a constant top is filled once, at set-up
    layer.Forward([], tops)
    assert not np.array_equal(first, tops[0].data)
    assert (tops[1].data == 5).all()


@pytest.mark.parametrize(
    "text, match",
    [
        (
            "shape { dim: 2 } data_filler { } data_filler { } data_filler { }",
            "3 data_filler",
        ),
        ("shape { dim: 2 } shape { dim: 2 } shape { dim: 2 }", "3 shapes for 2 tops"),
        (
            "shape { dim: 2 } num: 1 channels: 1 height: 1 width: 1",
            "both shape and legacy",
        ),
        ("num: 1 channels: 1 height: 1", "0 'width' values"),
    ],
)
def test_dummy_data_errors(text, match):
    with pytest.raises(LayerError, match=match):
        setup_forward(f'type: "DummyData" dummy_data_param {{ {text} }}', [], 2)


MEMORY = (
    'name: "mem" type: "MemoryData" memory_data_param { batch_size: 2 channels: 1 '
    "height: 2 width: 3 }"
)


def test_memory_data_batches_wrap():
    layer, tops = None, [Blob(), Blob()]
    layer = layer_from_text(MEMORY, TRAIN, np.float32)
    layer.SetUp([], tops)
    assert tops[0].shape == (2, 1, 2, 3) and tops[1].shape == (2,)
    data = np.arange(6 * 6, dtype=np.float32).reshape(6, 1, 2, 3)
    labels = np.arange(6, dtype=np.float32)
    layer.set_input_arrays(data, labels)
    seen = []
    for _ in range(4):
        layer.Forward([], tops)
        np.testing.assert_array_equal(tops[0].data, data[tops[1].data.astype(int)])
        seen.extend(tops[1].data.tolist())
    assert seen == [0, 1, 2, 3, 4, 5, 0, 1]


def test_memory_data_does_not_transform():
    # As Caffe's Reset (pycaffe's set_input_arrays): transform_param is not applied.
    layer = layer_from_text(
        MEMORY + " transform_param { scale: 0.5 }", TRAIN, np.float32
    )
    tops = [Blob(), Blob()]
    layer.SetUp([], tops)
    data = np.ones((2, 1, 2, 3), np.float32)
    layer.set_input_arrays(data, np.zeros(2, np.float32))
    layer.Forward([], tops)
    assert (tops[0].data == 1).all()


def test_memory_data_errors():
    layer = layer_from_text(MEMORY, TRAIN, np.float32)
    tops = [Blob(), Blob()]
    layer.SetUp([], tops)
    with pytest.raises(LayerError, match="set_input_arrays"):
        layer.Forward([], tops)
    good = np.zeros((4, 1, 2, 3), np.float32)
    lab = np.zeros(4, np.float32)
    with pytest.raises(LayerError, match="float32"):
        layer.set_input_arrays(good.astype(np.float64), lab)
    with pytest.raises(LayerError, match="C contiguous"):
        layer.set_input_arrays(
            np.zeros((4, 1, 3, 2), np.float32).transpose(0, 1, 3, 2), lab
        )
    with pytest.raises(LayerError, match="multiple of batch_size 2"):
        layer.set_input_arrays(good[:3], lab[:3])
    with pytest.raises(LayerError, match="same first dimension"):
        layer.set_input_arrays(good, lab[:2])
    with pytest.raises(LayerError, match=r"expected \(N, 1, 2, 3\)"):
        layer.set_input_arrays(np.zeros((4, 2, 2, 3), np.float32), lab)
    with pytest.raises(LayerError, match="must all be positive"):
        layer_from_text('type: "MemoryData" memory_data_param { batch_size: 2 }').SetUp(
            [], [Blob(), Blob()]
        )
