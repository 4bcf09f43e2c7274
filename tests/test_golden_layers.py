"""The 47 layer cases written by BVLC Caffe, reproduced through the pycaffe API.

Driven generically from each case's json + npz (see the fixtures' README).
"""

import json

import numpy as np
import pytest

import caffepy
from tests.conftest import GOLDEN, require_fixtures

LOOSE = {"lrn", "power", "exp", "log", "mvn", "batchnorm_train", "batchnorm_test"}


def _cases():
    folder = GOLDEN / "layers"
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json"))


def _close(name, got, want, rtol, atol):
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{name}: shape {got.shape} != Caffe's {want.shape}"
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=name)


@pytest.mark.parametrize("case", _cases() or ["<fixtures absent>"])
def test_golden_layer_case(case, monkeypatch):
    require_fixtures()
    folder = GOLDEN / "layers"
    monkeypatch.chdir(folder)
    meta = json.loads((folder / f"{case}.json").read_text())
    arrays = np.load(folder / f"{case}.npz")
    phase = caffepy.TRAIN if meta["phase"] == "TRAIN" else caffepy.TEST
    net = caffepy.Net(f"{case}.prototxt", phase)
    rtol, atol = (1e-3, 1e-4) if case in LOOSE else (1e-4, 1e-5)

    groups = {}
    for key in arrays.files:
        kind, _, rest = key.partition("/")
        groups.setdefault(kind, {})[rest] = arrays[key]
    for key, value in groups.get("param", {}).items():
        layer, idx = key.rsplit("/", 1)
        net.params[layer][int(idx)].data[...] = value
    for name, value in groups.get("input", {}).items():
        net.blobs[name].data[...] = value
    net.forward_prefilled()
    for name, value in groups.get("data", {}).items():
        tol = (0, 0) if case in ("argmax",) else (rtol, atol)
        _close(f"data/{name}", net.blobs[name].data, value, *tol)
    for key, value in groups.get("param_after", {}).items():
        layer, idx = key.rsplit("/", 1)
        _close(
            f"param_after/{key}", net.params[layer][int(idx)].data, value, rtol, atol
        )
    if meta.get("forward_only"):
        return
    net.clear_param_diffs()
    for layer in net.layers:
        for blob in layer.blobs:
            blob.diff[...] = 0
    for name, value in groups.get("top_diff", {}).items():
        net.blobs[name].diff[...] = value
    net.backward_prefilled()
    no_diff = set(meta.get("no_diff_blobs", []))
    for name, value in groups.get("diff", {}).items():
        if name in no_diff:
            continue
        _close(f"diff/{name}", net.blobs[name].diff, value, rtol, atol)
    for key, value in groups.get("param_diff", {}).items():
        layer, idx = key.rsplit("/", 1)
        _close(f"param_diff/{key}", net.params[layer][int(idx)].diff, value, rtol, atol)
