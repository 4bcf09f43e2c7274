"""``caffepy draw_net``: a picture of a net's layers and blobs (Caffe's draw_net.py).

Layers are boxes (name, type and key parameters: kernel, stride, pad,
num_output, pool method, ...), blobs are grey octagons labelled with their
shape, edges follow the data. An in-place layer (ReLU, Dropout, ...) gets a new
node for the blob it rewrites, so the drawing stays a left-to-right (or
top-to-bottom) chain, as the data flows.

Shapes come from building the net with its data layers replaced by Input
layers (see :mod:`caffepy.tools.summary`); when a data layer's shape cannot be
told (no database, no crop_size), the drawing has no shapes.

Rendering: Graphviz's ``dot`` program when it is installed (the DOT text is
generated here, no Python binding is needed); otherwise matplotlib draws the
same graph with a simple layered layout, so the command always works.
"""

import os
import shutil
import subprocess
from dataclasses import dataclass, field

from caffepy.errors import CaffepyError

PHASES = ("TRAIN", "TEST", "ALL")
FORMATS = ("png", "svg", "pdf", "dot")

# Caffe's draw.py colours, and a few more families.
_COLORS = {
    "Convolution": "#FF5050",
    "Deconvolution": "#FF5050",
    "Pooling": "#FF9900",
    "InnerProduct": "#CC33FF",
    "BatchNorm": "#66CC66",
    "Scale": "#99DD99",
    "LRN": "#66CC66",
    "Data": "#33CCCC",
    "ImageData": "#33CCCC",
    "Input": "#33CCCC",
    "MemoryData": "#33CCCC",
    "DummyData": "#33CCCC",
}
_DEFAULT_COLOR = "#6495ED"
_LOSS_COLOR = "#F2C94C"
_BLOB_COLOR = "#E0E0E0"
_POOL_NAMES = {0: "MAX", 1: "AVE", 2: "STOCHASTIC"}


@dataclass
class Node:
    id: str
    kind: str  # "layer" or "blob"
    lines: list
    color: str


@dataclass
class Graph:
    name: str
    nodes: list = field(default_factory=list)
    edges: list = field(default_factory=list)  # (src id, dst id)

    def add(self, node):
        self.nodes.append(node)
        return node.id


# -- what each layer shows -------------------------------------------------------------
def _spatial(values, h=0, w=0, default=None):
    """A repeated spatial field (kernel_size, stride, pad) as text."""
    if h or w:
        return f"{h}x{w}"
    values = list(values)
    if not values:
        return None if default is None else str(default)
    if len(values) == 1 or len(set(values)) == 1:
        return str(values[0])
    return "x".join(str(v) for v in values)


def layer_details(lp):
    """Short lines of the parameters that matter for a layer (kernel, stride, ...)."""
    t = lp.type
    out = []
    if t in ("Convolution", "Deconvolution"):
        p = lp.convolution_param
        out.append(f"{p.num_output} outputs")
        parts = [
            f"kernel {_spatial(p.kernel_size, p.kernel_h, p.kernel_w)}",
            f"stride {_spatial(p.stride, p.stride_h, p.stride_w, 1)}",
        ]
        pad = _spatial(p.pad, p.pad_h, p.pad_w, 0)
        if pad != "0":
            parts.append(f"pad {pad}")
        out.append(", ".join(parts))
        if p.group != 1:
            out.append(f"group {p.group}")
        if list(p.dilation) and set(p.dilation) != {1}:
            out.append(f"dilation {_spatial(p.dilation)}")
        if not p.bias_term:
            out.append("no bias")
    elif t == "Pooling":
        p = lp.pooling_param
        method = _POOL_NAMES.get(p.pool, str(p.pool))
        if p.global_pooling:
            out.append(f"global {method}")
        else:
            kernel = f"{p.kernel_h}x{p.kernel_w}" if p.kernel_h else str(p.kernel_size)
            stride = f"{p.stride_h}x{p.stride_w}" if p.stride_h else str(p.stride)
            line = f"{method} {kernel}, stride {stride}"
            pad = f"{p.pad_h}x{p.pad_w}" if p.pad_h or p.pad_w else str(p.pad)
            if pad != "0":
                line += f", pad {pad}"
            out.append(line)
    elif t == "InnerProduct":
        out.append(f"{lp.inner_product_param.num_output} outputs")
    elif t == "Embed":
        p = lp.embed_param
        out.append(f"{p.input_dim} -> {p.num_output}")
    elif t == "LRN":
        p = lp.lrn_param
        out.append(f"size {p.local_size}, alpha {p.alpha:g}, beta {p.beta:g}")
    elif t == "Dropout":
        out.append(f"ratio {lp.dropout_param.dropout_ratio:g}")
    elif t == "ReLU" and lp.relu_param.negative_slope:
        out.append(f"negative_slope {lp.relu_param.negative_slope:g}")
    elif t == "Eltwise":
        op = lp.eltwise_param.DESCRIPTOR.fields_by_name["operation"]
        out.append(op.enum_type.values_by_number[lp.eltwise_param.operation].name)
    elif t == "Concat" and lp.concat_param.axis != 1:
        out.append(f"axis {lp.concat_param.axis}")
    elif t == "BatchNorm" and lp.batch_norm_param.HasField("use_global_stats"):
        out.append(
            f"use_global_stats {str(lp.batch_norm_param.use_global_stats).lower()}"
        )
    elif t == "Scale" and lp.scale_param.bias_term:
        out.append("with bias")
    elif t == "Data":
        p = lp.data_param
        out.append(f"batch {p.batch_size}")
        out.append(os.path.basename(p.source.rstrip("/")) or "(no source)")
    elif t == "ImageData":
        p = lp.image_data_param
        out.append(f"batch {p.batch_size}")
        out.append(os.path.basename(p.source) or "(no source)")
    elif t == "MemoryData":
        p = lp.memory_data_param
        out.append(f"batch {p.batch_size}, {p.channels}x{p.height}x{p.width}")
    if t in ("Data", "ImageData"):
        tp = lp.transform_param
        extras = []
        if tp.crop_size:
            extras.append(f"crop {tp.crop_size}")
        if tp.mirror:
            extras.append("mirror")
        if tp.scale != 1:
            extras.append(f"scale {tp.scale:g}")
        if extras:
            out.append(", ".join(extras))
    if any(w for w in lp.loss_weight) and any(w != 1 for w in lp.loss_weight):
        out.append("loss_weight " + ", ".join(f"{w:g}" for w in lp.loss_weight))
    return out


def _lr_mult_lines(lp):
    """pycaffe's ``lr mult: W, B`` line of a learning layer (none when both are
    0, or for other layer types)."""
    from caffepy.pycaffe.draw import get_layer_lr_mult

    if lp.type not in ("Convolution", "Deconvolution", "InnerProduct"):
        return []
    w, b = get_layer_lr_mult(lp)
    return [f"lr mult: {w:.1f}, {b:.1f}"] if w or b else []


def _phase_tag(lp):
    phases = {r.phase for r in lp.include if r.HasField("phase")}
    if len(phases) == 1:
        return "TRAIN" if phases.pop() == 0 else "TEST"
    return None


# -- the graph -------------------------------------------------------------------------
def _shape_text(shape):
    return "x".join(str(d) for d in shape) if shape else "scalar"


def net_graph(param, shapes=None, phase_tags=False, display_lrm=False):
    """The layer/blob graph of a NetParameter's layers (already filtered).

    Args:
        param: NetParameter whose ``layer`` entries are drawn, in order.
        shapes: optional {(layer name, top index): shape}.
        phase_tags: label layers restricted to one phase with [TRAIN]/[TEST]
            (for the ALL phase), and let layers of different phases that write
            the same top name share its node.
        display_lrm: add the weights' and bias' lr_mult to Convolution,
            Deconvolution and InnerProduct layers (pycaffe's draw_net flag).
    """
    shapes = shapes or {}
    g = Graph(param.name or "net")
    current = {}  # blob name -> node id of its latest version
    for li, lp in enumerate(param.layer):
        lines = [lp.name, f"({lp.type})"] + layer_details(lp)
        if display_lrm:
            lines += _lr_mult_lines(lp)
        tag = _phase_tag(lp) if phase_tags else None
        if tag:
            lines.append(f"[{tag}]")
        is_loss = lp.type.endswith("Loss") or any(lp.loss_weight)
        color = _LOSS_COLOR if is_loss else _COLORS.get(lp.type, _DEFAULT_COLOR)
        lid = g.add(Node(f"layer{li}", "layer", lines, color))
        for name in lp.bottom:
            if name not in current:  # an undefined bottom: draw it anyway
                current[name] = g.add(
                    Node(f"blob_{name}_in", "blob", [name], _BLOB_COLOR)
                )
            g.edges.append((current[name], lid))
        for j, name in enumerate(lp.top):
            shape = shapes.get((lp.name, j))
            in_place = name in lp.bottom
            if phase_tags and not in_place and name in current:
                g.edges.append((lid, current[name]))  # e.g. TRAIN and TEST data
                continue
            label = [name] + ([_shape_text(shape)] if shape is not None else [])
            bid = g.add(Node(f"blob{li}_{j}", "blob", label, _BLOB_COLOR))
            g.edges.append((lid, bid))
            current[name] = bid
    return g


def _dot_escape(text):
    return text.replace("\\", "\\\\").replace('"', '\\"')


def to_dot(graph, rankdir="LR"):
    """The graph as Graphviz DOT text."""
    graph_attrs = (
        f'  graph [rankdir={rankdir}, fontname="Helvetica", nodesep=0.25, '
        f'ranksep=0.3, label="{_dot_escape(graph.name)}", labelloc=t];'
    )
    lines = [
        f'digraph "{_dot_escape(graph.name)}" {{',
        graph_attrs,
        '  node [fontname="Helvetica", fontsize=10, style=filled];',
        '  edge [color="#555555", arrowsize=0.6];',
    ]
    for n in graph.nodes:
        label = "\\n".join(_dot_escape(s) for s in n.lines)
        shape = "octagon" if n.kind == "blob" else "box"
        lines.append(
            f'  "{n.id}" [label="{label}", shape={shape}, fillcolor="{n.color}"];'
        )
    for a, b in graph.edges:
        lines.append(f'  "{a}" -> "{b}";')
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- shapes ----------------------------------------------------------------------------
def _net_shapes(param, phase, input_shape):
    """{(layer name, top index): shape} of the phase's net, or ({}, note)."""
    from caffepy.tools.summary import build_shaped_net

    try:
        net, _ = build_shaped_net(param, phase, input_shape, strict=False)
    except CaffepyError as err:
        return {}, f"shapes left out: the net does not build ({err})"
    if net is None:
        return {}, (
            "shapes left out: a data layer's input shape is unknown (its "
            "database is not here); pass --input-shape C,H,W to show them"
        )
    shapes = {}
    for li, layer in enumerate(net.layers):
        if li in net._split_layers:
            continue
        for j, top in enumerate(net.top_vecs[li]):
            shapes[(layer.name, j)] = tuple(top.shape)
    return shapes, None


def build_graph(model, phase="TRAIN", input_shape=None, shapes=True, display_lrm=False):
    """(Graph, notes) for a net prototxt path or NetParameter in a phase
    (TRAIN, TEST or ALL: every layer, whatever its include rules)."""
    import caffepy
    from caffepy.io.prototxt import read_net
    from caffepy.net import filter_net
    from caffepy.proto import caffe_pb2

    if phase not in PHASES:
        raise CaffepyError(f"phase {phase!r}: expected one of {', '.join(PHASES)}")
    param = (
        read_net(os.fspath(model)) if isinstance(model, (str, os.PathLike)) else model
    )
    notes, found = [], {}
    phases = ("TRAIN", "TEST") if phase == "ALL" else (phase,)
    if shapes:
        for ph in phases:
            got, note = _net_shapes(param, getattr(caffepy, ph), input_shape)
            for key, value in got.items():
                found.setdefault(key, value)
            if note and note not in notes:
                notes.append(note)
    if phase == "ALL":
        drawn = param
    else:
        state = caffe_pb2.NetState()
        state.CopyFrom(param.state)
        state.phase = getattr(caffepy, phase)
        drawn = filter_net(param, state)
    if phase == "ALL" and found:
        # the same layer name may exist in both phases (the data layers): shapes
        # by name are then ambiguous, so keep them only where one layer has the name
        names = [lp.name for lp in drawn.layer]
        found = {k: v for k, v in found.items() if names.count(k[0]) == 1}
    graph = net_graph(drawn, found, phase_tags=phase == "ALL", display_lrm=display_lrm)
    return graph, notes


# -- rendering ----------------------------------------------------------------------------
def dot_available():
    return shutil.which("dot") is not None


def _render_dot(dot_text, out, fmt):
    try:
        proc = subprocess.run(
            ["dot", f"-T{fmt}", "-o", out],
            input=dot_text,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise CaffepyError(f"running Graphviz's dot failed: {err}") from None
    if proc.returncode != 0:
        raise CaffepyError(f"Graphviz's dot failed: {proc.stderr.strip()[:500]}")


def layered_layout(graph):
    """{node id: (rank, slot)}: rank = longest path from a source, slot = order
    within the rank (the order the nodes were added)."""
    preds = {n.id: [] for n in graph.nodes}
    for a, b in graph.edges:
        preds[b].append(a)
    rank = {}
    for n in graph.nodes:  # nodes are added in data-flow order
        rank[n.id] = max((rank.get(p, 0) + 1 for p in preds[n.id]), default=0)
    slots, pos = {}, {}
    for n in graph.nodes:
        r = rank[n.id]
        pos[n.id] = (r, slots.get(r, 0))
        slots[r] = slots.get(r, 0) + 1
    return pos


def _render_matplotlib(graph, out, rankdir, fmt):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pos = layered_layout(graph)
    n_ranks = max(r for r, _ in pos.values()) + 1
    n_slots = max(s for _, s in pos.values()) + 1
    # centre each rank's nodes around the middle slot
    per_rank = {}
    for r, _ in pos.values():
        per_rank[r] = per_rank.get(r, 0) + 1
    step_rank, step_slot = (1.6, 1.0) if rankdir == "LR" else (0.95, 2.0)

    def xy(node_id):
        r, s = pos[node_id]
        offset = s - (per_rank[r] - 1) / 2.0
        if rankdir == "LR":
            return r * step_rank, -offset * step_slot
        return offset * step_slot, -r * step_rank

    if rankdir == "LR":
        width, height = n_ranks * step_rank + 1, n_slots * step_slot + 1.2
    else:
        width, height = n_slots * step_slot + 1.5, n_ranks * step_rank + 1
    width, height = min(max(width, 4), 300), min(max(height, 3), 300)
    dpi = 90 if fmt == "png" else 72
    dpi = min(dpi, int(30000 / max(width, height)))
    fig = plt.figure(figsize=(width, height), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 0.97 if rankdir == "LR" else 0.99))
    ax.set_axis_off()
    xs = [xy(n.id)[0] for n in graph.nodes]
    ys = [xy(n.id)[1] for n in graph.nodes]
    ax.set_xlim(min(xs) - 0.9, max(xs) + 0.9)
    ax.set_ylim(min(ys) - 0.8, max(ys) + 0.8)
    texts = {}
    for n in graph.nodes:
        x, y = xy(n.id)
        box = "round,pad=0.3" if n.kind == "blob" else "square,pad=0.35"
        texts[n.id] = ax.text(
            x,
            y,
            "\n".join(n.lines),
            ha="center",
            va="center",
            zorder=3,
            fontsize=7 if n.kind == "layer" else 6.5,
            fontweight="bold" if n.kind == "layer" else "normal",
            bbox={
                "boxstyle": box,
                "facecolor": n.color,
                "edgecolor": "#333333",
                "lw": 0.6,
            },
        )
    # NOTE: a first draw places the text boxes, so the arrows can be clipped at
    # their borders (patchA/patchB) and their heads stay visible.
    fig.canvas.draw()
    for a, b in graph.edges:
        ax.annotate(
            "",
            xy=xy(b),
            xytext=xy(a),
            zorder=2,
            arrowprops={
                "arrowstyle": "-|>",
                "color": "#444444",
                "lw": 0.9,
                "mutation_scale": 9,
                "shrinkA": 1,
                "shrinkB": 1,
                "patchA": texts[a].get_bbox_patch(),
                "patchB": texts[b].get_bbox_patch(),
            },
        )
    fig.suptitle(graph.name, fontsize=9)
    fig.savefig(out, format=fmt, dpi=dpi)
    plt.close(fig)


def draw_net(
    model,
    out,
    rankdir="LR",
    phase="TRAIN",
    input_shape=None,
    engine=None,
    display_lrm=False,
):
    """Draw a net prototxt (or NetParameter) into ``out`` (.png, .svg, .pdf, .dot).

    Args:
        rankdir: "LR" (left to right) or "TB" (top to bottom).
        phase: "TRAIN", "TEST" or "ALL".
        input_shape: (C, H, W) or (N, C, H, W) for data layers without a database.
        engine: "dot", "matplotlib" or None (dot when installed).
        display_lrm: show the lr_mult of learning layers.

    Returns:
        (engine used, notes): notes say why shapes are missing, if they are.
    """
    fmt = os.path.splitext(os.fspath(out))[1].lower().lstrip(".")
    if fmt not in FORMATS:
        raise CaffepyError(
            f"{out}: unknown image type {fmt!r}; use .png, .svg, .pdf or .dot"
        )
    if rankdir not in ("LR", "TB", "RL", "BT"):
        raise CaffepyError(f"rankdir {rankdir!r}: expected LR or TB")
    graph, notes = build_graph(model, phase, input_shape, display_lrm=display_lrm)
    dot_text = to_dot(graph, rankdir)
    if fmt == "dot":
        with open(out, "w", encoding="utf-8") as f:
            f.write(dot_text)
        return "dot", notes
    if engine is None:
        engine = "dot" if dot_available() else "matplotlib"
    if engine == "dot":
        if not dot_available():
            raise CaffepyError(
                "Graphviz's dot is not installed (apt-get install "
                "graphviz); leave the engine unset to draw with "
                "matplotlib instead"
            )
        _render_dot(dot_text, os.fspath(out), fmt)
    elif engine == "matplotlib":
        _render_matplotlib(
            graph, os.fspath(out), "LR" if rankdir in ("LR", "RL") else "TB", fmt
        )
    else:
        raise CaffepyError(f"unknown engine {engine!r}: expected dot or matplotlib")
    return engine, notes
