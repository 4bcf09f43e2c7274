"""caffepy draw_net: DOT text, Graphviz and matplotlib renderings, shapes."""

import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

from caffepy.cli import cli
from caffepy.errors import CaffepyError
from caffepy.tools.draw_net import (
    build_graph,
    dot_available,
    draw_net,
    layer_details,
    layered_layout,
    to_dot,
)
from tests.conftest import ROOT
from tests.test_diagnose import assert_figure, fashion_workdir

LENET = str(ROOT / "models/lenet/train_val.prototxt")
needs_dot = pytest.mark.skipif(
    not dot_available(), reason="Graphviz's dot is not installed"
)


def _layer(text):
    from caffepy.io.prototxt import parse_net_text

    return parse_net_text(f"layer {{ {text} }}").layer[0]


def test_layer_details_show_key_parameters():
    conv = _layer(
        'name: "c" type: "Convolution" convolution_param { num_output: 96 '
        "kernel_size: 11 stride: 4 pad: 2 group: 2 }"
    )
    assert layer_details(conv) == [
        "96 outputs",
        "kernel 11, stride 4, pad 2",
        "group 2",
    ]
    rect = _layer(
        'name: "c" type: "Convolution" convolution_param { num_output: 8 '
        "kernel_h: 3 kernel_w: 1 bias_term: false }"
    )
    assert layer_details(rect) == ["8 outputs", "kernel 3x1, stride 1", "no bias"]
    pool = _layer(
        'name: "p" type: "Pooling" pooling_param { pool: AVE kernel_size: 3 '
        "stride: 2 pad: 1 }"
    )
    assert layer_details(pool) == ["AVE 3, stride 2, pad 1"]
    gpool = _layer('name: "p" type: "Pooling" pooling_param { global_pooling: true }')
    assert layer_details(gpool) == ["global MAX"]
    lrn = _layer(
        'name: "n" type: "LRN" lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 }'
    )
    assert layer_details(lrn) == ["size 5, alpha 0.0001, beta 0.75"]
    elt = _layer('name: "e" type: "Eltwise" eltwise_param { operation: PROD }')
    assert layer_details(elt) == ["PROD"]
    drop = _layer('name: "d" type: "Dropout" dropout_param { dropout_ratio: 0.3 }')
    assert layer_details(drop) == ["ratio 0.3"]


def test_graph_train_test_all(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no database: no shapes
    train, notes = build_graph(LENET, "TRAIN")
    assert notes and "--input-shape" in notes[0]
    labels = ["|".join(n.lines) for n in train.nodes]
    assert sum(lab.startswith("data|(Data)") for lab in labels) == 1
    assert not any(lab.startswith("accuracy|") for lab in labels)
    # relu1 is in place: a second node for the blob it rewrites
    assert sum(n.lines[0] == "ip1" and n.kind == "blob" for n in train.nodes) == 2
    test, _ = build_graph(LENET, "TEST")
    assert any(n.lines[0] == "accuracy" and n.kind == "layer" for n in test.nodes)
    every, _ = build_graph(LENET, "ALL")
    tags = [
        n.lines[-1] for n in every.nodes if n.lines[0] == "data" and n.kind == "layer"
    ]
    assert tags == ["[TRAIN]", "[TEST]"]
    # both data layers feed the one 'data' blob
    data_blobs = [
        n.id for n in every.nodes if n.kind == "blob" and n.lines[0] == "data"
    ]
    assert len(data_blobs) == 1
    assert sum(b == data_blobs[0] for _, b in every.edges) == 2
    pos = layered_layout(every)
    assert pos[data_blobs[0]][0] == 1


def test_dot_text_has_shapes_and_parameters(tmp_path):
    out = tmp_path / "lenet.dot"
    draw_net(LENET, out, input_shape=(1, 28, 28))
    text = out.read_text()
    assert text.startswith('digraph "LeNet"') and "rankdir=LR" in text
    assert "64x20x24x24" in text and "kernel 5, stride 1" in text
    assert "MAX 2, stride 2" in text and "500 outputs" in text
    dot = to_dot(build_graph(LENET, "TEST", (1, 28, 28))[0], "TB")
    assert "rankdir=TB" in dot and "100x10" in dot


@pytest.mark.parametrize("rankdir", ["LR", "TB"])
def test_matplotlib_png(tmp_path, monkeypatch, rankdir):
    fashion_workdir(tmp_path, monkeypatch)
    out = tmp_path / "net.png"
    engine, notes = draw_net(
        "models/lenet/train_val.prototxt", out, rankdir=rankdir, engine="matplotlib"
    )
    assert engine == "matplotlib" and notes == []
    h, w = (200, 1500) if rankdir == "LR" else (1200, 300)
    assert_figure(out, h, w, min_std=10)


def test_matplotlib_svg_and_pdf(tmp_path):
    svg = tmp_path / "net.svg"
    draw_net(LENET, svg, phase="ALL", engine="matplotlib", input_shape=(1, 28, 28))
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    pdf = tmp_path / "net.pdf"
    draw_net(LENET, pdf, engine="matplotlib")
    assert pdf.read_bytes()[:5] == b"%PDF-"


@needs_dot
@pytest.mark.parametrize("phase", ["TRAIN", "ALL"])
def test_graphviz_png(tmp_path, phase):
    out = tmp_path / "net.png"
    engine, _ = draw_net(LENET, out, phase=phase, engine="dot", input_shape=(1, 28, 28))
    assert engine == "dot"
    assert_figure(out, 150, 1500, min_std=10)


@needs_dot
def test_graphviz_svg_and_pdf(tmp_path):
    svg = tmp_path / "net.svg"
    draw_net(LENET, svg, rankdir="TB", engine="dot")
    text = svg.read_text()
    ET.fromstring(text)
    assert "conv1" in text and "(Convolution)" in text
    pdf = tmp_path / "net.pdf"
    draw_net(LENET, pdf, engine="dot")
    assert pdf.read_bytes()[:5] == b"%PDF-"


def test_cli_draw_net(tmp_path):
    out = tmp_path / "lenet.png"
    res = CliRunner().invoke(
        cli,
        ["draw_net", LENET, str(out), "--phase", "TEST", "--input-shape", "1,28,28"],
    )
    assert res.exit_code == 0, res.output
    assert "Wrote" in res.output
    assert_figure(out, 150, 1500, min_std=10)


def test_bad_output_type(tmp_path):
    with pytest.raises(CaffepyError, match="unknown image type 'gif'"):
        draw_net(LENET, tmp_path / "x.gif")


def test_falls_back_to_matplotlib_without_dot(tmp_path, monkeypatch):
    import caffepy.tools.draw_net as dn

    monkeypatch.setattr(dn.shutil, "which", lambda name: None)
    out = tmp_path / "net.png"
    engine, _ = draw_net(LENET, out, input_shape=(1, 28, 28))
    assert engine == "matplotlib"
    assert_figure(out, 200, 1500, min_std=10)
    with pytest.raises(CaffepyError, match="apt-get install graphviz"):
        draw_net(LENET, out, engine="dot")
