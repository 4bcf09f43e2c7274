"""caffepy diagnose: init trends, activation findings, the overfit check (issue 5)."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from caffepy.cli import cli
from caffepy.tools.diagnose import (
    activation_report,
    format_activation_report,
    init_experiment,
    label_inputs,
    overfit,
    plot_init,
    subset_accuracy,
)
from tests.conftest import ROOT

FASHION = Path("/usr/share/datasets/fashion-mnist")


def fashion_workdir(tmp_path, monkeypatch, limit=64):
    """A working directory where models/lenet's relative paths resolve: a copy of
    models/lenet (its prototxt files) and tiny Fashion-MNIST LMDBs in data/."""
    if not FASHION.is_dir():
        if os.environ.get("CI"):
            raise RuntimeError(f"{FASHION} is missing in CI (dataset-fashion-mnist)")
        pytest.skip(f"{FASHION} absent: apt-get install dataset-fashion-mnist")
    from caffepy.tools.fashion_mnist import make_fashion_mnist_lmdbs

    make_fashion_mnist_lmdbs(
        tmp_path / "data", source_dir=str(FASHION), download=False, limit=limit
    )
    lenet = tmp_path / "models" / "lenet"
    lenet.mkdir(parents=True)
    for src in (ROOT / "models" / "lenet").glob("*.prototxt"):
        shutil.copy(src, lenet / src.name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def assert_figure(path, min_h, min_w, min_std=5.0):
    import cv2

    img = cv2.imread(str(path))
    assert img is not None, f"{path} does not decode"
    assert img.shape[0] >= min_h and img.shape[1] >= min_w, img.shape
    assert img.std() > min_std, "figure is blank"
    return img


# -- diagnose init ----------------------------------------------------------------------
def _run(nonlinearity, filler, batchnorm=False):
    return init_experiment(
        10, 500, nonlinearity, filler, batchnorm, batch=300, keep_values=False
    ).layers


def test_init_small_gaussian_tanh_vanishes():
    assert _run("tanh", "gaussian")[-1].std < 1e-4


def test_init_unit_gaussian_tanh_saturates():
    assert _run("tanh", "gaussian:1")[-1].saturated > 0.8


def test_init_xavier_tanh_keeps_spread():
    assert 0.1 <= _run("tanh", "xavier")[-1].std <= 0.5


def test_init_xavier_relu_decays():
    layers = _run("relu", "xavier")
    assert layers[-1].std < layers[0].std / 10


def test_init_msra_relu_keeps_spread():
    layers = _run("relu", "msra")
    assert layers[0].std / 2 <= layers[-1].std <= layers[0].std * 2


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("filler", ["gaussian", "gaussian:1", "xavier"])
def test_init_batchnorm_keeps_unit_preactivations(nonlinearity, filler):
    for s in _run(nonlinearity, filler, batchnorm=True):
        assert s.pre_std == pytest.approx(1.0, abs=0.02), s


def test_init_fillers_side_by_side_in_one_figure(tmp_path):
    out = tmp_path / "init.png"
    res = CliRunner().invoke(
        cli,
        [
            "diagnose",
            "init",
            "--layers",
            "4",
            "--width",
            "60",
            "--batch",
            "100",
            "--filler",
            "gaussian",
            "--filler",
            "gaussian:1",
            "--filler",
            "xavier",
            "--filler",
            "msra",
            "--nonlinearity",
            "tanh",
            "--nonlinearity",
            "relu",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert res.output.count("layer  pre-act std") == 8
    assert "msra + relu" in res.output and "gaussian std 1 + tanh" in res.output
    img = assert_figure(out, 700, 600)
    # 8 rows of histograms in 8 colours: the figure is not one block of colour
    assert len(np.unique(img.reshape(-1, 3)[::97], axis=0)) > 20


def test_plot_init_sigmoid_and_batchnorm(tmp_path):
    results = [
        init_experiment(3, 40, "sigmoid", "xavier", bn, batch=50)
        for bn in (False, True)
    ]
    assert "BatchNorm" in results[1].label
    assert_figure(plot_init(results, tmp_path / "s.png"), 300, 400)


# -- diagnose activations ----------------------------------------------------------------
def _mlp(tmp_path, act="TanH", std=1.0, bias=0.0, depth=4, width=64, classes=7):
    parts = [
        'name: "mlp"',
        (
            'layer { name: "in" type: "Input" top: "x" top: "y" input_param { '
            "shape { dim: 32 dim: 20 } shape { dim: 32 } } }"
        ),
    ]
    bottom = "x"
    for i in range(depth):
        parts.append(
            f'layer {{ name: "fc{i}" type: "InnerProduct" bottom: "{bottom}" '
            f'top: "fc{i}" inner_product_param {{ num_output: {width} weight_filler '
            f'{{ type: "gaussian" std: {std} }} bias_filler {{ type: "constant" '
            f"value: {bias} }} }} }}"
        )
        parts.append(
            f'layer {{ name: "act{i}" type: "{act}" bottom: "fc{i}" top: "fc{i}" }}'
        )
        bottom = f"fc{i}"
    parts.append(
        f'layer {{ name: "score" type: "InnerProduct" bottom: "{bottom}" '
        f'top: "score" inner_product_param {{ num_output: {classes} '
        'weight_filler { type: "xavier" } } }'
    )
    parts.append(
        'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" '
        'bottom: "y" top: "loss" }'
    )
    parts.append(
        'layer { name: "acc" type: "Accuracy" bottom: "score" bottom: "y" top: "acc" }'
    )
    path = tmp_path / f"mlp_{act}_{std}_{bias}.prototxt"
    path.write_text("\n".join(parts) + "\n")
    return path


def _report(path, **kw):
    import caffepy

    net = caffepy.Net(str(path), caffepy.TRAIN)
    return net, activation_report(net, **kw)


def test_labels_found_through_splits_and_filled_with_valid_classes(tmp_path):
    net, rep = _report(_mlp(tmp_path, std=0.1, classes=7))
    assert label_inputs(net) == {"y": 7}
    y = net.blobs["y"].data
    assert y.min() >= 0 and y.max() <= 6 and np.all(y == np.round(y))
    assert len(np.unique(y)) > 3
    assert abs(net.blobs["x"].data.std() - 1) < 0.15
    assert np.isfinite(rep.loss) and rep.loss > 0


def test_activations_saturate_finding(tmp_path):
    _, rep = _report(_mlp(tmp_path, "TanH", std=1.0))
    text = format_activation_report(rep)
    assert any("layer act1: saturates" in f and "at ±1" in f for f in rep.findings), (
        text
    )
    blob = next(b for b in rep.blobs if b.name == "fc1")
    assert blob.saturated > 0.5 and blob.type == "TanH"


def test_activations_vanish_finding(tmp_path):
    _, rep = _report(_mlp(tmp_path, "TanH", std=0.001))
    assert any("layer act3: activations vanish (std" in f for f in rep.findings)
    small = next(p for p in rep.params if p.name == "fc0/0")
    assert small.ratio is not None and small.ratio < 1e-6
    assert any(
        "param fc0/0: update/weight ratio" in f and "tiny" in f for f in rep.findings
    )


def test_activations_explode_finding(tmp_path):
    _, rep = _report(_mlp(tmp_path, "ReLU", std=3.0, depth=5))
    assert any("activations explode" in f for f in rep.findings), rep.findings


def test_activations_dead_relu_finding(tmp_path):
    _, rep = _report(_mlp(tmp_path, "ReLU", std=0.1, bias=-5.0))
    assert any(f.startswith("layer act0: dead ReLUs (100%") for f in rep.findings)


def test_activations_healthy_net_has_no_findings(tmp_path):
    path = _mlp(tmp_path, "ReLU", std=0.2, depth=2)
    _, rep = _report(path, base_lr=0.01)
    assert rep.findings == [], rep.findings
    ratios = [p.ratio for p in rep.params if p.ratio is not None]
    assert ratios and all(1e-6 < r < 1e-1 for r in ratios)
    grads = {b.name: b.grad_norm for b in rep.blobs}
    assert grads["x"] is None and grads["fc0"] > 0 and grads["loss"] == 1


def test_activations_cli_reports_in_words(tmp_path):
    path = _mlp(tmp_path, "Sigmoid", std=4.0)
    res = CliRunner().invoke(
        cli, ["diagnose", "activations", "--model", str(path), "--lr", "0.1"]
    )
    assert res.exit_code == 0, res.output
    assert "findings:" in res.output and "saturates" in res.output
    assert "at 0 or 1" in res.output
    assert (
        "lr*|grad|/|w|" in res.output and "random classes for 'y' (0..6)" in res.output
    )


def test_activations_on_deploy_net_without_weights(tmp_path):
    res = CliRunner().invoke(
        cli,
        [
            "diagnose",
            "activations",
            "--model",
            str(ROOT / "models/lenet/deploy.prototxt"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "no loss in this phase" in res.output
    assert "all weights are zero" in res.output


def test_activations_on_lenet_with_its_data(tmp_path, monkeypatch):
    fashion_workdir(tmp_path, monkeypatch)
    res = CliRunner().invoke(
        cli, ["diagnose", "activations", "--model", "models/lenet/train_val.prototxt"]
    )
    assert res.exit_code == 0, res.output
    assert "LeNet (TRAIN)" in res.output and "64x20x24x24" in res.output
    assert "findings: none" in res.output, res.output


# -- diagnose overfit --------------------------------------------------------------------
def test_subset_accuracy():
    scores = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert subset_accuracy(scores, [1, 0, 0]) == pytest.approx(2 / 3)
    assert subset_accuracy(scores, [1, 0, 0], ignore=0) == 1.0


def test_lenet_overfits_32_samples(tmp_path, monkeypatch):
    fashion_workdir(tmp_path, monkeypatch)
    seen = []
    result = overfit(
        "models/lenet/solver.prototxt",
        samples=32,
        max_iter=300,
        progress=lambda it, loss, acc: seen.append((it, loss, acc)),
    )
    assert result.reached is not None and result.reached < 300, result
    assert result.samples == 32
    assert seen[-1][2] == 1.0 and seen[-1][1] < seen[0][1]
    assert not (tmp_path / "models/lenet/snapshots").exists()  # nothing written


def test_overfit_cli_passes_and_fails(tmp_path, monkeypatch):
    fashion_workdir(tmp_path, monkeypatch)
    runner = CliRunner()
    res = runner.invoke(
        cli,
        [
            "diagnose",
            "overfit",
            "--solver",
            "models/lenet/solver.prototxt",
            "--samples",
            "16",
            "--max-iter",
            "300",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "reached 100% training accuracy on 16 samples at iteration" in res.output
    # a learning rate far too low cannot get there: non-zero exit, with advice
    res = runner.invoke(
        cli,
        [
            "diagnose",
            "overfit",
            "--solver",
            "models/lenet/solver.prototxt",
            "--samples",
            "16",
            "--max-iter",
            "4",
            "--lr",
            "1e-9",
        ],
    )
    assert res.exit_code != 0
    assert "never reached 100% training accuracy on 16 samples in 4" in res.output
    assert "learning rate too low" in res.output


def test_overfit_needs_a_data_layer(tmp_path):
    from caffepy.errors import CaffepyError

    net = _mlp(tmp_path, "ReLU", std=0.1)
    solver = tmp_path / "solver.prototxt"
    solver.write_text(
        f'net: "{net}"\nbase_lr: 0.01\nlr_policy: "fixed"\nmax_iter: 10\n'
    )
    with pytest.raises(CaffepyError, match="no Data or ImageData layer"):
        overfit(str(solver), samples=4, max_iter=2)


def test_overfit_turns_regularisation_off(tmp_path, monkeypatch):
    from caffepy.data.datum import array_to_datum
    from caffepy.data.db import LMDBWriter
    from caffepy.tools.diagnose import overfit_setup

    monkeypatch.chdir(tmp_path)
    gen = np.random.default_rng(0)
    with LMDBWriter("db") as w:
        for i in range(20):
            img = gen.integers(0, 255, (1, 4, 4), dtype=np.uint8)
            w.put(f"{i:08d}", array_to_datum(img, i % 4).SerializeToString())
    (tmp_path / "net.prototxt").write_text(
        'layer { name: "d" type: "Data" top: "d" top: "l" include { phase: TRAIN } '
        "transform_param { scale: 0.00390625 mirror: true } "
        'data_param { source: "db" batch_size: 5 backend: LMDB } }\n'
        'layer { name: "ip1" type: "InnerProduct" bottom: "d" top: "ip1" '
        'inner_product_param { num_output: 32 weight_filler { type: "xavier" } } }\n'
        'layer { name: "r" type: "ReLU" bottom: "ip1" top: "ip1" }\n'
        'layer { name: "drop" type: "Dropout" bottom: "ip1" top: "ip1" '
        "dropout_param { dropout_ratio: 0.5 } }\n"
        'layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2" '
        'inner_product_param { num_output: 4 weight_filler { type: "xavier" } } }\n'
        'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "l" '
        'top: "loss" }\n'
    )
    (tmp_path / "solver.prototxt").write_text(
        'net: "net.prototxt"\nbase_lr: 0.1\nmomentum: 0.9\nweight_decay: 0.5\n'
        'lr_policy: "fixed"\nmax_iter: 100\ntest_iter: 1\ntest_interval: 10\n'
        'snapshot: 10\nsnapshot_prefix: "snaps/x"\n'
    )
    solver, inputs, (scores, labels, axis, ignore), n = overfit_setup(
        "solver.prototxt", samples=8
    )
    assert n == 8 and inputs["d"].shape == (8, 1, 4, 4)
    assert list(inputs["l"]) == [0, 1, 2, 3, 0, 1, 2, 3]
    assert inputs["d"].max() <= 1.0  # transformed (scaled) as the Data layer does
    assert solver.param.weight_decay == 0 and solver.param.snapshot == 0
    assert not solver.test_nets
    drop = solver.net.layer_dict["drop"].layer_param.dropout_param
    assert drop.dropout_ratio == 0
    assert (scores, labels, axis, ignore) == ("ip2", "l", 1, None)
    result = overfit("solver.prototxt", samples=8, max_iter=200)
    assert result.reached is not None, result
    assert not (tmp_path / "snaps").exists()


@pytest.mark.parametrize(
    "name,min_h,min_w",
    [
        ("diagnose_init.png", 900, 1200),
        ("plot_log.png", 300, 1000),
        ("draw_net_lenet.png", 150, 1500),
    ],
)
def test_docs_figures_decode(name, min_h, min_w):
    path = ROOT / "docs" / "img" / name
    assert path.stat().st_size < 400_000, "keep committed figures small"
    assert_figure(path, min_h, min_w, min_std=10)
