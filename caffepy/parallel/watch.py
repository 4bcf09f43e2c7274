"""A watchdog process per rank that names a rank killed outright (``kill -9``).

When a rank dies without a word, the MPI launcher (MPICH's hydra, Open MPI's
mpirun) kills every other rank at once, with SIGKILL, and names only a PID: no
rank gets to say anything. So each rank starts a small watchdog process in a
session of its own (out of the launcher's reach), linked to it by a pipe (the
watchdog's stdin; end of file without ``bye`` means the rank died) and to rank
0's watchdog by TCP (stdlib only: this file runs as a script, so it imports no
caffepy and no MPI).

Rank 0's watchdog collects the deaths. The first rank whose pipe closed is the
one that died; the others died of the launcher's clean-up a few milliseconds
later. After a short grace period it prints one line, ``caffepy: error: rank 1
(pid 4242 on node3) died; stopping``, and tells every watchdog to kill what is
left of its rank (for launchers that leave the other ranks running). A rank
that stops on purpose (the end of training, or an error it reported itself)
writes ``bye`` (``bye error``) first, and then nothing more is printed.

Protocol, one line per message: rank -> its watchdog (stdin): ``peer HOST PORT``
(ranks > 0: where rank 0's watchdog listens), ``bye`` or ``bye error``; rank 0's
watchdog -> rank 0 (stdout): ``port PORT``; watchdog r -> watchdog 0:
``hello R PID HOST``, ``died R PID HOST TIME``, ``bye R`` or ``quit R`` (an
error already reported); watchdog 0 -> watchdog r: ``stop``.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import time

#: Seconds rank 0's watchdog waits after the first death before naming one.
GRACE = 0.5
#: Seconds rank 0's watchdog waits for the others' goodbyes after its rank's.
LINGER = 30.0


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _lines(buf: bytearray, data: bytes) -> list[str]:
    buf += data
    out = []
    while b"\n" in buf:
        line, _, rest = bytes(buf).partition(b"\n")
        buf[:] = rest
        out.append(line.decode(errors="replace").strip())
    return out


def _report(death: tuple[float, int, int, str]) -> None:
    _, rank, pid, host = death
    sys.stderr.write(
        f"caffepy: error: rank {rank} (pid {pid} on {host}) died; stopping\n"
    )
    sys.stderr.flush()


def root(size: int, pid: int, host: str) -> None:
    """Rank 0's watchdog: listen, collect deaths, name the first."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("", 0))
    server.listen(size)
    sys.stdout.write(f"port {server.getsockname()[1]}\n")
    sys.stdout.flush()
    stdin = sys.stdin.buffer.raw
    # per connection: [rank, pid, host, line buffer, ended]
    peers: dict[socket.socket, list] = {}
    deaths: list[tuple[float, int, int, str]] = []
    byes = 0
    quiet = False
    own_open, own_buf, own_bye = True, bytearray(), False
    own_end = None
    first_death = None
    while True:
        if first_death is not None and time.monotonic() > first_death + GRACE:
            break
        if not own_open and (quiet or (own_bye and byes >= size - 1)):
            return  # a normal end, or an error a rank reported itself
        if own_end is not None and time.monotonic() > own_end + LINGER:
            return  # rank 0 ended well; a peer's watchdog never said goodbye
        watched = [server, *peers] + ([stdin] if own_open else [])
        ready, _, _ = select.select(watched, [], [], 0.1)
        for r in ready:
            if r is server:
                conn, _ = server.accept()
                peers[conn] = [-1, 0, "?", bytearray(), False]
            elif r is stdin:
                data = os.read(stdin.fileno(), 4096)
                for line in _lines(own_buf, data):
                    if line.startswith("bye"):
                        own_bye = True
                        quiet = quiet or line == "bye error"
                if not data:
                    own_open = False
                    if not own_bye:
                        deaths.append((time.time(), 0, pid, host))
                    else:
                        own_end = time.monotonic()
            else:
                info = peers[r]
                try:
                    data = r.recv(4096)
                except OSError:
                    data = b""
                for line in _lines(info[3], data):
                    word, *rest = line.split()
                    if word == "hello":
                        info[0], info[1], info[2] = int(rest[0]), int(rest[1]), rest[2]
                    elif word == "died":
                        when = float(rest[3])
                        deaths.append((when, int(rest[0]), int(rest[1]), rest[2]))
                        info[4] = True
                    elif word in ("bye", "quit"):
                        info[4] = True
                        byes += 1
                        quiet = quiet or word == "quit"
                if not data:
                    if not info[4]:  # its watchdog went too: that whole rank is gone
                        deaths.append((time.time(), info[0], info[1], info[2]))
                        info[4] = True
                    del peers[r]
                    r.close()
        if deaths and first_death is None:
            first_death = time.monotonic()
    if not quiet:
        _report(min(deaths))
    for conn in peers:
        try:
            conn.sendall(b"stop\n")
        except OSError:
            pass
    if own_open:
        _kill(pid)


def member(rank: int, pid: int, host: str) -> None:
    """Watchdog of rank > 0: tell rank 0's watchdog how its rank ended."""
    stdin = sys.stdin.buffer.raw
    buf = bytearray()
    conn = None
    pending = []
    while True:
        watched = [stdin] + ([conn] if conn is not None else [])
        ready, _, _ = select.select(watched, [], [])
        if conn is not None and conn in ready:
            try:
                said = conn.recv(4096)
            except OSError:
                said = b""
            if b"stop" in said:  # a rank died: end what is left of this one
                _kill(pid)
                return
            if not said:  # rank 0's watchdog is gone: keep watching the rank
                conn.close()
                conn = None
        if stdin not in ready:
            continue
        data = os.read(stdin.fileno(), 4096)
        for line in _lines(buf, data):
            if line.startswith("peer"):
                _, peer_host, port = line.split()
                try:
                    conn = socket.create_connection((peer_host, int(port)), 30)
                    conn.settimeout(None)
                    conn.sendall(f"hello {rank} {pid} {host}\n".encode())
                except OSError:
                    conn = None  # no naming of this rank then; training goes on
            elif line.startswith("bye"):
                pending.append("quit" if line == "bye error" else "bye")
        if not data:
            message = (
                f"{pending[0]} {rank}\n"
                if pending
                else f"died {rank} {pid} {host} {time.time():.6f}\n"
            )
            if conn is not None:
                try:
                    conn.sendall(message.encode())
                    # Stay until rank 0's watchdog is done, so a stop reaches us.
                    conn.settimeout(GRACE + 5)
                    conn.recv(4096)
                except OSError:
                    pass
            return


def main(argv: list[str]) -> None:
    rank, size, pid = int(argv[0]), int(argv[1]), int(argv[2])
    host = argv[3]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the ranks' business
    if rank == 0:
        root(size, pid, host)
    else:
        member(rank, pid, host)


if __name__ == "__main__":
    main(sys.argv[1:])
