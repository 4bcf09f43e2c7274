"""parse_log / plot_log on BVLC Caffe's own log and on caffepy's log lines."""

import csv

import numpy as np
import pytest
from click.testing import CliRunner

from caffepy.cli import cli
from caffepy.tools.logs import parse_log
from tests.conftest import FIXTURES, require_fixtures

CAFFE_LOG = FIXTURES / "logs" / "caffe_lenet_fashion_train.log"


def test_parse_caffe_log():
    require_fixtures()
    train, test = parse_log(CAFFE_LOG)
    assert [r["NumIters"] for r in train] == list(range(0, 2000, 100))
    assert train[1]["LearningRate"] == pytest.approx(0.00992565)
    assert train[1]["loss"] == pytest.approx(0.656457)
    assert [r["NumIters"] for r in test] == [0, 500, 1000, 1500, 2000]
    assert [r["accuracy"] for r in test] == [0.04, 0.8271, 0.8655, 0.8743, 0.8817]
    assert all(np.isfinite(r["Seconds"]) for r in train)


def test_parse_log_cli_writes_caffe_csv(tmp_path):
    require_fixtures()
    res = CliRunner().invoke(cli, ["parse_log", str(CAFFE_LOG), str(tmp_path)])
    assert res.exit_code == 0, res.output
    text = (tmp_path / (CAFFE_LOG.name + ".test")).read_text()
    rows = list(csv.DictReader(text.splitlines()))
    assert rows[2]["NumIters"] == "1000" and rows[2]["accuracy"] == "0.8655"
    head = (tmp_path / (CAFFE_LOG.name + ".train")).read_text().splitlines()[0]
    assert head.startswith("NumIters,Seconds,LearningRate")


def test_parse_caffepy_style_lines(tmp_path):
    log = tmp_path / "mine.log"
    log.write_text(
        "I1126 10:00:00.000000  4242 base.py:10] Iteration 0, Testing net (#0)\n"
        "I1126 10:00:01.000000  4242 base.py:11]     Test net output #0: accuracy = 0.1\n"
        "I1126 10:00:02.000000  4242 base.py:12] Iteration 0 (0 iter/s, 0s/100 iters), "
        "loss = 2.3\n"
        "I1126 10:00:02.000000  4242 base.py:13]     Train net output #0: loss = 2.3 "
        "(* 1 = 2.3 loss)\n"
        "I1126 10:00:02.000000  4242 base.py:14] Iteration 0, lr = 0.01\n"
    )
    train, test = parse_log(log)
    assert train == [{"NumIters": 0, "Seconds": 2.0, "LearningRate": 0.01, "loss": 2.3}]
    assert test[0]["accuracy"] == 0.1


def test_plot_log_image(tmp_path):
    require_fixtures()
    import cv2

    out = tmp_path / "curves.png"
    res = CliRunner().invoke(
        cli,
        [
            "plot_log",
            str(CAFFE_LOG),
            str(CAFFE_LOG),
            "--out",
            str(out),
            "--x",
            "seconds",
        ],
    )
    assert res.exit_code == 0, res.output
    img = cv2.imread(str(out))
    assert img is not None and img.shape[0] > 300 and img.shape[1] > 1000
    assert img.std() > 5, "figure is blank"
