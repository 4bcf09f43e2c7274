"""data/prefetch.py: the prefetch thread, and filling in the consumer's thread
where that is faster (the same batches, in the same order, either way)."""

import pytest

from caffepy.data import prefetch
from caffepy.data.prefetch import Prefetcher


class Counter:
    """A source of batches numbered 0, 1, 2, ...; fails at ``fail_at``."""

    def __init__(self, fail_at=None):
        self.i = 0
        self.fail_at = fail_at

    def fill(self, batch):
        if self.i == self.fail_at:
            raise ValueError(f"record {self.i} is bad")
        batch.data.reshape((3,))
        batch.data.data[...] = self.i
        batch.label.reshape((1,))
        batch.label.data[...] = -self.i
        self.i += 1

    def state(self):
        return {"i": self.i}

    def set_state(self, state):
        self.i = state["i"]


def consume(pf, n):
    """(number, state) of the next ``n`` batches, each given back after use."""
    out = []
    for _ in range(n):
        batch = pf.next()
        assert batch.label.data[0] == -batch.data.data[0]
        out.append((int(batch.data.data[0]), batch.state["i"]))
        pf.release(batch)
    return out


@pytest.fixture
def often(monkeypatch):
    """Measure and switch every few batches."""
    monkeypatch.setattr(prefetch, "_WINDOW", 3)
    monkeypatch.setattr(prefetch, "_MEASURE", 2)
    monkeypatch.setattr(prefetch, "_RETRY_AFTER", 4)


@pytest.mark.parametrize("depth", [0, 1, 4])
def test_batches_come_in_order_through_every_switch(often, depth):
    pf = Prefetcher(Counter(), depth)
    modes = set()
    got = []
    for _ in range(60):
        got += consume(pf, 1)
        modes.add(pf.in_caller)
    pf.stop()
    assert got == [(i, i + 1) for i in range(60)]
    assert modes == ({False} if depth == 0 else {False, True})


def test_filling_here_stays_when_faster_and_leaves_when_slower():
    pf = Prefetcher(Counter(), 2)
    consume(pf, 1)
    # measured through the thread: 1 s per batch; here: 0.5 s
    pf._leave_thread()
    pf._threaded_period = 1.0
    for _ in range(prefetch._MEASURE):
        pf._judge_caller(0.4, 0.1)
    assert pf.in_caller and pf._stay == prefetch._RETRY_AFTER
    pf._stay = 1
    pf._judge_caller(0.4, 0.1)
    assert not pf.in_caller  # back to the thread, to measure again
    # here slower (1.5 s) than through the thread (1 s): back, for a while
    pf.in_caller, pf._threaded_period = True, 1.0
    for _ in range(prefetch._MEASURE):
        pf._judge_caller(1.0, 0.5)
    assert not pf.in_caller and pf._retry == prefetch._RETRY_AFTER
    pf.stop()


def test_stop_drops_what_was_prefetched(often):
    source = Counter()
    pf = Prefetcher(source, 4)
    consume(pf, 5)
    assert pf.in_caller or pf._ready or pf.running
    pf.stop()
    source.set_state({"i": 5})
    assert consume(pf, 3) == [(5, 6), (6, 7), (7, 8)]
    pf.stop()


@pytest.mark.parametrize("at", [2, 9])
def test_a_failing_source_fails_the_consumer_in_order(often, at):
    pf = Prefetcher(Counter(fail_at=at), 2)
    assert consume(pf, at) == [(i, i + 1) for i in range(at)]
    with pytest.raises(ValueError, match=f"record {at} is bad"):
        pf.next()
    pf.stop()
