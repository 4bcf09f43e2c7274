"""pycaffe's ``caffe.draw``: a NetParameter as a pydot graph, and its picture.

Layers are boxes (name, type, kernel/stride/pad for spatial layers, learning
rate multipliers with ``display_lrm``), blobs are octagons, in-place layers are
green; edges from a layer to its tops carry ``num_output`` (or a Data layer's
batch size). Needs ``pydot`` (``pip install 'caffepy[draw]'``) and Graphviz's
``dot`` to render; ``caffepy draw_net`` draws without either.
"""

from __future__ import annotations

from typing import Any

from caffepy.errors import CaffepyError
from caffepy.proto import caffe_pb2

LAYER_STYLE_DEFAULT = {"shape": "record", "fillcolor": "#6495ED", "style": "filled"}
NEURON_LAYER_STYLE = {"shape": "record", "fillcolor": "#90EE90", "style": "filled"}
BLOB_STYLE = {"shape": "octagon", "fillcolor": "#E0E0E0", "style": "filled"}
_COLORS = {
    "Convolution": "#FF5050",
    "Deconvolution": "#FF5050",
    "Pooling": "#FF9900",
    "InnerProduct": "#CC33FF",
}
_LEARNING = ("Convolution", "Deconvolution", "InnerProduct")


def _pydot() -> Any:
    try:
        import pydot
    except ImportError:
        raise CaffepyError(
            "caffe.draw needs pydot: pip install 'caffepy[draw]' (and Graphviz's "
            "dot to render pictures)"
        ) from None
    return pydot


def get_pooling_types_dict() -> dict[int, str]:
    """Pooling method number -> name (0: 'MAX', 1: 'AVE', 2: 'STOCHASTIC')."""
    enum = caffe_pb2.PoolingParameter.PoolMethod.DESCRIPTOR
    return {v.number: name for name, v in enum.values_by_name.items()}


def get_edge_label(layer: Any) -> str:
    """The label of the edges to a layer's tops: batch size or num_output."""
    if layer.type == "Data":
        return f"Batch {layer.data_param.batch_size}"
    if layer.type in ("Convolution", "Deconvolution"):
        return str(layer.convolution_param.num_output)
    if layer.type == "InnerProduct":
        return str(layer.inner_product_param.num_output)
    return '""'


def get_layer_lr_mult(layer: Any) -> tuple[float, float]:
    """The (weights, bias) lr_mult of a Convolution, Deconvolution or
    InnerProduct layer (1.0 where its ``param`` leaves it unset)."""
    if layer.type not in _LEARNING:
        raise CaffepyError(
            f"layer '{layer.name}' ({layer.type}) has no learning rate multipliers; "
            f"only {', '.join(_LEARNING)} layers do"
        )
    mults = [p.lr_mult for p in layer.param]
    if len(mults) > 2:
        raise CaffepyError(
            f"layer '{layer.name}' ({layer.type}) has {len(mults)} param specs, "
            "expected at most 2"
        )
    mults += [1.0] * (2 - len(mults))
    return mults[0], mults[1]


def get_layer_label(layer: Any, rankdir: str, display_lrm: bool = False) -> str:
    """A layer's node label: name, type, spatial parameters, lr multipliers;
    separated by spaces when the graph runs top-bottom, newlines otherwise."""
    sep = " " if rankdir in ("TB", "BT") else r"\n"
    if layer.type == "Pooling":
        pool = get_pooling_types_dict()[layer.pooling_param.pool]
        parts = [layer.name, f"({layer.type} {pool})"]
    else:
        parts = [layer.name, f"({layer.type})"]
    if layer.type == "Pooling":
        p = layer.pooling_param
        kernel, stride, pad = p.kernel_size, p.stride, p.pad
    elif layer.type in ("Convolution", "Deconvolution"):
        p = layer.convolution_param
        kernel = p.kernel_size[0] if len(p.kernel_size) else 1
        stride = p.stride[0] if len(p.stride) else 1
        pad = p.pad[0] if len(p.pad) else 0
    if layer.type in ("Convolution", "Deconvolution", "Pooling"):
        parts.append(
            sep.join([f"kernel size: {kernel}", f"stride: {stride}", f"pad: {pad}"])
        )
    if display_lrm and layer.type in _LEARNING:
        w, b = get_layer_lr_mult(layer)
        if w or b:
            parts.append(f"lr mult: {w:.1f}, {b:.1f}")
    # NOTE: quoted, or the colons would be read as DOT port separators.
    return '"' + sep.join(parts) + '"'


def choose_color_by_layertype(layertype: str) -> str:
    """Fill colour of a layer's box."""
    return _COLORS.get(layertype, LAYER_STYLE_DEFAULT["fillcolor"])


def _in_phase(layer: Any, phase: int | None) -> bool:
    if phase is None:
        return True
    if len(layer.include) and len(layer.exclude):
        raise CaffepyError(
            f"layer '{layer.name}' has both include and exclude rules; give one"
        )
    included = not len(layer.include) or any(r.phase == phase for r in layer.include)
    return included and not any(r.phase == phase for r in layer.exclude)


def get_pydot_graph(
    caffe_net: Any,
    rankdir: str,
    label_edges: bool = True,
    phase: int | None = None,
    display_lrm: bool = False,
) -> Any:
    """A ``pydot.Dot`` of ``caffe_net`` (a NetParameter): one node per layer and
    per blob, edges along the data; only ``phase``'s layers when given
    (``caffe.TRAIN``/``caffe.TEST``; None: all)."""
    pydot = _pydot()
    graph = pydot.Dot(caffe_net.name or "Net", graph_type="digraph", rankdir=rankdir)
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str, str]] = []
    for layer in caffe_net.layer:
        if not _in_phase(layer, phase):
            continue
        key = f"{layer.name}_{layer.type}"
        label = get_layer_label(layer, rankdir, display_lrm)
        in_place = (
            len(layer.bottom) == 1
            and len(layer.top) == 1
            and layer.bottom[0] == layer.top[0]
        )
        if in_place:
            nodes[key] = pydot.Node(label, **NEURON_LAYER_STYLE)
        else:
            style = dict(
                LAYER_STYLE_DEFAULT, fillcolor=choose_color_by_layertype(layer.type)
            )
            nodes[key] = pydot.Node(label, **style)
        for bottom in layer.bottom:
            nodes[bottom + "_blob"] = pydot.Node(bottom, **BLOB_STYLE)
            edges.append((bottom + "_blob", key, '""'))
        for top in layer.top:
            nodes[top + "_blob"] = pydot.Node(top, **BLOB_STYLE)
            edges.append(
                (key, top + "_blob", get_edge_label(layer) if label_edges else '""')
            )
    for node in nodes.values():
        graph.add_node(node)
    for src, dst, label in edges:
        graph.add_edge(pydot.Edge(nodes[src], nodes[dst], label=label))
    return graph


def draw_net(
    caffe_net: Any,
    rankdir: str,
    ext: str = "png",
    phase: int | None = None,
    display_lrm: bool = False,
) -> bytes:
    """The picture of ``caffe_net`` in format ``ext`` (png, svg, pdf, ... as
    Graphviz names them; ``raw``/``dot`` give the DOT text), as bytes."""
    graph = get_pydot_graph(caffe_net, rankdir, phase=phase, display_lrm=display_lrm)
    if ext in ("raw", "dot"):
        return graph.to_string().encode()
    try:
        return graph.create(format=ext)
    except FileNotFoundError:
        raise CaffepyError(
            "caffe.draw needs Graphviz's dot program to render; install graphviz, "
            "or write '.raw' for the DOT text"
        ) from None


def draw_net_to_file(
    caffe_net: Any,
    filename: str,
    rankdir: str = "LR",
    phase: int | None = None,
    display_lrm: bool = False,
) -> None:
    """Write the picture of ``caffe_net`` to ``filename``, in the format its
    extension names ('.raw': the DOT text, for Graphviz by hand)."""
    ext = str(filename).rsplit(".", 1)[-1]
    data = draw_net(caffe_net, rankdir, ext, phase, display_lrm)
    with open(filename, "wb") as f:
        f.write(data)


__all__ = [
    "BLOB_STYLE",
    "LAYER_STYLE_DEFAULT",
    "NEURON_LAYER_STYLE",
    "choose_color_by_layertype",
    "draw_net",
    "draw_net_to_file",
    "get_edge_label",
    "get_layer_label",
    "get_layer_lr_mult",
    "get_pooling_types_dict",
    "get_pydot_graph",
]
