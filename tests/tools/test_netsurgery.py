"""Net surgery (caffepy/tools/netsurgery.py): the nets a solver names, NetState
precedence, Data -> Input, test-output averaging."""

import numpy as np
import pytest
from google.protobuf import text_format

from caffepy.errors import SolverError
from caffepy.net import Net, filter_net
from caffepy.phase import TEST, TRAIN
from caffepy.proto import caffe_pb2
from caffepy.tools import netsurgery as ns

NET = """
name: "tiny"
layer { name: "data" type: "Data" top: "x" top: "label"
  include { phase: TRAIN }
  data_param { source: "nowhere_train" batch_size: 4 } }
layer { name: "data" type: "Data" top: "x" top: "label"
  include { phase: TEST }
  data_param { source: "nowhere_test" batch_size: 2 } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y"
  inner_product_param { num_output: 3 } }
layer { name: "extra" type: "ReLU" bottom: "y" top: "y"
  include { stage: "deep" } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "y" bottom: "label" top: "l" }
"""


def _net():
    return text_format.Parse(NET, caffe_pb2.NetParameter())


def _solver(text):
    return text_format.Parse(text, caffe_pb2.SolverParameter())


def test_net_state_precedence():
    own = caffe_pb2.NetState(phase=TEST, level=2, stage=["a"])
    override = caffe_pb2.NetState(level=5, stage=["b"])
    state = ns.net_state(TRAIN, own, override, stages=["c"], level=7)
    # The net's own phase overrides the solver's default (as Caffe's MergeFrom).
    assert state.phase == TEST
    assert state.level == 7
    assert list(state.stage) == ["a", "b", "c"]
    assert ns.net_state(TRAIN).phase == TRAIN
    assert ns.net_state(TRAIN, None, override).level == 5


def test_train_net_inline_and_from_file(tmp_path, monkeypatch):
    sp = _solver("train_state { stage: 'deep' }")
    sp.net_param.CopyFrom(_net())
    train = ns.solver_train_net(sp, stages=["cli"], level=3)
    assert train.where == "net_param" and train.path is None and train.phase == TRAIN
    assert train.param.state.phase == TRAIN
    assert list(train.param.state.stage) == ["deep", "cli"]
    assert train.param.state.level == 3
    assert not sp.net_param.state.stage  # the solver's copy is not touched

    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text(NET)
    sp = _solver('train_net: "net.prototxt"')
    train = ns.solver_train_net(sp)
    assert train.where == "train_net file: net.prototxt"
    assert train.path == "net.prototxt"
    assert len(train.param.layer) == 5


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", r"exactly one train net .* got 0$"),
        ('net: "a" train_net: "b"', r"got 2 \(net, train_net\)"),
        (
            'net: "missing.prototxt"',
            r"the solver's net: 'missing.prototxt' does not exist",
        ),
    ],
)
def test_train_net_errors(text, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SolverError, match=match):
        ns.solver_train_net(_solver(text))


def test_test_nets_order_and_states():
    sp = _solver(
        "test_iter: 1 test_iter: 2 test_iter: 3 test_interval: 10 "
        "test_state { stage: 's0' } test_state { stage: 's1' } "
        "test_state { stage: 's2' }"
    )
    sp.net_param.CopyFrom(_net())
    specific = sp.test_net_param.add()
    specific.CopyFrom(_net())
    specific.name = "specific"
    nets = ns.solver_test_nets(sp)
    assert [n.where for n in nets] == [
        "test_net_param (#0)",
        "net_param (#1)",
        "net_param (#2)",
    ]
    assert [n.param.name for n in nets] == ["specific", "tiny", "tiny"]
    assert all(n.param.state.phase == TEST and n.phase == TEST for n in nets)
    assert [list(n.param.state.stage) for n in nets] == [["s0"], ["s1"], ["s2"]]
    train, tests = ns.solver_net_params(sp)
    assert train.state.phase == TRAIN and len(tests) == 3


@pytest.mark.parametrize(
    ("text", "generic", "match"),
    [
        ("test_iter: 1", False, r"1 test_iter for 0 test_net"),
        (
            "test_iter: 1 test_interval: 5 test_state {} test_state {}",
            True,
            "test_state must be unset or given once per test net",
        ),
        ("test_iter: 1", True, "test_iter is set .* but test_interval is not"),
    ],
)
def test_test_net_errors(text, generic, match):
    sp = _solver(text)
    if generic:
        sp.net_param.CopyFrom(_net())
    with pytest.raises(SolverError, match=match):
        ns.solver_test_nets(sp)


def test_inline_train_net(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text(NET)
    sp = _solver('net: "net.prototxt"')
    edited = ns.inline_train_net(sp)
    edited.layer[2].name = "renamed"
    assert not sp.HasField("net") and sp.net_param.layer[2].name == "renamed"


def test_data_to_input_builds_without_the_database():
    param = _net()
    shapes = {"data": ns.input_shapes((4, 6), 2)}
    out = ns.data_to_input(param, shapes)
    assert [lp.type for lp in out.layer] == [
        "Input",
        "Input",
        "InnerProduct",
        "ReLU",
        "SoftmaxWithLoss",
    ]
    assert [list(s.dim) for s in out.layer[0].input_param.shape] == [[4, 6], [4]]
    assert out.layer[1].include[0].phase == TEST  # rules are kept
    assert list(out.layer[0].top) == ["x", "label"]
    assert param.layer[0].type == "Data"  # the input is not changed
    net = Net(param=out, phase=TRAIN)
    assert net.blobs["y"].shape == (4, 3)

    # one phase only, with a function of the layer
    state = caffe_pb2.NetState(phase=TEST)
    test = ns.data_to_input(
        filter_net(param, state),
        lambda lp: ns.input_shapes((lp.data_param.batch_size, 6), len(lp.top)),
    )
    assert [list(s.dim) for s in test.layer[0].input_param.shape] == [[2, 6], [2]]
    assert len(test.layer) == 3
    # a function that returns None keeps the layer
    kept = ns.data_to_input(param, lambda lp: None)
    assert kept == param
    assert [lp.name for lp in ns.data_layers(param)] == ["data", "data"]


def test_output_means_average_elementwise():
    class FakeNet:
        outputs = ["acc", "vec"]

        def __init__(self):
            self.blobs = {}

    class B:
        def __init__(self, data):
            self.data = np.asarray(data, np.float32)

    net = FakeNet()
    means = ns.OutputMeans()
    for acc, vec in ((0.5, [1, 2]), (0.25, [3, 5])):
        net.blobs = {"acc": B([acc]), "vec": B(vec)}
        means.add(net)
    assert means.names == ["acc", "vec", "vec"]
    assert means.index == [0, 0, 1]
    assert means.sizes == {"acc": 1, "vec": 2}
    assert means.means() == [0.375, 2.0, 3.5]
    assert means.means(4) == [0.1875, 1.0, 1.75]
    assert ns.OutputMeans().means() == []


def test_label_layers_and_class_axis():
    lp = caffe_pb2.LayerParameter(type="Accuracy")
    lp.accuracy_param.axis = 2
    assert "SoftmaxWithLoss" in ns.LABEL_LAYERS
    assert ns.class_axis(lp) == 2
    assert ns.class_axis(caffe_pb2.LayerParameter(type="HingeLoss")) == 1
