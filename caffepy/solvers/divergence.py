"""Divergence: find where a net's numbers stopped being finite, and say so.

Caffe keeps training when the loss becomes NaN (every later snapshot is
garbage). caffepy's solver stops instead (unless ``divergence_check=False``,
``--no-divergence-check``): it checks the loss every iteration (one
``math.isfinite``), the weights every ``display`` iterations and before every
snapshot, and on a non-finite value raises :class:`~caffepy.errors.DivergenceError`
with the iteration, the learning rate and the first layer whose output is not
finite, found by re-running the forward pass on the current batch one layer at a
time.
"""

import math

import numpy as np

from caffepy.errors import CaffepyError, DivergenceError


def nonfinite_params(net):
    """``[(layer name, param index)]`` of the parameter blobs holding NaN or inf."""
    bad = []
    for layer in net.layers:
        for j, blob in enumerate(layer.blobs):
            if not np.isfinite(blob.data).all():
                bad.append((layer.name, j))
    return bad


def _nonfinite_tops(net, li):
    """``[(top name, non-finite count, size)]`` of layer ``li``'s tops."""
    out = []
    for name, blob in zip(net.layer_param[li].top, net.top_vecs[li]):
        data = np.asarray(blob.data)
        finite = np.isfinite(data)
        if not finite.all():
            out.append((name, int(data.size - finite.sum()), int(data.size)))
    return out


def first_nonfinite_layer(net):
    """Re-run the forward pass on the current batch, one layer at a time, and
    return ``(layer index, [(top, non-finite count, size)])`` of the first layer
    whose output holds NaN or inf, or None.

    Layers without bottoms (data and input layers) are not run again: their tops
    still hold the batch that diverged, which is checked as it is.
    """
    for li, layer in enumerate(net.layers):
        if net.bottom_vecs[li]:
            try:
                layer.Forward(net.bottom_vecs[li], net.top_vecs[li])
            except CaffepyError:
                return None
        bad = _nonfinite_tops(net, li)
        if bad:
            return li, bad
    return None


def _describe_layer(net, found):
    if found is None:
        return (
            "no layer's output was non-finite when the forward pass was re-run "
            "on the current batch"
        )
    li, tops = found
    layer = net.layers[li]
    what = ", ".join(
        f"top '{name}' has {n} non-finite of {size} values" for name, n, size in tops
    )
    text = (
        f"the first layer whose output is non-finite is '{layer.name}' "
        f"({layer.type}): {what}"
    )
    if not net.bottom_vecs[li]:
        text += " (the input data itself)"
    return text


def _g(x):
    return f"{float(x):g}"


def diagnose(net, iteration, lr, loss=None, last_snapshot=None):
    """A :class:`DivergenceError` describing a diverged ``net`` (not raised).

    Args:
        net: the train net, holding the batch of the diverged iteration.
        iteration: the solver's iteration when the divergence was seen.
        lr: the learning rate of the last update.
        loss: the non-finite loss, or None when the weights were found non-finite.
        last_snapshot: the newest snapshot written (finite), or None.
    """
    bad_params = nonfinite_params(net)
    head = f"training diverged at iteration {iteration} (lr {_g(lr)}): "
    if loss is not None and not math.isfinite(loss):
        head += f"the loss is {loss}"
    else:
        head += "the weights are no longer finite"
    found = first_nonfinite_layer(net)
    parts = [head, _describe_layer(net, found)]
    if bad_params:
        names = sorted({name for name, _ in bad_params}, key=list(net.layer_dict).index)
        parts.append(
            "non-finite weights in layer(s) "
            + ", ".join(f"'{n}'" for n in names[:5])
            + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        )
    if last_snapshot:
        parts.append(f"the last finite snapshot is {last_snapshot}")
    parts.append(
        "lower base_lr (or clip_gradients), or pass --no-divergence-check "
        "to keep training as Caffe does"
    )
    err = DivergenceError("; ".join(parts))
    err.iteration, err.lr, err.loss = iteration, lr, loss
    err.last_snapshot = last_snapshot
    err.layer = None if found is None else net.layers[found[0]].name
    err.nonfinite_params = bad_params
    return err
