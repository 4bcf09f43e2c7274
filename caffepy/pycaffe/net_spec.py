"""NetSpec: write a net in Python and get its NetParameter (pycaffe's net_spec).

    from caffe import layers as L, params as P
    n = caffe.NetSpec()
    n.data, n.label = L.DummyData(shape=[dict(dim=[64, 1, 28, 28]),
                                         dict(dim=[64, 1, 1, 1])], ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20)
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.relu1 = L.ReLU(n.pool1, in_place=True)
    str(n.to_proto())   # prototxt text

``L.<Type>(*bottoms, **kwargs)`` describes one layer. Keyword arguments go into
the type's own ``<type>_param`` message when it has that field, otherwise onto
the LayerParameter itself; a keyword ending in ``param`` (``param``,
``transform_param``, ``convolution_param``, ...) always goes onto the
LayerParameter. Lists fill repeated fields (a single value becomes a one-item
list), dicts fill messages. ``ntop=k`` gives k tops (0: the layer is returned,
for sinks such as Silence), ``in_place=True`` writes the top over the bottom.

Names: a top assigned to a NetSpec attribute takes that name; a layer takes the
name given to it (``ntop=0``) or its first top's; anything unnamed is called
``<Type><k>`` (``Convolution1``, ``Convolution2``, ...).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from typing import Any

from caffepy.proto import caffe_pb2

# Types whose parameters live in another type's message.
_SHARED_PARAM = {"Deconvolution": "convolution", "Im2col": "convolution"}


def param_name_dict() -> dict[str, str]:
    """Layer type -> the stem of its ``<stem>_param`` field of LayerParameter.

    Read from the schema: a field ``inner_product_param`` of message type
    ``InnerProductParameter`` gives ``{"InnerProduct": "inner_product"}``.
    """
    out = {}
    for fd in caffe_pb2.LayerParameter.DESCRIPTOR.fields:
        if fd.name.endswith("_param") and fd.message_type is not None:
            type_name = fd.message_type.name
            if type_name.endswith("Parameter"):
                out[type_name[: -len("Parameter")]] = fd.name[: -len("_param")]
    for type_name, stem in _SHARED_PARAM.items():
        out.setdefault(type_name, stem)
    return out


def assign_proto(proto: Any, name: str, val: Any) -> None:
    """Set field ``name`` of message ``proto`` from a Python value.

    A list (or a single value, for a repeated field) extends a repeated field;
    list items that are dicts each add one message. A dict fills a message
    field recursively; anything else is assigned.
    """
    field = getattr(proto, name)
    repeated = hasattr(field, "extend")
    if repeated and not isinstance(val, (list, tuple)):
        val = [val]
    if isinstance(val, (list, tuple)):
        for item in val:
            if isinstance(item, dict):
                sub = field.add()
                for k, v in item.items():
                    assign_proto(sub, k, v)
            else:
                field.append(item)
    elif isinstance(val, dict):
        for k, v in val.items():
            assign_proto(field, k, v)
    else:
        setattr(proto, name, val)


class Top:
    """One output blob of a layer: top ``n`` of Function ``fn``."""

    def __init__(self, fn: Function, n: int) -> None:
        self.fn = fn
        self.n = n

    def to_proto(self) -> caffe_pb2.NetParameter:
        """A NetParameter of every layer this top depends on."""
        return to_proto(self)

    def _to_proto(self, layers: OrderedDict, names: dict, autonames: Counter) -> None:
        self.fn._to_proto(layers, names, autonames)


class Function:
    """One layer: its type, its input Tops and its keyword parameters."""

    def __init__(self, type_name: str, inputs: tuple, params: dict) -> None:
        self.type_name = type_name
        for index, inp in enumerate(inputs):
            if not isinstance(inp, Top):
                raise TypeError(
                    f"{type_name} input {index} is not a Top (type is {type(inp)})"
                )
        self.inputs = tuple(inputs)
        self.params = dict(params)
        self.ntop = int(self.params.pop("ntop", 1))
        self.in_place = bool(self.params.pop("in_place", False))
        self.tops = tuple(Top(self, n) for n in range(self.ntop))

    def _top_name(self, top: Top, names: dict, autonames: Counter) -> str:
        if top not in names:
            autonames[top.fn.type_name] += 1
            names[top] = f"{top.fn.type_name}{autonames[top.fn.type_name]}"
        return names[top]

    def _layer_name(self, names: dict, autonames: Counter) -> str:
        if self not in names:
            if self.ntop > 0:
                names[self] = self._top_name(self.tops[0], names, autonames)
            else:
                autonames[self.type_name] += 1
                names[self] = f"{self.type_name}{autonames[self.type_name]}"
        return names[self]

    def _to_proto(self, layers: OrderedDict, names: dict, autonames: Counter) -> None:
        if self in layers:
            return
        bottoms = []
        for inp in self.inputs:
            inp._to_proto(layers, names, autonames)
            bottoms.append(layers[inp.fn].top[inp.n])
        layer = caffe_pb2.LayerParameter()
        layer.type = self.type_name
        layer.bottom.extend(bottoms)
        if self.in_place:
            layer.top.extend(bottoms)
        else:
            layer.top.extend(self._top_name(t, names, autonames) for t in self.tops)
        layer.name = self._layer_name(names, autonames)
        stem = _PARAM_NAMES.get(self.type_name)
        for key, value in self.params.items():
            if key.endswith("param") or stem is None:
                assign_proto(layer, key, value)
                continue
            type_param = getattr(layer, f"{stem}_param")
            if key in type_param.DESCRIPTOR.fields_by_name:
                assign_proto(type_param, key, value)
            else:
                assign_proto(layer, key, value)
        layers[self] = layer


def to_proto(*tops: Top) -> caffe_pb2.NetParameter:
    """A NetParameter with every layer needed to compute ``tops`` (auto names)."""
    layers: OrderedDict = OrderedDict()
    names: dict = {}
    autonames: Counter = Counter()
    for top in tops:
        top._to_proto(layers, names, autonames)
    net = caffe_pb2.NetParameter()
    net.layer.extend(layers.values())
    return net


class NetSpec:
    """Named tops, assigned as attributes (``n.conv1 = L.Convolution(...)``) or
    items (``n["conv1"] = ...``); :meth:`to_proto` writes every layer needed,
    using the assigned names."""

    def __init__(self) -> None:
        super().__setattr__("tops", OrderedDict())

    def __setattr__(self, name: str, value: Any) -> None:
        self.tops[name] = value

    def __getattr__(self, name: str) -> Any:
        try:
            return self.tops[name]
        except KeyError:
            raise AttributeError(f"NetSpec has no top named {name!r}") from None

    def __setitem__(self, key: str, value: Any) -> None:
        self.tops[key] = value

    def __getitem__(self, key: str) -> Any:
        return self.tops[key]

    def to_proto(self) -> caffe_pb2.NetParameter:
        """The NetParameter of every assigned top, in assignment order."""
        names = {value: name for name, value in self.tops.items()}
        layers: OrderedDict = OrderedDict()
        autonames: Counter = Counter()
        for top in self.tops.values():
            top._to_proto(layers, names, autonames)
        net = caffe_pb2.NetParameter()
        net.layer.extend(layers.values())
        return net


class Layers:
    """``L.<Type>(*bottoms, **params)``: a Top, a tuple of Tops (``ntop > 1``)
    or the Function itself (``ntop=0``)."""

    def __getattr__(self, type_name: str) -> Any:
        if type_name.startswith("__"):
            raise AttributeError(type_name)

        def layer_fn(*args: Top, **kwargs: Any) -> Any:
            fn = Function(type_name, args, kwargs)
            if fn.ntop == 0:
                return fn
            if fn.ntop == 1:
                return fn.tops[0]
            return fn.tops

        layer_fn.__name__ = type_name
        return layer_fn


class _ParamEnums:
    def __init__(self, type_name: str) -> None:
        self._message = getattr(caffe_pb2, f"{type_name}Parameter")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._message, name)


class Parameters:
    """``P.<Type>.<CONSTANT>``: an enum value of ``<Type>Parameter``
    (``P.Pooling.MAX``, ``P.Eltwise.SUM``)."""

    def __getattr__(self, type_name: str) -> Any:
        if type_name.startswith("__"):
            raise AttributeError(type_name)
        return _ParamEnums(type_name)


_PARAM_NAMES = param_name_dict()
layers = Layers()
params = Parameters()

__all__ = [
    "Function",
    "Layers",
    "NetSpec",
    "Parameters",
    "Top",
    "assign_proto",
    "layers",
    "param_name_dict",
    "params",
    "to_proto",
]
