"""Net: layers in order over named Blobs, built from a NetParameter as Caffe does.

Building is a chain of small pure steps, each tested on its own:

    read_net (upgrade) -> filter_net (phase/level/stage) -> insert_splits -> build

``build`` creates each layer, wires bottoms and tops (in-place tops reuse the
bottom blob), shares parameters by ``param { name }``, and works out which
layers need backward: a layer does when a bottom needs a gradient or a
parameter has ``lr_mult != 0``, and only if it contributes to a loss. Frozen
layers at the bottom of a net therefore cost no backward work.
"""

import copy
import logging
import math
import os
from collections import OrderedDict

import numpy as np

from caffepy.blob import Blob
from caffepy.errors import (
    CaffepyError,
    DataError,
    LayerError,
    NetError,
    ShapeError,
    WeightsError,
)
from caffepy.io.blobproto import array_from_proto, proto_from_array, proto_shape
from caffepy.layer import TEST, TRAIN
from caffepy.registry import layer_class

log = logging.getLogger("caffepy")

_PHASE_NAMES = {TRAIN: "TRAIN", TEST: "TEST"}


# -- building steps ------------------------------------------------------------
def state_meets_rule(state, rule):
    """Caffe's StateMeetsRule: does a NetState satisfy one include/exclude rule?"""
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    stages = set(state.stage)
    if any(s not in stages for s in rule.stage):
        return False
    if any(s in stages for s in rule.not_stage):
        return False
    return True


def filter_net(param, state):
    """A copy of ``param`` holding only the layers that ``state`` includes."""
    out = copy.deepcopy(param)
    del out.layer[:]
    for layer in param.layer:
        if layer.include and layer.exclude:
            raise NetError(
                f"layer '{layer.name}': specify either include rules or exclude rules, "
                "not both"
            )
        included = not layer.include
        if any(state_meets_rule(state, r) for r in layer.exclude):
            included = False
        if any(state_meets_rule(state, r) for r in layer.include):
            included = True
        if included:
            out.layer.add().CopyFrom(layer)
    return out


def _split_layer_name(blob, layer, top_idx):
    return f"{blob}_{layer}_{top_idx}_split"


def _split_blob_name(blob, layer, top_idx, split_idx):
    return f"{blob}_{layer}_{top_idx}_split_{split_idx}"


def _label(layer):
    return f"layer '{layer.name}' ({layer.type})"


def insert_splits(param, label=_label):
    """Caffe's InsertSplits: a Split layer for every blob read by several layers.

    The gradients of the split's tops are summed into the original blob, so a
    blob used twice gets the sum of both paths. ``label(layer_param)`` names a
    layer in errors (the Net adds its file and line).
    """
    last_top = {}  # blob name -> (layer index, top index)
    source_of = {}  # (layer, bottom index) -> (layer, top index)
    consumers = {}  # (layer, top index) -> count (loss weight counts as one)
    loss_weight = {}
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
        for j in range(len(layer.top)):
            w = layer.loss_weight[j] if j < len(layer.loss_weight) else 0.0
            loss_weight[(i, j)] = w
            if w:
                consumers[(i, j)] = consumers.get((i, j), 0) + 1
    out = copy.deepcopy(param)
    del out.layer[:]
    next_split = {}
    for i, layer in enumerate(param.layer):
        new = out.layer.add()
        new.CopyFrom(layer)
        for j, name in enumerate(layer.bottom):
            src = source_of[(i, j)]
            if consumers.get(src, 0) > 1:
                k = next_split.get(src, 0)
                next_split[src] = k + 1
                new.bottom[j] = _split_blob_name(name, param.layer[src[0]].name, src[1], k)
        for j, name in enumerate(layer.top):
            count = consumers.get((i, j), 0)
            if count <= 1:
                continue
            split = out.layer.add()
            split.name = _split_layer_name(name, layer.name, j)
            split.type = "Split"
            split.bottom.append(name)
            w = loss_weight[(i, j)]
            for k in range(count):
                split.top.append(_split_blob_name(name, layer.name, j, k))
                if w:
                    split.loss_weight.append(w if k == 0 else 0.0)
            if w:
                del new.loss_weight[:]
                next_split[(i, j)] = 1
    return out


# -- the Net ---------------------------------------------------------------------
class Net:
    """A network of layers, pycaffe-compatible.

    ``Net(network_file, phase, level=0, stages=None, weights=None)``, pycaffe's
    older ``Net(network_file, weights_file, phase)``, or ``Net(param=NetParameter,
    phase=...)``. ``dtype`` is float32 (default, as Caffe) or float64.

    Attributes:
        blobs: OrderedDict blob name -> Blob (activations and their gradients).
        params: OrderedDict layer name -> list of parameter Blobs.
        layers, layer_dict, inputs, outputs, top_names, bottom_names.
        learnable_params, params_lr, params_weight_decay: one entry per learnable
            parameter (shared parameters once, at their owner).
    """

    def __init__(self, network_file=None, phase=None, level=0, stages=None,
                 weights=None, *, param=None, dtype=np.float32, source=None):
        if isinstance(phase, (str, os.PathLike)) and (
            isinstance(level, int) and level in (TRAIN, TEST) and weights is None
        ):
            # pycaffe's Net(file, weights, phase)
            weights, phase, level = phase, level, 0
        self.source = None if source is None else os.fspath(source)
        self._text = None
        if param is None:
            if network_file is None:
                raise NetError("Net needs a network file or a NetParameter (param=)")
            from caffepy.io.prototxt import _read_text, parse_net_text

            self.source = os.fspath(network_file)
            self._text = _read_text(self.source, "net")
            param = parse_net_text(self._text, self.source)
        else:
            from caffepy.io.upgrade import net_needs_upgrade, upgrade_net

            if net_needs_upgrade(param):
                param = copy.deepcopy(param)
                upgrade_net(param, source=self.source or "<NetParameter>")
        if not len(param.layer):
            raise NetError(f"{self.source or 'the net'}: the net has no layers")
        self.dtype = np.dtype(dtype)
        state = copy.deepcopy(param.state)
        if phase is not None:
            state.phase = int(phase)
        if level:
            state.level = int(level)
        if stages:
            state.stage.extend(stages)
        self.phase = state.phase
        self.name = param.name
        self.param = param
        filtered = filter_net(param, state)
        if not len(filtered.layer):
            raise NetError(
                f"{self.source or 'the net'}: no layer of the net is in phase "
                f"{_PHASE_NAMES.get(state.phase, state.phase)} (level {state.level}, "
                f"stages {list(state.stage)}); check the include/exclude rules"
            )
        # to_proto writes the layers as the user wrote them (no split renaming)
        self._user_layers = {lp.name: lp for lp in filtered.layer}
        self._build(insert_splits(filtered, self._label))
        if weights is not None:
            for w in ([weights] if isinstance(weights, (str, os.PathLike)) else weights):
                self.copy_from(w)

    # -- construction ------------------------------------------------------------
    def _label(self, lp):
        """"layer 'name' (Type, file:line)" for error messages."""
        loc = self._where(lp.name)[2:-1]
        return f"layer '{lp.name}' ({lp.type}{', ' + loc if loc else ''})"

    def _where(self, layer_name):
        """" (file:line)" of a layer for error messages ("" when unknown)."""
        from caffepy.io.prototxt import layer_location

        if self._text is None and self.source and os.path.isfile(self.source):
            try:
                with open(self.source, encoding="utf-8") as f:
                    self._text = f.read()
            except (OSError, UnicodeDecodeError):
                self._text = ""
        line = layer_location(self._text, layer_name)
        if self.source and line:
            return f" ({self.source}:{line})"
        return f" ({self.source})" if self.source else ""

    def _build(self, param):
        self.layers = []
        self.layer_dict = OrderedDict()
        self.blobs = OrderedDict()
        self.bottom_vecs, self.top_vecs = [], []
        self.bottom_names, self.top_names = OrderedDict(), OrderedDict()
        self.inputs = []
        self._split_layers = set()
        self._param_layers = []  # (layer index, param index) for each param blob
        self.learnable_params, self.params_lr, self.params_weight_decay = [], [], []
        self.learnable_param_names = []
        owners = {}  # param name -> (blob, lr_mult, decay_mult, shape)
        need_blob = {}  # blob name -> needs backward
        self.bottom_need_backward, self.layer_need_backward = [], []
        self.layer_param = []
        self._producer = {}  # blob name -> (name the user wrote, layer name, type)
        available = set()
        for li, lp in enumerate(param.layer):
            if lp.name in self.layer_dict:
                raise NetError(f"two layers are named '{lp.name}'{self._where(lp.name)}")
            loc = self._where(lp.name)[2:-1]
            cls = layer_class(lp.type,
                              f"layer '{lp.name}'" + (f" at {loc}" if loc else ""))
            layer = cls(lp, self.phase, self.dtype)
            if lp.type == "Split" and lp.name.endswith("_split"):
                self._split_layers.add(li)
            bottoms, bneed = [], []
            for j, bname in enumerate(lp.bottom):
                if bname not in available:
                    raise NetError(
                        f"{self._label(lp)}: unknown bottom blob '{bname}' (bottom[{j}])"
                    )
                bottoms.append(self.blobs[bname])
                need = need_blob.get(bname, False)
                if len(lp.propagate_down) > 0:
                    if len(lp.propagate_down) != len(lp.bottom):
                        raise NetError(
                            f"{self._label(lp)}: propagate_down has "
                            f"{len(lp.propagate_down)} values for {len(lp.bottom)} bottoms"
                        )
                    need = bool(lp.propagate_down[j])
                bneed.append(need)
                # In-place tops replace the blob; other bottoms are consumed.
                if bname not in lp.top:
                    available.discard(bname)
            tops = []
            for tname in lp.top:
                if tname in lp.bottom:
                    tops.append(self.blobs[tname])
                else:
                    if tname in available:
                        raise NetError(
                            f"{self._label(lp)}: top blob '{tname}' is produced by more "
                            "than one layer"
                        )
                    blob = Blob((), self.dtype)
                    self.blobs[tname] = blob
                    tops.append(blob)
                available.add(tname)
            if lp.type == "Input":
                self.inputs.extend(lp.top)
            in_place = [(t, self.blobs[t].shape) for t in lp.top if t in lp.bottom]
            try:
                layer.SetUp(bottoms, tops)
                for tname, before in in_place:
                    after = self.blobs[tname].shape
                    if after != before:
                        raise LayerError(
                            layer, f"cannot compute top '{tname}' in place of its "
                            f"bottom: the output has shape {after}, the input "
                            f"{before}; give the top a name of its own")
            except CaffepyError as err:
                self._add_context(err, layer, lp)
                raise
            for tname in lp.top:
                if li in self._split_layers:
                    self._producer[tname] = self._producer.get(lp.bottom[0])
                else:
                    self._producer[tname] = (tname, lp.name, lp.type)
            self._append_params(li, layer, lp, owners)
            need = any(bneed) or any(layer.param_propagate_down)
            for tname in lp.top:
                need_blob[tname] = need
            self.layers.append(layer)
            self.layer_dict[lp.name] = layer
            self.layer_param.append(lp)
            self.bottom_vecs.append(bottoms)
            self.top_vecs.append(tops)
            self.bottom_names[lp.name] = list(lp.bottom)
            self.top_names[lp.name] = list(lp.top)
            self.bottom_need_backward.append(bneed)
            self.layer_need_backward.append(need)
        self.outputs = [n for n in self.blobs if n in available]
        self._prune_backward(param.force_backward)
        self.params = OrderedDict(
            (layer.name, layer.blobs) for layer in self.layers if len(layer.blobs)
        )
        self._log_summary()

    def _add_context(self, err, layer, lp):
        """Name the layer and its place in the file in ``err``; for a shape error,
        also the layers that produced its bottoms (whose shapes disagree)."""
        note = ""
        if isinstance(err, ShapeError) and lp.bottom:
            parts = []
            for j, bname in enumerate(lp.bottom):
                user, lname, ltype = self._producer.get(bname) or (bname, "?", "?")
                parts.append(f"bottom[{j}] '{user}' comes from layer '{lname}' "
                             f"({ltype})")
            note = "; " + ", ".join(parts)
        return err.in_layer(layer, self._where(lp.name), note)

    def _append_params(self, li, layer, lp, owners):
        fixed = lp.type == "BatchNorm"  # its blobs are statistics, never learned
        for j, blob in enumerate(layer.blobs):
            spec = lp.param[j] if j < len(lp.param) else None
            lr = spec.lr_mult if spec is not None else 1.0
            decay = spec.decay_mult if spec is not None else 1.0
            if fixed:
                lr = decay = 0.0
            name = spec.name if spec is not None else ""
            if name and name in owners:
                owner, o_lr, o_decay, oli = owners[name]
                mode = spec.share_mode  # STRICT = 0, PERMISSIVE = 1
                if mode == 0 and owner.shape != blob.shape:
                    raise NetError(
                        f"{self._label(lp)}: cannot share param '{name}' owned by layer "
                        f"'{self.layers[oli].name}': shape {blob.shape} vs owner's "
                        f"{owner.shape} (use share_mode: PERMISSIVE to compare counts)"
                    )
                if mode == 1 and owner.count != blob.count:
                    raise NetError(
                        f"{self._label(lp)}: cannot share param '{name}': count "
                        f"{blob.count} vs owner's {owner.count}"
                    )
                if spec.HasField("lr_mult") and spec.lr_mult != o_lr:
                    raise NetError(
                        f"{self._label(lp)}: shared param '{name}' has lr_mult "
                        f"{spec.lr_mult} but its owner has {o_lr}"
                    )
                if owner.shape == blob.shape:
                    blob.share_data(owner)
                    blob.share_diff(owner)
                else:
                    blob.reshape(owner.shape)
                    blob.share_data(owner)
                    blob.share_diff(owner)
                    blob.reshape(blob.shape)
                lr = o_lr
            else:
                if name:
                    owners[name] = (blob, lr, decay, li)
                self.learnable_params.append(blob)
                self.params_lr.append(lr)
                self.params_weight_decay.append(decay)
                self.learnable_param_names.append(f"{lp.name}/{j}")
            if len(layer.param_propagate_down) <= j:
                layer.param_propagate_down.append(lr != 0)
            else:
                layer.param_propagate_down[j] = lr != 0

    def _prune_backward(self, force_backward):
        """Skip backward for layers that do not contribute to a loss (Caffe's rule)."""
        under_loss, skip = set(), set()
        for li in range(len(self.layers) - 1, -1, -1):
            layer, lp = self.layers[li], self.layer_param[li]
            contributes, all_skip = False, True
            for j, tname in enumerate(lp.top):
                if layer.loss_weights[j] or tname in under_loss:
                    contributes = True
                if tname not in skip:
                    all_skip = False
            if self.layer_need_backward[li] and all_skip and lp.top:
                self.layer_need_backward[li] = False
                self.bottom_need_backward[li] = [False] * len(lp.bottom)
            if not contributes:
                self.layer_need_backward[li] = False
            for j, bname in enumerate(lp.bottom):
                if contributes:
                    under_loss.add(bname)
                else:
                    self.bottom_need_backward[li][j] = False
                if not self.bottom_need_backward[li][j]:
                    skip.add(bname)
        if force_backward:
            for li, layer in enumerate(self.layers):
                self.layer_need_backward[li] = True
                self.bottom_need_backward[li] = [
                    need or layer.allow_force_backward(j)
                    for j, need in enumerate(self.bottom_need_backward[li])
                ]
                layer.param_propagate_down = [True] * len(layer.blobs)

    def _log_summary(self):
        if not log.isEnabledFor(logging.DEBUG):
            return
        for li, layer in enumerate(self.layers):
            for tname, top in zip(self.top_names[layer.name], self.top_vecs[li]):
                log.debug("Top shape: %s %s", tname, top.shape)
            if not self.layer_need_backward[li]:
                log.debug("%s does not need backward computation.", layer.name)

    # -- running -------------------------------------------------------------------
    def _index(self, name, default):
        if name is None:
            return default
        if name not in self.layer_dict:
            raise NetError(f"no layer named '{name}' in net '{self.name}'")
        return list(self.layer_dict).index(name)

    def forward_from_to(self, start=0, end=None):
        end = len(self.layers) - 1 if end is None else end
        loss = 0.0
        li = start
        try:
            for li in range(start, end + 1):
                loss += self.layers[li].Forward(self.bottom_vecs[li], self.top_vecs[li])
        except CaffepyError as err:
            self._add_context(err, self.layers[li], self.layer_param[li])
            raise
        return loss

    def backward_from_to(self, start=None, end=0):
        start = len(self.layers) - 1 if start is None else start
        li = start
        try:
            for li in range(start, end - 1, -1):
                if self.layer_need_backward[li]:
                    self.layers[li].Backward(self.top_vecs[li],
                                             self.bottom_need_backward[li],
                                             self.bottom_vecs[li])
        except CaffepyError as err:
            self._add_context(err, self.layers[li], self.layer_param[li])
            raise

    def forward_prefilled(self):
        """Forward through every layer; return the total weighted loss."""
        return self.forward_from_to()

    def backward_prefilled(self):
        self.backward_from_to()

    def forward_backward(self):
        loss = self.forward_from_to()
        self.backward_from_to()
        return loss

    def clear_param_diffs(self):
        for blob in self.learnable_params:
            blob.diff[...] = 0

    def forward(self, blobs=None, start=None, end=None, **kwargs):
        """pycaffe's forward: set inputs from kwargs, run, return output arrays."""
        for name, value in kwargs.items():
            if name not in self.inputs:
                raise NetError(f"'{name}' is not an input of net '{self.name}' "
                               f"(inputs: {', '.join(self.inputs) or 'none'})")
            value = np.asarray(value)
            if value.shape[:1] != self.blobs[name].shape[:1]:
                raise NetError(
                    f"input '{name}' has batch size {value.shape[:1]}, the blob has "
                    f"{self.blobs[name].shape}"
                )
            self.blobs[name].data[...] = value
        s = self._index(start, 0)
        e = self._index(end, len(self.layers) - 1)
        self.forward_from_to(s, e)
        outs = set(self.outputs if end is None else self.top_names[self.layers[e].name])
        outs.update(blobs or [])
        return {n: self.blobs[n].data for n in outs}

    def backward(self, diffs=None, start=None, end=None, **kwargs):
        """pycaffe's backward: set top diffs from kwargs, run, return input diffs."""
        for name, value in kwargs.items():
            if name not in self.outputs:
                raise NetError(f"'{name}' is not an output of net '{self.name}'")
            self.blobs[name].diff[...] = value
        s = self._index(start, len(self.layers) - 1)
        e = self._index(end, 0)
        self.backward_from_to(s, e)
        ins = set(self.inputs if end is None else self.bottom_names[self.layers[e].name])
        ins.update(diffs or [])
        return {n: self.blobs[n].diff for n in ins}

    def set_input_arrays(self, data, labels):
        """pycaffe: feed arrays to the net's first layer, which must be MemoryData."""
        first = self.layers[0] if self.layers else None
        if first is None or first.type != "MemoryData":
            raise NetError("set_input_arrays needs a MemoryData layer as the first layer")
        first.set_input_arrays(data, labels)

    def reshape(self):
        for li, layer in enumerate(self.layers):
            layer.reshape(self.bottom_vecs[li], self.top_vecs[li])

    @property
    def data_layers(self):
        return [layer for layer in self.layers if hasattr(layer, "set_state")]

    @property
    def layer_names(self):
        return list(self.layer_dict)

    @property
    def _layer_names(self):  # pycaffe
        return self.layer_names

    # -- weights -------------------------------------------------------------------
    def share_weights(self, other):
        """Use ``other``'s parameter data for layers of the same name (test nets)."""
        for name, layer in self.layer_dict.items():
            src = other.layer_dict.get(name)
            if src is None or not len(layer.blobs):
                continue
            if len(src.blobs) != len(layer.blobs):
                raise NetError(f"layer '{name}': {len(src.blobs)} vs "
                               f"{len(layer.blobs)} parameter blobs")
            for mine, theirs in zip(layer.blobs, src.blobs):
                if mine.shape != theirs.shape:
                    raise NetError(f"layer '{name}': cannot share weights of shape "
                                   f"{theirs.shape} with {mine.shape}")
                mine.share_data(theirs)

    def copy_from(self, weights):
        """Copy weights by layer name from a .caffemodel path or NetParameter."""
        if isinstance(weights, (str, os.PathLike)):
            from caffepy.io.prototxt import read_weights

            source = os.fspath(weights)
            weights = read_weights(source)
        else:
            source = "<NetParameter>"
        copied, ignored = [], []
        for src in weights.layer:
            target = self.layer_dict.get(src.name)
            if target is None:
                if src.blobs:
                    log.info("Ignoring source layer %s", src.name)
                ignored.append(src.name)
                continue
            if not src.blobs:
                continue
            if len(src.blobs) != len(target.blobs):
                raise WeightsError(
                    f"{source}: layer '{src.name}' has {len(src.blobs)} parameter "
                    f"blobs, the net's layer has {len(target.blobs)}; to learn it from "
                    "scratch rather than copy it, rename the layer"
                )
            for j, (bp, blob) in enumerate(zip(src.blobs, target.blobs)):
                shape = proto_shape(bp)
                if not _shapes_match(bp, shape, blob.shape):
                    raise WeightsError(
                        f"{source}: cannot copy param {j} of layer '{src.name}': shape "
                        f"mismatch, source {shape} ({math.prod(shape)}) vs target "
                        f"{blob.shape} ({blob.count}); to learn this layer's parameters "
                        "from scratch rather than copying them, rename the layer"
                    )
                try:
                    values = array_from_proto(bp)
                except DataError as err:
                    raise WeightsError(
                        f"{source}: param {j} of layer '{src.name}': {err}; the file "
                        "is truncated or corrupt"
                    ) from None
                blob.data[...] = values.reshape(blob.shape)
            copied.append(src.name)
        self.last_copy = {"copied": copied, "ignored": ignored}
        return self.last_copy

    def to_proto(self, write_diff=False):
        """A NetParameter of the net's layers (no inserted splits) with their blobs."""
        from caffepy.proto import caffe_pb2

        out = caffe_pb2.NetParameter()
        out.name = self.name
        for li, layer in enumerate(self.layers):
            if li in self._split_layers:
                continue
            lp = out.layer.add()
            lp.CopyFrom(self._user_layers.get(layer.name, self.layer_param[li]))
            del lp.blobs[:]
            for blob in layer.blobs:
                diff = blob.diff if write_diff else None
                proto_from_array(blob.data, diff, lp.blobs.add())
        return out

    def save(self, path, write_diff=False):
        """Write the weights as a .caffemodel (atomically)."""
        from caffepy.io.prototxt import write_binary

        write_binary(path, self.to_proto(write_diff))

    def __repr__(self):
        return (f"<Net {self.name!r} {_PHASE_NAMES.get(self.phase, self.phase)}: "
                f"{len(self.layers)} layers>")


def _shapes_match(bp, proto_dims, blob_shape):
    if tuple(proto_dims) == tuple(blob_shape):
        return True
    if not bp.HasField("shape"):
        # Legacy 4-D blob: Caffe compares num/channels/height/width with the
        # blob's shape padded with 1s; older files also right-align them.
        n = len(blob_shape)
        if n <= 4:
            left = tuple(blob_shape) + (1,) * (4 - n)
            right = (1,) * (4 - n) + tuple(blob_shape)
            if tuple(proto_dims) in (left, right):
                return True
    return False
