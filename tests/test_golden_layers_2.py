"""The layer cases of BVLC Caffe's second golden batch (``caffe-golden-2/``),
reproduced through the pycaffe API.

Same format as ``caffe-golden/`` (see tests/test_golden_layers.py), plus
``forward2/<top>``: the tops of a second forward with the same inputs, run after
the backward (the recurrent layers carry their hidden state across forwards).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import caffepy
from tests.conftest import FIXTURES, require_fixtures
from tests.test_golden_layers import _close

GOLDEN2 = FIXTURES / "caffe-golden-2"

#: The cases run here (HDF5Data, HDF5Output and N-D convolution have their own
#: tests: their cases need files and keys of their own).
CASES = [
    "batch_reindex",
    "filter",
    "im2col",
    "lstm",
    "lstm_unit",
    "parameter",
    "rnn",
    "spp",
]


def _groups(arrays):
    groups: dict[str, dict[str, np.ndarray]] = {}
    for key in arrays.files:
        kind, _, rest = key.partition("/")
        groups.setdefault(kind, {})[rest] = arrays[key]
    return groups


def _set_params(net, groups):
    for key, value in groups.get("param", {}).items():
        layer, idx = key.rsplit("/", 1)
        net.params[layer][int(idx)].data[...] = value


@pytest.mark.parametrize("case", CASES)
def test_golden2_layer_case(case, monkeypatch):
    require_fixtures()
    folder = GOLDEN2 / "layers"
    monkeypatch.chdir(folder)
    meta = json.loads((folder / f"{case}.json").read_text())
    groups = _groups(np.load(folder / f"{case}.npz"))
    phase = caffepy.TRAIN if meta["phase"] == "TRAIN" else caffepy.TEST
    net = caffepy.Net(f"{case}.prototxt", phase)
    rtol, atol = 1e-4, 1e-5

    _set_params(net, groups)
    for name, value in groups.get("input", {}).items():
        net.blobs[name].data[...] = value
    net.forward_prefilled()
    for name, value in groups.get("data", {}).items():
        _close(f"data/{name}", net.blobs[name].data, value, rtol, atol)
    assert not meta["forward_only"]
    net.clear_param_diffs()
    for layer in net.layers:
        for blob in layer.blobs:
            blob.diff[...] = 0
    for name, value in groups.get("top_diff", {}).items():
        net.blobs[name].diff[...] = value
    net.backward_prefilled()
    no_diff = set(meta.get("no_diff_blobs", []))
    for name, value in groups.get("diff", {}).items():
        if name not in no_diff:
            _close(f"diff/{name}", net.blobs[name].diff, value, rtol, atol)
    for key, value in groups.get("param_diff", {}).items():
        layer, idx = key.rsplit("/", 1)
        _close(f"param_diff/{key}", net.params[layer][int(idx)].diff, value, rtol, atol)
    if "forward2" in groups:
        net.forward_prefilled()
        for name, value in groups["forward2"].items():
            _close(f"forward2/{name}", net.blobs[name].data, value, rtol, atol)


def test_golden2_forward2_differs_where_state_carries():
    """The second forward of the LSTM case really depends on the carried state
    (so the forward2 comparison above can fail)."""
    require_fixtures()
    groups = _groups(np.load(GOLDEN2 / "layers" / "lstm.npz"))
    first, second = groups["data"]["h1"], groups["forward2"]["h1"]
    assert not np.allclose(first[:, 0], second[:, 0])  # stream 0: cont[0] == 1
    np.testing.assert_array_equal(first[:, 1], second[:, 1])  # cont[0] == 0
