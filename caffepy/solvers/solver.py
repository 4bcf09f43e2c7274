"""Solver: the training loop of Caffe's ``solver.cpp`` (and the parts of
``sgd_solver.cpp`` every update rule shares).

One iteration (``step``), as Caffe:

    clear the parameter diffs
    test every test net          (when iter % test_interval == 0)
    loss = mean over iter_size of net.forward_backward()
    display                      (when iter % display == 0)
    apply_update:
        lr = lr_policy(iter)
        clip_gradients           global L2 norm of all diffs > clip -> scale all
        per learnable parameter:  normalize (1/iter_size), regularize (L1/L2 with
                                  weight_decay * decay_mult), compute_update_value
                                  (the update rule, with lr * lr_mult)
        data -= diff
    iter += 1
    callbacks, requested action (stop / snapshot), snapshot interval

The update rules (``caffepy/solvers/sgd.py``) override only
:meth:`Solver.compute_update_value` and :meth:`Solver.check_update_param`; the
numeric work runs through the backend's solver ops. Snapshots and restore are in
:mod:`caffepy.solvers.snapshot`, the nets a solver names in
:mod:`caffepy.tools.netsurgery`, the memory estimate in
:mod:`caffepy.solvers.memory`, the log lines in :mod:`caffepy.solvers.display`.
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any

import numpy as np

from caffepy import rng
from caffepy.backend.mode import ops as active_ops
from caffepy.errors import DivergenceError, SolverError
from caffepy.phase import TRAIN
from caffepy.pycaffe.solver_api import PycaffeSolverMixin
from caffepy.solvers import memory
from caffepy.solvers.display import g as _g
from caffepy.solvers.display import log_iteration, log_outputs, loss_weights
from caffepy.solvers.divergence import diagnose, nonfinite_params
from caffepy.solvers.hooks import SolverHooks
from caffepy.solvers.lr_policy import check_lr_policy, learning_rate
from caffepy.solvers.snapshot import Snapshotting
from caffepy.solvers.validate import check_solver_numbers
from caffepy.tools import netsurgery

log = logging.getLogger("caffepy")


def read_solver_param(param_or_path: Any) -> tuple[Any, str | None]:
    """(SolverParameter, path or None) from a prototxt path or a SolverParameter.

    The returned parameter is a copy, upgraded (``solver_type``) and with Caffe's
    default ``snapshot_prefix`` when read from a file: the solver file's path
    without its extension (or the folder given as prefix joined with the file's
    stem), as ``UpgradeSnapshotPrefixProperty`` does.
    """
    from caffepy.proto import caffe_pb2

    if isinstance(param_or_path, caffe_pb2.SolverParameter):
        from caffepy.io.upgrade import upgrade_solver

        param = caffe_pb2.SolverParameter()
        param.CopyFrom(param_or_path)
        upgrade_solver(param)  # (a file is upgraded as it is read)
        path = None
    elif isinstance(param_or_path, (str, os.PathLike)):
        from caffepy.io.prototxt import read_solver

        path = os.fspath(param_or_path)
        param = read_solver(path)
    else:
        raise SolverError(
            "a solver needs a solver prototxt path or a SolverParameter; got "
            f"{type(param_or_path).__name__}"
        )
    if path is not None:
        stem = os.path.splitext(os.path.basename(path))[0]
        if not param.HasField("snapshot_prefix"):
            param.snapshot_prefix = os.path.splitext(path)[0]
            log.info(
                "snapshot_prefix was not specified and is set to %s",
                param.snapshot_prefix,
            )
        elif os.path.isdir(param.snapshot_prefix):
            param.snapshot_prefix = os.path.join(param.snapshot_prefix, stem)
            log.info(
                "snapshot_prefix was a directory and is replaced to %s",
                param.snapshot_prefix,
            )
    return param, path


class Solver(SolverHooks, Snapshotting, PycaffeSolverMixin):
    """Trains a Net from a SolverParameter; pycaffe's ``caffe.Solver``.

    Abstract: build one with ``caffepy.get_solver(path_or_param)`` (the class
    the parameter's ``type`` names) or with an update rule's class directly
    (``caffepy.SGDSolver("solver.prototxt")``, as pycaffe).

    Args:
        param_or_path: a solver prototxt path or a ``caffe_pb2.SolverParameter``.
            Net paths inside it (``net``, ``train_net``, ``test_net``) are
            relative to the working directory, as in Caffe.
        dtype: the nets' float type (float32, as Caffe; float64 for checks).
        divergence_check: stop with a DivergenceError when the loss or the
            weights stop being finite, and never snapshot non-finite weights
            (True; Caffe trains on, which ``False`` restores). See
            :mod:`caffepy.solvers.divergence`.
        memory_check: refuse, before training, nets whose blobs, gradients and
            solver history would not fit in the available memory (True).
        share_diffs: in CPU mode, let the train net's inner activations share
            gradient memory (:meth:`caffepy.net.Net.share_diffs`): the same
            training in less memory, but an inner blob's ``diff`` means nothing
            after a step. False (the default, as Caffe and pycaffe) keeps a diff
            per blob; ``caffepy train`` turns it on.
        source: the solver file ``param_or_path`` was read from, when it is a
            SolverParameter (``get_solver`` reads the file once).

    Attributes:
        param: the (upgraded) SolverParameter.
        net: the train net; ``test_nets``: the test nets (sharing its weights).
        iter: updates done so far; ``current_step``: the lr policy's position.
        history: the update rule's state, one array per learnable parameter
            (two sets for AdaDelta and Adam), as saved in the solverstate.
        smoothed_loss: the loss averaged over the last ``average_loss`` iterations.
        ops: the backend the update runs on.
    """

    type_name: str | None = None
    #: history blobs per learnable parameter (AdaDelta, Adam: 2)
    history_sets = 1

    def __init__(
        self,
        param_or_path: Any,
        dtype: Any = np.float32,
        divergence_check: bool = True,
        memory_check: bool = True,
        *,
        source: str | None = None,
        share_diffs: bool = False,
    ) -> None:
        if self.type_name is None:
            raise SolverError("Solver is abstract; use caffepy.get_solver(...)")
        param, path = read_solver_param(param_or_path)
        self.source = path if path is not None else source
        if param.type != self.type_name:
            log.warning(
                "the solver file asks for type %r; building a %s solver as requested",
                param.type,
                self.type_name,
            )
        self.param = param
        self.type = self.type_name
        self.dtype = np.dtype(dtype)
        self.divergence_check = bool(divergence_check)
        self.ops = active_ops()
        log.info("Initializing solver from parameters: \n%s", param)
        self._check_param()
        if param.random_seed >= 0:
            rng.set_random_seed(param.random_seed)
        self.net = self._build_net(netsurgery.solver_train_net(param))
        self.test_nets = self._init_test_nets()
        if share_diffs and self.ops.name == "cpu":
            self.net.share_diffs()
        log.info("Solver scaffolding done.")
        self.iter = 0
        self.current_step = 0
        self.smoothed_loss = 0.0
        self._losses: list[float] = []
        self._init_hooks()
        self._early_exit = False
        self.mean_scores: list[list[float]] = [[] for _ in self.test_nets]
        self._last_rate: float | None = None
        self.last_snapshot: str | None = None
        self._temp_files_cleaned = False
        self._init_buffers()
        if memory_check:
            memory.check_memory(
                self.memory_estimate(),
                self.type_name,
                log,
                nets=[self.net, *self.test_nets],
            )

    # -- construction ----------------------------------------------------------------
    def _check_param(self) -> None:
        p = self.param
        check_solver_numbers(self)
        if p.average_loss < 1:
            raise SolverError(f"average_loss must be >= 1; got {p.average_loss}")
        if p.iter_size < 1:
            raise SolverError(f"iter_size must be >= 1; got {p.iter_size}")
        for field in ("display", "snapshot", "test_interval", "max_iter"):
            if getattr(p, field) < 0:
                raise SolverError(f"{field} must be >= 0; got {getattr(p, field)}")
        check_lr_policy(p)
        if p.regularization_type not in ("L2", "L1"):
            raise SolverError(
                f"unknown regularization_type {p.regularization_type!r}; expected "
                "'L2' or 'L1'"
            )
        self.check_update_param()
        if p.snapshot and not p.snapshot_prefix:
            raise SolverError(
                f"snapshot is set ({p.snapshot}) but snapshot_prefix is not; set "
                "snapshot_prefix (the path snapshots start with)"
            )
        if p.snapshot_prefix and (p.snapshot or p.snapshot_after_train):
            folder = os.path.dirname(os.path.abspath(p.snapshot_prefix))
            # NOTE: unlike Caffe (which fails at the first snapshot, hours in),
            # create the folder now, and refuse an unwritable one before training.
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError:
                pass
            if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
                raise SolverError(
                    f"cannot write to snapshot prefix {p.snapshot_prefix!r}: make "
                    f"sure the folder {folder} exists and is writable"
                )

    def check_update_param(self) -> None:
        """Validate the update rule's own parameters (momentum, delta, ...); the
        rules override this.

        Raises:
            SolverError: a value the rule cannot use.
        """

    def _build_net(self, spec: netsurgery.SolverNet) -> Any:
        from caffepy.net import Net

        log.info(
            "Creating %s net specified by %s",
            "training" if spec.phase == TRAIN else "test",
            spec.where,
        )
        net = Net(
            param=spec.param,
            phase=spec.param.state.phase,
            dtype=self.dtype,
            source=spec.path,
        )
        for entry in self.param.weights:
            for w in entry.split(","):
                if w:
                    net.copy_from(w)
        return net

    def _init_test_nets(self) -> list[Any]:
        nets = []
        for spec in netsurgery.solver_test_nets(self.param):
            net = self._build_net(spec)
            net.share_weights(self.net)
            nets.append(net)
        return nets

    def _init_buffers(self) -> None:
        # Per learnable parameter: its blob, scratch arrays for the rules (Caffe's
        # update_ and temp_) and the history the solverstate keeps.
        net = self.net
        self._params = list(net.learnable_params)
        self._lr_mult = [float(x) for x in net.params_lr]
        self._decay_mult = [float(x) for x in net.params_weight_decay]
        self._param_names = list(net.learnable_param_names)
        shapes = [b.shape for b in self._params]
        zeros = self.ops.zeros
        # NOTE: the rules use update_ and temp_ as scratch within one parameter's
        # update, so one buffer each (the largest parameter's size) serves all.
        self._update = memory.ScratchViews(shapes, self.dtype, zeros)
        self._temp = memory.ScratchViews(shapes, self.dtype, zeros)
        self.history = [
            zeros(s, self.dtype) for _ in range(self.history_sets) for s in shapes
        ]

    def memory_estimate(self) -> int:
        """Bytes the training will hold at least: every blob of every net (with
        its gradient in the train net), parameters with their gradients, and the
        update rule's history and scratch arrays. Layers' own scratch buffers
        (im2col columns, ...) come on top."""
        return memory.memory_estimate(
            [self.net, *self.test_nets],
            [*self.history, self._update, self._temp],
        )

    def scalar(self, value: Any) -> Any:
        """``value`` as the nets' float type (so updates stay in float32)."""
        return self.dtype.type(value)

    def _forward_backward(self, last: bool) -> float:
        """One forward and backward pass of the train net; with after-backward
        callbacks (and ``last``), the backward runs layer by layer."""
        net = self.net
        if not (last and self._after_backward):
            return net.forward_backward()
        loss = net.forward_from_to()
        for li in range(len(net.layers) - 1, -1, -1):
            net.backward_from_to(li, li)
            for fn in self._after_backward:
                fn(li)
        if net.debug_info:
            from caffepy import netdebug

            netdebug.params_debug_info(net)
        return loss

    # -- training --------------------------------------------------------------------
    def step(self, iters: int) -> None:
        """Run ``iters`` iterations (tests, display and snapshots as configured)."""
        p = self.param
        start_iter = self.iter
        stop_iter = self.iter + int(iters)
        self._losses = []
        self.smoothed_loss = 0.0
        self._early_exit = False
        self._timer = time.perf_counter()
        self._iterations_last = self.iter
        net = self.net
        while self.iter < stop_iter:
            net.clear_param_diffs()
            if (
                p.test_interval
                and self.iter % p.test_interval == 0
                and (self.iter > 0 or p.test_initialization)
            ):
                self.test_all()
                if self._early_exit:
                    break
            for on_start, _ in self._pycaffe_callbacks:
                on_start()
            display = bool(p.display) and self.iter % p.display == 0
            # Caffe: the train net logs debug_info on display iterations only.
            net.debug_info = display and bool(p.debug_info)
            # GPU: forward, backward and update replayed from a CUDA graph
            replayed = None if display else self._replay_iteration()
            if replayed is None:
                loss = 0.0
                for k in range(p.iter_size):
                    loss += self._forward_backward(last=k == p.iter_size - 1)
                loss /= p.iter_size
            else:
                loss = replayed[0]
            if self.divergence_check and not math.isfinite(loss):
                raise self._diverged(loss)
            self._update_smoothed_loss(loss, start_iter, p.average_loss)
            if display:
                self._display()
            for _, on_ready in self._pycaffe_callbacks:
                on_ready()
            rate = self.apply_update(display) if replayed is None else replayed[1]
            self._last_rate = rate
            if display and self.divergence_check and nonfinite_params(net):
                raise self._diverged(None)
            # iter counts the updates made to the weights
            self.iter += 1
            for fn in self._callbacks:
                fn(self.iter, loss, rate)
            actions = self._take_actions()
            if (p.snapshot and self.iter % p.snapshot == 0) or "snapshot" in actions:
                self.snapshot()
            if "stop" in actions:
                self._early_exit = True
                break

    def _replay_iteration(self) -> tuple[float, float] | None:
        """(loss, rate) of one iteration (forward, backward, update) replayed by
        the backend from a CUDA graph, or None: run it eagerly."""
        hook = getattr(self.ops, "iteration_graph", None)
        return None if hook is None else hook(self)

    def _diverged(self, loss: float | None) -> DivergenceError:
        """The DivergenceError for the current state (see solvers.divergence)."""
        rate = self._last_rate
        if rate is None:
            rate = learning_rate(self.param, self.iter, self.current_step)[0]
        return diagnose(self.net, self.iter, rate, loss, self.last_snapshot)

    def solve(self, resume_file: str | None = None) -> None:
        """Train to ``max_iter`` (optionally resuming from a .solverstate), snapshot
        at the end, then show the final loss and test scores, as Caffe's Solve."""
        p = self.param
        log.info("Solving %s", self.net.name)
        log.info("Learning Rate Policy: %s", p.lr_policy)
        self._early_exit = False
        if resume_file:
            log.info("Restoring previous solver status from %s", resume_file)
            self.restore(resume_file)
        start_iter = self.iter
        self.step(p.max_iter - self.iter)
        if p.snapshot_after_train and (not p.snapshot or self.iter % p.snapshot != 0):
            self.snapshot()
        if self._early_exit:
            log.info("Optimization stopped early.")
            return
        if p.display and self.iter % p.display == 0:
            loss = self.net.forward_prefilled()
            self._update_smoothed_loss(loss, start_iter, p.average_loss)
            log.info("Iteration %d, loss = %s", self.iter, _g(self.smoothed_loss))
        if p.test_interval and self.iter % p.test_interval == 0:
            self.test_all()
        log.info("Optimization Done.")

    def _update_smoothed_loss(
        self, loss: float, start_iter: int, average_loss: int
    ) -> None:
        if len(self._losses) < average_loss:
            self._losses.append(loss)
            n = len(self._losses)
            self.smoothed_loss = (self.smoothed_loss * (n - 1) + loss) / n
        else:
            idx = (self.iter - start_iter) % average_loss
            self.smoothed_loss += (loss - self._losses[idx]) / average_loss
            self._losses[idx] = loss

    def _display(self) -> None:
        p = self.param
        now = time.perf_counter()
        lapse = now - self._timer
        per_s = (self.iter - self._iterations_last) / (lapse or 1.0)
        log_iteration(self.iter, per_s, lapse, p.display, self.smoothed_loss)
        self._timer = now
        self._iterations_last = self.iter
        outputs = [
            (name, v)
            for name in self.net.outputs
            for v in self.net.blobs[name].data.ravel()
        ]
        log_outputs("Train", outputs, loss_weights(self.net))

    # -- the update ------------------------------------------------------------------
    def get_learning_rate(self) -> float:
        """The rate for the update at the current iteration (advances
        ``current_step`` for the step/multistep policies, as Caffe)."""
        rate, self.current_step = learning_rate(
            self.param, self.iter, self.current_step
        )
        return float(self.scalar(rate))

    def apply_update(self, display: bool = False) -> float:
        """Clip, normalise, regularise, apply the rule and update the weights;
        return the learning rate used."""
        rate = self.get_learning_rate()
        if display:
            log.info("Iteration %d, lr = %s", self.iter, _g(rate))
        self.clip_gradients()
        # GPU: every parameter in one launch where the backend can.
        update_all = getattr(self.ops, "update_all_params", None)
        if update_all is not None and update_all(self, rate):
            return rate
        for i in range(len(self._params)):
            # NOTE: every rule scales its final update by lr * lr_mult, so a
            # parameter with lr_mult 0 never moves; skipping it saves the work
            # (its history then stays as it was, where Caffe's would still decay).
            if self._lr_mult[i] == 0:
                continue
            self.normalize(i)
            self.update_param(i, rate)
        return rate

    def update_param(self, i: int, rate: float) -> None:
        """Regularise parameter ``i``'s gradient, turn it into the update and
        subtract that from the weights (SGD fuses the three in one pass)."""
        self.regularize(i)
        self.compute_update_value(i, rate)
        blob = self._params[i]
        self.ops.blob_update(self.ops.diff(blob), self.ops.mutable_data(blob))

    def clip_gradients(self) -> None:
        """Scale every gradient down when their global L2 norm exceeds
        ``clip_gradients`` (Caffe's ``SGDSolver::ClipGradients``)."""
        clip = self.param.clip_gradients
        if clip < 0:
            return
        ops = self.ops
        sumsq = 0.0
        for blob in self._params:
            sumsq += ops.sumsq(ops.diff(blob))
        l2norm = math.sqrt(sumsq)
        if l2norm > clip:
            scale = clip / l2norm
            log.info(
                "Gradient clipping: scaling down gradients (L2 norm %s > %s) by "
                "scale factor %s",
                _g(l2norm),
                _g(clip),
                _g(scale),
            )
            s = self.scalar(scale)
            for blob in self._params:
                ops.scal(s, ops.mutable_diff(blob))

    def normalize(self, i: int) -> None:
        """Divide the accumulated gradient by iter_size."""
        if self.param.iter_size == 1:
            return
        scale = self.scalar(1.0) / self.scalar(self.param.iter_size)
        self.ops.scal(scale, self.ops.mutable_diff(self._params[i]))

    def local_decay(self, i: int) -> Any:
        """weight_decay * decay_mult of learnable parameter ``i``."""
        return self.scalar(self.param.weight_decay) * self.scalar(self._decay_mult[i])

    def regularize(self, i: int) -> None:
        """diff += weight_decay * decay_mult * (w for L2, sign(w) for L1)."""
        decay = self.local_decay(i)
        if not decay:
            return
        ops, blob = self.ops, self._params[i]
        w, g = ops.data(blob), ops.mutable_diff(blob)
        if self.param.regularization_type == "L2":
            ops.l2_regularize(w, decay, g, self._temp[i])
        else:
            ops.l1_regularize(w, decay, g, self._temp[i])

    def local_rate(self, i: int, rate: float) -> Any:
        """lr * lr_mult of learnable parameter ``i``, in the nets' float type."""
        return self.scalar(rate) * self.scalar(self._lr_mult[i])

    def compute_update_value(self, param_id: int, rate: float) -> None:
        """Turn the (regularised) gradient in the parameter's diff into the update
        to subtract, updating the history; the update rules override this."""
        raise NotImplementedError

    # -- testing ---------------------------------------------------------------------
    def test_all(self) -> list[list[tuple[str, float]]]:
        """Test every test net (stops early when a stop was requested)."""
        results = []
        for i in range(len(self.test_nets)):
            if self._early_exit:
                break
            results.append(self.test(i))
        return results

    def test(self, test_net_id: int = 0) -> list[tuple[str, float]]:
        """Run test net ``test_net_id`` for its test_iter batches; log and return
        the mean of each output, a list of (name, value)."""
        p = self.param
        log.info("Iteration %d, Testing net (#%d)", self.iter, test_net_id)
        net = self.test_nets[test_net_id]
        net.share_weights(self.net)
        n_iter = p.test_iter[test_net_id]
        scores, loss = netsurgery.OutputMeans(), 0.0
        for _ in range(n_iter):
            actions = self._take_actions()
            if "snapshot" in actions:
                self.snapshot()
            if "stop" in actions:
                self._early_exit = True
            if self._early_exit:
                break
            iter_loss = net.forward_prefilled()
            if p.test_compute_loss:
                loss += iter_loss
            scores.add(net)
        if self._early_exit:
            log.info("Test interrupted.")
            return []
        if p.test_compute_loss:
            log.info("Test loss: %s", _g(loss / n_iter))
        means = scores.means(n_iter)
        self.mean_scores[test_net_id] = means
        results = list(zip(scores.names, means))
        log_outputs("Test", results, loss_weights(net))
        for fn in self._test_callbacks:
            fn(self.iter, test_net_id, results)
        return results

    def share_weights(self, net: Any) -> None:
        """Make ``net`` use the train net's weights (pycaffe's solver.share_weights)."""
        net.share_weights(self.net)
