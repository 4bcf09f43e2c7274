"""The converter registry: one function per Caffe layer type.

A converter receives a :class:`LayerView` (the layer's parameters, its built
caffepy layer with its parameter blobs, bottom and top names and shapes) and
appends ONNX nodes that compute every top with Caffe's semantics, through the
view's :class:`~caffepy.tools.export.graph.GraphBuilder`. Converters live by
family in ``vision``, ``neuron``, ``normalization``, ``recurrent`` and
``common``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from caffepy.errors import UnsupportedError
from caffepy.tools.export.graph import GraphBuilder


@dataclass
class ExportOptions:
    """What the user chose about layers that are not plain inference.

    Attributes:
        keep_dropout: write Dropout as an ONNX ``Dropout`` node (an identity at
            inference) instead of removing it.
        keep_softmax: write a SoftmaxWithLoss layer as ``Softmax`` over its
            axis (the class probabilities) instead of removing it.
    """

    keep_dropout: bool = False
    keep_softmax: bool = False


@dataclass
class LayerView:
    """One Caffe layer as a converter sees it.

    Attributes:
        g: the graph under construction.
        param: the layer's LayerParameter.
        layer: the built caffepy layer (parsed parameters, ``blobs``).
        bottom, top: blob names.
        bottom_shapes, top_shapes: their shapes in the built net.
        options: the export options.
        notes: why the converter left this layer out (the summary lists it
            as removed).
        remarks: what the summary should say about a converted layer.
    """

    g: GraphBuilder
    param: Any
    layer: Any
    bottom: list[str]
    top: list[str]
    bottom_shapes: list[tuple[int, ...]]
    top_shapes: list[tuple[int, ...]]
    options: ExportOptions
    notes: list[str] = field(default_factory=list)
    remarks: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.param.name)

    @property
    def type(self) -> str:
        return str(self.param.type)

    def x(self, i: int = 0) -> str:
        """The value of bottom ``i``."""
        return self.g.read(self.bottom[i])

    def out(self, i: int = 0) -> str:
        """A new value for top ``i``."""
        return self.g.write(self.top[i])

    def weight(self, j: int, purpose: str, shape: Any = None) -> str:
        """Parameter blob ``j`` as an initializer."""
        return self.g.weight(self.layer.blobs[j], purpose, shape)

    def axis(self, axis: int, i: int = 0) -> int:
        """``axis`` of bottom ``i`` made non-negative (Caffe's CanonicalAxisIndex)."""
        ndim = len(self.bottom_shapes[i])
        return axis + ndim if axis < 0 else axis

    def unsupported(self, why: str) -> UnsupportedError:
        """The error for a layer (or a setting of it) ONNX cannot express."""
        return UnsupportedError(
            f"{self.type} layer '{self.name}' cannot be exported to ONNX: {why}"
        )


Converter = Callable[[LayerView], None]
#: Caffe layer type -> its converter.
CONVERTERS: dict[str, Converter] = {}


def converts(*types: str) -> Callable[[Converter], Converter]:
    """Register a converter for the given Caffe layer types."""

    def wrap(fn: Converter) -> Converter:
        for t in types:
            CONVERTERS[t] = fn
        return fn

    return wrap


def converter_for(view: LayerView) -> Converter:
    """The converter of ``view``'s type, or an error naming the layer."""
    from caffepy.tools.export import (  # noqa: F401
        common,
        neuron,
        normalization,
        recurrent,
        vision,
    )

    fn = CONVERTERS.get(view.type)
    if fn is None:
        if view.type == "Python":
            module = view.param.python_param.module
            cls = view.param.python_param.layer
            raise view.unsupported(
                f"it runs Python code ({module}.{cls}), which ONNX cannot express; "
                "replace it with standard layers or remove it before exporting"
            )
        raise view.unsupported("no ONNX converter for this layer type")
    return fn
