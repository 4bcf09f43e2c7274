"""Starting a data-parallel run: which rank this is, checks before training, and
stopping every rank when one fails.

``mpiexec -n N caffepy train --solver S`` starts N processes. Each finds its
rank and the count in the launcher's environment (Open MPI's
``OMPI_COMM_WORLD_RANK``/``_SIZE``, MPICH/Intel MPI's ``PMI_RANK``/``PMI_SIZE``,
PMIx's ``PMIX_RANK``), so a single process never imports mpi4py. With N > 1 the
ranks then

1. agree on the run: each hashes its solver and train net parameters; when they
   differ, every rank stops and rank 0 says which field differs;
2. start from rank 0's weights (:func:`~caffepy.parallel.reduce.broadcast_params`);
3. read their own records (the data layers deal records round-robin from
   :mod:`caffepy.parallel.state`), average gradients before each update, and
   leave testing, logging and snapshots to rank 0 (:func:`root_only_param`).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from caffepy.errors import ParallelError
from caffepy.parallel import state
from caffepy.parallel.comm import (
    Communicator,
    MPICommunicator,
    SingleProcess,
    timeout_from_env,
)

log = logging.getLogger("caffepy")

#: (rank variable, size variable) of the launchers we know, in order.
_ENV = (
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
    ("PMI_RANK", "PMI_SIZE"),
    ("PMIX_RANK", "OMPI_COMM_WORLD_SIZE"),
    ("MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE"),
)

INSTALL_HINT = "pip install 'caffepy[mpi]'"

#: Ranks on this machine, as the launchers say it (to share the cores).
_LOCAL_SIZE_ENV = ("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS")

_current: dict[str, Any] = {"comm": SingleProcess(), "reducer": None}


def env_rank_size(environ: Any = None) -> tuple[int, int]:
    """(rank, size) from an MPI launcher's environment; (0, 1) outside one.

    Raises:
        ParallelError: a launcher variable that is not a valid integer.
    """
    env = os.environ if environ is None else environ
    for rank_var, size_var in _ENV:
        if rank_var in env and size_var in env:
            try:
                rank, size = int(env[rank_var]), int(env[size_var])
            except ValueError:
                raise ParallelError(
                    f"{rank_var}={env[rank_var]!r} / {size_var}={env[size_var]!r}: "
                    "expected integers from the MPI launcher"
                ) from None
            if size < 1 or not 0 <= rank < size:
                raise ParallelError(
                    f"{rank_var}={rank} and {size_var}={size} are not a rank of a "
                    "job of that size"
                )
            return rank, size
    return 0, 1


def init_parallel(environ: Any = None) -> Communicator:
    """The communicator of this process, with :mod:`caffepy.parallel.state` set.

    Outside an MPI launch (or with one rank) it is a :class:`SingleProcess` and
    mpi4py is not imported.

    Raises:
        ParallelError: N > 1 ranks but mpi4py is missing (with the install
            command), or mpi4py sees another rank or size than the launcher said.
    """
    rank, size = env_rank_size(environ)
    if size == 1:
        state.set_solver_count(1)
        state.set_solver_rank(0)
        return SingleProcess()
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        raise ParallelError(
            f"this is rank {rank} of {size} (launched by mpiexec) but mpi4py is not "
            f"installed; install it with: {INSTALL_HINT}"
        ) from None
    comm = MPICommunicator(timeout_from_env())
    if (comm.rank, comm.size) != (rank, size):
        raise ParallelError(
            f"the launcher says rank {rank} of {size} but MPI says rank {comm.rank} "
            f"of {comm.size}: is mpi4py built for another MPI than mpiexec's?"
        )
    state.set_solver_count(size)
    state.set_solver_rank(rank)
    state.set_multiprocess(True)
    return comm


def _describe(param: Any) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(param)


def _first_difference(mine: str, theirs: str) -> str:
    """The first differing line of two text-format messages, as 'a' vs 'b'."""
    ours, other = mine.splitlines(), theirs.splitlines()
    matcher = difflib.SequenceMatcher(a=ours, b=other, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            a = ours[i1].strip() if i1 < i2 else "(nothing)"
            b = other[j1].strip() if j1 < j2 else "(nothing)"
            return f"{a!r} on rank 0 vs {b!r}"
    return "(same text, different bytes)"


def check_consistency(comm: Communicator, solver_param: Any, net_param: Any) -> None:
    """Refuse to train when the ranks' solvers or train nets differ.

    Every rank hashes the two messages (deterministic serialization) and the
    hashes are gathered; on a mismatch every rank raises the same error, which
    names the ranks and the first differing line.

    Raises:
        ParallelError: the ranks disagree (``root_only`` is set on it: only
            rank 0 needs to print it).
    """
    if comm.size == 1:
        return
    texts = {"solver": _describe(solver_param), "train net": _describe(net_param)}
    digests = {k: hashlib.sha256(v.encode()).hexdigest() for k, v in texts.items()}
    everyone = comm.allgather(digests, "the check that every rank runs the same solver")
    for what in ("solver", "train net"):
        differ = [r for r, d in enumerate(everyone) if d[what] != everyone[0][what]]
        if not differ:
            continue
        all_texts = comm.allgather(texts[what], f"the comparison of the {what}s")
        where = _first_difference(all_texts[0], all_texts[differ[0]])
        ranks = ", ".join(str(r) for r in differ)
        err = ParallelError(
            f"the ranks were launched with different {what}s: rank {ranks} differ "
            f"from rank 0 (first difference: {where} on rank {differ[0]}); give "
            "every rank the same solver and net files"
        )
        err.root_only = True  # type: ignore[attr-defined]
        raise err


def root_only_param(param: Any, rank: int) -> None:
    """Edit a SolverParameter in place for rank ``rank``: ranks other than 0 build
    no test nets and write no snapshots (Caffe's ``Caffe::root_solver()``)."""
    if rank == 0:
        return
    for field in ("test_net_param", "test_net", "test_iter", "test_state"):
        param.ClearField(field)
    param.test_interval = 0
    param.snapshot = 0
    param.snapshot_after_train = False
    # NOTE: no prefix, so no metrics log beside rank 0's snapshots either.
    param.ClearField("snapshot_prefix")


def quiet_logging(rank: int) -> None:
    """Ranks other than 0 log warnings and errors only (Caffe's
    ``LOG_IF(INFO, Caffe::root_solver())``)."""
    if rank != 0:
        logging.getLogger("caffepy").setLevel(logging.WARNING)


def fail_all(
    comm: Communicator, err: BaseException, watchdog: Watchdog | None = None
) -> None:
    """Print ``err`` as one line (on rank 0 alone when it says so) and stop every
    rank of the job; does not return."""
    if watchdog is not None:
        watchdog.bye(error=True)
    if comm.rank == 0 or not getattr(err, "root_only", False):
        if isinstance(err, ParallelError):
            text = str(err)
        else:
            text = f"rank {comm.rank}: {err or type(err).__name__}"
        sys.stderr.write(f"caffepy: error: {text}\n")
        sys.stderr.flush()
    if getattr(err, "root_only", False):
        # Every rank raised it: wait until rank 0 has printed before aborting.
        try:
            comm.barrier("the stop after an error every rank saw")
        except ParallelError:
            pass
    comm.abort(1)


class Watchdog:
    """This rank's watchdog process (:mod:`caffepy.parallel.watch`): it names a
    rank killed outright, which the launcher would otherwise end with no word.

    Start it with :meth:`start` once MPI is up; say :meth:`bye` before any exit
    on purpose (``error=True`` after an error this rank reported itself).
    """

    def __init__(self, proc: Any) -> None:
        self.proc = proc

    @classmethod
    def start(cls, comm: Communicator) -> Watchdog | None:
        """Start the watchdogs of every rank and connect them to rank 0's.

        A collective: every rank calls it. ``None`` where the watchdog could
        not start (training goes on; only the name of a killed rank is lost).
        """
        import socket
        import subprocess

        from caffepy.parallel import watch

        host = socket.gethostname()
        args = [sys.executable, watch.__file__, str(comm.rank), str(comm.size)]
        try:
            proc = subprocess.Popen(
                [*args, str(os.getpid()), host],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE if comm.rank == 0 else subprocess.DEVNULL,
                # NOTE: a session of its own: the launcher's clean-up (SIGKILL to
                # the ranks) must not reach it.
                start_new_session=True,
            )
            port = 0
            if comm.rank == 0:
                line = proc.stdout.readline().decode().split()
                port = int(line[1]) if len(line) == 2 and line[0] == "port" else 0
        except (OSError, ValueError):
            proc, port = None, 0
        root_host, root_port = comm.allgather(
            (host, port), "the start of the watchdogs"
        )[0]
        if proc is None or not root_port:
            log.warning(
                "rank %d: no watchdog: a killed rank will not be named", comm.rank
            )
            if proc is not None:
                cls(proc).bye()
            return None
        if comm.rank:
            peer = "127.0.0.1" if root_host == host else root_host
            proc.stdin.write(f"peer {peer} {root_port}\n".encode())
            proc.stdin.flush()
        return cls(proc)

    def bye(self, error: bool = False) -> None:
        """Tell the watchdog this rank ends on purpose (it then stays quiet)."""
        try:
            self.proc.stdin.write(b"bye error\n" if error else b"bye\n")
            self.proc.stdin.close()
        except OSError:
            pass


def current() -> Communicator:
    """The communicator of the run in progress (a SingleProcess outside one)."""
    return _current["comm"]


def is_root() -> bool:
    """Whether this process is rank 0 (always, outside an MPI launch)."""
    return state.root_solver()


def _local_ranks() -> int:
    for var in _LOCAL_SIZE_ENV:
        try:
            return max(1, int(os.environ[var]))
        except (KeyError, ValueError):
            continue
    return 1


def ranked(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a training function on every rank of an MPI launch.

    Sets up :func:`current` (no MPI for a single process) and, with N > 1 ranks:
    shares the machine's cores between its ranks when ``threads`` is 0, turns
    any error on one rank into one line and an abort of every rank (no rank is
    left waiting in a collective), and closes the communicator at the end.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        comm = _current["comm"] = init_parallel()
        if comm.size == 1:
            return fn(*args, **kwargs)
        if not kwargs.get("threads"):
            kwargs["threads"] = max(1, (os.cpu_count() or 1) // _local_ranks())
        watchdog = None
        try:
            watchdog = Watchdog.start(comm)
            result = fn(*args, **kwargs)
            _log_reductions(_current["reducer"], comm.size)
            comm.close()
            if watchdog is not None:
                watchdog.bye()
        except BaseException as err:  # noqa: BLE001 - every failure stops all ranks
            fail_all(comm, err, watchdog)
            raise  # (fail_all aborts the job; only a test's stand-in returns)
        finally:
            _current["comm"], _current["reducer"] = SingleProcess(), None
        return result

    return wrapper


def _log_reductions(reducer: Any, size: int) -> None:
    if reducer is not None and reducer.reductions:
        log.info(
            "Gradient reduction over %d ranks: %d reductions, %.3f ms each (%.2f s)",
            size,
            reducer.reductions,
            1e3 * reducer.seconds / reducer.reductions,
            reducer.seconds,
        )


def agree_on_seed(comm: Communicator, param: Any) -> None:
    """Give a solver without ``random_seed`` rank 0's random one on every rank.

    The data layers draw their shuffle orders from the global generator; the
    ranks deal one stream between them only when they draw the same orders.
    """
    if param.random_seed >= 0:
        return
    import secrets

    seed = comm.allgather(secrets.randbits(62), "the choice of a random seed")[0]
    param.random_seed = seed


def prepare_ranks(param: Any) -> None:
    """Before the solver is built: check that every rank has the same solver and
    train net, then make ranks other than 0 quiet, test-free and snapshot-free.

    Raises:
        ParallelError: the ranks disagree (see :func:`check_consistency`).
    """
    comm = current()
    if comm.size == 1:
        return
    from caffepy.tools.netsurgery import solver_train_net

    check_consistency(comm, param, solver_train_net(param).param)
    agree_on_seed(comm, param)
    root_only_param(param, comm.rank)
    quiet_logging(comm.rank)
    log.info("Data-parallel training on %d ranks (MPI)", comm.size)


def start_ranks(solver: Any, nccl: bool = False) -> None:
    """After weights or a snapshot are loaded: give every rank rank 0's weights
    and average the gradients before every update: over MPI on the host, or
    (``nccl``, one rank per GPU) with NCCL on the devices, its id shared over
    MPI."""
    comm = current()
    if comm.size == 1:
        return
    from caffepy.parallel.reduce import broadcast_params, choose_reducer, layer_wise

    if nccl:
        from caffepy.parallel import nccl as nccl_mod

        uid = nccl_mod.new_uid() if comm.rank == 0 else b""
        uid = comm.allgather(uid, "the sharing of the NCCL id")[0]
        reducer = nccl_mod.NcclReducer(
            nccl_mod.open_comm(comm.size, uid, comm.rank),
            solver.net,
            solver.dtype,
            host=comm,
            layer_wise=layer_wise(solver.param, default=True),
        )
        reducer.bcast_params()
        log.info("Gradients reduced with NCCL on %d GPUs", comm.size)
    else:
        broadcast_params(comm, solver.net)
        reducer = choose_reducer(comm, solver)
    reducer.attach(solver)
    _current["reducer"] = reducer
