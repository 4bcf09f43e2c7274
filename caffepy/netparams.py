"""Parameter sharing while a Net is built: Caffe's AppendParam checks.

A parameter blob named by ``param { name }`` is owned by the first layer that
declares the name; a later layer's blob of that name shares the owner's memory.
These helpers record owners and check a share as Caffe does: STRICT (the
default) compares shapes, PERMISSIVE only counts, and each blob keeps its own
shape; explicit ``lr_mult``/``decay_mult`` of the sharing layers must agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from caffepy.blob import Blob
from caffepy.errors import NetError
from caffepy.proto import caffe_pb2

_PERMISSIVE = 1  # ParamSpec.DimCheckMode


@dataclass
class ParamOwner:
    """A learnable parameter as AppendParam records it (shared ones point here)."""

    blob: Blob
    layer: int
    index: int
    learnable: int  # index into Net.learnable_params
    has_lr: bool
    has_decay: bool


@dataclass
class BuildState:
    """What the append steps share while a net is built (dropped afterwards)."""

    available: set = field(default_factory=set)  # blob names a later layer may read
    blob_need_backward: dict = field(default_factory=dict)
    owners: dict = field(default_factory=dict)  # param name -> ParamOwner


def share_param(
    what: str, spec: caffe_pb2.ParamSpec, blob: Blob, owner: ParamOwner
) -> None:
    """Make ``blob`` the owner's memory, checked as Caffe: PERMISSIVE compares
    counts, STRICT (the default) shapes; each blob keeps its own shape.

    Args:
        what: the start of an error message naming the sharing layer and param.
        spec: the sharing layer's ParamSpec.
        blob: the sharing layer's parameter blob.
        owner: the parameter that owns the name.

    Raises:
        NetError: the counts (PERMISSIVE) or shapes (STRICT) differ.
    """
    if spec.share_mode == _PERMISSIVE:
        if blob.count != owner.blob.count:
            raise NetError(
                f"{what}: count mismatch, the owner's shape is {owner.blob.shape} "
                f"({owner.blob.count}), this layer's {blob.shape} ({blob.count})"
            )
    elif blob.shape != owner.blob.shape:
        raise NetError(
            f"{what}: shape mismatch, the owner's shape is {owner.blob.shape}, "
            f"this layer's {blob.shape} (share_mode: PERMISSIVE compares only "
            "counts)"
        )
    blob.share_data(owner.blob)
    blob.share_diff(owner.blob)


def merge_mults(
    label: str,
    name: str,
    owner: ParamOwner,
    owner_layer: str,
    mults: tuple[float, float, bool, bool],
    params_lr: list[float],
    params_weight_decay: list[float],
) -> None:
    """A sharing layer's explicit lr_mult/decay_mult must agree with the owner's
    explicit ones, or set them when the owner left them unset.

    Args:
        label: the sharing layer as errors name it.
        name: the shared param's name.
        owner: the parameter that owns the name (its flags are updated).
        owner_layer: the owner's layer name.
        mults: the sharing layer's ``(lr, decay, has_lr, has_decay)``.
        params_lr, params_weight_decay: the net's per-learnable lists (updated
            at ``owner.learnable``).

    Raises:
        NetError: an explicit multiplier disagrees with the owner's explicit one.
    """
    lr, decay, has_lr, has_decay = mults
    k = owner.learnable
    for has, value, values, what in (
        (has_lr, lr, params_lr, "lr_mult"),
        (has_decay, decay, params_weight_decay, "decay_mult"),
    ):
        if not has:
            continue
        owner_has = owner.has_lr if what == "lr_mult" else owner.has_decay
        if owner_has and values[k] != value:
            raise NetError(
                f"{label}: shared param '{name}' has {what} {value:g} "
                f"but its owner, layer '{owner_layer}', has {values[k]:g}"
            )
        values[k] = value
        if what == "lr_mult":
            owner.has_lr = True
        else:
            owner.has_decay = True
