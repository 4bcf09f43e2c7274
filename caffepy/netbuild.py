"""The pure steps that turn a NetParameter into the layer list a Net builds.

As Caffe's ``Net::FilterNet`` / ``StateMeetsRule`` (net.cpp) and ``InsertSplits``
(util/insert_splits.cpp), each a function of protos only, tested on its own::

    filter_net(param, state)   keep the layers whose include/exclude rules
                               the NetState meets
    insert_splits(param)       a Split layer for every blob read more than once

:class:`caffepy.net.Net` then appends each layer's bottoms, tops and parameters.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from caffepy.errors import NetError
from caffepy.proto import caffe_pb2


def state_meets_rule(state: caffe_pb2.NetState, rule: caffe_pb2.NetStateRule) -> bool:
    """Caffe's StateMeetsRule: does a NetState satisfy one include/exclude rule?

    Every condition the rule sets must hold: its phase, ``min_level <= level <=
    max_level``, each of its ``stage`` present and none of its ``not_stage``.
    """
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    stages = set(state.stage)
    if any(s not in stages for s in rule.stage):
        return False
    return not any(s in stages for s in rule.not_stage)


def layer_included(layer: caffe_pb2.LayerParameter, state: caffe_pb2.NetState) -> bool:
    """Whether ``state`` keeps ``layer``: with no include rule it is kept unless an
    exclude rule is met; with include rules, only if one of them is met."""
    if layer.include and layer.exclude:
        raise NetError(
            f"layer '{layer.name}': specify either include rules or exclude rules, "
            "not both"
        )
    if layer.include:
        return any(state_meets_rule(state, r) for r in layer.include)
    return not any(state_meets_rule(state, r) for r in layer.exclude)


def filter_net(
    param: caffe_pb2.NetParameter, state: caffe_pb2.NetState
) -> caffe_pb2.NetParameter:
    """A copy of ``param`` holding only the layers that ``state`` includes
    (Caffe's FilterNet; everything but the layer list is copied as is)."""
    out = copy.deepcopy(param)
    del out.layer[:]
    for layer in param.layer:
        if layer_included(layer, state):
            out.layer.add().CopyFrom(layer)
    return out


def split_layer_name(blob: str, layer: str, top_index: int) -> str:
    """Caffe's SplitLayerName: ``<blob>_<producing layer>_<top index>_split``."""
    return f"{blob}_{layer}_{top_index}_split"


def split_blob_name(blob: str, layer: str, top_index: int, split_index: int) -> str:
    """Caffe's SplitBlobName: the split layer's name, then ``_<split index>``."""
    return f"{split_layer_name(blob, layer, top_index)}_{split_index}"


def _label(layer: caffe_pb2.LayerParameter) -> str:
    return f"layer '{layer.name}' ({layer.type})"


def _count_consumers(param, label):
    """For each (layer, top) the number of readers (a loss weight counts as one),
    and for each (layer, bottom) the (layer, top) it reads."""
    last_top = {}  # blob name -> (layer index, top index)
    source_of = {}
    consumers = {}
    for i, layer in enumerate(param.layer):
        for j, name in enumerate(layer.bottom):
            if name not in last_top:
                raise NetError(
                    f"{label(layer)}: unknown bottom blob '{name}' (bottom[{j}]); no "
                    "earlier layer produces it"
                )
            src = last_top[name]
            source_of[(i, j)] = src
            consumers[src] = consumers.get(src, 0) + 1
        for j, name in enumerate(layer.top):
            last_top[name] = (i, j)
            if _loss_weight(layer, j):
                consumers[(i, j)] = consumers.get((i, j), 0) + 1
    return source_of, consumers


def _loss_weight(layer, j):
    return layer.loss_weight[j] if j < len(layer.loss_weight) else 0.0


def _add_split(out, layer, j, count):
    """Append the Split layer for top ``j`` of ``layer`` read ``count`` times."""
    name = layer.top[j]
    split = out.layer.add()
    split.name = split_layer_name(name, layer.name, j)
    split.type = "Split"
    split.bottom.append(name)
    weight = _loss_weight(layer, j)
    for k in range(count):
        split.top.append(split_blob_name(name, layer.name, j, k))
        if weight:
            split.loss_weight.append(weight if k == 0 else 0.0)
    return split


def insert_splits(
    param: caffe_pb2.NetParameter,
    label: Callable[[caffe_pb2.LayerParameter], str] = _label,
) -> tuple[caffe_pb2.NetParameter, list[int]]:
    """Caffe's InsertSplits: a Split layer for every blob read by several layers.

    The gradients of the split's tops are summed into the original blob, so a
    blob used twice gets the sum of both paths. A top with a loss weight that is
    also read counts the loss as one more reader.

    Args:
        param: a filtered NetParameter (V2 ``layer`` list).
        label: names a layer in errors (the Net adds its file and line).

    Returns:
        The new NetParameter and the indices (in it) of the Split layers this
        call inserted, so that writers can drop exactly those (a user's own
        layer named ``x_split`` is never mistaken for one).
    """
    source_of, consumers = _count_consumers(param, label)
    out = copy.deepcopy(param)
    del out.layer[:]
    inserted = []
    next_split = {}  # (layer, top) -> index of the next split top to hand out
    for i, layer in enumerate(param.layer):
        new = out.layer.add()
        new.CopyFrom(layer)
        for j, name in enumerate(layer.bottom):
            src = source_of[(i, j)]
            if consumers.get(src, 0) > 1:
                k = next_split.get(src, 0)
                next_split[src] = k + 1
                src_layer = param.layer[src[0]].name
                new.bottom[j] = split_blob_name(name, src_layer, src[1], k)
        for j in range(len(layer.top)):
            count = consumers.get((i, j), 0)
            if count <= 1:
                continue
            inserted.append(len(out.layer))
            _add_split(out, layer, j, count)
            if _loss_weight(layer, j):
                # NOTE: as Caffe, the layer's loss weights are cleared: the split's
                # first top carries the loss now.
                del new.loss_weight[:]
                next_split[(i, j)] = 1
    return out, inserted


def param_mults(
    cls: Any, lp: caffe_pb2.LayerParameter, spec: Any, j: int
) -> tuple[float, float, bool, bool]:
    """(lr_mult, decay_mult, has_lr, has_decay) of parameter ``j`` of ``lp``: the
    ParamSpec's values (1 when unset), unless the layer fixes them."""
    lr = spec.lr_mult if spec is not None else 1.0
    decay = spec.decay_mult if spec is not None else 1.0
    has_lr = spec is not None and spec.HasField("lr_mult")
    has_decay = spec is not None and spec.HasField("decay_mult")
    fixed = cls.fixed_lr_mults(lp)
    if fixed is not None and j < len(fixed):
        lr, has_lr = float(fixed[j]), True
        if lr == 0:
            decay, has_decay = 0.0, True
    return lr, decay, has_lr, has_decay


def prune_backward(
    layer_params: list[caffe_pb2.LayerParameter],
    loss_weights: list[list[float]],
    layer_need: list[bool],
    bottom_need: list[list[bool]],
) -> None:
    """Caffe's backward-need analysis, walking the layers from the last.

    A layer contributes to the loss when one of its tops has a loss weight or is
    read by a contributing layer; one that does not needs no backward, nor do its
    bottoms. A layer whose every top's gradient is skipped needs none either.

    Args:
        layer_params: the net's layers (after split insertion), in order.
        loss_weights: per layer, the loss weight of each top.
        layer_need: per layer, whether it needs backward (updated in place).
        bottom_need: per layer, whether each bottom needs a gradient (updated).
    """
    under_loss, skip = set(), set()
    for li in range(len(layer_params) - 1, -1, -1):
        lp = layer_params[li]
        contributes, all_skip = False, True
        for j, tname in enumerate(lp.top):
            if loss_weights[li][j] or tname in under_loss:
                contributes = True
            if tname not in skip:
                all_skip = False
        if layer_need[li] and all_skip and lp.top:
            layer_need[li] = False
            bottom_need[li] = [False] * len(lp.bottom)
        if not contributes:
            layer_need[li] = False
        for j, bname in enumerate(lp.bottom):
            if contributes:
                under_loss.add(bname)
            else:
                bottom_need[li][j] = False
            if not bottom_need[li][j]:
                skip.add(bname)
