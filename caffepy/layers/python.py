"""The ``Python`` layer: a user's own layer class, as pycaffe runs it.

    layer { name: "mine" type: "Python" bottom: "x" top: "y"
            python_param { module: "my_layers" layer: "MyLayer" param_str: "..." } }

``module`` is imported (from sys.path, the working directory first); ``layer``
names a subclass of :class:`caffepy.Layer` implementing setup, reshape, forward
and backward. The instance gets ``param_str``, ``phase`` and ``blobs`` as in pycaffe.
"""

import importlib
import os
import sys

import numpy as np

from caffepy.errors import LayerError
from caffepy.layer import TRAIN, Layer
from caffepy.registry import register_layer


@register_layer("Python")
class PythonLayer(Layer):
    """Factory: creating it returns an instance of the user's class."""

    def __new__(cls, layer_param, phase=TRAIN, dtype=np.float32):
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
            raise LayerError(
                layer_param, f"module '{pp.module}' has no class '{pp.layer}'"
            )
        if not (isinstance(user_cls, type) and issubclass(user_cls, Layer)):
            raise LayerError(
                layer_param,
                f"'{pp.module}.{pp.layer}' must be a subclass of caffepy.Layer",
            )
        obj = Layer.__new__(user_cls)
        Layer.__init__(obj, layer_param, phase, dtype)
        obj.param_str = pp.param_str
        init = user_cls.__dict__.get("__init__")
        if init is not None:  # a user __init__ taking no extra arguments
            init(obj) if init.__code__.co_argcount == 1 else None
        return obj
