"""What ``caffepy test`` and ``caffepy time`` do: score a model over some batches,
and time each layer's forward and backward (Caffe's ``caffe test``/``caffe time``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

log = logging.getLogger("caffepy")


def _net(model, phase, weights, level, stages, threads, gpu):
    import caffepy
    from caffepy.tools.device import set_threads, use_gpu

    set_threads(threads)
    use_gpu(gpu)
    return caffepy.Net(
        model,
        getattr(caffepy, phase),
        level=level,
        stages=list(stages),
        weights=weights or None,
    )


def score_model(
    model: str,
    weights: str,
    iterations: int = 50,
    phase: str = "TEST",
    level: int = 0,
    stages: Sequence[str] = (),
    threads: int = 0,
    gpu: int | None = None,
) -> str:
    """Forward ``iterations`` batches and average each output element.

    Logs every batch's outputs and the mean loss; returns one ``name = mean``
    line per output element (``name[k]`` when an output has several).
    """
    from caffepy.tools.netsurgery import OutputMeans

    net = _net(model, phase, weights, level, stages, threads, gpu)
    outputs = OutputMeans()
    loss_total = 0.0
    for i in range(iterations):
        loss_total += net.forward_prefilled()
        outputs.add(net)
        for name in net.outputs:
            for v in np.asarray(net.blobs[name].data).reshape(-1):
                log.info("Batch %d, %s = %g", i, name, v)
    log.info("Loss: %g", loss_total / iterations)
    lines = []
    for name, k, mean in zip(outputs.names, outputs.index, outputs.means()):
        suffix = f"[{k}]" if outputs.sizes[name] > 1 else ""
        lines.append(f"{name}{suffix} = {mean:.6g}")
    return "\n".join(lines)


def time_model(
    model: str,
    iterations: int = 50,
    phase: str = "TRAIN",
    weights: str = "",
    level: int = 0,
    stages: Sequence[str] = (),
    threads: int = 0,
    gpu: int | None = None,
) -> str:
    """Per-layer forward and backward times of ``model`` averaged over
    ``iterations`` passes, as a table (Caffe's ``caffe time``)."""
    from caffepy.training import time_net

    net = _net(model, phase, weights, level, stages, threads, gpu)
    return time_net(net, iterations)
