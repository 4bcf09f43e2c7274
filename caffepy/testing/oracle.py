"""Optional test oracles (PyTorch) imported on first use, never at module import.

A test module writes ``torch = lazy_module("torch")`` and uses ``torch.softmax(...)``
or ``F = torch.nn.functional`` as usual. Nothing is imported until an attribute is
*called*, so the module's gradient, error and in-place tests run where torch is
absent (or blocked with ``pytest --no-torch``); a test that calls the oracle is
skipped there instead.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

__all__ = ["LazyModule", "lazy_module"]


class LazyModule:
    """A module, or an attribute path inside one, resolved when it is called.

    Args:
        name: the module to import (e.g. ``"torch"``).
        attrs: the attribute path below it (``("nn", "functional")``).
    """

    __slots__ = ("_name", "_attrs")

    def __init__(self, name: str, attrs: tuple[str, ...] = ()) -> None:
        self._name = name
        self._attrs = attrs

    def __getattr__(self, attr: str) -> Any:
        # NOTE: private and dunder names are refused so that pytest's and
        # inspect's probing (``_pytestfixturefunction``, ``__wrapped__``) of module
        # globals neither imports the module nor mistakes the proxy for a fixture.
        if attr.startswith("_"):
            raise AttributeError(attr)
        module = sys.modules.get(self._name)
        if module is not None:  # already imported: hand out the real object
            return getattr(self.resolve(), attr)
        return LazyModule(self._name, self._attrs + (attr,))

    def resolve(self) -> Any:
        """Import the module and walk the attribute path (skips the test if absent)."""
        obj = _import_or_skip(self._name)
        for attr in self._attrs:
            obj = getattr(obj, attr)
        return obj

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        args = tuple(a.resolve() if isinstance(a, LazyModule) else a for a in args)
        kwargs = {
            k: v.resolve() if isinstance(v, LazyModule) else v
            for k, v in kwargs.items()
        }
        return self.resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<lazy {'.'.join((self._name, *self._attrs))}>"


def lazy_module(name: str) -> LazyModule:
    """A proxy for module ``name`` that imports it on first call (see module doc)."""
    return LazyModule(name)


def _import_or_skip(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        try:
            import pytest
        except ImportError:
            raise exc from None
        pytest.skip(f"oracle {name!r} is not available: {exc}")
