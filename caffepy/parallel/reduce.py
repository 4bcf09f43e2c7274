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
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from caffepy.parallel.comm import Communicator

_ACTIONS = ("stop", "snapshot")


class GradientReducer:
    """Averages the learnable parameters' gradients of a solver's train net over
    the ranks of ``comm``; install with :meth:`attach`.

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
        for k, name in enumerate(_ACTIONS):
            buf[self.total + k] = 1.0 if name in actions else 0.0
        self.reductions += 1
        self.comm.allreduce_sum(
            buf, f"the gradient reduction #{self.reductions} (ranks out of step)"
        )
        # NOTE: scale by 1/N in the nets' float type, as caffe_gpu_scal does.
        scale = self.dtype.type(1.0) / self.dtype.type(self.comm.size)
        off = 0
        for blob, n in zip(self.params, self.counts):
            diff = blob.diff
            np.multiply(buf[off : off + n], scale, out=diff.reshape(-1))
            off += n
        self.seconds += time.perf_counter() - t0
        return {name for k, name in enumerate(_ACTIONS) if buf[self.total + k] > 0}

    def attach(self, solver: Any) -> None:
        """Reduce ``solver``'s gradients in every iteration, after backward and
        before the update (a pycaffe ``on_gradients_ready`` callback), and make
        the ranks agree on the requested actions: all stop together; only rank 0
        snapshots."""

        def on_start() -> None:
            pass

        def on_gradients_ready() -> None:
            agreed = self.reduce(solver._take_actions())
            for action in _ACTIONS:
                if action in agreed and (action == "stop" or self.comm.rank == 0):
                    solver.request_action(action)

        solver.add_callback(on_start, on_gradients_ready)


def broadcast_params(comm: Communicator, net: Any) -> None:
    """Give every rank rank 0's weights (every parameter blob of ``net``), as
    Caffe's solvers start from the root solver's."""
    for i, blob in enumerate(net.learnable_params):
        data = np.ascontiguousarray(blob.data)
        comm.bcast(data, f"the broadcast of the initial weights (blob {i})")
        blob.data[...] = data
