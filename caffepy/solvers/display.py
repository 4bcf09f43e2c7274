"""What a solver logs, in Caffe's words and number format (``solver.cpp``'s
display and test output lines)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("caffepy")


def g(x: float) -> str:
    """A number as C++ streams print it by default (6 significant digits)."""
    return f"{float(x):g}"


def loss_weights(net: Any) -> dict[str, float]:
    """blob name -> loss weight of each top that carries one (Caffe's
    blob_loss_weights), taken from the layers' loss weights."""
    weights: dict[str, float] = {}
    for layer, lp in zip(net.layers, net.layer_param):
        for tname, w in zip(lp.top, layer.loss_weights):
            if w:
                weights[tname] = weights.get(tname, 0.0) + float(w)
    return weights


def log_outputs(
    kind: str, outputs: Iterable[tuple[str, float]], weights: dict[str, float]
) -> None:
    """One line per output value, numbered: ``    Train net output #0: loss =
    2.3 (* 1 = 2.3 loss)`` (``kind`` is "Train" or "Test"); the weighted part only
    for outputs that carry a loss weight."""
    for k, (name, v) in enumerate(outputs):
        w = weights.get(name, 0.0)
        extra = f" (* {g(w)} = {g(w * v)} loss)" if w else ""
        log.info("    %s net output #%d: %s = %s%s", kind, k, name, g(v), extra)


def log_iteration(
    iteration: int, per_s: float, lapse: float, display: int, loss: float
) -> None:
    """Caffe's display line: ``Iteration N (x iter/s, ys/D iters), loss = L``."""
    log.info(
        "Iteration %d (%s iter/s, %ss/%d iters), loss = %s",
        iteration,
        g(per_s),
        g(lapse),
        display,
        g(loss),
    )
