"""Gradient reduction across ranks, as Caffe's multi-GPU solvers do it.

Caffe's ``NCCL::on_gradients_ready`` sums every learnable parameter's gradient
over the solvers (``ncclAllReduce(..., ncclSum)``) and scales the sum by
``1 / solver_count``; it runs after forward/backward and before
``ApplyUpdate`` (which divides by ``iter_size`` afterwards). Each rank's loss is
already normalised by its own batch, so N ranks of batch B take the same step as
one process with ``iter_size: N`` over the same records.

The diffs travel in one flat buffer (one collective per iteration, not one per
parameter). Two more elements carry the actions the ranks were asked for
(SIGINT/SIGHUP: stop, snapshot), so every rank stops at the same iteration and
rank 0 alone snapshots.

Two ways, chosen by the solver's ``layer_wise_reduce`` (see
:func:`choose_reducer`): :class:`GradientReducer` reduces the whole net in one
collective once backward is done; :class:`LayerwiseReducer` starts a
non-blocking reduction of each layer's gradients as soon as that layer's
backward is done, so the reduction overlaps the backward of the layers below,
and waits for them all before the update (Caffe's ``NCCL::run(layer)``). Both
give the same numbers. A :class:`Reducer` is what the training needs of either;
:mod:`caffepy.parallel.nccl` has the GPU one.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from caffepy.parallel.comm import Communicator

_ACTIONS = ("stop", "snapshot")


class Reducer:
    """Averages a solver's gradients over the ranks before every update.

    Subclasses implement :meth:`attach`; ``reductions`` counts the iterations
    reduced and ``seconds`` the time the reduction held up training.
    """

    reductions = 0
    seconds = 0.0

    def attach(self, solver: Any) -> None:
        """Install the reduction in ``solver`` (its pycaffe callbacks)."""
        raise NotImplementedError

    @staticmethod
    def _apply(solver: Any, agreed: set[str], rank: int) -> None:
        """Every rank stops when any asked; rank 0 alone snapshots."""
        for action in _ACTIONS:
            if action in agreed and (action == "stop" or rank == 0):
                solver.request_action(action)


class GradientReducer(Reducer):
    """Averages the learnable parameters' gradients of a solver's train net over
    the ranks of ``comm`` in one collective per iteration; install with
    :meth:`attach`.

    Args:
        comm: the ranks training together.
        params: the learnable parameter Blobs, in the same order on every rank.
        dtype: the nets' float type (the buffer's).
    """

    def __init__(self, comm: Communicator, params: list[Any], dtype: Any) -> None:
        self.comm = comm
        self.params = list(params)
        self.dtype = np.dtype(dtype)
        self.counts = [int(b.count) for b in self.params]
        self.total = sum(self.counts)
        self.buffer = np.zeros(self.total + len(_ACTIONS), self.dtype)
        self.reductions = 0
        #: seconds spent in reduce() (copies, the collective and its wait)
        self.seconds = 0.0

    def reduce(self, actions: set[str] | frozenset[str] = frozenset()) -> set[str]:
        """Replace each gradient by its mean over the ranks; return the actions
        any rank asked for (``actions`` being this rank's)."""
        t0 = time.perf_counter()
        buf, off = self.buffer, 0
        for blob, n in zip(self.params, self.counts):
            buf[off : off + n] = blob.diff.reshape(-1)
            off += n
        _put_actions(buf, self.total, actions)
        self.reductions += 1
        self.comm.allreduce_sum(
            buf, f"the gradient reduction #{self.reductions} (ranks out of step)"
        )
        _scatter_mean(buf, self.params, self.counts, 0, self.comm.size, self.dtype)
        self.seconds += time.perf_counter() - t0
        return _get_actions(buf, self.total)

    def attach(self, solver: Any) -> None:
        """Reduce ``solver``'s gradients in every iteration, after backward and
        before the update (a pycaffe ``on_gradients_ready`` callback), and make
        the ranks agree on the requested actions: all stop together; only rank 0
        snapshots."""

        def on_start() -> None:
            pass

        def on_gradients_ready() -> None:
            agreed = self.reduce(solver._take_actions())
            self._apply(solver, agreed, self.comm.rank)

        solver.add_callback(on_start, on_gradients_ready)


def _put_actions(buf: np.ndarray, at: int, actions: set[str] | frozenset[str]) -> None:
    for k, name in enumerate(_ACTIONS):
        buf[at + k] = 1.0 if name in actions else 0.0


def _get_actions(buf: np.ndarray, at: int) -> set[str]:
    return {name for k, name in enumerate(_ACTIONS) if buf[at + k] > 0}


def _scatter_mean(
    buf: np.ndarray, params: list[Any], counts: list[int], off: int, size: int, dtype
) -> None:
    """Write ``buf[off:]`` / ``size`` into the params' diffs, in order."""
    # NOTE: scale by 1/N in the nets' float type, as caffe_gpu_scal does.
    scale = dtype.type(1.0) / dtype.type(size)
    for blob, n in zip(params, counts):
        np.multiply(buf[off : off + n], scale, out=blob.diff.reshape(-1))
        off += n


def ready_layers(net: Any) -> list[int]:
    """For each learnable parameter of ``net``, the layer after whose backward
    its gradient is complete: the lowest layer that uses it (a shared parameter
    gathers gradient from every layer sharing it)."""
    learnable: dict[tuple[int, int], int] = {}
    ready: list[int] = []
    # NOTE: net.param_owners lists (layer, param, owner) in build order; the
    # owners (owner None) in the order of net.learnable_params.
    for li, j, owner in net.param_owners:
        if owner is None:
            learnable[(li, j)] = len(ready)
            ready.append(li)
        else:
            k = learnable[tuple(owner)]
            ready[k] = min(ready[k], li)
    return ready


class LayerwiseReducer(Reducer):
    """Caffe's ``layer_wise_reduce``: a non-blocking reduction of each layer's
    gradients starts as soon as its backward is done; the update waits for all.

    The parameters are laid out in one buffer in the order their gradients
    complete (the top layer's first), one chunk per layer, so each chunk is a
    contiguous slice reduced by one ``Iallreduce``; the last chunk also carries
    the actions. Between layers the started reductions are polled, as MPI
    moves a non-blocking collective along only inside MPI calls.

    Args:
        comm: the ranks training together.
        net: the solver's train net.
        dtype: the nets' float type.
    """

    def __init__(self, comm: Communicator, net: Any, dtype: Any) -> None:
        self.comm = comm
        self.dtype = np.dtype(dtype)
        ready = ready_layers(net)
        order = sorted(range(len(ready)), key=lambda i: -ready[i])
        self.params = [net.learnable_params[i] for i in order]
        self.counts = [int(b.count) for b in self.params]
        self.total = sum(self.counts)
        self.buffer = np.zeros(self.total + len(_ACTIONS), self.dtype)
        # layer -> (first param, end param, buffer start, buffer end)
        self.chunks: dict[int, tuple[int, int, int, int]] = {}
        offsets = np.concatenate([[0], np.cumsum(self.counts, dtype=np.int64)])
        k = 0
        while k < len(order):
            layer, end = ready[order[k]], k
            while end < len(order) and ready[order[end]] == layer:
                end += 1
            self.chunks[layer] = (k, end, int(offsets[k]), int(offsets[end]))
            k = end
        self.last = min(self.chunks, default=0)
        self.chunks.setdefault(self.last, (0, 0, 0, 0))
        self.pending: list[Any] = []
        self.reductions = 0
        self.seconds = 0.0
        self._solver: Any = None

    def on_layer(self, li: int) -> None:
        """Layer ``li``'s backward is done: start its chunk; poll the others."""
        t0 = time.perf_counter()
        for pending in self.pending:
            self.comm.test(pending)
        chunk = self.chunks.get(li)
        if chunk is not None:
            first, end, start, stop = chunk
            buf = self.buffer
            off = start
            for blob, n in zip(self.params[first:end], self.counts[first:end]):
                buf[off : off + n] = blob.diff.reshape(-1)
                off += n
            if li == self.last:
                actions = self._solver._take_actions() if self._solver else set()
                _put_actions(buf, self.total, actions)
                stop = len(buf)
            what = (
                f"the gradient reduction #{self.reductions + 1} of layer {li} "
                "(ranks out of step)"
            )
            self.pending.append(self.comm.start_allreduce_sum(buf[start:stop], what))
        self.seconds += time.perf_counter() - t0

    def finish(self) -> set[str]:
        """Wait for every chunk; write the means into the diffs; return the
        actions any rank asked for."""
        t0 = time.perf_counter()
        for pending in self.pending:
            self.comm.wait(pending)
        self.pending = []
        self.reductions += 1
        _scatter_mean(
            self.buffer, self.params, self.counts, 0, self.comm.size, self.dtype
        )
        self.seconds += time.perf_counter() - t0
        return _get_actions(self.buffer, self.total)

    def attach(self, solver: Any) -> None:
        """Start the chunks after each layer's backward; wait before the update."""
        self._solver = solver

        def on_start() -> None:
            pass

        def on_gradients_ready() -> None:
            self._apply(solver, self.finish(), self.comm.rank)

        solver.add_after_backward(self.on_layer)
        solver.add_callback(on_start, on_gradients_ready)


#: The host (MPI) reduction used when the solver file does not set
#: ``layer_wise_reduce``: whole-net, measured faster on CPUs (bench/README.md's
#: MPI section: MPI moves a non-blocking reduction along only when polled, and
#: the polls between layers are few, while each chunk costs a collective).
LAYER_WISE_DEFAULT = False


def layer_wise(param: Any, default: bool = LAYER_WISE_DEFAULT) -> bool:
    """A SolverParameter's ``layer_wise_reduce``, or ``default`` where the file
    does not set it (the NCCL reducer passes Caffe's default, true: NCCL runs
    on its own as the layers below compute)."""
    if param.HasField("layer_wise_reduce"):
        return bool(param.layer_wise_reduce)
    return default


def choose_reducer(comm: Communicator, solver: Any) -> Reducer:
    """The solver's host (MPI) reducer: layer-wise or whole-net, as
    :func:`layer_wise` says."""
    if layer_wise(solver.param):
        return LayerwiseReducer(comm, solver.net, solver.dtype)
    return GradientReducer(comm, solver.net.learnable_params, solver.dtype)


def broadcast_params(comm: Communicator, net: Any) -> None:
    """Give every rank rank 0's weights (every parameter blob of ``net``), as
    Caffe's solvers start from the root solver's."""
    for i, blob in enumerate(net.learnable_params):
        data = np.ascontiguousarray(blob.data)
        comm.bcast(data, f"the broadcast of the initial weights (blob {i})")
        blob.data[...] = data
