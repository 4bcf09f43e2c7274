"""Caffe's ``debug_info`` log lines (``Net::ForwardDebugInfo``,
``BackwardDebugInfo`` and the parameter norms of ``Net::Backward``).

Each value is the mean absolute value of a blob (``asum / count``), printed as
C++ streams print a float (6 significant digits, ``%g``)::

    [Forward] Layer <layer>, top blob <blob> data: <mean |data|>
    [Forward] Layer <layer>, param blob <param name or index> data: <mean |data|>
    [Backward] Layer <layer>, bottom blob <blob> diff: <mean |diff|>
    [Backward] Layer <layer>, param blob <index> diff: <mean |diff|>
    [Backward] All net params (data, diff): L1 norm = (<a>, <b>); L2 norm = (<c>, <d>)

Forward lines follow each layer's forward; backward lines each layer's backward
(bottoms that need a gradient, parameters that learn); the norms, over the
learnable parameters, follow a whole backward pass.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

log = logging.getLogger("caffepy")


def _g(value: float) -> str:
    """A number as C++'s default ostream writes it."""
    return f"{float(value):.6g}"


def _mean_abs(arr: Any) -> float:
    arr = np.asarray(arr)
    return float(np.abs(arr, dtype=np.float64).sum() / arr.size) if arr.size else 0.0


def param_display_name(net: Any, li: int, j: int) -> str:
    """The parameter's ``param { name }`` if given, else its index (Caffe's
    ``param_display_names_``)."""
    lp = net.layer_param[li]
    if j < len(lp.param) and lp.param[j].name:
        return lp.param[j].name
    return str(j)


def forward_debug_info(net: Any, li: int) -> None:
    """The [Forward] lines of layer ``li``: its tops, then its parameters."""
    name = net.layer_names[li]
    lp = net.layer_param[li]
    for tname, blob in zip(lp.top, net.top_vecs[li]):
        log.info(
            "    [Forward] Layer %s, top blob %s data: %s",
            name,
            tname,
            _g(_mean_abs(blob.cpu_data())),
        )
    for j, blob in enumerate(net.layers[li].blobs):
        log.info(
            "    [Forward] Layer %s, param blob %s data: %s",
            name,
            param_display_name(net, li, j),
            _g(_mean_abs(blob.cpu_data())),
        )


def backward_debug_info(net: Any, li: int) -> None:
    """The [Backward] lines of layer ``li``: the bottoms given a gradient, then
    the parameters that learn (by index)."""
    name = net.layer_names[li]
    lp = net.layer_param[li]
    layer = net.layers[li]
    for bname, blob, need in zip(
        lp.bottom, net.bottom_vecs[li], net.bottom_need_backward[li]
    ):
        if need:
            log.info(
                "    [Backward] Layer %s, bottom blob %s diff: %s",
                name,
                bname,
                _g(_mean_abs(blob.cpu_diff())),
            )
    for j, blob in enumerate(layer.blobs):
        if j < len(layer.param_propagate_down) and layer.param_propagate_down[j]:
            log.info(
                "    [Backward] Layer %s, param blob %d diff: %s",
                name,
                j,
                _g(_mean_abs(blob.cpu_diff())),
            )


def params_debug_info(net: Any) -> None:
    """The L1 and L2 norms of the learnable parameters' data and diffs."""
    asum_data = asum_diff = sumsq_data = sumsq_diff = 0.0
    for blob in net.learnable_params:
        data = np.asarray(blob.cpu_data(), np.float64)
        diff = np.asarray(blob.cpu_diff(), np.float64)
        asum_data += float(np.abs(data).sum())
        asum_diff += float(np.abs(diff).sum())
        sumsq_data += float(np.square(data).sum())
        sumsq_diff += float(np.square(diff).sum())
    log.info(
        "    [Backward] All net params (data, diff): L1 norm = (%s, %s); "
        "L2 norm = (%s, %s)",
        _g(asum_data),
        _g(asum_diff),
        _g(math.sqrt(sumsq_data)),
        _g(math.sqrt(sumsq_diff)),
    )


__all__ = [
    "backward_debug_info",
    "forward_debug_info",
    "param_display_name",
    "params_debug_info",
]
