"""Gradient memory shared between blobs whose diffs are never live together.

Caffe gives every blob its own diff. In a backward pass the diff of an
activation is written by the first layer (from the top) that reads the blob,
read down to the layer that created it, and never read again: in layer indices,
it is live over ``[creator, last layer touching it]``. Blobs whose intervals do
not meet can hold their gradients in one buffer, as PyTorch frees a gradient
once it has been used. :func:`plan_diff_sharing` finds such groups (a pure
function of the net's wiring); :meth:`caffepy.net.Net.share_diffs` applies
them. Results are unchanged: every shared diff is assigned before it is read.

A blob keeps its own diff when anything may read it outside its interval: net
inputs and outputs (pycaffe's ``backward`` returns them), loss tops (their diff
holds the loss weight from forward), diffs already shared with another blob
(parameters, Caffe's ShareDiff), and blobs whose gradient some reader needs but
some consumer does not write (``propagate_down: false``: Caffe's reader sees
the never-written diff).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

log = logging.getLogger("caffepy")


def diff_live_ranges(
    bottom_vecs: Sequence[Sequence[Any]],
    top_vecs: Sequence[Sequence[Any]],
    layer_need_backward: Sequence[bool],
    bottom_need_backward: Sequence[Sequence[bool]],
) -> dict[int, tuple[Any, int, int] | None]:
    """Per blob (by ``id``): ``(blob, first, last)`` layer indices over which its
    diff is live in backward, or None when it must keep a diff of its own (a
    consumer that needs no gradient for it while a reader does). Blobs whose
    diff no backward touches are left out.

    Args:
        bottom_vecs, top_vecs: per layer, its bottom and top blobs.
        layer_need_backward: per layer, whether its backward runs.
        bottom_need_backward: per layer, whether each bottom gets a gradient.
    """
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    blobs: dict[int, Any] = {}
    read: set[int] = set()
    written: set[int] = set()
    unwritten: set[int] = set()
    for li, (bottoms, tops) in enumerate(zip(bottom_vecs, top_vecs)):
        top_ids = {id(t) for t in tops}
        for t in tops:
            key = id(t)
            blobs[key] = t
            first.setdefault(key, li)
            last[key] = li
            if layer_need_backward[li]:
                read.add(key)
        for j, b in enumerate(bottoms):
            key = id(b)
            blobs[key] = b
            last[key] = li
            if key in top_ids:
                continue  # in place: the layer reads and writes the live diff
            if layer_need_backward[li] and bottom_need_backward[li][j]:
                written.add(key)
            else:
                unwritten.add(key)
    out: dict[int, tuple[Any, int, int] | None] = {}
    for key, blob in blobs.items():
        if key not in read and key not in written:
            continue  # no backward touches its diff
        if key not in first or (key in read and key in unwritten):
            out[key] = None
        else:
            out[key] = (blob, first[key], last[key])
    return out


def plan_diff_sharing(
    bottom_vecs: Sequence[Sequence[Any]],
    top_vecs: Sequence[Sequence[Any]],
    layer_need_backward: Sequence[bool],
    bottom_need_backward: Sequence[Sequence[bool]],
    keep: set[int],
) -> list[list[Any]]:
    """Groups of blobs that can hold their diffs in one buffer.

    First fit by decreasing size: each blob joins the first group none of whose
    live intervals meets its own (closed intervals: a layer reading one diff
    and writing another needs both), so a group's buffer is its first blob's
    size.

    Args:
        bottom_vecs, top_vecs, layer_need_backward, bottom_need_backward: as
            :func:`diff_live_ranges`.
        keep: ``id`` of the blobs that keep their own diff.

    Returns:
        Lists of blobs (largest first), each of two blobs or more.
    """
    ranges = diff_live_ranges(
        bottom_vecs, top_vecs, layer_need_backward, bottom_need_backward
    )
    cands = [r for key, r in ranges.items() if r is not None and key not in keep]
    cands.sort(key=lambda r: (-r[0].count, r[1]))
    groups: list[list[tuple[Any, int, int]]] = []
    for cand in cands:
        _, lo, hi = cand
        for group in groups:
            if group[0][0].dtype == cand[0].dtype and all(
                hi < g_lo or g_hi < lo for _, g_lo, g_hi in group
            ):
                group.append(cand)
                break
        else:
            groups.append([cand])
    return [[r[0] for r in group] for group in groups if len(group) > 1]


def share_diffs(net: Any) -> int:
    """Apply :func:`plan_diff_sharing` to ``net`` (a built Net): each group's
    blobs get one host buffer for their diffs. Net inputs, outputs and loss
    tops keep their own (see the module docstring).

    Returns:
        The bytes of gradient memory saved.
    """
    keep = {id(net.blobs[n]) for n in (*net.inputs, *net.outputs)}
    for layer, tops in zip(net.layers, net.top_vecs):
        keep.update(id(t) for t, w in zip(tops, layer.loss_weights) if w)
    # a diff another blob already shares (a parameter's, Caffe's ShareDiff)
    owners: dict[int, list[Any]] = {}
    for blob in [*net.blobs.values()] + [b for lr in net.layers for b in lr.blobs]:
        owners.setdefault(id(blob.diff_mem), []).append(blob)
    for blobs in owners.values():
        if len(blobs) > 1:
            keep.update(id(b) for b in blobs)
    groups = plan_diff_sharing(
        net.bottom_vecs,
        net.top_vecs,
        net.layer_need_backward,
        net.bottom_need_backward,
        keep,
    )
    saved = 0
    for group in groups:
        buf = np.zeros(group[0].count, group[0].dtype)
        for blob in group:
            blob.share_diff_buffer(buf)
        saved += sum(b.count for b in group[1:]) * buf.itemsize
    log.debug("%d blobs share %d diff buffers", sum(map(len, groups)), len(groups))
    return saved
