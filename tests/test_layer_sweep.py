"""Every registered layer type has a gradient check or a golden case.

The coverage is read from the sources, so adding a layer without a test fails
here: a type counts as gradient-checked when a ``test_*`` function that runs the
``GradientChecker`` (directly or through a helper in its module) names it, in its
body, its parametrisation or a module-level table or helper it uses; it counts as a
golden case when a prototxt of the Caffe golden cases that the golden tests run
uses it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path

import caffepy
from caffepy import registry
from caffepy.layer import NeuronLayer
from tests.conftest import GOLDEN, ROOT, require_fixtures

#: Types with nothing to check numerically, each with the reason.
NO_GRADIENT = {
    "Accuracy": "a metric, no backward (Caffe's refuses propagate_down)",
    "ArgMax": "not differentiable, no backward",
    "Data": "a source: no bottoms to differentiate",
    "DummyData": "a source: no bottoms to differentiate",
    "HDF5Data": "a source: no bottoms (golden case: tests/test_golden_hdf5.py)",
    "HDF5Output": "no tops, no backward (golden case: tests/test_golden_hdf5.py)",
    "ImageData": "a source: no bottoms to differentiate",
    "Input": "a source: no bottoms to differentiate",
    "MemoryData": "a source: no bottoms to differentiate",
    "WindowData": "a source: no bottoms (tests/data/test_window_data.py)",
    "Silence": "no tops: its backward only zeroes bottom diffs",
    "Python": "the user's layer: its backward is the user's to check",
}

#: The golden case folders that tests/test_golden_layers.py and
#: tests/data/test_golden.py run, and which prototxts in them.
GOLDEN_CASES = {"layers": "*.prototxt", "data": "data_*.prototxt"}

CHECKS = {"check_gradient", "check_gradient_exhaustive", "check_gradient_eltwise"}
TYPE_FIELD = re.compile(r'type:\s*"(\w+)"')


def _strings(nodes: Iterable[ast.AST]) -> set[str]:
    out = set()
    for node in nodes:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                out.add(sub.value)
    return out


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _calls_a_check(node: ast.AST) -> bool:
    return any(
        isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr in CHECKS
        for n in ast.walk(node)
    )


def _module_gradient_types(source: str, known: set[str]) -> set[str]:
    """Layer types named by the gradient-checking tests of one test module."""
    tree = ast.parse(source)
    defs: dict[str, list[ast.AST]] = {}
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.ClassDef)):
            defs.setdefault(stmt.name, []).append(stmt)
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for target in targets:
                for name in _names(target):
                    defs.setdefault(name, []).append(stmt)
    # Functions that run a check, directly or through another module function.
    checking = {name for name, nodes in defs.items() if any(map(_calls_a_check, nodes))}
    grew = True
    while grew:
        grew = False
        for name, nodes in defs.items():
            if name not in checking and any(_names(n) & checking for n in nodes):
                checking.add(name)
                grew = True
    found: set[str] = set()
    for name in checking:
        if not name.startswith("test"):
            continue
        # Everything the test reaches at module level: tables, helpers, cases.
        seen, todo = {name}, [name]
        while todo:
            for node in defs.get(todo.pop(), []):
                for ref in _names(node) - seen:
                    if ref in defs:
                        seen.add(ref)
                        todo.append(ref)
        for text in _strings(n for ref in seen for n in defs[ref]):
            found.update(t for t in TYPE_FIELD.findall(text) if t in known)
            if text in known:
                found.add(text)
    return found


def gradient_checked(known: set[str], tests: Path = ROOT / "tests") -> set[str]:
    """The registered types some test runs the GradientChecker on."""
    found: set[str] = set()
    for path in sorted(tests.rglob("*.py")):
        source = path.read_text()
        if any(check in source for check in CHECKS):
            found |= _module_gradient_types(source, known)
    return found


def golden_cased(known: set[str], golden: Path = GOLDEN) -> set[str]:
    """The registered types used by a Caffe golden case that the tests run."""
    found: set[str] = set()
    for folder, pattern in GOLDEN_CASES.items():
        for path in sorted((golden / folder).glob(pattern)):
            found.update(t for t in TYPE_FIELD.findall(path.read_text()) if t in known)
    return found


def uncovered() -> list[str]:
    """Registered types with neither a gradient check, a golden case nor a reason."""
    known = set(caffepy.layer_type_list())
    covered = gradient_checked(known) | golden_cased(known) | set(NO_GRADIENT)
    return sorted(known - covered)


def test_every_layer_type_has_a_gradient_check_or_a_golden_case():
    require_fixtures()
    missing = uncovered()
    assert not missing, (
        f"layer types without a gradient check or a golden case: {missing}; add a "
        "GradientChecker test (tests/layers/) or list the type in NO_GRADIENT with "
        "the reason"
    )


def test_no_gradient_allowlist_names_registered_types():
    assert set(NO_GRADIENT) <= set(caffepy.layer_type_list())


def test_a_new_untested_layer_type_is_reported(monkeypatch):
    require_fixtures()

    class SweepProbeLayer(NeuronLayer):
        """A layer nobody tests."""

    monkeypatch.setitem(registry._LAYERS, "SweepProbe", SweepProbeLayer)
    assert "SweepProbe" in uncovered()


def test_a_gradient_test_counts_through_helpers_and_tables():
    source = """
CASES = {"a": 'type: "TanH"', "b": 'type: "Sigmoid"'}
def _check(text):
    GradientChecker().check_gradient_eltwise(layer_from_text(text), [], [])
def test_forward():
    run('type: "ReLU"')
def test_gradient(name):
    _check(CASES[name])
@pytest.mark.parametrize("kind", ["Convolution"])
def test_kind_gradient(kind):
    GradientChecker().check_gradient(build(kind), [], [])
"""
    known = {"TanH", "Sigmoid", "ReLU", "Convolution", "Pooling"}
    found = _module_gradient_types(source, known)
    assert found == {"TanH", "Sigmoid", "Convolution"}
