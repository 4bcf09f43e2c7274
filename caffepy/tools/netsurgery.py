"""Net surgery: the one home for transformations of a NetParameter.

- :func:`net_state`: the NetState a net is built in, with Caffe's precedence
  (the phase a solver gives < the net's own ``state`` < the solver's
  ``train_state`` / ``test_state``; stages and level from the command line).
- :func:`solver_train_net`, :func:`solver_test_nets`, :func:`solver_net_params`:
  which train and test nets a SolverParameter names (``net``, ``net_param``,
  ``train_net``, ``train_net_param``, ``test_net``, ``test_net_param``), as
  Caffe's ``Solver::InitTrainNet`` and ``Solver::InitTestNets``.
- :func:`data_to_input`: data layers replaced by ``Input`` layers of given shapes
  (``summary``, ``diagnose`` and tests build nets without their databases).
- :class:`OutputMeans`: a net's outputs averaged over test batches (Caffe's
  ``Solver::Test`` and ``caffe test``).
- :data:`LABEL_LAYERS`: the layer types whose ``bottom[1]`` holds class labels.

Paths in a solver (``net: "x.prototxt"``) are relative to the working directory,
as in Caffe.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from caffepy.errors import SolverError
from caffepy.phase import TEST, TRAIN

#: Layer types whose ``bottom[1]`` holds class labels for the scores in ``bottom[0]``.
LABEL_LAYERS = (
    "SoftmaxWithLoss",
    "Accuracy",
    "MultinomialLogisticLoss",
    "InfogainLoss",
    "HingeLoss",
)
#: Layer types that read records from a source and can stand in for ``Input``.
DATA_LAYER_TYPES = ("Data", "ImageData", "HDF5Data", "WindowData")

_TRAIN_FIELDS = ("net", "net_param", "train_net", "train_net_param")


def _pb2() -> Any:
    from caffepy.proto import caffe_pb2

    return caffe_pb2


def class_axis(layer_param: Any) -> int:
    """The class axis of a :data:`LABEL_LAYERS` layer's scores (1 unless the
    layer's ``softmax_param`` / ``accuracy_param`` say otherwise)."""
    if layer_param.type == "SoftmaxWithLoss":
        return layer_param.softmax_param.axis
    if layer_param.type == "Accuracy":
        return layer_param.accuracy_param.axis
    return 1


# -- NetState ---------------------------------------------------------------------
def net_state(
    phase: int,
    own: Any = None,
    override: Any = None,
    *,
    stages: Iterable[str] = (),
    level: int | None = None,
) -> Any:
    """The NetState a solver builds a net in, with Caffe's precedence.

    ``phase`` first, then the net's own ``state`` merged over it, then the
    solver's ``train_state`` / ``test_state`` merged over that (protobuf
    ``MergeFrom``: a field set later wins, stages append), as
    ``Solver::InitTrainNet`` does. ``stages`` and ``level`` (the command line's
    ``--stage`` / ``--level``) are applied last.

    Args:
        phase: ``TRAIN`` or ``TEST``.
        own: the net's own ``NetParameter.state``, or None.
        override: the solver's ``train_state`` or ``test_state[i]``, or None.
        stages: stages to add.
        level: the level to set (None or 0: leave it as merged).

    Returns:
        a new ``caffe_pb2.NetState``.
    """
    state = _pb2().NetState()
    state.phase = int(phase)
    if own is not None:
        state.MergeFrom(own)
    if override is not None:
        state.MergeFrom(override)
    if level:
        state.level = int(level)
    state.stage.extend(stages)
    return state


# -- the nets a solver names ----------------------------------------------------------
@dataclass
class SolverNet:
    """One net a solver names.

    Attributes:
        param: the NetParameter (a copy), its ``state`` set by :func:`net_state`.
        phase: ``TRAIN`` or ``TEST``.
        where: how the solver names it, for the log (``"net file: x.prototxt"``,
            ``"net_param (#0)"``).
        path: the prototxt file it was read from, or None when inline.
    """

    param: Any
    phase: int
    where: str
    path: str | None = None


def read_net_file(path: str, field: str) -> Any:
    """The NetParameter of a net file a solver names in ``field``.

    Raises:
        SolverError: the file does not exist (naming the working directory).
    """
    from caffepy.io.prototxt import read_net

    if not os.path.exists(path):
        raise SolverError(
            f"the solver's {field}: {path!r} does not exist (relative paths are "
            f"resolved against the working directory, {os.getcwd()})"
        )
    return read_net(path)


def _copy(net_param: Any) -> Any:
    out = _pb2().NetParameter()
    out.CopyFrom(net_param)
    return out


def solver_train_net(
    solver_param: Any, *, stages: Iterable[str] = (), level: int | None = None
) -> SolverNet:
    """The train net of a SolverParameter (Caffe's ``Solver::InitTrainNet``).

    Exactly one of ``net``, ``net_param``, ``train_net``, ``train_net_param``
    names it; its state is :func:`net_state` (TRAIN, the net's own state, the
    solver's ``train_state``, then ``stages`` / ``level``).

    Raises:
        SolverError: no train net or more than one; a net file that is missing.
    """
    p = solver_param
    fields = [f for f in _TRAIN_FIELDS if p.HasField(f)]
    if len(fields) != 1:
        raise SolverError(
            "the solver must name exactly one train net with one of net, "
            f"net_param, train_net, train_net_param; got {len(fields)}"
            + (f" ({', '.join(fields)})" if fields else "")
        )
    field = fields[0]
    if field.endswith("_param"):
        param, where, path = _copy(getattr(p, field)), field, None
    else:
        path = getattr(p, field)
        param, where = read_net_file(path, field), f"{field} file: {path}"
    state = net_state(TRAIN, param.state, p.train_state, stages=stages, level=level)
    param.state.CopyFrom(state)
    return SolverNet(param, TRAIN, where, path)


def solver_test_nets(solver_param: Any) -> list[SolverNet]:
    """The test nets of a SolverParameter (Caffe's ``Solver::InitTestNets``).

    First every ``test_net_param``, then every ``test_net`` file, then as many
    copies of the generic ``net`` / ``net_param`` as ``test_iter`` has entries
    left. Test net ``i`` gets :func:`net_state` (TEST, its own state,
    ``test_state[i]`` when given).

    Raises:
        SolverError: ``test_iter`` / ``test_state`` counts that do not match the
            test nets; test nets without a ``test_interval``; a missing file.
    """
    p = solver_param
    generic = p.HasField("net") or p.HasField("net_param")
    n_specific = len(p.test_net_param) + len(p.test_net)
    n_iter = len(p.test_iter)
    if (generic and n_iter < n_specific) or (not generic and n_iter != n_specific):
        raise SolverError(
            f"test_iter must be given once per test net: {n_iter} test_iter for "
            f"{n_specific} test_net/test_net_param"
            + (
                " (plus any number of test nets from the generic net)"
                if generic
                else ""
            )
        )
    n_nets = n_iter if generic else n_specific
    if len(p.test_state) and len(p.test_state) != n_nets:
        raise SolverError(
            f"test_state must be unset or given once per test net: "
            f"{len(p.test_state)} test_state for {n_nets} test nets"
        )
    if n_nets and p.test_interval <= 0:
        raise SolverError(
            f"test_iter is set ({n_nets} test net(s)) but test_interval is not; "
            "set test_interval > 0 (iterations between tests)"
        )
    sources = [(_copy(tp), "test_net_param", None) for tp in p.test_net_param]
    sources += [
        (read_net_file(f, "test_net"), f"test_net file: {f}", f) for f in p.test_net
    ]
    for _ in range(n_nets - len(sources)):
        if p.HasField("net_param"):
            sources.append((_copy(p.net_param), "net_param", None))
        else:
            sources.append((read_net_file(p.net, "net"), f"net file: {p.net}", p.net))
    nets = []
    for i, (param, where, path) in enumerate(sources):
        override = p.test_state[i] if len(p.test_state) else None
        param.state.CopyFrom(net_state(TEST, param.state, override))
        nets.append(SolverNet(param, TEST, f"{where} (#{i})", path))
    return nets


def solver_net_params(
    solver_param: Any, *, stages: Iterable[str] = (), level: int | None = None
) -> tuple[Any, list[Any]]:
    """(train NetParameter, [test NetParameters]) a SolverParameter names.

    Each carries the ``state`` it is to be built in (see :func:`net_state`);
    ``stages`` and ``level`` apply to the train net only, as Caffe's
    ``caffe train --stage/--level``. See :func:`solver_train_net` and
    :func:`solver_test_nets` for the rules and errors.
    """
    train = solver_train_net(solver_param, stages=stages, level=level)
    return train.param, [t.param for t in solver_test_nets(solver_param)]


def inline_train_net(solver_param: Any) -> Any:
    """Make the solver's train net inline: read a ``net`` / ``train_net`` file into
    ``net_param`` (clearing the other train fields) and return that ``net_param``
    for editing in place (freezing layers, lr multipliers).

    The test nets a file-``net`` also named are kept: ``test_iter`` copies of the
    generic net then come from the inline ``net_param`` instead.
    """
    p = solver_param
    if p.HasField("net"):
        net_param = read_net_file(p.net, "net")
    elif p.HasField("train_net"):
        net_param = read_net_file(p.train_net, "train_net")
    elif p.HasField("net_param"):
        net_param = _copy(p.net_param)
    else:
        net_param = _copy(p.train_net_param)
    for f in ("net", "train_net", "train_net_param"):
        p.ClearField(f)
    p.net_param.CopyFrom(net_param)
    return p.net_param


# -- Data -> Input --------------------------------------------------------------------
Shapes = Sequence[Sequence[int]]


def input_shapes(data_shape: Sequence[int], n_tops: int) -> list[tuple[int, ...]]:
    """The Input shapes for a data layer's tops: the batch ``data_shape`` for the
    data, then ``(N,)`` for each label top."""
    data_shape = tuple(int(d) for d in data_shape)
    return [data_shape] + [data_shape[:1]] * (n_tops - 1)


def data_layers(net_param: Any, types: Iterable[str] = DATA_LAYER_TYPES) -> list[Any]:
    """The layers of ``net_param`` that :func:`data_to_input` can replace: those of
    ``types`` with no bottom."""
    types = tuple(types)
    return [lp for lp in net_param.layer if lp.type in types and not len(lp.bottom)]


def data_to_input(
    net_param: Any,
    shapes: Mapping[str, Shapes] | Callable[[Any], Shapes | None],
    types: Iterable[str] = DATA_LAYER_TYPES,
) -> Any:
    """A copy of ``net_param`` with data layers replaced by ``Input`` layers.

    A layer of ``types`` with no bottom is replaced when ``shapes`` gives it
    shapes: the Input layer keeps its name, tops and include/exclude rules, and
    has one ``input_param.shape`` per top. Other layers are copied unchanged, in
    order. The net is not filtered: pass a filtered NetParameter
    (``caffepy.net.filter_net``) to replace only one phase's data layers.

    Args:
        net_param: a NetParameter (upgraded to ``layer``).
        shapes: layer name -> one shape per top (see :func:`input_shapes`), or a
            function of the LayerParameter returning those shapes or None (keep
            the layer).
        types: the data layer types to replace.

    Returns:
        a new NetParameter.
    """
    types = tuple(types)
    lookup = shapes if callable(shapes) else (lambda lp: shapes.get(lp.name))
    out = _copy(net_param)
    del out.layer[:]
    for lp in net_param.layer:
        tops = lookup(lp) if lp.type in types and not len(lp.bottom) else None
        if tops is None:
            out.layer.add().CopyFrom(lp)
            continue
        new = out.layer.add()
        new.name, new.type = lp.name, "Input"
        new.top.extend(lp.top)
        new.include.extend(lp.include)
        new.exclude.extend(lp.exclude)
        for shape in tops:
            new.input_param.shape.add().dim.extend(int(d) for d in shape)
    return out


# -- test outputs ---------------------------------------------------------------------
class OutputMeans:
    """Each element of a net's outputs summed over batches, then averaged, as
    Caffe's ``Solver::Test`` and ``caffe test`` score a net.

    Sums are float64, element by element in batch order.

    Attributes:
        names: the output blob of each element (an output of N values gives N).
        index: each element's index within its blob.
        sizes: blob name -> its number of elements.
    """

    def __init__(self) -> None:
        self.names: list[str] = []
        self.index: list[int] = []
        self.sizes: dict[str, int] = {}
        self._sums: Any = None
        self.batches = 0

    def add(self, net: Any) -> None:
        """Add the current values of ``net.outputs`` (one batch)."""
        import numpy as np

        values = [np.asarray(net.blobs[n].data).ravel() for n in net.outputs]
        flat = np.concatenate(values).astype(np.float64) if values else np.zeros(0)
        if self._sums is None:
            self._sums = flat
            for name, v in zip(net.outputs, values):
                self.sizes[name] = v.size
                self.names.extend([name] * v.size)
                self.index.extend(range(v.size))
        else:
            self._sums += flat
        self.batches += 1

    def means(self, count: int | None = None) -> list[float]:
        """The per-element means: sums / ``count`` (default: the batches added)."""
        if self._sums is None:
            return []
        return [float(v) for v in self._sums / (count or self.batches)]
