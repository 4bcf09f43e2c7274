"""Caffe's HDF5 files: net weights (``.caffemodel.h5``) and solver states
(``.solverstate.h5``), laid out exactly as BVLC Caffe writes them.

Weights (``Net::ToHDF5``): a group ``/data`` with one subgroup per layer of the
net, inserted Split layers included and layers without parameters too (an
empty group); in it one dataset per parameter blob, named ``"0"``, ``"1"``, ...,
in the blob's full N-D shape. A parameter shared from another layer is written
only at its owner (the sharing layer's group has no such dataset). With
``write_diff`` a ``/diff`` group has the same layout with the gradients.

Solver state (``SGDSolver::SnapshotSolverStateToHDF5``): int32 datasets ``iter``
and ``current_step`` of shape (1,), a scalar NUL-terminated string ``learned_net``
(the weights file, as written), and a group ``/history`` with datasets ``"0"``..
(one per learnable parameter; AdaDelta and Adam: a second set after the first).
No attributes are used. ``fixtures/caffe-golden-2/facts/hdf5_layout.json``
records these layouts from real Caffe files.

Every file is written to a temporary file beside the target, synced and renamed,
so a kill never leaves a torn file. h5py comes with the ``hdf5`` extra.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from caffepy.errors import CaffepyError, UnsupportedError, WeightsError

INSTALL_HINT = "pip install 'caffepy[hdf5]'"


def h5py_module() -> Any:
    """The h5py module, or an error naming the extra that installs it."""
    try:
        import h5py
    except ImportError:
        raise UnsupportedError(
            f"reading and writing HDF5 files needs h5py: {INSTALL_HINT}"
        ) from None
    return h5py


def is_hdf5_path(path: str | os.PathLike) -> bool:
    """Whether Caffe treats ``path`` as HDF5 (it ends with ``.h5``, as Caffe's
    ``CopyTrainedLayersFrom`` and ``Solver::Restore`` decide)."""
    return os.fspath(path).endswith(".h5")


def open_hdf5(
    path: str | os.PathLike, what: str, error: type[CaffepyError] = CaffepyError
) -> Any:
    """Open an HDF5 file for reading, with one clear line when it cannot be.

    Args:
        path: the file.
        what: what the file is for the message ("weights file", ...).
        error: the exception type to raise.

    Raises:
        error: a missing, unreadable or corrupt file (the message names it).
    """
    h5py = h5py_module()
    path = os.fspath(path)
    if not os.path.exists(path):
        where = "" if os.path.isabs(path) else f" (relative to {os.getcwd()})"
        raise error(f"{what} {path!r} does not exist{where}")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        reason = str(err).split("(", 1)[-1].rstrip(")") if "(" in str(err) else err
        raise error(
            f"{what} {path!r} is not a readable HDF5 file ({reason}); it is truncated "
            "or another kind of file"
        ) from None


@contextlib.contextmanager
def atomic_hdf5(path: str | os.PathLike) -> Iterator[Any]:
    """Yield an h5py File open for writing; on success it replaces ``path``
    atomically (temporary file in the same folder, fsync, rename); on failure
    the temporary file is removed and ``path`` is untouched."""
    from caffepy.io.atomic import AtomicGroup

    h5py = h5py_module()
    # (AtomicGroup refuses a target that is not a regular file and follows the
    # umask; on an error it removes the temporary file.)
    with AtomicGroup() as group:
        tmp = group.stage(path, lambda _: None)
        with h5py.File(tmp, "w") as f:
            yield f
        with open(tmp, "rb+") as raw:
            os.fsync(raw.fileno())


# -- net weights -----------------------------------------------------------------
def _owned(net: Any) -> set[tuple[int, int]]:
    """(layer index, param index) of every parameter blob its layer owns."""
    owners = getattr(net, "param_owners", None)
    if owners is None:
        return {
            (li, j)
            for li, layer in enumerate(net.layers)
            for j in range(len(layer.blobs))
        }
    return {(li, j) for li, j, owner in owners if owner is None}


def _layer_names(net: Any) -> list[str]:
    names = [layer.name for layer in net.layers]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise WeightsError(
                f"net '{net.name}' has two layers named '{name}': its weights cannot "
                "be saved as HDF5 (one group per layer name); rename one of them"
            )
        seen.add(name)
    return names


def write_net_hdf5(net: Any, f: Any, write_diff: bool = False) -> None:
    """Write ``net``'s parameters into the open h5py File ``f`` (Caffe's
    ``Net::ToHDF5`` layout: ``/data/<layer>/<i>``, and ``/diff`` likewise)."""
    owned = _owned(net)
    names = _layer_names(net)
    groups = [f.create_group("data")]
    if write_diff:
        groups.append(f.create_group("diff"))
    for li, (name, layer) in enumerate(zip(names, net.layers)):
        subs = [g.create_group(name) for g in groups]
        for j, blob in enumerate(layer.blobs):
            if (li, j) not in owned:
                continue
            subs[0].create_dataset(str(j), data=np.asarray(blob.data))
            if write_diff:
                subs[1].create_dataset(str(j), data=np.asarray(blob.diff))


def save_net_hdf5(net: Any, path: str | os.PathLike, write_diff: bool = False) -> None:
    """Write ``net``'s weights to ``path`` as Caffe's ``.caffemodel.h5`` (pycaffe's
    ``Net.save_hdf5``), atomically.

    Raises:
        WeightsError: two layers with one name (Caffe leaves a broken file).
        OSError: the file cannot be written.
    """
    _layer_names(net)  # refuse before creating anything
    with atomic_hdf5(path) as f:
        write_net_hdf5(net, f, write_diff)


def _walk_layers(group: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(layer name, group) under ``/data``; a layer name with ``/`` is a nested
    group path, as h5py creates it."""
    h5py = h5py_module()
    for key in group:
        item = group[key]
        if isinstance(item, h5py.Group):
            name = prefix + key
            yield name, item
            yield from _walk_layers(item, name + "/")


def load_net_hdf5(net: Any, path: str | os.PathLike) -> dict:
    """Copy weights from a ``.caffemodel.h5`` into ``net`` by layer name (Caffe's
    ``CopyTrainedLayersFromHDF5``).

    A source layer not in the net is ignored; a parameter the file lacks is
    fine only where the net's layer shares it from another layer.

    Returns:
        ``{"copied": [layer names], "ignored": [source layers not in the net]}``.

    Raises:
        WeightsError: an unreadable file, no ``/data`` group, more datasets than
            the layer has parameters, a missing owned parameter, or a shape
            mismatch (the message names the file, layer and parameter).
    """
    import logging

    log = logging.getLogger("caffepy")
    path = os.fspath(path)
    owned = _owned(net)
    index = {layer.name: li for li, layer in enumerate(net.layers)}
    copied, ignored = [], []
    with open_hdf5(path, "weights file", WeightsError) as f:
        if "data" not in f:
            raise WeightsError(
                f"{path}: no /data group; it is not a Caffe HDF5 weights file "
                "(.caffemodel.h5)"
            )
        for name, group in _walk_layers(f["data"]):
            li = index.get(name)
            if li is None:
                if any(not hasattr(v, "keys") for v in group.values()):
                    log.info("Ignoring source layer %s", name)
                ignored.append(name)
                continue
            blobs = net.layers[li].blobs
            datasets = [k for k in group if not hasattr(group[k], "keys")]
            if len(datasets) > len(blobs):
                raise WeightsError(
                    f"{path}: layer '{name}' has {len(datasets)} parameter datasets, "
                    f"the net's layer has {len(blobs)}; to learn it from scratch "
                    "rather than copy it, rename the layer"
                )
            wrote = False
            for j, blob in enumerate(blobs):
                if str(j) not in group:
                    if (li, j) in owned:
                        raise WeightsError(
                            f"{path}: layer '{name}' has no dataset '{j}' for its "
                            f"parameter {j} (it has {len(datasets)})"
                        )
                    continue  # shared in the target net: its owner has it
                values = group[str(j)][()]
                if tuple(values.shape) != tuple(blob.shape):
                    raise WeightsError(
                        f"{path}: cannot copy param {j} of layer '{name}': shape "
                        f"mismatch, source {tuple(values.shape)} vs target "
                        f"{tuple(blob.shape)}; to learn this layer's parameters from "
                        "scratch rather than copying them, rename the layer"
                    )
                blob.data[...] = values
                wrote = True
            if wrote:
                copied.append(name)
    return {"copied": copied, "ignored": ignored}


# -- solver state ------------------------------------------------------------------
@dataclass
class HDF5SolverState:
    """What a ``.solverstate.h5`` holds."""

    iter: int
    current_step: int
    learned_net: str | None
    history: list[np.ndarray]


def _write_string(f: Any, name: str, text: str) -> None:
    """A scalar fixed-length NUL-terminated string dataset (H5LTmake_dataset_string)."""
    h5py = h5py_module()
    raw = text.encode("utf-8")
    tid = h5py.h5t.C_S1.copy()
    tid.set_size(len(raw) + 1)
    tid.set_strpad(h5py.h5t.STR_NULLTERM)
    space = h5py.h5s.create(h5py.h5s.SCALAR)
    dset = h5py.h5d.create(f.id, name.encode(), tid, space)
    dset.write(h5py.h5s.ALL, h5py.h5s.ALL, np.array(raw, dtype=f"S{len(raw) + 1}"))


def write_solverstate_hdf5(
    path: str | os.PathLike,
    iteration: int,
    learned_net: str,
    history: list[np.ndarray],
    current_step: int,
) -> None:
    """Write a ``.solverstate.h5`` in Caffe's layout, atomically."""
    with atomic_hdf5(path) as f:
        f.create_dataset("iter", data=np.array([iteration], np.int32))
        _write_string(f, "learned_net", os.fspath(learned_net))
        f.create_dataset("current_step", data=np.array([current_step], np.int32))
        group = f.create_group("history")
        for i, arr in enumerate(history):
            group.create_dataset(str(i), data=np.asarray(arr))


def _read_int(f: Any, name: str, path: str) -> int:
    from caffepy.errors import SolverError

    if name not in f:
        raise SolverError(f"{path}: no '{name}' dataset; is it a .solverstate.h5?")
    values = np.asarray(f[name][()]).reshape(-1)
    if values.size != 1:
        raise SolverError(f"{path}: '{name}' holds {values.size} values, expected 1")
    return int(values[0])


def read_solverstate_hdf5(path: str | os.PathLike) -> HDF5SolverState:
    """Read a ``.solverstate.h5`` (Caffe's or ours).

    Raises:
        SolverError: an unreadable or corrupt file, or one without ``iter`` and
            ``history`` (a weights file given by mistake, ...).
    """
    from caffepy.errors import SolverError

    path = os.fspath(path)
    with open_hdf5(path, "solver state", SolverError) as f:
        if "data" in f and "iter" not in f:
            raise SolverError(
                f"{path} is a .caffemodel.h5 (weights only); to resume training "
                "point to the matching .solverstate.h5"
            )
        iteration = _read_int(f, "iter", path)
        current_step = _read_int(f, "current_step", path) if "current_step" in f else 0
        learned = None
        if "learned_net" in f:
            raw = f["learned_net"][()]
            learned = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
        if "history" not in f:
            raise SolverError(f"{path}: no /history group; is it a .solverstate.h5?")
        group = f["history"]
        history = []
        for i in range(len(group)):
            if str(i) not in group:
                raise SolverError(
                    f"{path}: /history has {len(group)} members but no dataset '{i}'"
                )
            history.append(np.asarray(group[str(i)][()]))
    return HDF5SolverState(iteration, current_step, learned or None, history)
