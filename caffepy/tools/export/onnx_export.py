"""A built caffepy Net as an ONNX model.

:func:`export_net` walks the net's layers in order: ``Input`` (and the data
layers already replaced by ``Input``, ``DummyData``, ``MemoryData``) become
graph inputs named as their tops, with a dynamic batch axis by default; each
other layer goes through its converter (:mod:`caffepy.tools.export.convert`);
loss layers and Accuracy are removed (a SoftmaxWithLoss can become its Softmax,
``keep_softmax``). The outputs are the blobs nothing exported reads, named as in
the net. The result is checked with ``onnx.checker``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from caffepy.errors import CaffepyError
from caffepy.tools.export.convert import ExportOptions, LayerView, converter_for
from caffepy.tools.export.graph import (
    DEFAULT_OPSET,
    MIN_OPSET,
    GraphBuilder,
    import_onnx,
)

#: Layer types whose tops become graph inputs.
INPUT_TYPES = ("Input", "DummyData", "MemoryData")
#: Metric layers removed with the losses.
METRIC_TYPES = ("Accuracy",)
#: The name of the batch axis of inputs and outputs.
BATCH_DIM = "N"


@dataclass
class ExportSummary:
    """What an export wrote.

    Attributes:
        net: the net's name.
        path: the file written, or None.
        opset: the ONNX opset.
        inputs, outputs: (name, shape) with ``"N"`` for a dynamic batch axis.
        layers: Caffe layers converted.
        nodes: ONNX operator -> count.
        params: parameter values in the initializers.
        removed: (layer name, type, why) for each layer left out.
        notes: (layer name, type, remark) about converted layers.
        check: (output, max abs diff, max relative diff) per compared output,
            after ``--check``; None when not checked.
    """

    net: str
    path: str | None
    opset: int
    inputs: list[tuple[str, tuple]]
    outputs: list[tuple[str, tuple]]
    layers: int
    nodes: Counter
    params: int
    removed: list[tuple[str, str, str]] = field(default_factory=list)
    notes: list[tuple[str, str, str]] = field(default_factory=list)
    check: list[tuple[str, float, float]] | None = None

    def format(self) -> str:
        """The printed summary."""

        def dims(shape: tuple) -> str:
            return " x ".join(str(d) for d in shape) if shape else "scalar"

        where = f" to {self.path}" if self.path else ""
        lines = [
            f"Exported {self.net or 'the net'}{where}: opset {self.opset}, "
            f"{self.layers} layers -> {sum(self.nodes.values())} ONNX nodes, "
            f"{self.params:,} parameters"
        ]
        lines += [f"  input   {n:<16} {dims(s)}" for n, s in self.inputs]
        lines += [f"  output  {n:<16} {dims(s)}" for n, s in self.outputs]
        if self.removed:
            removed = ", ".join(f"{n} ({t}: {why})" for n, t, why in self.removed)
            lines.append(f"  removed {removed}")
        lines += [f"  note    {n} ({t}): {remark}" for n, t, remark in self.notes]
        ops = ", ".join(f"{op} {k}" for op, k in sorted(self.nodes.items()))
        lines.append(f"  nodes   {ops}")
        if self.check is not None:
            for name, diff, rel in self.check:
                lines.append(
                    f"  check   {name}: onnxruntime vs caffepy, max abs diff "
                    f"{diff:.3g}, max relative diff {rel:.3g}"
                )
        return "\n".join(lines)


def _is_removed(layer: Any, lp: Any) -> bool:
    from caffepy.layer import LossLayer

    return isinstance(layer, LossLayer) or lp.type in METRIC_TYPES


def _check_opset(opset: int, onnx: Any) -> int:
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= int(opset) <= newest:
        raise CaffepyError(
            f"--opset {opset} is not supported: caffepy writes opsets {MIN_OPSET} to "
            f"{newest} (the installed onnx's newest)"
        )
    return int(opset)


def _softmax_output(g: GraphBuilder, lp: Any, layer: Any, net: Any) -> str:
    """A SoftmaxWithLoss kept as the Softmax of its scores: the output is named
    ``prob`` (``<layer>_prob`` when the net has a blob ``prob``)."""
    name = (
        "prob" if "prob" not in net.blobs and not g.has("prob") else f"{lp.name}_prob"
    )
    axis = int(lp.softmax_param.axis)
    ndim = len(net.blobs[lp.bottom[0]].shape)
    g.node("Softmax", [g.read(lp.bottom[0])], g.write(name), axis=axis % ndim)
    return name


def export_net(
    net: Any,
    *,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
    options: ExportOptions | None = None,
    outputs: Sequence[str] | None = None,
) -> tuple[Any, ExportSummary]:
    """The ONNX model of a built net with its current parameters.

    Args:
        net: a :class:`caffepy.net.Net` (shaped; its data layers replaced by
            ``Input``).
        opset: the ONNX opset to write (13 to the installed onnx's newest).
        dynamic_batch: make axis 0 of inputs (and of outputs that follow it) a
            symbolic ``N``.
        options: what to do with Dropout and SoftmaxWithLoss.
        outputs: blob names to make the graph's outputs (default: every blob
            that nothing exported reads).

    Returns:
        (onnx ModelProto, :class:`ExportSummary` without a path).

    Raises:
        UnsupportedError: a layer ONNX cannot express (a Python layer, ...).
        CaffepyError: an unsupported opset; onnx not installed.
    """
    options = options or ExportOptions()
    shapes = {name: tuple(blob.shape) for name, blob in net.blobs.items()}
    g = GraphBuilder(_check_opset(opset, import_onnx()), shapes)
    removed: list[tuple[str, str, str]] = []
    notes: list[tuple[str, str, str]] = []
    kept_softmax: list[str] = []
    silenced: set[str] = set()
    converted = 0
    for li, layer in enumerate(net.layers):
        lp = net.layer_param[li]
        g.start_layer(lp.name)
        if lp.type in INPUT_TYPES:
            for top in lp.top:
                g.add_input(top)
            continue
        if _is_removed(layer, lp):
            if lp.type == "SoftmaxWithLoss" and options.keep_softmax:
                kept_softmax.append(_softmax_output(g, lp, layer, net))
                converted += 1
            else:
                why = "metric" if lp.type in METRIC_TYPES else "loss"
                removed.append((lp.name, lp.type, why))
            continue
        view = LayerView(
            g=g,
            param=lp,
            layer=layer,
            bottom=list(lp.bottom),
            top=list(lp.top),
            bottom_shapes=[tuple(b.shape) for b in net.bottom_vecs[li]],
            top_shapes=[tuple(t.shape) for t in net.top_vecs[li]],
            options=options,
        )
        converter_for(view)(view)
        if lp.type == "Silence":
            silenced.update(g.read(b) for b in lp.bottom)
        notes += [(lp.name, lp.type, remark) for remark in view.remarks]
        if view.notes:
            removed.append((lp.name, lp.type, "; ".join(view.notes)))
        elif lp.type != "Split":
            converted += 1
    if outputs is None:
        outputs = _free_blobs(net, g, silenced) + kept_softmax
    model = _make_model(net, g, list(outputs), dynamic_batch)
    summary = ExportSummary(
        net=str(net.name),
        path=None,
        opset=g.opset,
        inputs=_io_shapes(model.graph.input),
        outputs=_io_shapes(model.graph.output),
        layers=converted,
        nodes=Counter(node.op_type for node in model.graph.node),
        params=sum(int(np.prod(t.dims)) for t in model.graph.initializer),
        removed=removed,
        notes=notes,
    )
    return model, summary


def _free_blobs(net: Any, g: GraphBuilder, silenced: set[str]) -> list[str]:
    """Blobs of the net (not Caffe's split copies) whose final value no node
    reads: the graph's outputs, in the net's blob order."""
    split_tops = {
        t
        for li in net._split_layers
        for t in net.layer_param[li].top
        if net.layer_param[li].type == "Split"
    }
    read = {v for node in g.nodes for v in node.input}
    free, seen = [], set()
    for name in net.blobs:
        if name in split_tops or not g.has(name):
            continue
        value = g.read(name)
        if value in read or value in silenced or value in g.inputs or value in seen:
            continue
        seen.add(value)
        free.append(name)
    return free


def _make_model(net: Any, g: GraphBuilder, outputs: list[str], dynamic: bool) -> Any:
    onnx = g.onnx
    helper, float_ = onnx.helper, onnx.TensorProto.FLOAT
    g.start_layer("")
    out_values = g.name_outputs(outputs)
    read = {v for node in g.nodes for v in node.input} | set(out_values)
    inputs = []
    for name in g.inputs:
        if name not in read:
            continue  # labels of the removed losses
        shape: list[Any] = list(g.shapes[name])
        if dynamic and shape:
            shape[0] = BATCH_DIM
        inputs.append(helper.make_tensor_value_info(name, float_, shape))
    outs = [helper.make_tensor_value_info(v, float_, None) for v in out_values]
    graph = helper.make_graph(
        g.nodes, str(net.name) or "caffepy", inputs, outs, g.initializers
    )
    opsets = [helper.make_opsetid("", g.opset)]
    model = helper.make_model(
        graph,
        opset_imports=opsets,
        producer_name="caffepy",
        producer_version=_version(),
        ir_version=helper.find_min_ir_version_for(opsets),
    )
    model = _with_output_shapes(onnx, model)
    for out, blob in zip(model.graph.output, outputs):
        if not out.type.tensor_type.HasField("shape"):  # inference could not tell
            dims: list[Any] = list(g.shapes.get(blob, ()))
            if dynamic and dims:
                dims[0] = BATCH_DIM
            out.CopyFrom(helper.make_tensor_value_info(out.name, float_, dims))
    onnx.checker.check_model(model, full_check=True)
    return model


def _with_output_shapes(onnx: Any, model: Any) -> Any:
    """The model with the outputs' shapes that shape inference finds (the batch
    axis stays symbolic where it flows through)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as err:  # noqa: BLE001 - report as a caffepy error
        raise CaffepyError(f"the exported ONNX graph is inconsistent: {err}") from err
    known = {vi.name: vi for vi in inferred.graph.value_info}
    known.update({vi.name: vi for vi in inferred.graph.output})
    for out in model.graph.output:
        vi = known.get(out.name)
        if vi is not None and vi.type.tensor_type.HasField("shape"):
            out.type.CopyFrom(vi.type)
    return model


def _io_shapes(values: Any) -> list[tuple[str, tuple]]:
    result = []
    for vi in values:
        t = vi.type.tensor_type
        dims = tuple(d.dim_param or d.dim_value for d in t.shape.dim)
        result.append((vi.name, dims if t.HasField("shape") else ("?",)))
    return result


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("caffepy")
    except Exception:  # noqa: BLE001 - metadata is optional
        return ""
