"""Net: layers in order over named Blobs, built from a NetParameter as Caffe does.

Building is a chain of small steps, each tested on its own (Caffe's net.cpp)::

    read_net (upgrade) -> filter_net (phase/level/stage) -> insert_splits
      -> per layer: create, append_bottom, append_top, SetUp, append_param
      -> backward-need analysis (prune layers that feed no loss)

In-place tops reuse the bottom blob, parameters are shared by ``param { name }``
(the same memory, each blob its own shape), and a layer needs backward when a
bottom needs a gradient or a parameter has ``lr_mult != 0``, and only if it
contributes to a loss. Frozen layers at the bottom of a net cost no backward work.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import logging
import os
from collections import OrderedDict
from typing import Any

import numpy as np

from caffepy import netdebug
from caffepy.blob import Blob
from caffepy.errors import (
    CaffepyError,
    LayerError,
    NetError,
    ShapeError,
)
from caffepy.io.blobproto import proto_from_array
from caffepy.layer import TEST, TRAIN, Layer
from caffepy.netbuild import (  # noqa: F401 - re-exported
    filter_net,
    insert_splits,
    layer_included,
    param_mults,
    prune_backward,
    split_blob_name,
    split_layer_name,
    state_meets_rule,
)
from caffepy.netparams import BuildState, ParamOwner, merge_mults, share_param
from caffepy.proto import caffe_pb2
from caffepy.pycaffe.net_api import PycaffeNetMixin
from caffepy.registry import create_layer
from caffepy.syncedmem import allocation_budget

log = logging.getLogger("caffepy")

_PHASE_NAMES = {TRAIN: "TRAIN", TEST: "TEST"}


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector (as it was before, afterwards)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# -- the Net ---------------------------------------------------------------------
class Net(PycaffeNetMixin):
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
        param_owners: per parameter blob, ``(layer index, param index, owner)``
            with owner ``(layer index, param index)`` of the blob it shares, or None.

    ``net.close()`` (or ``with Net(...) as net:``) releases the data readers.
    """

    def __init__(
        self,
        network_file: str | os.PathLike | None = None,
        phase: int | None = None,
        level: int = 0,
        stages: list[str] | None = None,
        weights: Any = None,
        *,
        param: caffe_pb2.NetParameter | None = None,
        dtype: Any = np.float32,
        source: str | os.PathLike | None = None,
    ) -> None:
        if isinstance(phase, (str, os.PathLike)) and (
            isinstance(level, int) and level in (TRAIN, TEST) and weights is None
        ):
            # pycaffe's Net(file, weights, phase)
            weights, phase, level = phase, level, 0
        self.source = None if source is None else os.fspath(source)
        self._text = None
        param = self._load_param(network_file, param)
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
        #: Caffe's debug_info: log each layer's mean |data| / |diff| (netdebug.py);
        #: a solver turns it on for its train net on display iterations.
        self.debug_info = bool(param.debug_info)
        #: run the layer pairs that fuse (BatchNorm + in-place Scale) as one on the
        #: CPU (the same numbers, fewer passes); False runs each layer on its own
        self.fuse_layers = True
        filtered = filter_net(param, state)
        if not len(filtered.layer):
            raise NetError(
                f"{self.source or 'the net'}: no layer of the net is in phase "
                f"{_PHASE_NAMES.get(state.phase, state.phase)} (level {state.level}, "
                f"stages {list(state.stage)}); check the include/exclude rules"
            )
        self._build(filtered)
        if weights is not None:
            for w in [weights] if isinstance(weights, (str, os.PathLike)) else weights:
                self.copy_from(w)

    def _load_param(self, network_file, param):
        """The NetParameter read from ``network_file``, or ``param`` upgraded."""
        if param is None:
            if network_file is None:
                raise NetError("Net needs a network file or a NetParameter (param=)")
            from caffepy.io.prototxt import _read_text, parse_net_text

            self.source = os.fspath(network_file)
            self._text = _read_text(self.source, "net")
            with _gc_paused():  # (the parser's objects, as the build's below)
                param = parse_net_text(self._text, self.source)
        else:
            from caffepy.io.upgrade import net_needs_upgrade, upgrade_net

            if net_needs_upgrade(param):
                param = copy.deepcopy(param)
                upgrade_net(param, source=self.source or "<NetParameter>")
        if not len(param.layer):
            raise NetError(f"{self.source or 'the net'}: the net has no layers")
        return param

    # -- construction ------------------------------------------------------------
    def _label(self, lp):
        """The layer as errors name it: ``layer 'name' (Type, file:line)``."""
        loc = self._where(lp.name)[2:-1]
        return f"layer '{lp.name}' ({lp.type}{', ' + loc if loc else ''})"

    def _where(self, layer_name):
        """`` (file:line)`` of a layer for error messages ("" when unknown)."""
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

    def _build(self, filtered):
        """Caffe's Net::Init after filtering: splits, then each layer in order."""
        param, inserted = insert_splits(filtered, self._label)
        self._split_layers = set(inserted)
        # to_proto writes each layer as the user wrote it (no split renaming)
        written = iter(filtered.layer)
        self._user_layer_param = [
            None if li in self._split_layers else next(written)
            for li in range(len(param.layer))
        ]
        self._init_containers()
        state = BuildState()
        # NOTE: MemAvailable is read once per build; every blob's bytes are counted
        # against it as its shape becomes known, before anything is allocated.
        # The cyclic garbage collector is paused: a build makes objects by the
        # hundred thousand and no garbage cycles, and each collection would walk
        # them all (a fifth of a 20,000-layer build).
        with allocation_budget() as budget, _gc_paused():
            for li, lp in enumerate(param.layer):
                budget.layer = f"{lp.type} layer '{lp.name}'"
                self._append_layer(li, lp, state)
        self.outputs = [n for n in self.blobs if n in state.available]
        self._prune_backward(param.force_backward)
        self._fused = self._plan_fusions()
        self.params = OrderedDict(
            (layer.name, layer.blobs) for layer in self.layers if len(layer.blobs)
        )
        self._log_summary()

    def _init_containers(self):
        self.layers = []
        #: every layer's name in net order; Caffe allows duplicates, and the
        #: name-keyed dicts (layer_dict, params, top_names) keep the last layer of
        #: a name at the position of the first, as pycaffe's
        self._names = []
        self.layer_dict = OrderedDict()
        self.layer_param = []
        self.blobs = OrderedDict()
        self.bottom_vecs, self.top_vecs = [], []
        self.bottom_names, self.top_names = OrderedDict(), OrderedDict()
        self.bottom_need_backward, self.layer_need_backward = [], []
        self.inputs = []
        self.learnable_params, self.params_lr, self.params_weight_decay = [], [], []
        self.learnable_param_names = []
        #: per parameter blob of the net: (layer index, param index, owner or None)
        self.param_owners = []
        self._producer = {}  # blob name -> (name the user wrote, layer name, type)

    def _append_layer(self, li, lp, state):
        """Create one layer, wire it (bottoms, tops), set it up, append its
        parameters, and record whether it needs backward."""
        layer = self._create_layer(lp)
        bottoms, bneed = [], []
        for j in range(len(lp.bottom)):
            blob, need = self.append_bottom(lp, j, state)
            bottoms.append(blob)
            bneed.append(need)
        tops = [self.append_top(lp, j, state) for j in range(len(lp.top))]
        self._setup_layer(layer, lp, bottoms, tops)
        self._record_producers(li, lp)
        layer.param_propagate_down = [True] * len(layer.blobs)
        for j in range(len(layer.blobs)):
            self.append_param(li, layer, lp, j, state)
        need = any(bneed) or any(layer.param_propagate_down)
        for tname in lp.top:
            state.blob_need_backward[tname] = need
        self.layers.append(layer)
        self._names.append(lp.name)
        self.layer_dict[lp.name] = layer
        self.layer_param.append(lp)
        self.bottom_vecs.append(bottoms)
        self.top_vecs.append(tops)
        self.bottom_names[lp.name] = list(lp.bottom)
        self.top_names[lp.name] = list(lp.top)
        self.bottom_need_backward.append(bneed)
        self.layer_need_backward.append(need)

    def _create_layer(self, lp):
        loc = self._where(lp.name)[2:-1]
        where = f"layer '{lp.name}'" + (f" at {loc}" if loc else "")
        return create_layer(lp, self.phase, self.dtype, where)

    def append_bottom(
        self, lp: caffe_pb2.LayerParameter, j: int, state: BuildState
    ) -> tuple[Blob, bool]:
        """Caffe's AppendBottom: the blob bottom ``j`` of ``lp`` reads, and whether
        it needs a gradient (``propagate_down`` overrides what its producer says).
        A bottom that is not also a top is consumed: no later layer may read it."""
        bname = lp.bottom[j]
        if bname not in state.available:
            raise NetError(
                f"{self._label(lp)}: unknown bottom blob '{bname}' (bottom[{j}])"
            )
        need = state.blob_need_backward.get(bname, False)
        if len(lp.propagate_down) > 0:
            if len(lp.propagate_down) != len(lp.bottom):
                raise NetError(
                    f"{self._label(lp)}: propagate_down has {len(lp.propagate_down)} "
                    f"values for {len(lp.bottom)} bottoms"
                )
            need = bool(lp.propagate_down[j])
        if bname not in lp.top:
            state.available.discard(bname)
        return self.blobs[bname], need

    def append_top(
        self, lp: caffe_pb2.LayerParameter, j: int, state: BuildState
    ) -> Blob:
        """Caffe's AppendTop: top ``j`` of ``lp``, a new blob unless it is computed
        in place of a bottom of the same name."""
        tname = lp.top[j]
        if tname in lp.bottom:
            blob = self.blobs[tname]
        else:
            if tname in state.available:
                raise NetError(
                    f"{self._label(lp)}: top blob '{tname}' is produced by more than "
                    "one layer"
                )
            blob = self.blobs[tname] = Blob((), self.dtype)
        state.available.add(tname)
        if lp.type == "Input":
            self.inputs.append(tname)
        return blob

    def _setup_layer(self, layer, lp, bottoms, tops):
        """``layer.SetUp``; an in-place top must keep its bottom's shape."""
        in_place = [(t, self.blobs[t].shape) for t in lp.top if t in lp.bottom]
        try:
            layer.SetUp(bottoms, tops)
            for tname, before in in_place:
                after = self.blobs[tname].shape
                if after != before:
                    raise LayerError(
                        layer,
                        f"cannot compute top '{tname}' in place of its bottom: "
                        f"the output has shape {after}, the input {before}; give the "
                        "top a name of its own",
                    )
        except CaffepyError as err:
            self._add_context(err, layer, lp)
            raise

    def _record_producers(self, li, lp):
        for tname in lp.top:
            if li in self._split_layers:
                self._producer[tname] = self._producer.get(lp.bottom[0])
            else:
                self._producer[tname] = (tname, lp.name, lp.type)

    def _add_context(self, err, layer, lp):
        """Name the layer and its place in the file in ``err``; for a shape error,
        also the layers that produced its bottoms (whose shapes disagree)."""
        note = ""
        if isinstance(err, ShapeError) and lp.bottom:
            parts = []
            for j, bname in enumerate(lp.bottom):
                user, lname, ltype = self._producer.get(bname) or (bname, "?", "?")
                parts.append(
                    f"bottom[{j}] '{user}' comes from layer '{lname}' ({ltype})"
                )
            note = "; " + ", ".join(parts)
        return err.in_layer(layer, self._where(lp.name), note)

    def append_param(
        self,
        li: int,
        layer: Layer,
        lp: caffe_pb2.LayerParameter,
        j: int,
        state: BuildState,
    ) -> None:
        """Caffe's AppendParam: parameter blob ``j`` of layer ``li`` becomes a
        learnable parameter, or shares the memory of the one owning its name.

        A layer may fix its own multipliers (:meth:`Layer.fixed_lr_mults`:
        BatchNorm's statistics are never learned); a fixed ``lr_mult`` of 0 also
        sets ``decay_mult`` to 0. ``param_propagate_down[j]`` is whether the
        parameter learns (its lr_mult, the owner's when shared, is not 0).
        """
        spec = lp.param[j] if j < len(lp.param) else None
        lr, decay, has_lr, has_decay = param_mults(type(layer), lp, spec, j)
        blob = layer.blobs[j]
        name = spec.name if spec is not None else ""
        owner = state.owners.get(name) if name else None
        if owner is None:
            owner = ParamOwner(
                blob, li, j, len(self.learnable_params), has_lr, has_decay
            )
            if name:
                state.owners[name] = owner
            self.learnable_params.append(blob)
            self.params_lr.append(lr)
            self.params_weight_decay.append(decay)
            self.learnable_param_names.append(f"{lp.name}/{j}")
            self.param_owners.append((li, j, None))
        else:
            owner_layer = self.layers[owner.layer].name
            share_param(
                f"{self._label(lp)}: cannot share param '{name}' owned by layer "
                f"'{owner_layer}' (param {owner.index})",
                spec,
                blob,
                owner,
            )
            merge_mults(
                self._label(lp),
                name,
                owner,
                owner_layer,
                (lr, decay, has_lr, has_decay),
                self.params_lr,
                self.params_weight_decay,
            )
            self.param_owners.append((li, j, (owner.layer, owner.index)))
        layer.param_propagate_down[j] = self.params_lr[owner.learnable] != 0

    def _prune_backward(self, force_backward):
        """Skip backward for layers that do not contribute to a loss (Caffe's rule)."""
        prune_backward(
            self.layer_param,
            [layer.loss_weights for layer in self.layers],
            self.layer_need_backward,
            self.bottom_need_backward,
        )
        if force_backward:
            self._force_backward()

    def _force_backward(self):
        """``force_backward: true``: every layer and bottom the layer allows."""
        for li, layer in enumerate(self.layers):
            self.layer_need_backward[li] = True
            self.bottom_need_backward[li] = [
                need or layer.allow_force_backward(j)
                for j, need in enumerate(self.bottom_need_backward[li])
            ]
            layer.param_propagate_down = [True] * len(layer.blobs)

    def _plan_fusions(self) -> dict[int, int]:
        """Layer index -> how many of the layers after it it also computes
        (Layer.fuse_following): layers in place on its only top, none of them
        with a loss; a layer computed by another starts no run of its own."""
        fused: dict[int, int] = {}
        li = 0
        while li < len(self.layers) - 1:
            run = self._in_place_after(li)
            n = 0
            if run:
                layer = self.layers[li]
                n = layer.fuse_following(run, self.bottom_vecs[li], self.top_vecs[li])
            if n:
                fused[li] = n
            li += n + 1
        return fused

    def _in_place_after(self, li: int) -> list[Layer]:
        """The layers right after layer li that compute in place on its only
        top (one bottom, one top, that blob), up to the first that does not;
        none when layer li or one of them has a loss."""
        tops = self.top_vecs[li]
        if len(tops) != 1 or any(self.layers[li].loss_weights):
            return []
        run = []
        for lj in range(li + 1, len(self.layers)):
            nb, nt = self.bottom_vecs[lj], self.top_vecs[lj]
            if len(nb) != 1 or len(nt) != 1:
                break
            if nb[0] is not tops[0] or nt[0] is not tops[0]:
                break
            if any(self.layers[lj].loss_weights):
                return []
            run.append(self.layers[lj])
        return run

    def _fusing(self) -> bool:
        """Whether this pass runs the fused pairs as one (CPU, no debug_info)."""
        if not self._fused or self.debug_info or not self.fuse_layers:
            return False
        from caffepy.backend.mode import ops

        return ops().name == "cpu"

    def _log_summary(self):
        if not log.isEnabledFor(logging.DEBUG):
            return
        for li, layer in enumerate(self.layers):
            for tname, top in zip(self.layer_param[li].top, self.top_vecs[li]):
                log.debug("Top shape: %s %s", tname, top.shape)
            if not self.layer_need_backward[li]:
                log.debug("%s does not need backward computation.", layer.name)

    # -- running -------------------------------------------------------------------
    def _index(self, name, default):
        if name is None:
            return default
        if name not in self.layer_dict:
            raise NetError(f"no layer named '{name}' in net '{self.name}'")
        return self._names.index(name)

    def forward_from_to(self, start=0, end=None):
        end = len(self.layers) - 1 if end is None else end
        loss = 0.0
        li = start
        fused = self._fused if self._fusing() else {}
        try:
            while li <= end:
                n = fused.get(li, 0)
                if n and li + n <= end:
                    layer = self.layers[li]
                    layer.forward_following(
                        self.layers[li + 1 : li + n + 1],
                        self.bottom_vecs[li],
                        self.top_vecs[li],
                    )
                    li += n + 1
                    continue
                loss += self.layers[li].Forward(self.bottom_vecs[li], self.top_vecs[li])
                if self.debug_info:
                    netdebug.forward_debug_info(self, li)
                li += 1
        except CaffepyError as err:
            self._add_context(err, self.layers[li], self.layer_param[li])
            raise
        return loss

    def backward_from_to(self, start=None, end=0):
        start = len(self.layers) - 1 if start is None else start
        li = start
        fused = self._fused if self._fusing() else {}
        try:
            while li >= end:
                pair = fused.get(li - 1) == 1 and li - 1 >= end
                if pair and self._backward_fused(li - 1):
                    li -= 2
                    continue
                if self.layer_need_backward[li]:
                    self.layers[li].Backward(
                        self.top_vecs[li],
                        self.bottom_need_backward[li],
                        self.bottom_vecs[li],
                    )
                    if self.debug_info:
                        netdebug.backward_debug_info(self, li)
                li -= 1
        except CaffepyError as err:
            self._add_context(err, self.layers[li], self.layer_param[li])
            raise

    def _backward_fused(self, li: int) -> bool:
        """Run the backward of fused layers li and li + 1 as one, when both need
        it and the second propagates to the top they share; False otherwise."""
        if not (self.layer_need_backward[li] and self.layer_need_backward[li + 1]):
            return False
        if not self.bottom_need_backward[li + 1][0]:
            return False
        return self.layers[li].backward_fused(
            self.layers[li + 1],
            self.top_vecs[li],
            self.bottom_need_backward[li],
            self.bottom_vecs[li],
        )

    def forward_prefilled(self):
        """Forward through every layer; return the total weighted loss."""
        return self.forward_from_to()

    def backward_prefilled(self):
        """Caffe's Net::Backward: every layer, then (debug_info) the norms."""
        self.backward_from_to()
        if self.debug_info:
            netdebug.params_debug_info(self)

    def forward_backward(self):
        loss = self.forward_from_to()
        self.backward_prefilled()
        return loss

    def share_diffs(self) -> int:
        """Let activations whose gradients are never live at the same time share
        their diff memory (:func:`caffepy.netmemory.share_diffs`): backward
        computes the same numbers, but afterwards the diff of an inner blob is
        valid only while backward runs through the layers that use it. Host
        memory only: call it in CPU mode.

        Returns:
            The bytes of gradient memory saved.
        """
        from caffepy.netmemory import share_diffs

        return share_diffs(self)

    def clear_param_diffs(self):
        from caffepy.backend.mode import ops

        backend = ops()
        for blob in self.learnable_params:
            # NOTE: zeroed where the diff lives (Caffe's caffe_gpu_set in GPU mode).
            backend.mutable_diff(blob)[...] = 0

    def forward(self, blobs=None, start=None, end=None, **kwargs):
        """pycaffe's forward: set inputs from kwargs, run, return output arrays."""
        for name, value in kwargs.items():
            if name not in self.inputs:
                raise NetError(
                    f"'{name}' is not an input of net '{self.name}' "
                    f"(inputs: {', '.join(self.inputs) or 'none'})"
                )
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
        ins = set(
            self.inputs if end is None else self.bottom_names[self.layers[e].name]
        )
        ins.update(diffs or [])
        return {n: self.blobs[n].diff for n in ins}

    def set_input_arrays(self, data, labels):
        """pycaffe: feed arrays to the net's first layer, which must be MemoryData."""
        first = self.layers[0] if self.layers else None
        if first is None or first.type != "MemoryData":
            raise NetError(
                "set_input_arrays needs a MemoryData layer as the first layer"
            )
        first.set_input_arrays(data, labels)

    def reshape(self):
        for li, layer in enumerate(self.layers):
            layer.reshape(self.bottom_vecs[li], self.top_vecs[li])

    @property
    def data_layers(self):
        return [layer for layer in self.layers if hasattr(layer, "set_state")]

    @property
    def layer_names(self):
        return list(self._names)

    @property
    def _layer_names(self):  # pycaffe
        return self.layer_names

    # -- weights -------------------------------------------------------------------
    def share_weights(self, other: Net) -> None:
        """Use ``other``'s parameter data for layers of the same name (a solver's
        test nets share the train net's weights, as Caffe's ShareTrainedLayersWith).
        """
        from caffepy.netweights import share_trained_layers

        share_trained_layers(self, other)

    def copy_from(self, weights: Any) -> dict:
        """Copy weights by layer name from a .caffemodel path or NetParameter
        (Caffe's CopyTrainedLayersFrom); returns ``{"copied": [...], "ignored":
        [...]}`` layer names, also kept as ``last_copy``."""
        from caffepy.netweights import copy_trained_layers

        self.last_copy = copy_trained_layers(self, weights)
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
            lp.CopyFrom(self._user_layer_param[li])
            del lp.blobs[:]
            for blob in layer.blobs:
                diff = blob.diff if write_diff else None
                proto_from_array(blob.data, diff, lp.blobs.add())
        return out

    def save(self, path, write_diff=False):
        """Write the weights as a .caffemodel (atomically)."""
        from caffepy.io.prototxt import write_binary

        write_binary(path, self.to_proto(write_diff))

    # -- resources -------------------------------------------------------------
    def close(self) -> None:
        """Release every layer's outside resources (data readers, prefetch
        threads); the net must not run afterwards. Safe to call twice."""
        for layer in self.layers:
            layer.close()

    def __enter__(self) -> Net:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self):
        return (
            f"<Net {self.name!r} {_PHASE_NAMES.get(self.phase, self.phase)}: "
            f"{len(self.layers)} layers>"
        )
