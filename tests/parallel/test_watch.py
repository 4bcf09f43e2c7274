"""The watchdogs that name a rank killed outright, without MPI: two watchdog
processes, each watching a stand-in "rank" (a sleeping process), driven
through their pipes as caffepy.parallel.launch.Watchdog drives them.

Oracle: the protocol of caffepy.parallel.watch: end of file without ``bye`` is a
death; rank 0's watchdog names the first death in one line and ends what is left
of the ranks; goodbyes (``bye``, ``bye error``) leave it silent.
"""

import subprocess
import sys
import time

import pytest

from caffepy.parallel import watch


def _start(rank, pid):
    return subprocess.Popen(
        [sys.executable, watch.__file__, str(rank), "2", str(pid), "testhost"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE if rank == 0 else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


@pytest.fixture
def pair():
    ranks = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])]
    ranks.append(
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    )
    dogs = [_start(0, ranks[0].pid), _start(1, ranks[1].pid)]
    port = dogs[0].stdout.readline().decode().split()
    assert port[0] == "port"
    dogs[1].stdin.write(f"peer 127.0.0.1 {port[1]}\n".encode())
    dogs[1].stdin.flush()
    time.sleep(0.3)  # the member connects
    yield ranks, dogs
    for p in ranks + dogs:
        if p.poll() is None:
            p.kill()
        p.wait()
        for f in (p.stdin, p.stdout, p.stderr):
            if f is not None and not f.closed:
                try:
                    f.close()
                except BrokenPipeError:
                    pass


def _finish(dogs):
    out = []
    for dog in dogs:
        dog.wait(timeout=30)
        out.append(dog.stderr.read().decode())
    return out


def test_a_rank_dying_silently_is_named_and_the_rest_stopped(pair):
    ranks, dogs = pair
    dogs[1].stdin.close()  # rank 1's pipe ends without a word: it died
    err0, err1 = _finish(dogs)
    assert err0 == (
        f"caffepy: error: rank 1 (pid {ranks[1].pid} on testhost) died; stopping\n"
    )
    assert err1 == ""
    assert ranks[0].wait(timeout=10) != 0  # what was left of the job is ended


def test_the_first_death_is_named(pair):
    ranks, dogs = pair
    dogs[1].stdin.close()
    time.sleep(0.05)
    dogs[0].stdin.close()  # the launcher's clean-up, a moment later
    err0, _ = _finish(dogs)
    assert f"rank 1 (pid {ranks[1].pid} on testhost) died" in err0


@pytest.mark.parametrize("word", ["bye", "bye error"])
def test_goodbyes_leave_it_silent(pair, word):
    ranks, dogs = pair
    for dog in dogs:
        dog.stdin.write(f"{word}\n".encode())
        dog.stdin.close()
    assert _finish(dogs) == ["", ""]
    assert ranks[0].poll() is None and ranks[1].poll() is None  # nobody killed
