"""``debug_info: true``: Caffe's [Forward]/[Backward] lines and parameter norms,
against the log BVLC Caffe wrote for ``caffe train`` in
``caffe-golden-2/facts/debug_info`` (``debug_info.json`` lists its lines)."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

import caffepy
from caffepy.io.prototxt import read_solver
from caffepy.netdebug import params_debug_info
from tests.conftest import FIXTURES, require_fixtures

FACTS = FIXTURES / "caffe-golden-2" / "facts"


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def messages():
    logger = logging.getLogger("caffepy")
    handler, level = _Lines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def debug_dir(tmp_path, monkeypatch):
    require_fixtures()
    folder = tmp_path / "debug_info"
    shutil.copytree(FACTS / "debug_info", folder)
    monkeypatch.chdir(folder)
    return folder


def _debug(lines):
    return [m for m in lines if m.startswith("    [")]


def test_debug_info_train_log_matches_caffe(debug_dir, messages):
    facts = json.loads((FACTS / "debug_info.json").read_text())
    solver = caffepy.get_solver("debug_solver.prototxt")
    solver.net.copy_from("debug_init.caffemodel")
    solver.solve()
    assert _debug(messages) == facts["debug_lines"]
    # Where they fall among the solver's lines, as in Caffe's log.
    norms = messages.index(facts["debug_lines"][29])
    output = next(i for i, m in enumerate(messages) if "Train net output #0" in m)
    final = messages.index("Iteration 1, loss = 0.985473")
    second = messages.index(facts["debug_lines"][30], output)
    assert norms < output < second < final
    assert messages[final - 1] == facts["debug_lines"][-1]


def test_debug_info_only_on_display_iterations(debug_dir, messages):
    param = read_solver("debug_solver.prototxt")
    param.display = 2
    param.max_iter = 2
    solver = caffepy.get_solver(param)
    solver.step(2)
    lines = _debug(messages)
    # Iteration 0 logs (30 lines: 16 forward, 13 backward, the norms); 1 does not.
    assert len(lines) == 30
    assert not solver.net.debug_info


def test_debug_info_off_logs_nothing(debug_dir, messages):
    param = read_solver("debug_solver.prototxt")
    param.debug_info = False
    caffepy.get_solver(param).step(1)
    assert _debug(messages) == []


def test_net_parameter_debug_info_and_norms(messages, tmp_path):
    """A Net built with ``debug_info: true`` logs its forward; the norms line
    sums the learnable parameters (shared ones once)."""
    text = """
    name: "n" debug_info: true
    layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
    layer { name: "a" type: "InnerProduct" bottom: "x" top: "y" param { name: "w" }
            inner_product_param { num_output: 2 bias_term: false } }
    layer { name: "b" type: "InnerProduct" bottom: "x" top: "z" param { name: "w" }
            inner_product_param { num_output: 2 bias_term: false } }
    """
    path = tmp_path / "n.prototxt"
    path.write_text(text)
    net = caffepy.Net(str(path), caffepy.TEST)
    assert net.debug_info
    w = np.array([[1.0, -2.0, 3.0], [-4.0, 5.0, -6e-7]])
    net.params["a"][0].data[...] = w
    net.blobs["x"].data[...] = 1
    net.forward()
    lines = _debug(messages)
    assert lines[0] == "    [Forward] Layer in, top blob x data: 1"
    # y = W @ 1 = (2, 1 - 6e-7): mean |y| 1.5; mean |W| 2.5 (shared, shown twice)
    assert [m for m in lines if "Layer a," in m] == [
        "    [Forward] Layer a, top blob y data: 1.5",
        "    [Forward] Layer a, param blob w data: 2.5",
    ]
    assert lines[-1] == "    [Forward] Layer b, param blob w data: 2.5"
    messages.clear()
    net.params["a"][0].diff[...] = 0.5
    params_debug_info(net)
    l2 = np.sqrt(np.sum(w.astype(np.float32).astype(np.float64) ** 2))
    assert messages == [
        "    [Backward] All net params (data, diff): L1 norm = (15, 3); "
        f"L2 norm = ({l2:.6g}, {np.sqrt(6 * 0.25):.6g})"
    ]
