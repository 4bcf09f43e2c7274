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

import functools
import importlib
import os
import sys
import traceback
from typing import Any

import numpy as np

from caffepy.errors import CaffepyError, LayerError
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
    except SyntaxError as err:
        raise LayerError(
            layer_param,
            f"syntax error in python_param.module '{pp.module}' at "
            f"{err.filename}:{err.lineno}: {err.msg}",
        ) from None
    except ImportError as err:
        raise LayerError(
            layer_param,
            f"cannot import python_param.module '{pp.module}': {err} "
            "(is it on PYTHONPATH or in the working directory?)",
        ) from None
    except Exception as err:  # noqa: BLE001 - the user's module failed on import
        raise user_error(layer_param, err, "importing", pp.module) from None
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


def _user_frame(err: BaseException, files: set[str]) -> tuple[str, int] | None:
    """(file, line) of the innermost frame of ``err`` in one of ``files`` (the
    user's module), else the innermost frame outside caffepy."""
    frames = traceback.extract_tb(err.__traceback__)
    mine = [f for f in frames if os.path.abspath(f.filename) in files]
    if not mine:
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        mine = [f for f in frames if not os.path.abspath(f.filename).startswith(here)]
    return (mine[-1].filename, mine[-1].lineno) if mine else None


def user_error(
    layer_param: Any, err: BaseException, doing: str, what: str, files=frozenset()
) -> LayerError:
    """A LayerError naming the Python layer and the user's own file:line for an
    exception raised by the user's code (``doing`` ``what``: "in forward", ...)."""
    where = _user_frame(err, set(files))
    at = f" at {where[0]}:{where[1]}" if where else ""
    message = f"{type(err).__name__} {doing} {what}{at}: {err}"
    try:
        return _error_class(type(err))(layer_param, message)
    except TypeError:  # an exception type that takes other arguments
        return LayerError(layer_param, message)


@functools.cache
def _error_class(kind: type) -> type:
    """A LayerError that is also a ``kind``, so pycaffe code catching the user's
    exception type (``except RuntimeError``) still does."""
    try:
        return type(
            f"PythonLayer{kind.__name__}",
            (LayerError, kind),
            {"__str__": Exception.__str__, "__module__": __name__},
        )
    except TypeError:  # instance layouts that cannot be combined
        return LayerError


def _guarded(obj: Layer, name: str, files: set[str]) -> None:
    """Make ``obj.<name>`` turn a non-caffepy exception of the user's code into a
    LayerError naming the layer and the user's file:line."""
    method = getattr(obj, name)

    @functools.wraps(method)
    def call(*args: Any) -> Any:
        try:
            return method(*args)
        except CaffepyError:
            raise
        except Exception as err:  # noqa: BLE001 - any failure of user code
            raise user_error(
                obj.layer_param, err, "in", f"{type(obj).__name__}.{name}", files
            ) from err

    setattr(obj, name, call)


@register_layer_creator("Python")
def create_python_layer(
    layer_param: Any, phase: int = TRAIN, dtype: Any = np.float32
) -> Layer:
    """An instance of the user's class that ``layer_param.python_param`` names.

    The base :class:`~caffepy.Layer` is initialised (pycaffe's ``phase``,
    ``blobs``) and ``param_str`` (also as older Caffe's ``param_str_``) set
    before a user ``__init__`` that takes no arguments runs, as pycaffe's layers
    expect.

    Raises:
        LayerError: a missing module or class, or a class that is not a Layer.
    """
    user_cls = _user_class(layer_param)
    obj = Layer.__new__(user_cls)
    Layer.__init__(obj, layer_param, phase, dtype)
    obj.param_str = layer_param.python_param.param_str
    # NOTE: Caffe before 2016 (and py-faster-rcnn's fork) set ``param_str_``.
    obj.param_str_ = obj.param_str
    init = user_cls.__dict__.get("__init__")
    files = _class_files(user_cls)
    if init is not None and init.__code__.co_argcount == 1:
        try:
            init(obj)  # a user __init__ taking no extra arguments
        except CaffepyError:
            raise
        except Exception as err:  # noqa: BLE001 - any failure of user code
            raise user_error(
                layer_param, err, "in", f"{user_cls.__name__}.__init__", files
            ) from err
    for name in ("setup", "reshape", "forward", "backward"):
        _guarded(obj, name, files)
    return obj


def _class_files(user_cls: type) -> set[str]:
    """The source files of the user's class and its bases outside caffepy."""
    files = set()
    for cls in user_cls.__mro__:
        module = sys.modules.get(cls.__module__)
        path = getattr(module, "__file__", None)
        if path and not cls.__module__.startswith("caffepy"):
            files.add(os.path.abspath(path))
    return files
