"""The ``Python`` layer: a user's own layer class, as pycaffe runs it.

    layer { name: "mine" type: "Python" bottom: "x" top: "y"
            python_param { module: "my_layers" layer: "MyLayer" param_str: "..." } }

``module`` is imported (from sys.path, the working directory first); ``layer``
names a subclass of :class:`caffepy.Layer` implementing setup, reshape, forward
and backward. The instance gets ``param_str``, ``phase`` and ``blobs`` as in pycaffe.
The layer is built by :func:`create_python_layer`, the type's creator (Caffe's
``GetPythonLayer``).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import numpy as np

from caffepy.errors import LayerError
from caffepy.layer import TRAIN, Layer
from caffepy.registry import register_layer, register_layer_creator


@register_layer("Python")
class PythonLayer(Layer):
    """The ``Python`` type in the registry; its instances are the user's class,
    made by :func:`create_python_layer`."""

    def __init__(self, layer_param: Any, phase: int = TRAIN, dtype: Any = np.float32):
        raise LayerError(
            layer_param,
            "a Python layer is an instance of the class its python_param names; "
            "create it with caffepy.registry.create_layer",
        )


def _user_class(layer_param: Any) -> type:
    pp = layer_param.python_param
    if not pp.module or not pp.layer:
        raise LayerError(layer_param, "python_param needs both 'module' and 'layer'")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(pp.module)
    except ImportError as err:
        raise LayerError(
            layer_param,
            f"cannot import python_param.module '{pp.module}': {err} "
            "(is it on PYTHONPATH or in the working directory?)",
        ) from None
    finally:
        if added:
            sys.path.remove(cwd)
    user_cls = getattr(module, pp.layer, None)
    if user_cls is None:
        raise LayerError(layer_param, f"module '{pp.module}' has no class '{pp.layer}'")
    if not (isinstance(user_cls, type) and issubclass(user_cls, Layer)):
        raise LayerError(
            layer_param,
            f"'{pp.module}.{pp.layer}' must be a subclass of caffepy.Layer",
        )
    return user_cls


@register_layer_creator("Python")
def create_python_layer(
    layer_param: Any, phase: int = TRAIN, dtype: Any = np.float32
) -> Layer:
    """An instance of the user's class that ``layer_param.python_param`` names.

    The base :class:`~caffepy.Layer` is initialised (pycaffe's ``phase``,
    ``blobs``) and ``param_str`` set before a user ``__init__`` that takes no
    arguments runs, as pycaffe's layers expect.

    Raises:
        LayerError: a missing module or class, or a class that is not a Layer.
    """
    user_cls = _user_class(layer_param)
    obj = Layer.__new__(user_cls)
    Layer.__init__(obj, layer_param, phase, dtype)
    obj.param_str = layer_param.python_param.param_str
    init = user_cls.__dict__.get("__init__")
    if init is not None and init.__code__.co_argcount == 1:
        init(obj)  # a user __init__ taking no extra arguments
    return obj
