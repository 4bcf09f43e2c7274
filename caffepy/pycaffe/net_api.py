"""The Net methods only pycaffe has, as a mixin :class:`caffepy.Net` inherits.

Batching (``forward_all``, ``forward_backward_all``), the underscore views
pycaffe's C++ wrapper exposes (``_blob_names``, ``_blobs``, ``_inputs``,
``_outputs`` as blob indices, ``_top_ids``/``_bottom_ids``, ``_forward``/
``_backward`` by layer index), ``blob_loss_weights``, ``share_with``, and the
``before_forward``/``after_forward``/``before_backward``/``after_backward``
hooks (``fn(layer_index)`` around each layer).

Nothing here imports :mod:`caffepy.net`: the Net imports this module.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from itertools import zip_longest
from typing import Any

import numpy as np

_HOOKS = ("before_forward", "after_forward", "before_backward", "after_backward")


class PycaffeNetMixin:
    """pycaffe's extra Net surface; relies on the Net's ``blobs``, ``layers``,
    ``inputs``, ``outputs``, ``top_names``, ``bottom_names``, ``forward``,
    ``backward``, ``forward_from_to``, ``backward_from_to`` and
    ``share_weights``."""

    # Provided by Net.
    blobs: OrderedDict
    layers: list
    inputs: list
    outputs: list
    top_names: OrderedDict
    bottom_names: OrderedDict

    # -- pycaffe's index views ----------------------------------------------------
    @property
    def _blob_names(self) -> list[str]:
        return list(self.blobs)

    @property
    def _blobs(self) -> list[Any]:
        return list(self.blobs.values())

    def _blob_index(self, names: list[str]) -> list[int]:
        order = {n: i for i, n in enumerate(self.blobs)}
        return [order[n] for n in names]

    @property
    def _inputs(self) -> list[int]:
        return self._blob_index(self.inputs)

    @property
    def _outputs(self) -> list[int]:
        return self._blob_index(self.outputs)

    def _top_ids(self, i: int) -> list[int]:
        """Blob indices of layer ``i``'s tops."""
        return self._blob_index(list(self.layer_param[i].top))

    def _bottom_ids(self, i: int) -> list[int]:
        """Blob indices of layer ``i``'s bottoms."""
        return self._blob_index(list(self.layer_param[i].bottom))

    def _forward(self, start: int, end: int) -> float:
        """Forward layers ``start..end`` (indices, inclusive); the loss."""
        return self.forward_from_to(start, end)

    def _backward(self, start: int, end: int) -> None:
        """Backward layers ``start`` down to ``end`` (indices, inclusive)."""
        self.backward_from_to(start, end)

    @property
    def _blob_loss_weights(self) -> list[float]:
        return list(self.blob_loss_weights.values())

    @property
    def blob_loss_weights(self) -> OrderedDict:
        """Blob name -> the loss weight on it (0 for blobs that are no loss), as
        Caffe's ``blob_loss_weights``: the weight of the last layer writing it."""
        weights = OrderedDict((name, 0.0) for name in self.blobs)
        for layer, lp in zip(self.layers, self.layer_param):
            for j, name in enumerate(lp.top):
                lw = layer.loss_weights
                weights[name] = float(lw[j]) if j < len(lw) else 0.0
        return weights

    def save_hdf5(self, filename: str) -> None:
        """Write the weights in Caffe's HDF5 layout (``/data/<layer>/<i>``)."""
        from caffepy.io.hdf5 import save_net_hdf5

        save_net_hdf5(self, filename)

    def load_hdf5(self, filename: str) -> None:
        """Copy weights from a Caffe HDF5 weights file, by layer name."""
        from caffepy.io.hdf5 import load_net_hdf5

        load_net_hdf5(self, filename)

    def share_with(self, other: Any) -> None:
        """Use ``other``'s weights for layers of the same name (pycaffe's name for
        Caffe's ShareTrainedLayersWith)."""
        self.share_weights(other)

    # -- batches ----------------------------------------------------------------------
    def _batch(self, blobs: dict) -> Iterator[dict]:
        """Split ``{name: array}`` into the net's batch size; the last batch is
        padded with zeros."""
        num = len(next(iter(blobs.values())))
        batch_size = next(iter(self.blobs.values())).shape[0]
        full, rest = divmod(num, batch_size)
        for b in range(full):
            i = b * batch_size
            yield {name: arr[i : i + batch_size] for name, arr in blobs.items()}
        if rest:
            padded = {}
            for name, arr in blobs.items():
                arr = np.asarray(arr)
                pad = np.zeros((batch_size - rest,) + arr.shape[1:], dtype=arr.dtype)
                padded[name] = np.concatenate([arr[-rest:], pad])
            yield padded

    def forward_all(self, blobs: list[str] | None = None, **kwargs: Any) -> dict:
        """Forward any number of inputs in batches of the net's batch size;
        ``{blob: array}`` of the outputs (and ``blobs``), padding removed."""
        names = set(self.outputs + list(blobs or []))
        collected: dict[str, list] = {name: [] for name in names}
        for batch in self._batch(kwargs):
            outs = self.forward(blobs=blobs, **batch)
            for name, arr in outs.items():
                collected[name].extend(arr.copy())
        result = {name: np.asarray(v) for name, v in collected.items()}
        return self._unpad(result, kwargs)

    def forward_backward_all(
        self,
        blobs: list[str] | None = None,
        diffs: list[str] | None = None,
        **kwargs: Any,
    ) -> tuple[dict, dict]:
        """Forward and backward in batches: inputs and output diffs come from
        ``kwargs`` by name (a side without any runs on what the blobs hold);
        returns ``({blob: data}, {blob: diff})``, padding removed."""
        outs = {n: [] for n in set(self.outputs + list(blobs or []))}
        grads = {n: [] for n in set(self.inputs + list(diffs or []))}
        fwd = {n: kwargs[n] for n in self.inputs if n in kwargs}
        bwd = {n: kwargs[n] for n in self.outputs if n in kwargs}
        fwd_batches = self._batch(fwd) if fwd else iter(())
        bwd_batches = self._batch(bwd) if bwd else iter(())
        for fb, bb in zip_longest(fwd_batches, bwd_batches, fillvalue={}):
            for name, arr in self.forward(blobs=blobs, **fb).items():
                outs[name].extend(arr.copy())
            for name, arr in self.backward(diffs=diffs, **bb).items():
                grads[name].extend(arr.copy())
        return (
            self._unpad({n: np.asarray(v) for n, v in outs.items()}, kwargs),
            self._unpad({n: np.asarray(v) for n, v in grads.items()}, kwargs),
        )

    @staticmethod
    def _unpad(result: dict, kwargs: dict) -> dict:
        if not kwargs or not result:
            return result
        want = len(next(iter(kwargs.values())))
        return {
            name: arr[:want] if len(arr) > want else arr for name, arr in result.items()
        }

    # -- hooks ---------------------------------------------------------------------
    def before_forward(self, fn: Callable[[int], Any]) -> None:
        """Call ``fn(i)`` before layer ``i``'s forward."""
        self._add_hook("before_forward", fn)

    def after_forward(self, fn: Callable[[int], Any]) -> None:
        """Call ``fn(i)`` after layer ``i``'s forward."""
        self._add_hook("after_forward", fn)

    def before_backward(self, fn: Callable[[int], Any]) -> None:
        """Call ``fn(i)`` before layer ``i``'s backward."""
        self._add_hook("before_backward", fn)

    def after_backward(self, fn: Callable[[int], Any]) -> None:
        """Call ``fn(i)`` after layer ``i``'s backward."""
        self._add_hook("after_backward", fn)

    def _add_hook(self, kind: str, fn: Callable[[int], Any]) -> None:
        hooks = self.__dict__.get("_pycaffe_hooks")
        if hooks is None:
            hooks = self._pycaffe_hooks = {k: [] for k in _HOOKS}
            # NOTE: the net's forward/backward_from_to are replaced on this instance,
            # once, so a net without hooks runs exactly as before. As Caffe, the
            # backward hooks run for every layer, needing backward or not.
            self.forward_from_to = _hooked_forward(self.forward_from_to, hooks)
            self.backward_from_to = _hooked_backward(
                self.backward_from_to, len(self.layers), hooks
            )
        hooks[kind].append(fn)


def _hooked_forward(run: Callable, hooks: dict) -> Callable:
    def forward_from_to(start: int = 0, end: int | None = None) -> float:
        end = len(run.__self__.layers) - 1 if end is None else end
        loss = 0.0
        for i in range(start, end + 1):
            for fn in hooks["before_forward"]:
                fn(i)
            loss += run(i, i)
            for fn in hooks["after_forward"]:
                fn(i)
        return loss

    return forward_from_to


def _hooked_backward(run: Callable, num_layers: int, hooks: dict) -> Callable:
    def backward_from_to(start: int | None = None, end: int = 0) -> None:
        start = num_layers - 1 if start is None else start
        for i in range(start, end - 1, -1):
            for fn in hooks["before_backward"]:
                fn(i)
            run(i, i)
            for fn in hooks["after_backward"]:
                fn(i)

    return backward_from_to
