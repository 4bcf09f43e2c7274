"""Models move both ways: real BVLC Caffe weights load and score as Caffe recorded,
and what caffepy saves loads in OpenCV's Caffe importer with the same outputs."""

import os

import numpy as np
import pytest

import caffepy
from caffepy.io.prototxt import read_net
from tests.conftest import FIXTURES, ROOT, require_fixtures

FASHION = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(scope="module")
def fashion_test_lmdb(tmp_path_factory):
    if not os.path.isdir(FASHION):
        if os.environ.get("CI"):
            raise RuntimeError(f"{FASHION} missing in CI: .ci/run installs it")
        pytest.skip("dataset-fashion-mnist is not installed")
    from caffepy.tools.fashion_mnist import make_fashion_mnist_lmdbs

    out = tmp_path_factory.mktemp("fm")
    make_fashion_mnist_lmdbs(str(out), source_dir=FASHION, download=False)
    return out / "fashion_mnist_test_lmdb"


def lenet_test_net(lmdb_path, weights):
    param = read_net(ROOT / "models" / "lenet" / "train_val.prototxt")
    for layer in param.layer:
        if layer.type == "Data":
            layer.data_param.source = str(lmdb_path)
    return caffepy.Net(param=param, phase=caffepy.TEST, weights=weights)


def test_real_caffe_lenet_reproduces_recorded_accuracy(fashion_test_lmdb):
    """BVLC's lenet_iter_1000: accuracy 0.8655 and loss 0.372169 on the 10k test set."""
    require_fixtures()
    net = lenet_test_net(
        fashion_test_lmdb, str(FIXTURES / "lenet" / "lenet_iter_1000.caffemodel")
    )
    assert net.blobs["data"].shape == (100, 1, 28, 28)
    acc, loss = [], []
    for _ in range(100):
        net.forward_prefilled()
        acc.append(float(net.blobs["accuracy"].data))
        loss.append(float(net.blobs["loss"].data))
    assert np.mean(acc) == pytest.approx(0.8655, abs=1e-9)
    assert np.mean(loss) == pytest.approx(0.372169, abs=1e-5)


def test_real_caffe_solverstate_resumes_lenet(fashion_test_lmdb, tmp_path, monkeypatch):
    """Training resumes from BVLC's own .solverstate at iteration 1000 with its lr."""
    require_fixtures()
    from caffepy.solvers import get_solver, read_solver_param

    param, _ = read_solver_param(str(ROOT / "models" / "lenet" / "solver.prototxt"))
    net = read_net(ROOT / "models" / "lenet" / "train_val.prototxt")
    for layer in net.layer:
        if layer.type == "Data":
            layer.data_param.source = str(fashion_test_lmdb)
    param.ClearField("net")
    param.net_param.CopyFrom(net)
    param.test_interval = 0
    param.ClearField("test_iter")
    param.snapshot = 0
    param.snapshot_after_train = False
    param.display = 0
    param.snapshot_prefix = str(tmp_path / "lenet")
    monkeypatch.chdir(FIXTURES / "lenet")
    solver = get_solver(param)
    solver.restore("lenet_iter_1000.solverstate")
    assert solver.iter == 1000
    want = 0.01 * (1 + 0.0001 * 1000) ** -0.75
    assert solver.get_learning_rate() == pytest.approx(want, rel=1e-6)
    w0 = solver.net.params["conv1"][0].data.copy()
    solver.step(2)
    assert solver.iter == 1002
    assert not np.array_equal(w0, solver.net.params["conv1"][0].data)


# -- OpenCV's importer reads what caffepy writes ---------------------------------
BN_CONCAT = """
name: "bn_concat"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 2 dim: 3 dim: 12 dim: 12 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 8 kernel_size: 3 pad: 1
                            weight_filler { type: "msra" } } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1"
        scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv2" type: "Convolution" bottom: "data" top: "conv2"
        convolution_param { num_output: 4 kernel_size: 1
                            weight_filler { type: "xavier" } } }
layer { name: "cat" type: "Concat" bottom: "conv1" bottom: "conv2" top: "cat" }
layer { name: "pool" type: "Pooling" bottom: "cat" top: "pool"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool" top: "fc"
        inner_product_param { num_output: 5 weight_filler { type: "xavier" } } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""


def _randomise(net, gen):
    for name, blobs in net.params.items():
        layer = net.layer_dict[name]
        if layer.type == "BatchNorm":
            c = blobs[0].shape[0]
            blobs[0].data[...] = gen.normal(0, 0.5, c) * 3.0
            blobs[1].data[...] = gen.uniform(0.5, 2.0, c) * 3.0
            blobs[2].data[...] = 3.0
        else:
            for b in blobs:
                b.data[...] += gen.normal(0, 0.1, b.shape)


@pytest.mark.parametrize("model", ["lenet", "cifar10_quick", "bn_concat"])
def test_opencv_reads_caffepy_models(model, tmp_path):
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2, "dnn") or not hasattr(cv2.dnn, "readNetFromCaffe"):
        pytest.skip("this OpenCV has no Caffe importer (OpenCV 5 removed it)")
    if model == "bn_concat":
        proto = tmp_path / "deploy.prototxt"
        proto.write_text(BN_CONCAT)
    else:
        proto = ROOT / "models" / model / "deploy.prototxt"
    net = caffepy.Net(str(proto), caffepy.TEST)
    gen = np.random.default_rng(1701)
    _randomise(net, gen)
    weights = tmp_path / "w.caffemodel"
    net.save(str(weights))
    shape = net.blobs["data"].shape
    x = gen.uniform(0, 1, shape).astype(np.float32)
    out_name = net.outputs[0]
    ours = net.forward(data=x)[out_name].copy()
    cvnet = cv2.dnn.readNetFromCaffe(str(proto), str(weights))
    cvnet.setInput(x)
    theirs = cvnet.forward()
    np.testing.assert_allclose(ours.reshape(theirs.shape), theirs, atol=1e-4)
