"""caffepy's random state (Caffe's global RNG): fillers, dropout, data order.

One ``numpy.random.Generator`` per process, seeded by the solver's
``random_seed`` (or ``caffepy.set_random_seed``). Its state is saved in snapshots,
so a resumed run draws the same numbers the uninterrupted run would have.
"""

import numpy as np

_rng = np.random.default_rng()


def set_random_seed(seed):
    """Seed the global generator (as ``caffe.set_random_seed``)."""
    global _rng
    _rng = np.random.default_rng(None if seed is None or seed < 0 else int(seed))


def get_rng():
    return _rng


def get_state():
    """A JSON-able snapshot of the generator state."""
    return _rng.bit_generator.state


def set_state(state):
    _rng.bit_generator.state = state
