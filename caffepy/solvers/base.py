"""Solver: the training loop of Caffe's ``Solver`` and ``SGDSolver``.

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

The update rules are subclasses that override only :meth:`compute_update_value`
(``caffepy/solvers/sgd.py``); everything else lives here.
"""

import contextlib
import glob
import json
import logging
import math
import os
import time
from collections import deque

import numpy as np

from caffepy import rng
from caffepy.divergence import diagnose, nonfinite_params
from caffepy.errors import ResourceError, SnapshotError, SolverError, UnsupportedError
from caffepy.io.atomic import atomic_write_bytes
from caffepy.layer import TEST, TRAIN
from caffepy.solvers import state as state_io
from caffepy.solvers.lr_policy import check_lr_policy, learning_rate

log = logging.getLogger("caffepy")

_ACTIONS = ("stop", "snapshot")


def _g(x):
    """A number as C++ streams print it by default (6 significant digits)."""
    return f"{float(x):g}"


def _pb2():
    from caffepy.proto import caffe_pb2

    return caffe_pb2


def read_solver_param(param_or_path):
    """(SolverParameter, path or None) from a prototxt path or a SolverParameter.

    The returned parameter is a copy, upgraded (``solver_type``) and with Caffe's
    default ``snapshot_prefix`` when read from a file: the solver file's path
    without its extension (or the folder given as prefix joined with the file's
    stem), as ``UpgradeSnapshotPrefixProperty`` does.
    """
    pb2 = _pb2()
    if isinstance(param_or_path, pb2.SolverParameter):
        from caffepy.io.upgrade import upgrade_solver

        param = pb2.SolverParameter()
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
            log.info("snapshot_prefix was not specified and is set to %s",
                     param.snapshot_prefix)
        elif os.path.isdir(param.snapshot_prefix):
            param.snapshot_prefix = os.path.join(param.snapshot_prefix, stem)
            log.info("snapshot_prefix was a directory and is replaced to %s",
                     param.snapshot_prefix)
    return param, path


def _read_net_param(path, field):
    from caffepy.io.prototxt import read_net

    if not os.path.exists(path):
        raise SolverError(
            f"the solver's {field}: {path!r} does not exist (relative paths are "
            f"resolved against the working directory, {os.getcwd()})"
        )
    return read_net(path)


def _loss_weights(net):
    """blob name -> loss weight of each top that carries one (Caffe's
    blob_loss_weights), taken from the layers' loss weights."""
    weights = {}
    for layer in net.layers:
        for tname, w in zip(net.top_names[layer.name], layer.loss_weights):
            if w:
                weights[tname] = weights.get(tname, 0.0) + float(w)
    return weights


def _remove_stale_temp_files(prefix):
    """Remove the temporary files of snapshots whose writer was killed (see
    caffepy.io.atomic: ``.<name>.<random>.tmp`` beside the target)."""
    folder = os.path.dirname(os.path.abspath(prefix))
    pattern = "." + glob.escape(os.path.basename(prefix)) + "_iter_*.tmp"
    for path in glob.glob(os.path.join(folder, pattern)):
        with contextlib.suppress(OSError):
            os.unlink(path)
            log.info("Removed %s, left by a snapshot that was interrupted", path)


def _size(n):
    """Bytes as a short human-readable size (1.5 GiB, 12.0 MiB, 3 kB)."""
    if n >= 2**30:
        return f"{n / 2**30:.1f} GiB"
    if n >= 2**20:
        return f"{n / 2**20:.1f} MiB"
    return f"{n / 1024:.0f} kB"


def _available_memory():
    """MemAvailable from /proc/meminfo in bytes, or None where there is none."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _axpby(alpha, x, beta, y, tmp):
    """y = alpha * x + beta * y in place (Caffe's caffe_cpu_axpby); tmp: scratch."""
    np.multiply(y, beta, out=y)
    np.multiply(x, alpha, out=tmp)
    np.add(y, tmp, out=y)


class Solver:
    """Trains a Net from a SolverParameter; pycaffe's ``caffe.Solver``.

    ``Solver(path_or_param)`` builds the solver the parameter's ``type`` names
    (``caffepy.get_solver`` does the same); a subclass (``SGDSolver``, ...)
    builds that one.

    Args:
        param_or_path: a solver prototxt path or a ``caffe_pb2.SolverParameter``.
            Net paths inside it (``net``, ``train_net``, ``test_net``) are
            relative to the working directory, as in Caffe.
        dtype: the nets' float type (float32, as Caffe; float64 for checks).
        divergence_check: stop with a DivergenceError when the loss or the
            weights stop being finite, and never snapshot non-finite weights
            (True; Caffe trains on, which ``False`` restores). See
            :mod:`caffepy.divergence`.
        memory_check: refuse, before training, nets whose blobs, gradients and
            solver history would not fit in the available memory (True).

    Attributes:
        param: the (upgraded) SolverParameter.
        net: the train net; ``test_nets``: the test nets (sharing its weights).
        iter: updates done so far; ``current_step``: the lr policy's position.
        history: the update rule's state, one array per learnable parameter
            (two sets for AdaDelta and Adam), as saved in the solverstate.
        smoothed_loss: the loss averaged over the last ``average_loss`` iterations.
    """

    type_name = None
    #: history blobs per learnable parameter (AdaDelta, Adam: 2)
    history_sets = 1
    #: AdaGrad and RMSProp refuse a momentum, as in Caffe
    allows_momentum = True
    #: RMSProp: 0 <= rms_decay < 1
    checks_rms_decay = False
    #: Adam: 0 <= momentum < 1 and 0 <= momentum2 < 1
    checks_betas = False

    def __new__(cls, param_or_path=None, *args, **kwargs):
        obj_cls = cls
        preread = None
        if cls is Solver and param_or_path is not None:
            # Solver(path) builds the rule the file's `type` names.
            from caffepy.registry import solver_class

            preread = (param_or_path, read_solver_param(param_or_path))
            obj_cls = solver_class(preread[1][0].type)
        obj = super().__new__(obj_cls)
        obj._preread = preread
        return obj

    def __init__(self, param_or_path, dtype=np.float32, divergence_check=True,
                 memory_check=True):
        if type(self) is Solver:
            raise SolverError("Solver is abstract; use caffepy.get_solver(...)")
        preread = getattr(self, "_preread", None)
        if preread is not None and preread[0] is param_or_path:
            param, self.source = preread[1]  # parsed once, in __new__
        else:
            param, self.source = read_solver_param(param_or_path)
        self._preread = None
        if param.type != self.type_name:
            log.warning("the solver file asks for type %r; building a %s solver as "
                        "requested", param.type, self.type_name)
        self.param = param
        self.type = self.type_name
        self.dtype = np.dtype(dtype)
        self.divergence_check = bool(divergence_check)
        log.info("Initializing solver from parameters: \n%s", param)
        self._check_param()
        if param.random_seed >= 0:
            rng.set_random_seed(param.random_seed)
        self.net = self._init_train_net()
        self.test_nets = self._init_test_nets()
        log.info("Solver scaffolding done.")
        self.iter = 0
        self.current_step = 0
        self.smoothed_loss = 0.0
        self._losses = []
        self._callbacks = []
        self._pycaffe_callbacks = []
        self._test_callbacks = []
        self._actions = deque()
        self._early_exit = False
        self.mean_scores = [[] for _ in self.test_nets]
        self._last_rate = None
        self.last_snapshot = None
        self._temp_files_cleaned = False
        self._init_buffers()
        if memory_check:
            self._check_memory()

    # -- construction ----------------------------------------------------------------
    def _check_param(self):
        p = self.param
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
        if p.snapshot_format != p.BINARYPROTO:
            raise UnsupportedError(
                "snapshot_format: HDF5 is not supported; use BINARYPROTO (the default)"
            )
        name = self.type_name
        if not self.allows_momentum and p.momentum != 0:
            raise SolverError(
                f"{name} solver: momentum must be 0 (Caffe: momentum cannot be used "
                f"with {name}); got momentum: {p.momentum:g}"
            )
        if self.checks_rms_decay and not 0 <= p.rms_decay < 1:
            raise SolverError(
                f"{name} solver: rms_decay must lie in [0, 1); got {p.rms_decay:g}"
            )
        if self.checks_betas:
            for field in ("momentum", "momentum2"):
                if not 0 <= getattr(p, field) < 1:
                    raise SolverError(
                        f"{name} solver: {field} must lie in [0, 1); got "
                        f"{getattr(p, field):g}"
                    )
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
                    f"cannot write to snapshot prefix {p.snapshot_prefix!r}: make sure "
                    f"the folder {folder} exists and is writable"
                )

    def _build_net(self, net_param, phase, state_override, where, source=None):
        from caffepy.net import Net

        pb2 = _pb2()
        # NetState: solver default phase < the net's own state < the solver's
        # train_state/test_state (Caffe's precedence).
        state = pb2.NetState()
        state.phase = phase
        state.MergeFrom(net_param.state)
        if state_override is not None:
            state.MergeFrom(state_override)
        net_param.state.CopyFrom(state)
        log.info("Creating %s net specified by %s",
                 "training" if phase == TRAIN else "test", where)
        net = Net(param=net_param, phase=state.phase, dtype=self.dtype, source=source)
        for entry in self.param.weights:
            for w in entry.split(","):
                if w:
                    net.copy_from(w)
        return net

    def _init_train_net(self):
        p = self.param
        fields = [f for f in ("net", "net_param", "train_net", "train_net_param")
                  if p.HasField(f)]
        if len(fields) != 1:
            raise SolverError(
                "the solver must name exactly one train net with one of net, "
                f"net_param, train_net, train_net_param; got {len(fields)}"
                + (f" ({', '.join(fields)})" if fields else "")
            )
        field = fields[0]
        source = None
        if field.endswith("_param"):
            net_param = _pb2().NetParameter()
            net_param.CopyFrom(getattr(p, field))
            where = field
        else:
            source = getattr(p, field)
            net_param = _read_net_param(source, field)
            where = f"{field} file: {source}"
        return self._build_net(net_param, TRAIN, p.train_state, where, source)

    def _init_test_nets(self):
        p = self.param
        generic = p.HasField("net") or p.HasField("net_param")
        n_specific = len(p.test_net_param) + len(p.test_net)
        n_iter = len(p.test_iter)
        if (generic and n_iter < n_specific) or (not generic and n_iter != n_specific):
            raise SolverError(
                f"test_iter must be given once per test net: {n_iter} test_iter for "
                f"{n_specific} test_net/test_net_param"
                + (" (plus any number of test nets from the generic net)"
                   if generic else "")
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
        sources = [(tp, "test_net_param", None) for tp in p.test_net_param]
        sources += [(_read_net_param(f, "test_net"), f"test_net file: {f}", f)
                    for f in p.test_net]
        for _ in range(n_nets - len(sources)):
            if p.HasField("net_param"):
                tp = _pb2().NetParameter()
                tp.CopyFrom(p.net_param)
                sources.append((tp, "net_param", None))
            else:
                sources.append((_read_net_param(p.net, "net"), f"net file: {p.net}",
                                p.net))
        nets = []
        for i, (tp, where, source) in enumerate(sources):
            copy_ = _pb2().NetParameter()
            copy_.CopyFrom(tp)
            override = p.test_state[i] if len(p.test_state) else None
            net = self._build_net(copy_, TEST, override, f"{where} (#{i})", source)
            net.share_weights(self.net)
            nets.append(net)
        return nets

    def _init_buffers(self):
        # Per learnable parameter: its blob, scratch arrays for the rules (Caffe's
        # update_ and temp_) and the history the solverstate keeps.
        net = self.net
        self._params = list(net.learnable_params)
        self._lr_mult = [float(x) for x in net.params_lr]
        self._decay_mult = [float(x) for x in net.params_weight_decay]
        self._param_names = list(net.learnable_param_names)
        shapes = [b.shape for b in self._params]
        self._update = [np.zeros(s, self.dtype) for s in shapes]
        self._temp = [np.zeros(s, self.dtype) for s in shapes]
        self.history = [np.zeros(s, self.dtype)
                        for _ in range(self.history_sets) for s in shapes]

    def memory_estimate(self):
        """Bytes the training will hold at least: every blob of every net (with
        its gradient in the train net), parameters with their gradients, and the
        update rule's history and scratch arrays. Layers' own scratch buffers
        (im2col columns, ...) come on top."""
        seen, total = set(), 0
        for k, net in enumerate([self.net, *self.test_nets]):
            blobs = list(net.blobs.values())
            blobs += [b for layer in net.layers for b in layer.blobs]
            for blob in blobs:
                data = blob.data
                key = id(data.base if data.base is not None else data)
                if key in seen:  # in place, shared or split: one buffer
                    continue
                seen.add(key)
                # the train net's gradients are allocated on first use
                total += blob.count * blob.dtype.itemsize * (2 if k == 0 else 1)
        for array in self.history + self._update + self._temp:
            total += array.nbytes
        return total

    def _check_memory(self):
        available = _available_memory()
        need = self.memory_estimate()
        log.info("Memory: the nets and solver need at least %s", _size(need))
        if available is not None and need > available:
            raise ResourceError(
                f"training this net needs at least {_size(need)} (blobs, gradients, "
                f"parameters and {self.type_name} solver history) but only "
                f"{_size(available)} of memory is available; reduce batch_size (or "
                "the test nets' batch size), or free memory"
            )

    def scalar(self, value):
        """``value`` as the nets' float type (so updates stay in float32)."""
        return self.dtype.type(value)

    # -- hooks for the CLI and pycaffe ----------------------------------------------
    def add_callback(self, fn, on_gradients_ready=None):
        """Call ``fn(iter, loss, lr)`` after each iteration.

        ``iter`` is the number of updates done (``solver.iter`` after the update),
        ``loss`` that iteration's loss (mean over iter_size), ``lr`` the rate used.
        pycaffe's two-function form ``add_callback(on_start, on_gradients_ready)``
        is also accepted: ``on_start()`` runs before the forward passes and
        ``on_gradients_ready()`` before the update.
        """
        if on_gradients_ready is None:
            self._callbacks.append(fn)
        else:
            self._pycaffe_callbacks.append((fn, on_gradients_ready))

    def add_test_callback(self, fn):
        """Call ``fn(iter, test_net_id, results)`` after each test, ``results`` an
        ordered list of (output name, mean value)."""
        self._test_callbacks.append(fn)

    def request_action(self, action):
        """Ask for ``"stop"`` or ``"snapshot"`` at the next iteration boundary
        (safe to call from a signal handler)."""
        if action not in _ACTIONS:
            raise SolverError(f"unknown solver action {action!r}; expected one of "
                              f"{', '.join(_ACTIONS)}")
        self._actions.append(action)

    def _take_actions(self):
        """The set of actions requested since the last call."""
        got = set()
        while self._actions:
            got.add(self._actions.popleft())
        return got

    # -- training ----------------------------------------------------------------------
    def step(self, iters):
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
            if (p.test_interval and self.iter % p.test_interval == 0
                    and (self.iter > 0 or p.test_initialization)):
                self.test_all()
                if self._early_exit:
                    break
            for on_start, _ in self._pycaffe_callbacks:
                on_start()
            display = bool(p.display) and self.iter % p.display == 0
            loss = 0.0
            for _ in range(p.iter_size):
                loss += net.forward_backward()
            loss /= p.iter_size
            if self.divergence_check and not math.isfinite(loss):
                raise self._diverged(loss)
            self._update_smoothed_loss(loss, start_iter, p.average_loss)
            if display:
                self._display()
            for _, on_ready in self._pycaffe_callbacks:
                on_ready()
            rate = self.apply_update(display)
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

    def _diverged(self, loss):
        """The DivergenceError for the current state (see caffepy.divergence)."""
        rate = self._last_rate
        if rate is None:
            rate = learning_rate(self.param, self.iter, self.current_step)[0]
        return diagnose(self.net, self.iter, rate, loss, self.last_snapshot)

    def solve(self, resume_file=None):
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

    def _update_smoothed_loss(self, loss, start_iter, average_loss):
        if len(self._losses) < average_loss:
            self._losses.append(loss)
            n = len(self._losses)
            self.smoothed_loss = (self.smoothed_loss * (n - 1) + loss) / n
        else:
            idx = (self.iter - start_iter) % average_loss
            self.smoothed_loss += (loss - self._losses[idx]) / average_loss
            self._losses[idx] = loss

    def _display(self):
        p = self.param
        now = time.perf_counter()
        lapse = now - self._timer
        per_s = (self.iter - self._iterations_last) / (lapse or 1.0)
        log.info("Iteration %d (%s iter/s, %ss/%d iters), loss = %s", self.iter,
                 _g(per_s), _g(lapse), p.display, _g(self.smoothed_loss))
        self._timer = now
        self._iterations_last = self.iter
        self._log_outputs(self.net, "Train", [
            (name, self.net.blobs[name].data.ravel()) for name in self.net.outputs])

    def _log_outputs(self, net, which, outputs):
        weights = _loss_weights(net)
        k = 0
        for name, values in outputs:
            w = weights.get(name, 0.0)
            for v in values:
                extra = f" (* {_g(w)} = {_g(w * v)} loss)" if w else ""
                log.info("    %s net output #%d: %s = %s%s", which, k, name, _g(v),
                         extra)
                k += 1

    # -- the update ------------------------------------------------------------------
    def get_learning_rate(self):
        """The rate for the update at the current iteration (advances
        ``current_step`` for the step/multistep policies, as Caffe)."""
        rate, self.current_step = learning_rate(self.param, self.iter,
                                                self.current_step)
        return float(self.scalar(rate))

    def apply_update(self, display=False):
        """Clip, normalise, regularise, apply the rule and update the weights;
        return the learning rate used."""
        rate = self.get_learning_rate()
        if display:
            log.info("Iteration %d, lr = %s", self.iter, _g(rate))
        self.clip_gradients()
        for i in range(len(self._params)):
            # NOTE: every rule scales its final update by lr * lr_mult, so a
            # parameter with lr_mult 0 never moves; skipping it saves the work
            # (its history then stays as it was, where Caffe's would still decay).
            if self._lr_mult[i] == 0:
                continue
            self.normalize(i)
            self.update_param(i, rate)
        return rate

    def update_param(self, i, rate):
        """Regularise parameter ``i``'s gradient, turn it into the update and
        subtract that from the weights (SGD fuses the three in one pass)."""
        self.regularize(i)
        self.compute_update_value(i, rate)
        blob = self._params[i]
        np.subtract(blob.data, blob.diff, out=blob.data)

    def clip_gradients(self):
        clip = self.param.clip_gradients
        if clip < 0:
            return
        sumsq = 0.0
        for blob in self._params:
            d = blob.diff.reshape(-1)
            sumsq += float(np.dot(d, d))
        l2norm = math.sqrt(sumsq)
        if l2norm > clip:
            scale = clip / l2norm
            log.info("Gradient clipping: scaling down gradients (L2 norm %s > %s) by "
                     "scale factor %s", _g(l2norm), _g(clip), _g(scale))
            s = self.scalar(scale)
            for blob in self._params:
                np.multiply(blob.diff, s, out=blob.diff)

    def normalize(self, i):
        """Divide the accumulated gradient by iter_size."""
        if self.param.iter_size == 1:
            return
        diff = self._params[i].diff
        np.multiply(diff, self.scalar(1.0) / self.scalar(self.param.iter_size),
                    out=diff)

    def regularize(self, i):
        """diff += weight_decay * decay_mult * (w for L2, sign(w) for L1)."""
        local_decay = self.scalar(self.param.weight_decay) * self.scalar(
            self._decay_mult[i])
        if not local_decay:
            return
        blob, tmp = self._params[i], self._temp[i]
        if self.param.regularization_type == "L2":
            np.multiply(blob.data, local_decay, out=tmp)
        else:
            np.sign(blob.data, out=tmp)
            np.multiply(tmp, local_decay, out=tmp)
        np.add(blob.diff, tmp, out=blob.diff)

    def local_rate(self, i, rate):
        """lr * lr_mult of learnable parameter ``i``, in the nets' float type."""
        return self.scalar(rate) * self.scalar(self._lr_mult[i])

    def compute_update_value(self, param_id, rate):
        """Turn the (regularised) gradient in the parameter's diff into the update
        to subtract, updating the history; the update rules override this."""
        raise NotImplementedError

    # -- testing ---------------------------------------------------------------------
    def test_all(self):
        """Test every test net (stops early when a stop was requested)."""
        results = []
        for i in range(len(self.test_nets)):
            if self._early_exit:
                break
            results.append(self.test(i))
        return results

    def test(self, test_net_id=0):
        """Run test net ``test_net_id`` for its test_iter batches; log and return
        the mean of each output, a list of (name, value)."""
        p = self.param
        log.info("Iteration %d, Testing net (#%d)", self.iter, test_net_id)
        net = self.test_nets[test_net_id]
        net.share_weights(self.net)
        n_iter = p.test_iter[test_net_id]
        sums, names, loss = None, [], 0.0
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
            values = [net.blobs[n].data.ravel() for n in net.outputs]
            flat = (np.concatenate(values).astype(np.float64) if values
                    else np.zeros(0))
            if sums is None:
                sums = flat
                names = [n for n, v in zip(net.outputs, values) for _ in range(v.size)]
            else:
                sums += flat
        if self._early_exit:
            log.info("Test interrupted.")
            return []
        if p.test_compute_loss:
            log.info("Test loss: %s", _g(loss / n_iter))
        means = [] if sums is None else list(sums / n_iter)
        self.mean_scores[test_net_id] = means
        weights = _loss_weights(net)
        results = []
        for k, (name, v) in enumerate(zip(names, means)):
            w = weights.get(name, 0.0)
            extra = f" (* {_g(w)} = {_g(w * v)} loss)" if w else ""
            log.info("    Test net output #%d: %s = %s%s", k, name, _g(v), extra)
            results.append((name, float(v)))
        for fn in self._test_callbacks:
            fn(self.iter, test_net_id, results)
        return results

    def share_weights(self, net):
        """Make ``net`` use the train net's weights (pycaffe's solver.share_weights)."""
        net.share_weights(self.net)

    # -- snapshots -------------------------------------------------------------------
    def snapshot_filename(self, extension):
        return f"{self.param.snapshot_prefix}_iter_{self.iter}{extension}"

    def snapshot(self):
        """Write ``<prefix>_iter_<N>.caffemodel`` then ``.solverstate`` (with the
        JSON sidecar), each atomically; return (caffemodel path, solverstate path).

        A kill at any moment leaves every earlier snapshot whole (a .solverstate
        on disk means its snapshot is complete). A write that fails (a full disk)
        removes what this snapshot wrote and raises SnapshotError; with the
        divergence check on, non-finite weights raise DivergenceError and nothing
        is written.
        """
        p = self.param
        if self.divergence_check and nonfinite_params(self.net):
            # NOTE: never overwrite a good snapshot with NaN weights.
            err = self._diverged(None)
            err.args = (f"{err} (the snapshot of iteration {self.iter} was not "
                        "written)",)
            raise err
        model_file = self.snapshot_filename(".caffemodel")
        state_file = self.snapshot_filename(".solverstate")
        if not self._temp_files_cleaned:
            self._temp_files_cleaned = True
            _remove_stale_temp_files(p.snapshot_prefix)
        fresh = [f for f in (model_file, state_io.sidecar_path(state_file))
                 if not os.path.exists(f)]
        writing = model_file
        try:
            log.info("Snapshotting to binary proto file %s", model_file)
            atomic_write_bytes(model_file,
                               self.net.to_proto(p.snapshot_diff).SerializeToString())
            log.info("Snapshotting solver state to binary proto file %s", state_file)
            # The sidecar goes before the solverstate: a .solverstate on disk means
            # the whole snapshot is complete.
            writing = state_io.sidecar_path(state_file)
            state_io.write_sidecar(state_file, self._sidecar_payload(model_file))
            writing = state_file
            state_io.write_solverstate(state_file, state_io.make_solverstate(
                self.iter, model_file, self.history, self.current_step))
        except OSError as err:
            for f in fresh:  # an incomplete snapshot must not look like one
                with contextlib.suppress(OSError):
                    os.unlink(f)
            previous = (f"the previous snapshot {self.last_snapshot} is intact"
                        if self.last_snapshot else "no earlier snapshot was written")
            raise SnapshotError(
                f"cannot write the snapshot of iteration {self.iter} ({writing}): "
                f"{err.strerror or err}; {previous}",
                errno=err.errno,
            ) from None
        self.last_snapshot = model_file
        return model_file, state_file

    def _all_nets(self):
        yield "train", self.net
        for i, net in enumerate(self.test_nets):
            yield f"test/{i}", net

    def _sidecar_payload(self, model_file):
        layers = {}
        for key, net in self._all_nets():
            states = {}
            for layer in net.data_layers:
                get = getattr(layer, "state", None)
                if not callable(get):
                    continue
                value = get()
                try:
                    json.dumps(value)
                except (TypeError, ValueError):
                    log.warning("data layer %s: its state is not JSON-able; the "
                                "snapshot will not restore its cursor", layer.name)
                    continue
                states[layer.name] = value
            if states:
                layers[key] = states
        return {"iter": self.iter, "learned_net": model_file,
                "solver_type": self.type_name, "rng": rng.get_state(),
                "data_layers": layers}

    def restore(self, path):
        """Resume from a ``.solverstate`` (Caffe's or ours): iteration, weights from
        its ``learned_net``, lr position, history; with caffepy's sidecar also the
        random state and the data cursors."""
        path = os.fspath(path)
        state = state_io.read_solverstate(path)
        n = len(self._params)
        shapes = [b.shape for b in self._params] * self.history_sets
        names = self._param_names * self.history_sets
        if self.history_sets > 1:
            names = [f"{nm} (history set {k // n + 1})" for k, nm in enumerate(names)]
        arrays = state_io.history_arrays(state, shapes, names, self.dtype,
                                         self.type_name, self.history_sets)
        if state.HasField("learned_net") and state.learned_net:
            model = state_io.resolve_learned_net(state.learned_net, path)
            self.net.copy_from(model)
            self.last_snapshot = model
        self.iter = state.iter
        self.current_step = state.current_step
        for h, a in zip(self.history, arrays):
            h[...] = a
        sidecar = state_io.read_sidecar(path)
        if sidecar is not None:
            self._apply_sidecar(sidecar, path)
        log.info("Restored solver state from %s (iteration %d)", path, self.iter)

    def _apply_sidecar(self, sidecar, path):
        if sidecar.get("iter") != self.iter:
            log.warning("ignoring %s: it was written for iteration %s, the solver "
                        "state is at %d", state_io.sidecar_path(path),
                        sidecar.get("iter"), self.iter)
            return
        where = state_io.sidecar_path(path)
        advice = ("delete it to resume without it (the data order and random draws "
                  "then differ from an uninterrupted run)")
        if sidecar.get("rng") is not None:
            try:
                rng.set_state(sidecar["rng"])
            except (TypeError, ValueError, KeyError, OverflowError) as err:
                raise SolverError(
                    f"{where}: the random state in it is not valid ({err}); {advice}"
                ) from None
        saved = sidecar.get("data_layers") or {}
        if not isinstance(saved, dict) or not all(
                isinstance(v, dict) for v in saved.values()):
            raise SolverError(f"{where}: 'data_layers' is not a mapping of net to "
                              f"layer states; {advice}")
        for key, net in self._all_nets():
            for layer in net.data_layers:
                value = saved.get(key, {}).get(layer.name)
                if value is not None:
                    layer.set_state(value)
