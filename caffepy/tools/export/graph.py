"""An ONNX graph under construction, as the layer converters see it.

Caffe computes layers in place (``bottom: "x" top: "x"``); ONNX values are
written once. :class:`GraphBuilder` keeps, for each Caffe blob, the ONNX value
that holds its current contents: :meth:`GraphBuilder.read` gives it,
:meth:`GraphBuilder.write` makes a new value for a top (the blob's own name the
first time, a suffixed name for each in-place rewrite) and :meth:`alias` makes a
top share its bottom's value (Split, Dropout in inference). When the graph is
finished, each output takes its blob's own name.

It also hides the operators whose signature changed between opsets (the
reductions take ``axes`` as an input from opset 18, ``ReduceSum`` from 13).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from caffepy.errors import CaffepyError

#: The oldest opset the converters support (Softmax over one axis, Split sizes
#: and Unsqueeze axes as inputs).
MIN_OPSET = 13
#: The opset written when ``--opset`` is not given.
DEFAULT_OPSET = 17


def import_onnx() -> Any:
    """The ``onnx`` module, or a one-line error saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise CaffepyError(
            "exporting to ONNX needs the onnx package: pip install 'caffepy[onnx]'"
        ) from None
    return onnx


class GraphBuilder:
    """Nodes, initializers and the blob -> value map of one export.

    Args:
        opset: the ONNX opset the graph is written for.
        shapes: Caffe blob name -> its shape in the built net (the shapes the
            converters reason with; the batch axis of inputs is made dynamic
            afterwards).
    """

    def __init__(self, opset: int, shapes: dict[str, tuple[int, ...]]) -> None:
        self.onnx = import_onnx()
        self.opset = int(opset)
        self.shapes = shapes
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.inputs: list[str] = []
        self._current: dict[str, str] = {}
        self._used: set[str] = set()
        self._weights: dict[tuple[int, tuple[int, ...]], str] = {}
        self._layer = ""

    # -- names and values -----------------------------------------------------------
    def unique(self, base: str) -> str:
        """A value name not used yet: ``base``, else ``base_1``, ``base_2``, ..."""
        name, k = base, 0
        while name in self._used:
            k += 1
            name = f"{base}_{k}"
        self._used.add(name)
        return name

    def start_layer(self, name: str) -> None:
        """Name the nodes that follow after Caffe layer ``name``."""
        self._layer = name

    def add_input(self, blob: str) -> str:
        """Make blob ``blob`` a graph input (named as the blob)."""
        self._used.add(blob)
        self._current[blob] = blob
        self.inputs.append(blob)
        return blob

    def has(self, blob: str) -> bool:
        """Whether blob ``blob`` has a value in the graph."""
        return blob in self._current

    def read(self, blob: str) -> str:
        """The ONNX value holding blob ``blob``'s current contents."""
        try:
            return self._current[blob]
        except KeyError:
            raise CaffepyError(
                f"layer '{self._layer}': blob '{blob}' has no value in the ONNX "
                "graph (produced by a layer that was not exported)"
            ) from None

    def write(self, blob: str) -> str:
        """A new value name for top ``blob`` (its contents from now on)."""
        name = self.unique(blob if blob not in self._used else f"{blob}/{self._layer}")
        self._current[blob] = name
        return name

    def alias(self, top: str, value: str) -> None:
        """Top ``top`` holds the same contents as ``value`` (no node)."""
        self._current[top] = value

    def temp(self, purpose: str) -> str:
        """A name for an intermediate value of the current layer."""
        return self.unique(f"{self._layer}/{purpose}")

    # -- nodes and constants ----------------------------------------------------------
    def node(
        self,
        op: str,
        inputs: Sequence[str],
        outputs: Sequence[str] | str | None = None,
        **attrs: Any,
    ) -> str:
        """Append one node; returns its (first) output.

        Args:
            op: the ONNX operator.
            inputs: value names ("" for an omitted optional input).
            outputs: output names, one name, or None for one new temporary.
            attrs: the node's attributes.
        """
        if outputs is None:
            outputs = [self.temp(op.lower())]
        elif isinstance(outputs, str):
            outputs = [outputs]
        name = self.unique(f"{self._layer}/{op}" if self._layer else op)
        self.nodes.append(
            self.onnx.helper.make_node(
                op, list(inputs), list(outputs), name=name, **attrs
            )
        )
        return outputs[0]

    def const(self, value: Any, purpose: str, dtype: Any = np.float32) -> str:
        """An initializer holding ``value`` (as ``dtype``)."""
        arr = np.asarray(value, dtype=dtype)
        name = self.temp(purpose)
        self.initializers.append(self.onnx.numpy_helper.from_array(arr, name))
        return name

    def ints(self, values: Iterable[int], purpose: str) -> str:
        """An int64 1-D initializer (shapes, axes, sizes)."""
        return self.const(
            np.array(list(values), np.int64).reshape(-1), purpose, np.int64
        )

    def weight(
        self, blob: Any, purpose: str, shape: Sequence[int] | None = None
    ) -> str:
        """A parameter blob as an initializer, once per blob (shared parameters
        are written once); ``shape`` reshapes it."""
        data = np.asarray(blob.data, np.float32)
        if shape is not None:
            data = data.reshape(tuple(shape))
        key = (id(blob), data.shape)
        if key in self._weights:
            return self._weights[key]
        name = self.unique(f"{self._layer}/{purpose}")
        self.initializers.append(self.onnx.numpy_helper.from_array(data.copy(), name))
        self._weights[key] = name
        return name

    # -- operators whose signature depends on the opset -----------------------------
    def reduce(
        self,
        op: str,
        x: str,
        axes: Sequence[int],
        keepdims: bool,
        out: str | None = None,
    ) -> str:
        """``ReduceSum``/``ReduceMean``/``ReduceL1``/``ReduceSumSquare`` over ``axes``."""
        since = 13 if op == "ReduceSum" else 18
        if self.opset >= since:
            return self.node(
                op, [x, self.ints(axes, "axes")], out, keepdims=int(keepdims)
            )
        return self.node(op, [x], out, axes=list(axes), keepdims=int(keepdims))

    def unsqueeze(self, x: str, axes: Sequence[int], out: str | None = None) -> str:
        """``Unsqueeze`` (axes as an input, opset 13+)."""
        return self.node("Unsqueeze", [x, self.ints(axes, "axes")], out)

    def reshape(self, x: str, shape: Sequence[int], out: str | None = None) -> str:
        """``Reshape`` with ONNX's rules: 0 copies the input's dim, -1 is inferred."""
        return self.node("Reshape", [x, self.ints(shape, "shape")], out)

    def scaled(self, x: str, scale: float, shift: float = 0.0) -> str:
        """``scale * x + shift``, leaving out a multiply by 1 and an add of 0."""
        if scale != 1.0:
            x = self.node("Mul", [x, self.const(scale, "scale")])
        if shift != 0.0:
            x = self.node("Add", [x, self.const(shift, "shift")])
        return x

    # -- finishing --------------------------------------------------------------------
    def rename(self, old: str, new: str) -> None:
        """Rename value ``old`` to ``new`` everywhere in the graph."""
        for node in self.nodes:
            for seq in (node.input, node.output):
                for i, v in enumerate(seq):
                    if v == old:
                        seq[i] = new
        for blob, v in self._current.items():
            if v == old:
                self._current[blob] = new
        self._used.add(new)

    def name_outputs(self, blobs: Sequence[str]) -> list[str]:
        """Give each output blob's final value the blob's own name; returns the
        output value names. A value that is a graph input or already another
        output gets an Identity; a blob named as a graph input (computed in
        place of an input) is output as ``<blob>_out``."""
        names: list[str] = []
        for blob in blobs:
            value = self.read(blob)
            if value == blob and value not in self.inputs and value not in names:
                names.append(value)
                continue
            target = self.unique(f"{blob}_out") if blob in self.inputs else blob
            if target == blob and blob in self._used:
                self.rename(blob, self.unique(f"{blob}/0"))
                value = self.read(blob)
            if value in self.inputs or value in names:
                self.node("Identity", [value], target)
            else:
                self.rename(value, target)
            names.append(target)
        return names
