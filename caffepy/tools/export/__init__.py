"""``caffepy export``: a Caffe net and its weights as an ONNX model with Caffe's
exact semantics.

:func:`export_onnx` reads a prototxt (a deploy net, or a train/val net whose
TEST phase is exported with its data layers turned into inputs of the batch
shape they produce), copies the weights, converts each layer
(:mod:`~caffepy.tools.export.onnx_export`) and writes the model; with
``check`` it runs the model in ONNX Runtime against caffepy's forward.

``onnx`` (and ``onnxruntime`` for the check) come with ``pip install
'caffepy[onnx]'``; the rest of caffepy does not need them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from caffepy.errors import UnsupportedError
from caffepy.tools.export.convert import CONVERTERS, ExportOptions
from caffepy.tools.export.graph import DEFAULT_OPSET, MIN_OPSET
from caffepy.tools.export.onnx_export import ExportSummary, export_net

__all__ = [
    "CONVERTERS",
    "DEFAULT_OPSET",
    "MIN_OPSET",
    "ExportOptions",
    "ExportSummary",
    "build_export_net",
    "export_net",
    "export_onnx",
]


def build_export_net(
    model: str | os.PathLike,
    weights: str | os.PathLike | None = None,
    *,
    input_shape: Sequence[int] | None = None,
    stages: Sequence[str] = (),
) -> Any:
    """The TEST-phase Net of a prototxt, data layers replaced by ``Input``
    layers of their batch shape, with ``weights`` copied in.

    Args:
        model: the net prototxt.
        weights: a .caffemodel (or .caffemodel.h5), or None for the fillers'
            values.
        input_shape: (C, H, W) or (N, C, H, W) for data layers whose database
            is not at hand.
        stages: net stages to build with.
    """
    from caffepy.io.prototxt import read_net
    from caffepy.net import Net
    from caffepy.phase import TEST
    from caffepy.tools.summary import replace_data_layers

    param = read_net(os.fspath(model))
    param.state.stage.extend(stages)
    shaped, _ = replace_data_layers(param, TEST, input_shape)
    for lp in shaped.layer:
        if lp.type == "Python":  # before building: its module may not import
            p = lp.python_param
            raise UnsupportedError(
                f"Python layer '{lp.name}' cannot be exported to ONNX: it runs "
                f"Python code ({p.module}.{p.layer}), which ONNX cannot express; "
                "replace it with standard layers or remove it before exporting"
            )
    net = Net(param=shaped, phase=TEST, source=os.fspath(model))
    if weights is not None:
        net.copy_from(os.fspath(weights))
    return net


def export_onnx(
    model: str | os.PathLike,
    weights: str | os.PathLike | None,
    onnx_path: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
    keep_dropout: bool = False,
    keep_softmax: bool = False,
    input_shape: Sequence[int] | None = None,
    stages: Sequence[str] = (),
    check: bool = False,
) -> ExportSummary:
    """Export a Caffe net and its weights to an ONNX file.

    Args:
        model: the net prototxt (deploy or train/val: the TEST phase is
            exported).
        weights: the .caffemodel, or None to export the fillers' values.
        onnx_path: the file to write.
        opset: the ONNX opset (13 to the installed onnx's newest).
        dynamic_batch: a symbolic batch axis ``N`` (else the net's batch size).
        keep_dropout: keep Dropout as ONNX ``Dropout`` nodes.
        keep_softmax: write a SoftmaxWithLoss as its Softmax (output ``prob``).
        input_shape: (C, H, W) or (N, C, H, W) for data layers whose database
            is not at hand.
        stages: net stages.
        check: run the model in ONNX Runtime against caffepy and record the
            differences in the summary.

    Returns:
        the :class:`ExportSummary` (``format()`` is what the command prints).
    """
    from caffepy.io.atomic import atomic_write_bytes

    net = build_export_net(model, weights, input_shape=input_shape, stages=stages)
    options = ExportOptions(keep_dropout=keep_dropout, keep_softmax=keep_softmax)
    onnx_model, summary = export_net(
        net, opset=opset, dynamic_batch=dynamic_batch, options=options
    )
    atomic_write_bytes(os.fspath(onnx_path), onnx_model.SerializeToString())
    summary.path = os.fspath(onnx_path)
    if check:
        from caffepy.tools.export.check import compare_with_caffepy

        summary.check = compare_with_caffepy(onnx_model, net)
    return summary
