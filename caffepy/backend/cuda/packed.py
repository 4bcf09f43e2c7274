"""The solver update over every learnable parameter in one launch.

:class:`PackedParams` moves the device copies of the parameters' data, diffs and
solver history into flat buffers (one each), so one kernel
(:func:`caffepy.backend.cuda.kernels.solver.packed_update`) regularises,
computes and applies the update of all of them, with per-parameter ``lr_mult``
and decay vectors and a device-resident array of the per-iteration scalars
(rate, Adam's bias correction), which a CUDA graph can replay with new values.

The blobs keep working as before: each SyncedMemory's device buffer becomes a
view into the flat buffer (Caffe's ``SyncedMemory::set_gpu_data``), the history
arrays the solverstate reads become views too. Packing is checked before every
update and redone when a blob or a history array was replaced.
"""

from __future__ import annotations

import itertools
import math
import os
import weakref
from typing import Any

import numpy as np

from caffepy.backend.cuda.kernels import solver as K

_RULES = {
    "SGD": K.SGD,
    "Nesterov": K.NESTEROV,
    "AdaGrad": K.ADAGRAD,
    "RMSProp": K.RMSPROP,
    "AdaDelta": K.ADADELTA,
    "Adam": K.ADAM,
}


def enabled() -> bool:
    """False when ``CAFFEPY_PACKED_UPDATE=0`` (the per-parameter path, for checks)."""
    return os.environ.get("CAFFEPY_PACKED_UPDATE", "1") not in ("", "0")


def rule_of(solver: Any) -> int | None:
    """The packed rule code of ``solver``, or None when the packed kernel does not
    implement its update (a subclass with its own rule, an unknown type)."""
    from caffepy.solvers import registry

    code = _RULES.get(getattr(solver, "type_name", None) or "")
    if code is None:
        return None
    try:
        cls = registry.solver_class(solver.type_name)
    except Exception:  # noqa: BLE001 - an unregistered type: not ours
        return None
    if type(solver).compute_update_value is not cls.compute_update_value:
        return None
    if type(solver).update_param is not cls.update_param:
        return None
    return code


def _set_gpu(mem: Any, view: Any) -> None:
    # NOTE: Caffe's SyncedMemory::set_gpu_data: the device buffer becomes a view
    # of the flat buffer; the head and the host copy are kept.
    mem._gpu = view


def _forget_views(nets: list[Any], mems: set[int]) -> None:
    """Drop the blobs' cached device views of the rebound memories (share_data
    with itself is Blob's public way to rebuild its views)."""
    for net in nets:
        for layer in net.layers:
            for blob in layer.blobs:
                if id(blob.data_mem) in mems:
                    blob.share_data(blob)
                if id(blob.diff_mem) in mems:
                    blob.share_diff(blob)


class PackedParams:
    """Flat device buffers of a solver's learnable parameters (lr_mult != 0).

    Args:
        solver: a :class:`~caffepy.solvers.solver.Solver` in GPU mode.
        rule: its rule code (:func:`rule_of`).
    """

    _generations = itertools.count(1)

    def __init__(self, solver: Any, rule: int):
        #: distinct for every packing (a CUDA graph of an older one is stale)
        self.generation = next(self._generations)
        ops = solver.ops
        xp = ops.xp
        self.rule = rule
        self.solver = weakref.ref(solver)
        self.ids = [i for i, m in enumerate(solver._lr_mult) if m != 0]
        dtype = solver.dtype
        sizes = [solver._params[i].count for i in self.ids]
        offsets = np.zeros(len(sizes) + 1, np.int64)
        np.cumsum(sizes, out=offsets[1:])
        self.n = int(offsets[-1])
        self.offsets = ops.from_host(offsets)
        self.lr_mult = ops.from_host(
            np.array([solver._lr_mult[i] for i in self.ids], dtype)
        )
        self.decay = ops.from_host(
            np.array([solver.local_decay(i) for i in self.ids], dtype)
        )
        self.scalars = xp.zeros((5,), dtype)
        self._written = [None] * 5
        self.w = xp.empty((max(self.n, 1),), dtype)
        self.g = xp.empty((max(self.n, 1),), dtype)
        self.h1 = xp.empty((max(self.n, 1),), dtype)
        two = solver.history_sets > 1
        # NOTE: a distinct (unused) array when there is one history set: the
        # simulator copies each argument in and out, so an alias would be undone.
        self.h2 = xp.empty((max(self.n, 1) if two else 1,), dtype)
        nparams = len(solver._params)
        self.w_views: list[Any] = []
        self.g_views: list[Any] = []
        self.h_views: list[tuple[int, Any]] = []
        self.w_mems: list[Any] = []
        self.g_mems: list[Any] = []
        rebound: set[int] = set()
        for j, i in enumerate(self.ids):
            blob = solver._params[i]
            lo, hi = int(offsets[j]), int(offsets[j + 1])
            for flat, mem, views, mems in (
                (self.w, blob.data_mem, self.w_views, self.w_mems),
                (self.g, blob.diff_mem, self.g_views, self.g_mems),
            ):
                cur = mem.gpu_data()  # allocated and current on the device
                view = flat[lo:hi]
                view[...] = cur[: hi - lo]
                _set_gpu(mem, view)
                views.append(view)
                mems.append(mem)
                rebound.add(id(mem))
            for k, flat in enumerate((self.h1, self.h2) if two else (self.h1,)):
                slot = k * nparams + i
                view = flat[lo:hi]
                view[...] = solver.history[slot].reshape(-1)
                solver.history[slot] = view.reshape(blob.shape)
                self.h_views.append((slot, solver.history[slot]))
        _forget_views([solver.net, *solver.test_nets], rebound)
        self._params = [solver._params[i] for i in self.ids]

    def bound(self, solver: Any) -> bool:
        """True while every parameter and history array still lives in the flat
        buffers (a reshape, ``share_data`` or a replaced history array unbinds)."""
        params = solver._params
        for j, i in enumerate(self.ids):
            blob = params[i]
            if (
                blob.data_mem is not self.w_mems[j]
                or blob.diff_mem is not self.g_mems[j]
            ):
                return False
            # gpu_data() also brings a host write (pycaffe) to the device view
            if self.w_mems[j].gpu_data() is not self.w_views[j]:
                return False
            if self.g_mems[j].gpu_data() is not self.g_views[j]:
                return False
        return all(solver.history[s] is v for s, v in self.h_views)

    def write_scalars(self, solver: Any, rate: float) -> None:
        """The per-iteration scalars into the device array (only those that
        changed; a fill launch each, no copy)."""
        p, s = solver.param, solver.scalar
        if self.rule == K.RMSPROP:
            mom = s(p.rms_decay)
        else:
            mom = s(p.momentum)
        corr = s(1)
        if self.rule == K.ADAM:
            t = solver.iter + 1
            b1, b2 = float(s(p.momentum)), float(s(p.momentum2))
            corr = s(math.sqrt(1.0 - b2**t) / (1.0 - b1**t))
        values = (s(rate), mom, s(p.delta), s(p.momentum2), corr)
        for k, v in enumerate(values):
            if self._written[k] != v:
                self.scalars[k : k + 1].fill(v)
                self._written[k] = v

    def launch(self, l1: bool) -> None:
        """The update kernel over every packed parameter (reads the scalars)."""
        from caffepy.backend.cuda.kernels.launch import launch

        launch(K.packed_update, self.n, self.rule, self.offsets, len(self.ids),
               self.w, self.g, self.h1, self.h2, self.lr_mult, self.decay, l1,
               self.scalars)  # fmt: skip

    def mark_device_heads(self) -> None:
        """The kernel wrote data and diffs: the device is their head."""
        for mem in self.w_mems:
            mem.mutable_gpu_data()
        for mem in self.g_mems:
            mem.mutable_gpu_data()


_packs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def packed_for(solver: Any) -> PackedParams | None:
    """The solver's packed parameters (packed now if needed), or None when the
    update must take the per-parameter path."""
    if not enabled() or solver.param.regularization_type not in ("L1", "L2"):
        return None
    rule = rule_of(solver)
    if rule is None or solver.dtype not in (np.float32, np.float64):
        return None
    for i, m in enumerate(solver._lr_mult):
        blob = solver._params[i]
        if m != 0 and (
            blob.data_mem.size != blob.count or blob.diff_mem.size != blob.count
        ):
            return None  # a buffer larger than its blob (reshaped smaller)
    pack = _packs.get(solver)
    if pack is None or not pack.bound(solver):
        pack = _packs[solver] = PackedParams(solver, rule)
    return pack


def update_all(solver: Any, rate: float) -> bool:
    """Normalise and update every learnable parameter in one launch; False (and
    nothing done) where the per-parameter path must run instead."""
    pack = packed_for(solver)
    if pack is None:
        return False
    p = solver.param
    if p.iter_size != 1:
        scale = solver.scalar(1.0) / solver.scalar(p.iter_size)
        pack.g *= scale
    pack.write_scalars(solver, rate)
    pack.launch(p.regularization_type == "L1")
    pack.mark_device_heads()
    return True
