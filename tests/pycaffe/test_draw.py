"""caffe.draw: BVLC's test_draw.py (every model prototxt draws) and the graph."""

import shutil
from pathlib import Path

import pytest
from google.protobuf import text_format

import caffe
import caffe.draw
from caffe.proto import caffe_pb2

pytest.importorskip("pydot")
MODELS = Path(__file__).resolve().parents[2] / "models"


def _nets():
    return sorted(p for p in MODELS.rglob("*.prototxt") if "solver" not in p.name)


def _read(path):
    net = caffe_pb2.NetParameter()
    text_format.Merge(path.read_text(), net)
    return net


@pytest.mark.parametrize("path", _nets(), ids=lambda p: p.parent.name + "/" + p.name)
def test_every_model_draws(path):
    dot = caffe.draw.draw_net(_read(path), "LR", ext="raw").decode()
    net = _read(path)
    for layer in net.layer:
        assert layer.name in dot


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is missing")
def test_png(tmp_path):
    path = tmp_path / "lenet.png"
    caffe.draw.draw_net_to_file(
        _read(MODELS / "lenet" / "train_val.prototxt"), str(path), "TB"
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_graph_nodes_edges_labels_and_phase():
    net = _read(MODELS / "lenet" / "train_val.prototxt")
    graph = caffe.draw.get_pydot_graph(net, "TB", phase=caffe.TEST, display_lrm=True)
    text = graph.to_string()
    test_layers = [
        lp for lp in net.layer if not lp.include or lp.include[0].phase == caffe.TEST
    ]
    train_only = [lp for lp in net.layer if lp not in test_layers]
    assert train_only, "the fixture net should have TRAIN-only layers"
    data_nodes = [n for n in graph.get_nodes() if "(Data)" in n.get_name()]
    assert len(data_nodes) == 1  # TRAIN and TEST data layers share a name
    for lp in train_only:
        if lp.name not in {t.name for t in test_layers}:
            assert f"{lp.name} (" not in text
    conv = next(lp for lp in net.layer if lp.type == "Convolution")
    label = caffe.draw.get_layer_label(conv, "TB", display_lrm=True)
    assert f"kernel size: {conv.convolution_param.kernel_size[0]}" in label
    w, b = caffe.draw.get_layer_lr_mult(conv)
    assert f"lr mult: {w:.1f}, {b:.1f}" in label
    assert label.startswith('"') and "\\n" not in label
    assert "\\n" in caffe.draw.get_layer_label(conv, "LR")
    assert caffe.draw.get_edge_label(conv) == str(conv.convolution_param.num_output)
    n_blobs = len({b for lp in test_layers for b in list(lp.bottom) + list(lp.top)})
    assert len(graph.get_nodes()) == len(test_layers) + n_blobs
