"""``caffepy export``: ONNX models checked by ONNX Runtime against real Caffe's
golden outputs, caffepy's forward on every deploy net, and BVLC's trained LeNet
on the 10,000 Fashion-MNIST test images."""

import json
from pathlib import Path

import numpy as np
import pytest

import caffepy
from caffepy.errors import CaffepyError, UnsupportedError
from tests.conftest import FIXTURES, GOLDEN, ROOT, require_fixtures

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from caffepy.tools.export import ExportOptions, export_net, export_onnx  # noqa: E402
from caffepy.tools.export.check import differences, session  # noqa: E402

#: max |onnxruntime - reference| allowed, relative to max(1, |reference|)
TOL = 1e-4
#: outputs of these types are not computed by exported graphs
REMOVED = ("Accuracy",)


def _assert_close(name, got, want, tol=TOL):
    assert np.shape(got) == np.shape(want), f"{name}: {np.shape(got)} vs {want.shape}"
    abs_diff, rel_diff = differences(got, want)
    assert rel_diff <= tol, f"{name}: max abs diff {abs_diff}, relative {rel_diff}"


def _run(model, feeds):
    sess = session(model)
    names = [o.name for o in sess.get_outputs()]
    wanted = {i.name: feeds[i.name] for i in sess.get_inputs()}
    return dict(zip(names, sess.run(names, wanted)))


# -- golden layer cases ---------------------------------------------------------------
def _golden_cases():
    folder = GOLDEN / "layers"
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def _exported_tops(net):
    """Tops of the layers an export keeps (not inputs, losses or metrics)."""
    from caffepy.layer import LossLayer

    tops = []
    for li, layer in enumerate(net.layers):
        lp = net.layer_param[li]
        if li in net._split_layers or lp.type in ("Input", "Silence"):
            continue
        if isinstance(layer, LossLayer) or lp.type in REMOVED:
            continue
        tops.extend(t for t in lp.top if t not in tops)
    return tops


def _golden_net(case, monkeypatch):
    folder = GOLDEN / "layers"
    monkeypatch.chdir(folder)
    meta = json.loads((folder / f"{case}.json").read_text())
    with np.load(folder / f"{case}.npz") as npz:
        arrays = dict(npz)
    phase = caffepy.TRAIN if meta["phase"] == "TRAIN" else caffepy.TEST
    net = caffepy.Net(f"{case}.prototxt", phase)
    for key in arrays:
        kind, _, rest = key.partition("/")
        if kind == "param":
            layer, idx = rest.rsplit("/", 1)
            net.params[layer][int(idx)].data[...] = arrays[key]
    return net, arrays


@pytest.mark.parametrize("case", _golden_cases() or ["<fixtures absent>"])
def test_golden_case_in_onnxruntime(case, monkeypatch):
    """Each Caffe golden case with a layer ONNX expresses: onnxruntime's outputs
    equal the outputs BVLC Caffe recorded."""
    require_fixtures()
    net, arrays = _golden_net(case, monkeypatch)
    tops = _exported_tops(net)
    if not tops:
        pytest.skip(f"{case}: only losses and metrics (removed by the export)")
    model, summary = export_net(net, outputs=tops)
    onnx.checker.check_model(model, full_check=True)
    feeds = {k[6:]: v for k, v in arrays.items() if k.startswith("input/")}
    got = _run(model, feeds)
    for name, (output, _) in zip(tops, summary.outputs):
        _assert_close(f"{case}: {name}", got[output], arrays[f"data/{name}"])


@pytest.mark.parametrize("opset", [13, 18, 21])
@pytest.mark.parametrize("case", ["reduction", "mvn", "batchnorm_train", "lrn"])
def test_golden_case_across_opsets(case, opset, monkeypatch):
    """The reductions' signatures change at opset 18; both forms are right."""
    require_fixtures()
    net, arrays = _golden_net(case, monkeypatch)
    tops = _exported_tops(net)
    model, summary = export_net(net, outputs=tops, opset=opset)
    assert model.opset_import[0].version == opset
    feeds = {k[6:]: v for k, v in arrays.items() if k.startswith("input/")}
    got = _run(model, feeds)
    for name, (output, _) in zip(tops, summary.outputs):
        _assert_close(f"{case}@{opset}: {name}", got[output], arrays[f"data/{name}"])


# -- pooling: Caffe's sizes and divisors over many geometries --------------------------
POOL_GEOMETRIES = [
    (h, k, s, p)
    for h in (5, 6, 7, 8)
    for k in (2, 3)
    for s in (1, 2, 3)
    for p in range(k)
    if h + 2 * p >= k and s <= k
]


def _pool_net(pool, h, k, s, p, round_mode="CEIL"):
    text = f"""
    layer {{ name: "x" type: "Input" top: "x"
             input_param {{ shape {{ dim: 2 dim: 2 dim: {h} dim: {h + 1} }} }} }}
    layer {{ name: "pool" type: "Pooling" bottom: "x" top: "y"
             pooling_param {{ pool: {pool} kernel_size: {k} stride: {s} pad: {p}
                              round_mode: {round_mode} }} }}
    """
    from caffepy.io.prototxt import parse_net_text

    return caffepy.Net(param=parse_net_text(text), phase=caffepy.TEST)


@pytest.mark.parametrize("round_mode", ["CEIL", "FLOOR"])
@pytest.mark.parametrize("pool", ["MAX", "AVE"])
def test_pooling_geometries_match_caffepy(pool, round_mode):
    """Ceil mode, Caffe's clip of a last window starting in the padding, and
    average divisors that count the padding but not the overhang."""
    rng = np.random.default_rng(7)
    for h, k, s, p in POOL_GEOMETRIES:
        net = _pool_net(pool, h, k, s, p, round_mode)
        x = rng.standard_normal(net.blobs["x"].shape).astype(np.float32)
        net.blobs["x"].data[...] = x
        net.forward()
        model, _ = export_net(net)
        got = _run(model, {"x": x})["y"]
        _assert_close(f"{pool} h={h} k={k} s={s} p={p}", got, net.blobs["y"].data)


def test_pooling_window_past_the_input_is_an_error():
    # kernel 2, stride 3 over 6 columns: Caffe's third window starts at column 6
    with pytest.raises(UnsupportedError, match="Pooling layer 'pool'.*starts at 6"):
        export_net(_pool_net("MAX", 6, 2, 3, 0))


# -- every deploy net in models/ ------------------------------------------------------
#: (model, batch); the big ones at batch 1 and marked slow
DEPLOY = [
    ("lenet", 2),
    ("cifar10_quick", 2),
    ("cifar10_full", 2),
    pytest.param("caffenet", 1, marks=pytest.mark.slow),
    pytest.param("googlenet", 1, marks=pytest.mark.slow),
    pytest.param("vgg16", 1, marks=pytest.mark.slow),
    pytest.param("resnet50", 1, marks=pytest.mark.slow),
]


def _deploy_net(model, batch):
    net = caffepy.Net(str(ROOT / "models" / model / "deploy.prototxt"), caffepy.TEST)
    rng = np.random.default_rng(1701)
    for li, layer in enumerate(net.layers):
        lp = net.layer_param[li]
        if lp.type == "BatchNorm":  # statistics as training leaves them
            c = layer.blobs[0].count
            layer.blobs[0].data[...] = rng.normal(0, 0.5, c) * 0.9
            layer.blobs[1].data[...] = rng.uniform(0.5, 2.0, c) * 0.9
            layer.blobs[2].data[...] = 0.9
        elif len(layer.blobs) > 1 and lp.type != "Scale":  # non-zero biases
            b = layer.blobs[1]
            b.data[...] = rng.normal(0, 0.1, b.shape)
    for name in net.inputs:
        shape = net.blobs[name].shape
        net.blobs[name].reshape(batch, *shape[1:])
    net.reshape()
    return net


@pytest.mark.parametrize(("model", "batch"), DEPLOY)
def test_deploy_net_matches_caffepy(model, batch):
    net = _deploy_net(model, batch)
    onnx_model, summary = export_net(net)
    onnx.checker.check_model(onnx_model, full_check=True)
    assert [n for n, _ in summary.inputs] == list(net.inputs)
    assert [n for n, _ in summary.outputs] == list(net.outputs)
    assert all(shape[0] == "N" for _, shape in summary.inputs)
    rng = np.random.default_rng(5)
    feeds = {
        n: rng.standard_normal(net.blobs[n].shape).astype(np.float32)
        for n in net.inputs
    }
    got = _run(onnx_model, feeds)
    for name, arr in feeds.items():
        net.blobs[name].data[...] = arr
    net.forward()
    for name in net.outputs:
        _assert_close(f"{model}: {name}", got[name], net.blobs[name].data)


def test_dynamic_batch_runs_other_batch_sizes():
    net = _deploy_net("cifar10_quick", 2)
    model, _ = export_net(net)
    net3 = _deploy_net("cifar10_quick", 3)
    net3.share_weights(net)
    x = np.random.default_rng(3).standard_normal((3, 3, 32, 32)).astype(np.float32)
    got = _run(model, {"data": x})["prob"]
    net3.blobs["data"].data[...] = x
    net3.forward()
    _assert_close("batch 3", got, net3.blobs["prob"].data)


def test_static_batch_keeps_the_net_batch():
    model, summary = export_net(_deploy_net("lenet", 2), dynamic_batch=False)
    assert summary.inputs == [("data", (2, 1, 28, 28))]
    assert summary.outputs == [("prob", (2, 10))]


# -- train/val nets, options, errors ---------------------------------------------------
def test_train_val_exports_test_phase_with_data_as_input(tmp_path):
    out = tmp_path / "lenet.onnx"
    summary = export_onnx(
        ROOT / "models/lenet/train_val.prototxt",
        None,
        out,
        input_shape=(1, 28, 28),
        check=True,
    )
    assert summary.inputs == [("data", ("N", 1, 28, 28))]  # the label is unused
    assert summary.outputs == [("ip2", ("N", 10))]
    assert {t for _, t, _ in summary.removed} == {"SoftmaxWithLoss", "Accuracy"}
    assert summary.check and summary.check[0][0] == "ip2"
    assert summary.check[0][2] <= TOL
    onnx.checker.check_model(str(out), full_check=True)
    assert "removed" in summary.format() and "ip2" in summary.format()


def test_keep_softmax():
    from caffepy.tools.export import build_export_net

    net = build_export_net(
        ROOT / "models/lenet/train_val.prototxt", input_shape=(4, 1, 28, 28)
    )
    model, summary = export_net(net, options=ExportOptions(keep_softmax=True))
    assert [n for n, _ in summary.outputs] == ["prob"]
    assert ("loss", "SoftmaxWithLoss", "loss") not in summary.removed
    x = np.random.default_rng(1).standard_normal((4, 1, 28, 28)).astype(np.float32)
    net.blobs["data"].data[...] = x
    net.forward()
    scores = net.blobs["ip2"].data.astype(np.float64)
    e = np.exp(scores - scores.max(1, keepdims=True))
    _assert_close("prob", _run(model, {"data": x})["prob"], e / e.sum(1, keepdims=True))


def test_dropout_removed_or_kept():
    from caffepy.io.prototxt import parse_net_text

    text = """
    layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 5 } } }
    layer { name: "d" type: "Dropout" bottom: "x" top: "y" }
    layer { name: "r" type: "ReLU" bottom: "y" top: "z" }
    """
    net = caffepy.Net(param=parse_net_text(text), phase=caffepy.TEST)
    removed, summary = export_net(net)
    assert "Dropout" not in summary.nodes
    assert summary.removed[0][:2] == ("d", "Dropout")
    kept, summary = export_net(net, options=ExportOptions(keep_dropout=True))
    assert summary.nodes["Dropout"] == 1
    x = np.linspace(-1, 1, 10, dtype=np.float32).reshape(2, 5)
    for model in (removed, kept):
        np.testing.assert_array_equal(_run(model, {"x": x})["z"], np.maximum(x, 0))


def test_python_layer_is_a_clear_error(tmp_path):
    from caffepy.proto import caffe_pb2

    net = caffepy.Net(str(ROOT / "models/lenet/deploy.prototxt"), caffepy.TEST)
    lp = caffe_pb2.LayerParameter(name="mine", type="Python")
    lp.python_param.module, lp.python_param.layer = "my_layers", "Crazy"
    net.layer_param[2] = lp
    with pytest.raises(UnsupportedError, match="Python layer 'mine'.*my_layers.Crazy"):
        export_net(net)


def test_python_layer_in_a_prototxt_is_a_clear_error(tmp_path):
    text = (ROOT / "models/lenet/deploy.prototxt").read_text() + (
        'layer { name: "py" type: "Python" bottom: "prob" top: "out"\n'
        '  python_param { module: "not_installed" layer: "Post" } }\n'
    )
    (tmp_path / "net.prototxt").write_text(text)
    with pytest.raises(UnsupportedError, match="Python layer 'py'.*not_installed.Post"):
        export_onnx(tmp_path / "net.prototxt", None, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_unsupported_opset_is_an_error():
    with pytest.raises(CaffepyError, match="--opset 9"):
        export_net(_deploy_net("lenet", 1), opset=9)


def test_cli_export(tmp_path):
    from click.testing import CliRunner

    from caffepy.cli import cli

    out = tmp_path / "lenet.onnx"
    args = ["export", "--model", str(ROOT / "models/lenet/deploy.prototxt")]
    args += ["--onnx", str(out), "--check", "--opset", "15"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "Exported LeNet" in result.output and "max abs diff" in result.output
    assert onnx.load(str(out)).opset_import[0].version == 15


# -- BVLC's trained LeNet over the Fashion-MNIST test set ------------------------------
def _fashion_mnist_test():
    from caffepy.tools.fashion_mnist import read_idx

    for folder in (Path("/usr/share/datasets/fashion-mnist"), FIXTURES / "lenet"):
        images = folder / "t10k-images-idx3-ubyte.gz"
        if images.exists():
            labels = folder / "t10k-labels-idx1-ubyte.gz"
            return read_idx(str(images)), read_idx(str(labels))
    pytest.skip("the Fashion-MNIST test images are not installed")


@pytest.mark.slow
def test_trained_lenet_reaches_caffe_accuracy(tmp_path):
    """Caffe recorded accuracy 0.8655 for these weights on the 10,000 test
    images (fixtures/lenet/README.md); the exported model reaches it exactly."""
    require_fixtures()
    images, labels = _fashion_mnist_test()
    out = tmp_path / "lenet.onnx"
    export_onnx(
        ROOT / "models/lenet/train_val.prototxt",
        FIXTURES / "lenet/lenet_iter_1000.caffemodel",
        out,
        input_shape=(1, 28, 28),
    )
    sess = session(str(out))
    x = images.reshape(-1, 1, 28, 28).astype(np.float32) * np.float32(0.00390625)
    correct = 0
    for start in range(0, len(x), 100):
        (scores,) = sess.run(["ip2"], {"data": x[start : start + 100]})
        correct += int((scores.argmax(1) == labels[start : start + 100]).sum())
    assert correct / len(x) == 0.8655
