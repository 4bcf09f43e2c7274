"""A whole training iteration captured once as a CUDA graph and replayed.

Caffe's nets have fixed shapes, so one GPU training iteration launches the same
kernels on the same buffers every time: the parameter diffs zeroed, forward and
backward of every layer after the data layers, and the update of every
parameter in one launch (:mod:`caffepy.backend.cuda.packed`). Replaying that
from a CUDA graph costs one launch instead of one Python launch per kernel.

Per iteration (:func:`run_iteration`, called by the solver's step):

1. the source layers (Data, Input: the leading layers without bottoms) run
   eagerly and their tops are copied to the device into their fixed buffers
   (the batch in);
2. the learning rate and the update rule's scalars are written into a device
   array the graph reads;
3. the graph replays; the loss comes back from a device scalar (one copy out).

The first eligible iteration runs eagerly (numba compiles its kernels, layers
allocate their scratch buffers, the parameters are packed), the next one
captures and replays. The graph is dropped and the iteration runs eagerly when
the source tops change shape, and for good when capture fails. Iterations
that display, and solvers that cannot be captured (:func:`blockers`), always
run eagerly.

Capture needs: kernels and CuPy work on one captured stream (``launch`` uses
the current CuPy stream through ``cuda.external_stream``), GEMMs through
libcublas directly (:mod:`caffepy.backend.cuda.cublas`), no host
synchronisation (the loss stays a device scalar while :func:`capturing`), and
the memory allocated during capture kept for the graph's life (a private
CuPy pool whose blocks are never returned).

``CAFFEPY_CUDA_GRAPH=0`` or :func:`caffepy.backend.mode.set_cuda_graph`
turns it off. Under numba's CUDA simulator there are no graphs: every
iteration runs eagerly.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from caffepy import syncedmem
from caffepy.backend.cuda import memory, packed

log = logging.getLogger("caffepy")

#: Layer types that cannot be replayed: they run Python per iteration.
UNCAPTURABLE = {"Python"}
# NOTE: Dropout draws its mask on the host and uploads it every forward; a
# graph would replay one mask forever.
HOST_RANDOM = {"Dropout"}

_capturing = False
_direct_cublas_env: bool | None = None


def capturing() -> bool:
    """True while a training iteration is being captured."""
    return _capturing


def direct_cublas() -> bool:
    """True when GEMMs must go through libcublas directly: during capture on a
    GPU, or always with ``CAFFEPY_CUBLAS_DIRECT=1`` (never on the simulator)."""
    global _direct_cublas_env
    if memory.simulated():
        return False
    if _capturing:
        return True
    if _direct_cublas_env is None:
        import os

        _direct_cublas_env = os.environ.get("CAFFEPY_CUBLAS_DIRECT", "0") not in (
            "",
            "0",
        )
    return _direct_cublas_env


def source_layer_count(net: Any) -> int:
    """How many leading layers have no bottoms (data layers: run eagerly)."""
    k = 0
    for bottoms in net.bottom_vecs:
        if bottoms:
            break
        k += 1
    return k


def layer_blockers(net: Any, ops: Any) -> list[str]:
    """Why the layers after the source layers cannot be captured (empty: they can)."""
    reasons = []
    for layer in net.layers[source_layer_count(net) :]:
        what = f"layer '{layer.name}' ({layer.type})"
        if layer.type in UNCAPTURABLE:
            reasons.append(f"{what} runs Python code")
        elif layer.type in HOST_RANDOM:
            reasons.append(f"{what} draws its random mask on the host")
        elif not ops.supports(layer):
            reasons.append(f"{what} falls back to the CPU")
    return reasons


def blockers(solver: Any, backend_reason: str | None = None) -> list[str]:
    """Why ``solver``'s iterations cannot be replayed from a CUDA graph: the
    solver's reasons (:func:`solver_blockers`) and its layers'
    (:func:`layer_blockers`); empty when it can be."""
    return solver_blockers(solver, backend_reason) + layer_blockers(
        solver.net, solver.ops
    )


def solver_blockers(solver: Any, backend_reason: str | None = None) -> list[str]:
    """Why ``solver``'s iterations cannot be replayed from a CUDA graph.

    Args:
        solver: a Solver in GPU mode.
        backend_reason: why the graph backend is unavailable (the simulator,
            an old CuPy), or None.

    Returns:
        Reasons, one short phrase each; empty when the graph can be used.
    """
    from caffepy.backend.mode import cuda_graph_allowed

    reasons = []
    if not cuda_graph_allowed():
        reasons.append("CUDA graphs are turned off (CAFFEPY_CUDA_GRAPH=0)")
    if backend_reason:
        reasons.append(backend_reason)
    p = solver.param
    if p.iter_size != 1:
        reasons.append(f"iter_size is {p.iter_size} (several passes per update)")
    if p.clip_gradients >= 0:
        reasons.append("clip_gradients reads the gradient norm on the host")
    if p.debug_info:
        reasons.append("debug_info reads blobs on the host")
    if getattr(solver, "_pycaffe_callbacks", None) or getattr(
        solver, "_after_backward", None
    ):
        reasons.append("callbacks run between the backward pass and the update")
    if not packed.enabled() or packed.rule_of(solver) is None:
        reasons.append(f"the {solver.type_name} update has no one-launch kernel")
    return reasons


class CupyGraphs:
    """Capture and replay with CuPy's stream capture (the real GPU backend)."""

    def __init__(self):
        import cupy

        self.cupy = cupy
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.pool = cupy.cuda.MemoryPool()
        self._kept: list[Any] = []

    @staticmethod
    def unavailable() -> str | None:
        """Why graphs cannot be used here, or None."""
        if memory.simulated():
            return "numba's CUDA simulator has no CUDA graphs"
        try:
            import cupy
        except ImportError:
            return "CuPy is not installed"
        if not hasattr(cupy.cuda.Stream, "begin_capture"):
            return "this CuPy has no stream capture"
        return None

    def capture(self, body: Any) -> Any:
        """Capture ``body()`` on the private stream; return the graph."""
        cupy = self.cupy
        kept: list[Any] = []

        def alloc(nbytes: int) -> Any:
            # NOTE: the graph writes into these blocks at every replay: they
            # must never go back to a pool another array could take them from.
            ptr = self.pool.malloc(nbytes)
            kept.append(ptr)
            return ptr

        from caffepy.backend.cuda import cublas

        # NOTE: cublasCreate and its workspace allocate and synchronise: never
        # inside a capture.
        cublas.handle()
        self.stream.wait_event(cupy.cuda.Stream.null.record())
        mode = getattr(cupy.cuda.runtime, "streamCaptureModeRelaxed", None)
        with self.stream, cupy.cuda.using_allocator(alloc):
            if mode is None:
                self.stream.begin_capture()
            else:
                self.stream.begin_capture(mode)
            try:
                body()
            finally:
                graph = self.stream.end_capture()
        # the previous graph is dropped when a new one is captured (shapes
        # changed); work on the default stream is ordered after its last replay
        # (launch), so its blocks can go back to the private pool
        self._kept = [kept]
        return graph

    def launch(self, graph: Any) -> None:
        cupy = self.cupy
        self.stream.wait_event(cupy.cuda.Stream.null.record())
        graph.launch(self.stream)
        cupy.cuda.Stream.null.wait_event(self.stream.record())

    def read(self, scalar: Any) -> float:
        return float(scalar.get())


class IterationGraph:
    """The captured iteration of one solver, and its bookkeeping.

    Args:
        solver: the Solver (held weakly).
        backend: capture/launch/read provider (:class:`CupyGraphs`; tests pass
            a fake that replays the captured Python body).

    Attributes:
        captures, replays, eager: counts of what the iterations did.
        failed: why capture failed (then every iteration runs eagerly), or None.
    """

    def __init__(self, solver: Any, backend: Any):
        self.solver = weakref.ref(solver)
        self.backend = backend
        self.graph: Any = None
        self.key: Any = None
        self.warm = 0
        self.failed: str | None = None
        self.captures = self.replays = self.eager = 0
        self.loss: Any = None
        self._mems: list[Any] = []
        self._layer_reasons: list[str] | None = None

    # -- the decision ------------------------------------------------------------
    def reasons(self) -> list[str]:
        solver: Any = self.solver()
        unavailable = getattr(self.backend, "unavailable", lambda: None)()
        if self._layer_reasons is None:
            self._layer_reasons = layer_blockers(solver.net, solver.ops)
        got = solver_blockers(solver, unavailable) + self._layer_reasons
        if self.failed:
            got.append(self.failed)
        return got

    # -- one iteration -----------------------------------------------------------
    def run(self) -> tuple[float, float] | None:
        """One training iteration (forward, backward, update): (loss, rate), or
        None when nothing was done and the solver must run it eagerly."""
        solver: Any = self.solver()
        if self.reasons():
            return None
        pack = packed.packed_for(solver)
        if pack is None:
            return None
        net = solver.net
        k = source_layer_count(net)
        loss = 0.0
        if k:
            loss += net.forward_from_to(0, k - 1)
            for li in range(k):
                for top in net.top_vecs[li]:
                    top.gpu_data()  # the batch into its fixed device buffer
        key = (pack.generation,) + tuple(
            top.shape for tops in net.top_vecs[:k] for top in tops
        )
        if key != self.key:
            self.graph, self.key, self.warm = None, key, 0
        if self.graph is None and self.warm < 1:
            # warm-up: compile, allocate scratch buffers, pack (all eagerly)
            self.warm += 1
            return self._eager(net, k, loss, None)
        rate = solver.get_learning_rate()
        pack.write_scalars(solver, rate)
        if self.graph is None:
            try:
                self._capture(solver, net, k, pack)
            except Exception as exc:  # noqa: BLE001 - any failure: run eagerly
                self.failed = f"CUDA graph capture failed ({type(exc).__name__}: {exc})"
                self.graph = None
                log.warning("%s; training continues without CUDA graphs", self.failed)
                # the captured work never ran: this iteration eagerly
                return self._eager(net, k, loss, rate)
        self._heads_to_device()
        self.backend.launch(self.graph)
        self._heads_written()
        self.replays += 1
        loss += self.backend.read(self.loss)
        syncedmem.count_copy("d2h", self.loss.dtype.itemsize)
        return loss, rate

    def _eager(self, net: Any, k: int, loss: float, rate: float | None):
        solver: Any = self.solver()
        self.eager += 1
        loss += net.forward_from_to(k)
        net.backward_prefilled()
        if rate is None:
            rate = solver.apply_update(False)
        else:  # the rate was taken (lr policies advance): update with it
            packed.update_all(solver, rate)
        return loss, rate

    def _capture(self, solver: Any, net: Any, k: int, pack: Any) -> None:
        global _capturing
        ops = solver.ops
        self.loss = ops.zeros((), solver.dtype)
        others = [
            b for i, b in enumerate(solver._params) if i not in set(pack.ids)
        ]  # lr_mult 0: not packed, their diffs still computed
        l1 = solver.param.regularization_type == "L1"
        loss_out = self.loss

        def body() -> None:
            pack.g.fill(0)
            for b in others:
                ops.mutable_diff(b).fill(0)
            total = net.forward_from_to(k)
            net.backward_prefilled()
            pack.launch(l1)
            loss_out[...] = total

        _capturing = True
        try:
            self.graph = self.backend.capture(body)
        finally:
            _capturing = False
        self.captures += 1
        sources = {id(t.data_mem) for tops in net.top_vecs[:k] for t in tops}
        mems = {}
        blobs = list(net.blobs.values()) + [b for lay in net.layers for b in lay.blobs]
        for blob in blobs:
            for mem in (blob.data_mem, blob.diff_mem):
                if mem.has_gpu and id(mem) not in sources:
                    mems[id(mem)] = mem
        self._mems = list(mems.values())

    def _heads_to_device(self) -> None:
        """A host write since the last iteration (pycaffe) goes to the device
        before the graph reads it."""
        for mem in self._mems:
            if mem.head is syncedmem.HEAD_AT_CPU:
                mem.gpu_data()

    def _heads_written(self) -> None:
        """The graph wrote on the device: the device is the head (no copy)."""
        for mem in self._mems:
            if mem.head is not syncedmem.HEAD_AT_GPU:
                mem.mutable_gpu_data()


_graphs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def install(solver: Any, backend: Any) -> IterationGraph:
    """Give ``solver`` an :class:`IterationGraph` on ``backend`` (tests use a
    fake backend)."""
    g = _graphs[solver] = IterationGraph(solver, backend)
    return g


def graph_of(solver: Any) -> IterationGraph | None:
    """The solver's IterationGraph, if it has one."""
    return _graphs.get(solver)


def run_iteration(solver: Any) -> tuple[float, float] | None:
    """The solver step's hook: one iteration from the CUDA graph, or None (run
    it eagerly). Creates the solver's graph on first use when the GPU can."""
    g = _graphs.get(solver)
    if g is None:
        reason = CupyGraphs.unavailable()
        if reason is not None or blockers(solver):
            return None
        g = install(solver, CupyGraphs())
    return g.run()
