"""BVLC's notebook workflows, small: classify with Classifier / Transformer +
forward_all on a CaffeNet-shaped net, detect given windows, train LeNet written
with NetSpec through caffe.SGDSolver, turn fully connected layers into
convolutions (net surgery), logistic regression from HDF5 (brewing-logreg) and a
multilabel Python data layer (pascal-multilabel)."""

import os

import cv2
import numpy as np
import pytest

import caffe
from caffe import layers as L
from caffe import params as P
from tests.pycaffe.nets import write_temp


def tiny_caffenet(batch=2, classes=5, size=15):
    """conv -> relu -> pool -> fc -> softmax, CaffeNet's shape in small."""
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[batch, 3, size, size]))
    n.conv1 = L.Convolution(
        n.data,
        num_output=4,
        kernel_size=3,
        stride=2,
        weight_filler=dict(type="gaussian", std=0.3),
    )
    n.relu1 = L.ReLU(n.conv1, in_place=True)
    n.pool1 = L.Pooling(n.relu1, pool=P.Pooling.MAX, kernel_size=3, stride=2)
    n.fc8 = L.InnerProduct(
        n.pool1, num_output=classes, weight_filler=dict(type="gaussian", std=0.3)
    )
    n.prob = L.Softmax(n.fc8)
    return write_temp(str(n.to_proto()))


@pytest.fixture
def deploy(tmp_path):
    path = tiny_caffenet()
    net = caffe.Net(path, caffe.TEST)
    weights = str(tmp_path / "w.caffemodel")
    net.save(weights)
    yield path, weights
    os.remove(path)


def _image(seed, h=20, w=24):
    return np.random.default_rng(seed).uniform(size=(h, w, 3)).astype(np.float32)


def test_transformer_and_forward_all_classify(deploy):
    path, weights = deploy
    net = caffe.Net(path, caffe.TEST, weights=weights)
    t = caffe.io.Transformer({"data": net.blobs["data"].data.shape})
    t.set_transpose("data", (2, 0, 1))
    t.set_mean("data", np.array([104.0, 117.0, 123.0]))
    t.set_raw_scale("data", 255)
    t.set_channel_swap("data", (2, 1, 0))
    images = [_image(i) for i in range(3)]
    batch = np.stack([t.preprocess("data", im) for im in images])
    probs = net.forward_all(data=batch)["prob"]
    assert probs.shape == (3, 5)
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-5)
    for i in range(3):  # one at a time, through forward
        net.blobs["data"].data[0] = batch[i]
        np.testing.assert_allclose(
            net.forward()["prob"][0], probs[i], rtol=1e-4, atol=1e-6
        )


def test_classifier_center_and_oversampled(deploy):
    path, weights = deploy
    clf = caffe.Classifier(
        path, weights, image_dims=(17, 17), raw_scale=255, channel_swap=(2, 1, 0)
    )
    images = [_image(i) for i in range(3)]
    center = clf.predict(images, oversample=False)
    assert center.shape == (3, 5)
    x = caffe.io.resize_image(images[0], (17, 17))[1:16, 1:16]
    t = clf.transformer
    clf.blobs["data"].data[0] = t.preprocess("data", x)
    np.testing.assert_allclose(
        clf.forward()["prob"][0], center[0], rtol=1e-4, atol=1e-6
    )
    ten = clf.predict(images, oversample=True)
    crops = caffe.io.oversample([caffe.io.resize_image(images[1], (17, 17))], (15, 15))
    probs = clf.forward_all(data=np.stack([t.preprocess("data", c) for c in crops]))
    np.testing.assert_allclose(ten[1], probs["prob"].mean(0), rtol=1e-4, atol=1e-6)


def test_detector_scores_windows(deploy, tmp_path):
    path, weights = deploy
    img = (_image(7, 30, 30) * 255).astype(np.uint8)
    fname = str(tmp_path / "im.png")
    cv2.imwrite(fname, img[:, :, ::-1])
    det = caffe.Detector(path, weights, raw_scale=255)
    windows = [np.array([0, 0, 15, 15]), np.array([5, 10, 25, 30])]
    out = det.detect_windows([(fname, windows)])
    assert [d["filename"] for d in out] == [fname, fname]
    crop = caffe.io.load_image(fname)[5:25, 10:30]
    det.blobs["data"].data[0] = det.transformer.preprocess("data", crop)
    np.testing.assert_allclose(
        det.forward()["prob"][0], out[1]["prediction"], rtol=1e-4, atol=1e-6
    )
    padded = caffe.Detector(path, weights, raw_scale=255, context_pad=2)
    assert padded.crop(caffe.io.load_image(fname), windows[1]).shape == (15, 15, 3)


def lenet(batch):
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[batch, 1, 12, 12]))
    n.label = L.Input(shape=dict(dim=[batch]))
    n.conv1 = L.Convolution(
        n.data, kernel_size=3, num_output=8, weight_filler=dict(type="xavier")
    )
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.ip1 = L.InnerProduct(n.pool1, num_output=32, weight_filler=dict(type="xavier"))
    n.relu1 = L.ReLU(n.ip1, in_place=True)
    n.ip2 = L.InnerProduct(n.relu1, num_output=2, weight_filler=dict(type="xavier"))
    n.loss = L.SoftmaxWithLoss(n.ip2, n.label)
    return n.to_proto()


def test_lenet_from_netspec_trains_with_sgdsolver(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lenet.prototxt").write_text(str(lenet(16)))
    (tmp_path / "solver.prototxt").write_text(
        "train_net: 'lenet.prototxt' base_lr: 0.05 momentum: 0.9 lr_policy: 'fixed' "
        "max_iter: 100 display: 0 snapshot_prefix: 'lenet' random_seed: 1701"
    )
    solver = caffe.SGDSolver("solver.prototxt")
    rng = np.random.default_rng(1701)
    losses = []
    for _ in range(100):
        label = rng.integers(2, size=16)
        data = rng.normal(size=(16, 1, 12, 12)) * 0.5
        data[label == 1, :, :6] += 1.0  # class 1: a bright top half
        solver.net.blobs["data"].data[...] = data
        solver.net.blobs["label"].data[...] = label
        solver.step(1)
        losses.append(float(solver.net.blobs["loss"].data))
    assert solver.iter == 100
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])


def test_net_surgery_fully_connected_to_convolution(tmp_path):
    fc = caffe.NetSpec()
    fc.data = L.Input(shape=dict(dim=[1, 2, 4, 4]))
    fc.fc6 = L.InnerProduct(
        fc.data,
        num_output=3,
        weight_filler=dict(type="gaussian", std=1),
        bias_filler=dict(type="gaussian", std=1),
    )
    full = fc.to_proto()
    conv = caffe.NetSpec()
    conv.data = L.Input(shape=dict(dim=[1, 2, 6, 6]))  # larger: a score map
    conv.fc6_conv = L.Convolution(conv.data, num_output=3, kernel_size=4)
    fc_net = caffe.Net(write_temp(str(full)), caffe.TEST)
    conv_net = caffe.Net(write_temp(str(conv.to_proto())), caffe.TEST)
    w, b = fc_net.params["fc6"]
    conv_net.params["fc6_conv"][0].data.flat = w.data.flat
    conv_net.params["fc6_conv"][1].data[...] = b.data
    x = np.random.default_rng(3).normal(size=(1, 2, 6, 6)).astype(np.float32)
    scores = conv_net.forward(data=x)["fc6_conv"]
    assert scores.shape == (1, 3, 3, 3)
    for i in range(3):
        for j in range(3):
            out = fc_net.forward(data=x[:, :, i : i + 4, j : j + 4])["fc6"]
            np.testing.assert_allclose(scores[0, :, i, j], out[0], rtol=1e-4, atol=1e-5)


def logreg(source, batch_size):
    """brewing-logreg's net: HDF5Data -> InnerProduct -> Accuracy, Softmax loss."""
    n = caffe.NetSpec()
    n.data, n.label = L.HDF5Data(batch_size=batch_size, source=source, ntop=2)
    n.ip1 = L.InnerProduct(n.data, num_output=2, weight_filler=dict(type="xavier"))
    n.accuracy = L.Accuracy(n.ip1, n.label)
    n.loss = L.SoftmaxWithLoss(n.ip1, n.label)
    return n.to_proto()


def _write_h5(path, x, y):
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        f["data"] = x  # float64, as the notebook writes sklearn's arrays
        f["label"] = y.astype(np.float32)


def test_logistic_regression_from_hdf5_trains_with_sgdsolver(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1701)
    w_true = np.array([1.5, -2.0, 0.5, 1.0])

    def sample(n):
        x = rng.normal(size=(n, 4))
        y = (x @ w_true + 0.3 * rng.normal(size=n) > 0).astype(np.int64)
        return x, y

    x_train, y_train = sample(400)
    x_test, y_test = sample(200)
    _write_h5("train.h5", x_train, y_train)
    _write_h5("test.h5", x_test, y_test)
    (tmp_path / "train.txt").write_text("train.h5\n")
    (tmp_path / "test.txt").write_text("test.h5\n")
    (tmp_path / "train.prototxt").write_text(str(logreg("train.txt", 10)))
    (tmp_path / "test.prototxt").write_text(str(logreg("test.txt", 20)))
    (tmp_path / "solver.prototxt").write_text(
        "train_net: 'train.prototxt' test_net: 'test.prototxt' test_iter: 10 "
        "test_interval: 1000 base_lr: 0.01 lr_policy: 'step' gamma: 0.1 "
        "stepsize: 5000 momentum: 0.9 weight_decay: 0.0005 max_iter: 300 "
        "display: 0 snapshot_prefix: 'logreg' random_seed: 1701"
    )
    solver = caffe.SGDSolver("solver.prototxt")

    def test_accuracy():
        net = solver.test_nets[0]
        return np.mean([float(net.forward()["accuracy"]) for _ in range(10)])

    solver.test_nets[0].share_with(solver.net)
    before = test_accuracy()
    solver.step(300)
    assert solver.iter == 300
    after = test_accuracy()  # 10 batches of 20: the whole test file once
    # Oracle: the learned weights applied with numpy, and the true boundary.
    w, b = solver.net.params["ip1"]
    predicted = (x_test @ w.data.T + b.data).argmax(1)
    np.testing.assert_allclose(after, np.mean(predicted == y_test), atol=1e-6)
    ceiling = np.mean((x_test @ w_true > 0) == y_test)
    assert after > 0.85 and after > ceiling - 0.06
    assert after > before or before > 0.85


def multilabel_net(batch_size, classes):
    """pascal-multilabel's shape: a Python data layer, conv, fc, sigmoid loss."""
    n = caffe.NetSpec()
    params = dict(batch_size=batch_size, classes=classes, side=8, seed=1701)
    n.data, n.label = L.Python(
        module="tests.pycaffe.pylayers",
        layer="MultilabelData",
        ntop=2,
        param_str=str(params),
    )
    n.conv1 = L.Convolution(
        n.data, kernel_size=3, num_output=8, weight_filler=dict(type="xavier")
    )
    n.relu1 = L.ReLU(n.conv1, in_place=True)
    n.score = L.InnerProduct(
        n.relu1, num_output=classes, weight_filler=dict(type="xavier")
    )
    n.loss = L.SigmoidCrossEntropyLoss(n.score, n.label)
    return n.to_proto()


def test_multilabel_python_data_layer_trains(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    proto = multilabel_net(16, 5)
    assert proto.layer[0].python_param.layer == "MultilabelData"
    (tmp_path / "train.prototxt").write_text(str(proto))
    (tmp_path / "solver.prototxt").write_text(
        "train_net: 'train.prototxt' base_lr: 0.01 momentum: 0.9 "
        "lr_policy: 'fixed' max_iter: 60 display: 0 snapshot_prefix: 'ml' "
        "random_seed: 1701"
    )
    solver = caffe.SGDSolver("solver.prototxt")
    net = solver.net
    assert net.blobs["label"].data.shape == (16, 5)
    losses, hamming = [], []
    for _ in range(60):
        solver.step(1)
        losses.append(float(net.blobs["loss"].data))
        # the notebook's measure: how many of the K labels the scores get right
        guess = net.blobs["score"].data > 0
        hamming.append(np.mean(guess == (net.blobs["label"].data > 0.5)))
    # Oracle for the loss: sigmoid cross-entropy summed over labels / batch.
    s, t = net.blobs["score"].data, net.blobs["label"].data
    expected = np.sum(np.logaddexp(0, s) - t * s) / 16
    np.testing.assert_allclose(losses[-1], expected, rtol=1e-4)
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10])
    assert np.mean(hamming[-10:]) > 0.85
