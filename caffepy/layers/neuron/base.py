"""The base of the neuron layers that work in place."""

from __future__ import annotations

from caffepy.backend.base import Array, Ops
from caffepy.layer import NeuronLayer


class InPlaceNeuron(NeuronLayer):
    """A NeuronLayer that keeps its input in its workspace when computing in place
    (for a backward that reads x)."""

    def _keep_input(self, ops: Ops, bottom: list, top: list) -> None:
        """Keep a copy of the input for backward when computing in place."""
        if top[0] is bottom[0]:
            self.workspace(ops).keep("x", ops.data(bottom[0]))

    def _forward_input(self, ops: Ops, bottom: list, top: list) -> Array:
        """The forward pass's input, as backward sees it (kept by _keep_input)."""
        if top[0] is bottom[0]:
            blob = bottom[0]
            return self.workspace(ops).get("x", blob.shape, blob.dtype)
        return ops.data(bottom[0])
