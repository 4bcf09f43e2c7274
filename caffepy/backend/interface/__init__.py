"""The op interface, one declaration class per family.

Each module declares the ops one family of layers calls (arguments, shapes,
what is written) as methods that raise ``NotImplementedError``;
:class:`caffepy.backend.base.Ops` inherits them all, and each backend implements
them in one mixin per family (``caffepy/backend/cpu/<family>.py``,
``caffepy/backend/cuda/<family>.py``). A new op goes in its family's module.
"""

from caffepy.backend.interface.common import CommonInterface
from caffepy.backend.interface.loss import LossInterface
from caffepy.backend.interface.memory import MemoryInterface
from caffepy.backend.interface.neuron import NeuronInterface
from caffepy.backend.interface.normalization import NormalizationInterface
from caffepy.backend.interface.solver import SolverInterface
from caffepy.backend.interface.vision import VisionInterface

__all__ = [
    "CommonInterface",
    "LossInterface",
    "MemoryInterface",
    "NeuronInterface",
    "NormalizationInterface",
    "SolverInterface",
    "VisionInterface",
]
