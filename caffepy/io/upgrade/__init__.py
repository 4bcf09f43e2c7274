"""Upgrades of legacy net and solver definitions, as Caffe's ``upgrade_proto.cpp``.

A ``NetParameter`` read from a prototxt or a ``.caffemodel`` may use one of
Caffe's older forms; :func:`upgrade_net` rewrites it in place into the current
form, in Caffe's order (``UpgradeNetAsNeeded``):

1. V0 -> V1: ``layers { layer { type: "conv" kernelsize: 5 ... } }``. Padding
   layers are folded into the conv/pool layer they feed (``pad``); the flat V0
   fields move into the V1 ``*_param`` messages; the V0 type name ("conv",
   "innerproduct", ...) becomes the V1 enum (CONVOLUTION, INNER_PRODUCT, ...).
2. Data transformation: ``scale``, ``mean_file``, ``crop_size`` and ``mirror``
   inside a V1 DATA / IMAGE_DATA / WINDOW_DATA layer's ``*_param`` move into
   ``transform_param``.
3. V1 -> V2: ``layers { type: CONVOLUTION blobs_lr: 1 weight_decay: 1 }`` ->
   ``layer { type: "Convolution" param { lr_mult: 1 decay_mult: 1 } }``, with
   ``param`` names and ``blob_share_mode`` merged into the same ``ParamSpec``s,
   and the learned ``blobs`` (a V1 ``.caffemodel``'s weights) carried along.
4. Inputs: the net-level ``input`` + ``input_dim`` / ``input_shape`` become one
   ``Input`` layer named "input", placed first.
5. BatchNorm: a ``BatchNorm`` layer declaring three ``param`` specs (the old way
   of freezing its statistics) gets ``lr_mult: 0 decay_mult: 0`` on all three,
   as Caffe's mainline ``UpgradeNetBatchNorm`` does (names are kept, so blobs
   shared by name stay shared).

:func:`upgrade_solver` turns the legacy ``solver_type`` enum into the ``type``
string. Progress is logged on the "caffepy" logger with Caffe's messages.

Where caffepy departs from Caffe it refuses what Caffe would silently mangle:
a net mixing ``layer`` and ``layers`` (Caffe drops the ``layer`` entries), a
V0 net with an entry lacking its ``layer { }`` (Caffe produces a layer without
a type), and a solver whose ``solver_type`` and ``type`` disagree (Caffe
refuses both set at all; agreeing values are accepted here). A V0 net's other
net-level fields are kept (Caffe keeps only name, inputs and force_backward).
"""

from caffepy.io.upgrade.net import net_needs_upgrade, upgrade_net, upgrade_net_binary
from caffepy.io.upgrade.solver import (
    SOLVER_TYPE_NAMES,
    solver_needs_upgrade,
    upgrade_solver,
)
from caffepy.io.upgrade.v0 import V0_LAYER_TYPES
from caffepy.io.upgrade.v1 import V1_LAYER_TYPE_NAMES

__all__ = [
    "SOLVER_TYPE_NAMES",
    "V0_LAYER_TYPES",
    "V1_LAYER_TYPE_NAMES",
    "net_needs_upgrade",
    "solver_needs_upgrade",
    "upgrade_net",
    "upgrade_net_binary",
    "upgrade_solver",
]
