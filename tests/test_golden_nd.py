"""The N-D convolution case of BVLC Caffe's second golden batch
(``caffe-golden-2/layers/conv_nd``): 3-D Convolution (with bias; stride 2 and
group 2 without bias) and 3-D Deconvolution on 5-D blobs, forward and backward."""

from __future__ import annotations

import json

import numpy as np

import caffepy
from tests.conftest import require_fixtures
from tests.test_golden_layers import _close
from tests.test_golden_layers_2 import GOLDEN2, _groups, _set_params


def test_golden2_conv_nd(monkeypatch):
    require_fixtures()
    folder = GOLDEN2 / "layers"
    monkeypatch.chdir(folder)
    meta = json.loads((folder / "conv_nd.json").read_text())
    groups = _groups(np.load(folder / "conv_nd.npz"))
    net = caffepy.Net("conv_nd.prototxt", caffepy.TEST)
    rtol, atol = 1e-4, 1e-5
    for layer, shapes in meta["params"].items():
        got = [tuple(p.data.shape) for p in net.params[layer]]
        assert got == [tuple(s) for s in shapes], layer

    _set_params(net, groups)
    for name, value in groups["input"].items():
        net.blobs[name].data[...] = value
    net.forward_prefilled()
    for name, value in groups["data"].items():
        _close(f"data/{name}", net.blobs[name].data, value, rtol, atol)

    net.clear_param_diffs()
    for name, value in groups["top_diff"].items():
        net.blobs[name].diff[...] = value
    net.backward_prefilled()
    for name in ("x1", "x2", "x3"):
        _close(f"diff/{name}", net.blobs[name].diff, groups["diff"][name], rtol, atol)
    for key, value in groups["param_diff"].items():
        layer, idx = key.rsplit("/", 1)
        _close(f"param_diff/{key}", net.params[layer][int(idx)].diff, value, rtol, atol)
