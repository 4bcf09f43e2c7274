"""Communicators: what data-parallel training needs from MPI, and a one-process
stand-in that needs no MPI.

:class:`SingleProcess` is rank 0 of 1: every collective is the identity, and
nothing imports mpi4py. :class:`MPICommunicator` wraps mpi4py's ``COMM_WORLD``
and never blocks without a limit: each collective is started non-blocking and
polled until it completes or ``timeout`` seconds pass. Before each collective a
rank tells every other rank which collective it has reached (a small
point-to-point message, a heartbeat), so a rank whose collective times out can
name the ranks that never arrived: they died (and the launcher did not clean
up) or hang. It then raises :class:`~caffepy.errors.ParallelError` naming them;
the caller aborts the whole job (:meth:`Communicator.abort`).
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from caffepy.errors import ParallelError

#: Seconds a collective may wait for the other ranks (``CAFFEPY_MPI_TIMEOUT``).
DEFAULT_TIMEOUT = 300.0

_HEARTBEAT_TAG = 7301


def timeout_from_env() -> float:
    """The collective timeout: ``CAFFEPY_MPI_TIMEOUT`` seconds, or 300.

    Raises:
        ParallelError: a value that is not a positive number.
    """
    text = os.environ.get("CAFFEPY_MPI_TIMEOUT", "")
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ParallelError(
            f"CAFFEPY_MPI_TIMEOUT must be a positive number of seconds, got {text!r}"
        )
    return value


class Communicator:
    """A group of ``size`` ranks; this process is ``rank``.

    Collectives work in place on contiguous NumPy arrays; ``what`` names the
    collective in error messages (e.g. "the gradient reduction of iteration 12").
    """

    rank = 0
    size = 1

    def allreduce_sum(self, buf: np.ndarray, what: str = "a reduction") -> None:
        """Replace ``buf`` by the element-wise sum of every rank's ``buf``."""

    def start_allreduce_sum(self, buf: np.ndarray, what: str = "a reduction") -> Any:
        """Start :meth:`allreduce_sum` of ``buf`` without waiting; finish it with
        :meth:`wait` (``buf`` must stay untouched until then). Here it completes
        at once."""
        self.allreduce_sum(buf, what)
        return None

    def test(self, pending: Any) -> bool:
        """Let a started collective progress; whether it has completed."""
        return True

    def wait(self, pending: Any) -> None:
        """Return when a started collective has completed."""

    def bcast(self, buf: np.ndarray, what: str = "a broadcast") -> None:
        """Replace ``buf`` by rank 0's ``buf``."""

    def allgather(self, obj: Any, what: str = "a gather") -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order."""
        return [obj]

    def barrier(self, what: str = "a barrier") -> None:
        """Return when every rank has called it."""

    def abort(self, code: int = 1) -> None:
        """Stop every rank of the job now with exit status ``code``."""
        os._exit(code)

    def close(self) -> None:
        """Release what the communicator holds (pending heartbeats)."""


class SingleProcess(Communicator):
    """Rank 0 of 1: collectives do nothing; no MPI is imported."""


class MPICommunicator(Communicator):
    """mpi4py's ``COMM_WORLD`` with bounded-time collectives.

    Args:
        timeout: seconds a collective may wait before the ranks that did not
            reach it are declared lost (see :func:`timeout_from_env`).
    """

    def __init__(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        from mpi4py import MPI

        self._mpi = MPI
        self._comm = MPI.COMM_WORLD
        self.rank = self._comm.Get_rank()
        self.size = self._comm.Get_size()
        self.timeout = float(timeout)
        self._seq = 0
        self._peers = [r for r in range(self.size) if r != self.rank]
        # Per peer: the last collective number it said it reached, the receive
        # buffer and request of its next heartbeat.
        self._seen = {r: 0 for r in self._peers}
        self._hb_in = {r: np.zeros(1, np.int64) for r in self._peers}
        self._hb_req = {r: self._post_recv(r) for r in self._peers}
        self._sends: list[tuple[Any, np.ndarray]] = []

    # -- heartbeats -------------------------------------------------------------------
    def _post_recv(self, peer: int) -> Any:
        return self._comm.Irecv(self._hb_in[peer], source=peer, tag=_HEARTBEAT_TAG)

    def _drain_heartbeats(self) -> None:
        for peer in self._peers:
            while self._hb_req[peer].Test():
                self._seen[peer] = max(self._seen[peer], int(self._hb_in[peer][0]))
                self._hb_req[peer] = self._post_recv(peer)
        self._sends = [(req, b) for req, b in self._sends if not req.Test()]

    def _arrive(self) -> int:
        """Start collective number ``seq``: tell every peer we reached it."""
        self._drain_heartbeats()
        self._seq += 1
        msg = np.array([self._seq], np.int64)
        for peer in self._peers:
            req = self._comm.Isend(msg, dest=peer, tag=_HEARTBEAT_TAG)
            self._sends.append((req, msg))
        return self._seq

    def _wait(self, req: Any, seq: int, what: str) -> None:
        """Poll ``req`` until it completes; past the timeout, name the lost ranks."""
        if req.Test():
            return
        deadline = time.monotonic() + self.timeout
        polls = 0
        while not req.Test():
            polls += 1
            if polls % 1024 == 0 and time.monotonic() > deadline:
                self._drain_heartbeats()
                lost = [r for r in self._peers if self._seen[r] < seq]
                raise ParallelError(self._lost_message(lost, what))
            # NOTE: MPI moves a non-blocking collective along only inside MPI
            # calls, so poll often: yield the core for the first polls, then
            # sleep at most 0.2 ms (a longer sleep stalls every step of the
            # reduction's algorithm).
            time.sleep(0 if polls < 4096 else 2e-4)

    def _lost_message(self, lost: list[int], what: str) -> str:
        wait = f"{self.timeout:g} s"
        if not lost:
            return (
                f"rank {self.rank}: {what} did not complete within {wait} although "
                "every rank reached it; stopping all ranks"
            )
        names = ", ".join(str(r) for r in lost)
        plural = "s" if len(lost) > 1 else ""
        return (
            f"rank {self.rank}: lost rank{plural} {names}: did not reach {what} "
            f"within {wait} (dead or hung); stopping all ranks"
        )

    # -- collectives ------------------------------------------------------------------
    def allreduce_sum(self, buf: np.ndarray, what: str = "a reduction") -> None:
        seq = self._arrive()
        req = self._comm.Iallreduce(self._mpi.IN_PLACE, buf, op=self._mpi.SUM)
        self._wait(req, seq, what)

    def start_allreduce_sum(self, buf: np.ndarray, what: str = "a reduction") -> Any:
        seq = self._arrive()
        req = self._comm.Iallreduce(self._mpi.IN_PLACE, buf, op=self._mpi.SUM)
        return (req, seq, what)

    def test(self, pending: Any) -> bool:
        return bool(pending[0].Test())

    def wait(self, pending: Any) -> None:
        self._wait(*pending)

    def bcast(self, buf: np.ndarray, what: str = "a broadcast") -> None:
        seq = self._arrive()
        self._wait(self._comm.Ibcast(buf, root=0), seq, what)

    def allgather(self, obj: Any, what: str = "a gather") -> list[Any]:
        import pickle

        data = np.frombuffer(pickle.dumps(obj), np.uint8)
        sizes = np.zeros(self.size, np.int64)
        sizes[self.rank] = data.size
        self.allreduce_sum(sizes, what)
        out = np.zeros(int(sizes.sum()), np.uint8)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        out[offsets[self.rank] : offsets[self.rank] + data.size] = data
        self.allreduce_sum(out, what)
        return [
            pickle.loads(out[o : o + n].tobytes())
            for o, n in zip(offsets.tolist(), sizes.tolist())
        ]

    def barrier(self, what: str = "a barrier") -> None:
        seq = self._arrive()
        self._wait(self._comm.Ibarrier(), seq, what)

    def abort(self, code: int = 1) -> None:
        self._comm.Abort(code)
        # NOTE: MPICH's MPI_Abort can return before the launcher kills us.
        os._exit(code)

    def close(self) -> None:
        """Cancel the pending heartbeat receives after a final barrier, so MPI
        finalizes cleanly at exit."""
        self.barrier("the end of training")
        self._drain_heartbeats()
        for peer in self._peers:
            req = self._hb_req[peer]
            req.Cancel()
            req.Wait()
        for req, _ in self._sends:
            req.Wait()
        self._sends = []
        self._peers = []
