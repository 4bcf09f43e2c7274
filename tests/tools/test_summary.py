"""caffepy summary: shapes, parameters, FLOPs, memory and the data checks."""

import numpy as np
import pytest
from click.testing import CliRunner

import caffepy
from caffepy.cli import cli
from caffepy.errors import CaffepyError
from caffepy.tools.summary import (
    format_summary,
    human,
    parse_shape,
    replace_data_layers,
    summarize,
)
from tests.conftest import ROOT
from tests.test_diagnose import fashion_workdir

LENET = "models/lenet/train_val.prototxt"


def _rows(summary):
    return {r.name: r for r in summary.rows}


def test_lenet_numbers_from_its_database(tmp_path, monkeypatch):
    fashion_workdir(tmp_path, monkeypatch)
    s = summarize(LENET)
    rows = _rows(s)
    assert rows["data"].type == "Input"
    assert rows["data"].shapes == [("data", (64, 1, 28, 28)), ("label", (64,))]
    assert rows["conv1"].shapes == [("conv1", (64, 20, 24, 24))]
    assert rows["conv1"].params == 20 * 25 + 20
    assert rows["conv1"].flops == 2 * 64 * 20 * 24 * 24 * 25
    assert rows["conv2"].flops == 2 * 64 * 50 * 8 * 8 * 20 * 25
    assert rows["ip1"].flops == 2 * 64 * 800 * 500
    assert rows["pool1"].flops == 64 * 20 * 12 * 12 * 4
    assert rows["relu1"].memory == 0  # in place
    assert rows["conv1"].memory == 64 * 20 * 24 * 24 * 4
    assert s.total_params == 431080
    assert s.warnings == []
    text = format_summary(s)
    assert "431,080 parameters" in text and "for a batch of 64" in text
    assert "labels 0..9 fit the 10 outputs of 'ip2'" in text
    assert "holds 64 records of 1x28x28" in text
    test = summarize(LENET, caffepy.TEST)
    assert _rows(test)["data"].shapes[0][1] == (100, 1, 28, 28)
    assert "accuracy" in _rows(test)


def test_without_database_needs_input_shape(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = ROOT / LENET
    with pytest.raises(CaffepyError, match="--input-shape"):
        summarize(model)
    s = summarize(model, input_shape=(1, 28, 28))
    assert _rows(s)["ip2"].shapes[0][1] == (64, 10)
    s = summarize(model, input_shape=(8, 1, 28, 28))
    assert _rows(s)["conv1"].shapes[0][1] == (8, 20, 24, 24)
    assert "not readable here" in format_summary(s)


def test_crop_size_and_mean_values_give_the_shape(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    net = tmp_path / "n.prototxt"
    net.write_text(
        'layer { name: "d" type: "Data" top: "d" top: "l" transform_param { '
        "crop_size: 32 mean_value: 1 mean_value: 2 mean_value: 3 } data_param { "
        'source: "nowhere" batch_size: 5 backend: LMDB } }\n'
        'layer { name: "c" type: "Convolution" bottom: "d" top: "c" '
        "convolution_param { num_output: 4 kernel_size: 3 stride: 2 pad: 1 } }\n"
        'layer { name: "up" type: "Deconvolution" bottom: "c" top: "up" '
        "convolution_param { num_output: 2 kernel_size: 2 stride: 2 } }\n"
        'layer { name: "p" type: "Pooling" bottom: "up" top: "p" pooling_param { '
        "pool: AVE global_pooling: true } }\n"
    )
    s = summarize(net)
    rows = _rows(s)
    assert rows["d"].shapes[0][1] == (5, 3, 32, 32)
    assert rows["c"].shapes[0][1] == (5, 4, 16, 16)
    assert rows["c"].flops == 2 * 5 * 4 * 16 * 16 * 3 * 9
    assert rows["up"].shapes[0][1] == (5, 2, 32, 32)
    assert rows["up"].flops == 2 * 5 * 4 * 16 * 16 * 2 * 4
    assert rows["p"].flops == 5 * 2 * 32 * 32
    assert "from the crop_size" in format_summary(s)


def _write_db(path, images, labels):
    from caffepy.data.datum import array_to_datum
    from caffepy.data.db import LMDBWriter

    with LMDBWriter(str(path)) as w:
        for i, (img, lab) in enumerate(zip(images, labels)):
            w.put(f"{i:08d}", array_to_datum(img, lab).SerializeToString())


def test_data_checks_warn(tmp_path, monkeypatch):
    from caffepy.io.blobproto import write_binaryproto

    monkeypatch.chdir(tmp_path)
    images = np.random.randint(0, 255, (6, 1, 8, 8), dtype=np.uint8)
    _write_db(tmp_path / "db", images, [0, 3, 11, 2, 1, 0])
    write_binaryproto(
        str(tmp_path / "mean.binaryproto"), np.zeros((1, 1, 6, 6), np.float32)
    )
    net = tmp_path / "n.prototxt"
    net.write_text(
        'layer { name: "d" type: "Data" top: "d" top: "l" transform_param { '
        'crop_size: 10 mean_file: "mean.binaryproto" } data_param { source: "db" '
        "batch_size: 4 backend: LMDB } }\n"
        'layer { name: "ip" type: "InnerProduct" bottom: "d" top: "ip" '
        "inner_product_param { num_output: 10 } }\n"
        'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "l" '
        'top: "loss" }\n'
    )
    s = summarize(net)
    text = "\n".join(s.warnings)
    assert "crop_size 10 is larger than the records (8x8)" in text
    assert "mean file mean.binaryproto is 1x6x6 but the records are 1x8x8" in text
    assert "labels in all 6 records reach 11" in text and "10 outputs" in text
    res = CliRunner().invoke(cli, ["summary", "--model", str(net)])
    assert res.exit_code == 0, res.output
    assert res.output.count("WARNING:") == 3


def test_replace_data_layers_keeps_other_layers(tmp_path, monkeypatch):
    from caffepy.io.prototxt import read_net

    monkeypatch.chdir(tmp_path)  # no data/ here
    param = read_net(str(ROOT / LENET))
    out, infos = replace_data_layers(param, caffepy.TRAIN, (1, 28, 28))
    assert [lp.type for lp in out.layer][:2] == ["Input", "Convolution"]
    assert list(out.layer[0].input_param.shape[1].dim) == [64]
    assert infos["data"].how == "--input-shape"
    none, _ = replace_data_layers(param, caffepy.TRAIN, None, strict=False)
    assert none is None


def test_summary_cli_deploy_and_helpers():
    res = CliRunner().invoke(
        cli, ["summary", "--model", str(ROOT / "models/lenet/deploy.prototxt")]
    )
    assert res.exit_code == 0, res.output
    assert "prob" in res.output and "1x10" in res.output
    assert "431,080 parameters" in res.output
    assert parse_shape("3,224,224") == (3, 224, 224)
    assert parse_shape("64x1x28x28") == (64, 1, 28, 28)
    assert parse_shape("") is None
    with pytest.raises(CaffepyError, match="expected 3"):
        parse_shape("3,4")
    assert human(1234) == "1.23 k" and human(5.1e9, "FLOPs") == "5.1 GFLOPs"
    assert human(12, "B") == "12 B"
