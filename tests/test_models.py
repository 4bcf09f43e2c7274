"""Every prototxt under models/ parses and builds; every deploy net runs a forward."""

import copy

import numpy as np
import pytest

import caffepy
from caffepy.io.prototxt import read_net, read_solver
from caffepy.proto import caffe_pb2
from tests.conftest import ROOT

MODELS = sorted(p for p in (ROOT / "models").iterdir() if p.is_dir())
NETS = sorted(p for m in MODELS for p in m.glob("*.prototxt") if "solver" not in p.name)
SOLVERS = sorted(p for m in MODELS for p in m.glob("*solver*.prototxt"))


def test_each_model_has_its_files():
    for m in MODELS:
        for f in (
            "train_val.prototxt",
            "solver.prototxt",
            "deploy.prototxt",
            "readme.md",
        ):
            assert (m / f).is_file(), f"{m.name} lacks {f}"


@pytest.mark.parametrize("path", SOLVERS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_solver_parses_and_points_to_a_net(path):
    param = read_solver(path)
    net = param.net or param.train_net
    assert net and (ROOT / net).is_file(), f"{path}: net {net!r} missing"


def _input_shape(model_dir):
    deploy = read_net(model_dir / "deploy.prototxt")
    for layer in deploy.layer:
        if layer.type == "Input":
            return list(layer.input_param.shape[0].dim)
    raise AssertionError("deploy net has no Input layer")


def _data_to_input(param, shape, batch=2):
    """Replace Data layers by Input layers of the same tops (no LMDB needed)."""
    out = copy.deepcopy(param)
    for layer in out.layer:
        if layer.type == "Data":
            tops = list(layer.top)
            include = copy.deepcopy(layer.include)
            layer.Clear()
            layer.name, layer.type = "data", "Input"
            layer.top.extend(tops)
            layer.include.extend(include)
            s = layer.input_param.shape.add()
            s.dim.extend([batch] + shape[1:])
            if len(tops) > 1:
                layer.input_param.shape.add().dim.append(batch)
    return out


@pytest.mark.parametrize("path", NETS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_net_parses_and_builds(path):
    param = read_net(path)
    if "deploy" in path.name:
        param.layer[0].input_param.shape[0].dim[0] = 1
        net = caffepy.Net(param=param, phase=caffepy.TEST)
        x = np.random.default_rng(1701).uniform(-1, 1, net.blobs["data"].shape)
        out = net.forward(data=x)
        assert all(np.all(np.isfinite(v)) for v in out.values())
        if "prob" in out:
            np.testing.assert_allclose(out["prob"].reshape(1, -1).sum(), 1, rtol=1e-4)
        return
    shape = _input_shape(path.parent)
    for phase in (caffe_pb2.TRAIN, caffe_pb2.TEST):
        net = caffepy.Net(param=_data_to_input(param, shape), phase=phase)
        assert net.layers and net.outputs
