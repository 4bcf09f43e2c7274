"""Solver state files: Caffe's ``.solverstate`` and caffepy's JSON sidecar.

``<prefix>_iter_<N>.solverstate`` is a serialized ``SolverState`` exactly as
BVLC Caffe writes it (``iter``, ``learned_net``: the path of the matching
``.caffemodel`` as it was written, ``history``: one BlobProto per learnable
parameter in net order, a second set after the first for AdaDelta and Adam,
``current_step``), so Caffe can resume from our snapshots and we from Caffe's.

What Caffe does not save goes in ``<...>.solverstate.caffepy.json``: the state
of caffepy's random generator and the cursor of every data layer, so a resumed
run reads the same batches and draws the same numbers as the uninterrupted run.
The sidecar is optional on restore (Caffe's own snapshots have none).
"""

import json
import logging
import os
import re

import numpy as np

from caffepy.errors import InputFileError, SolverError
from caffepy.io.atomic import (
    atomic_write_bytes,
    file_crc32,
    read_regular_bytes,
)
from caffepy.io.blobproto import array_from_proto, proto_from_array, proto_shape

log = logging.getLogger("caffepy")

SIDECAR_SUFFIX = ".caffepy.json"
SIDECAR_VERSION = 1


def sidecar_path(state_path):
    return os.fspath(state_path) + SIDECAR_SUFFIX


def read_solverstate(path):
    """Parse a ``.solverstate`` file into a ``caffe_pb2.SolverState``.

    Raises:
        SolverError: missing/unreadable file, an HDF5 state, or a file that is
            not a SolverState (a ``.caffemodel`` given by mistake, ...).
    """
    from google.protobuf.message import DecodeError

    from caffepy.proto import caffe_pb2

    path = os.fspath(path)
    if path.endswith(".h5"):
        raise SolverError(
            f"{path}: HDF5 solver states are not supported; use a binary "
            ".solverstate (snapshot_format: BINARYPROTO)"
        )
    if path.endswith(".caffemodel"):
        raise SolverError(
            f"{path} is a .caffemodel (weights only); to resume training point to "
            "the matching .solverstate"
        )
    try:
        raw = read_regular_bytes(path, "solver state")
    except InputFileError:
        raise
    except OSError as err:
        raise SolverError(f"cannot read solver state {path}: {err.strerror}") from None
    state = caffe_pb2.SolverState()
    try:
        state.ParseFromString(raw)
    except DecodeError:
        state = None
    from caffepy.io.prototxt import text_fields_decode

    if (
        state is None
        or not _looks_like_state(state, raw)
        or not text_fields_decode(state)
    ):
        raise SolverError(
            f"{path} is not a solver state (SolverState); to resume training point "
            "to the .solverstate a snapshot wrote (not a .caffemodel or prototxt)"
        )
    return state


def _looks_like_state(state, raw):
    from google.protobuf import unknown_fields

    # NOTE: protobuf accepts almost any bytes as *some* message (unknown fields are
    # kept), so a .caffemodel renamed .solverstate parses "fine". A real state
    # written by Caffe or caffepy has no unknown fields and sets iter or history.
    if not raw:
        return False
    if len(unknown_fields.UnknownFieldSet(state)):
        return False
    return (
        state.HasField("iter")
        or len(state.history) > 0
        or state.HasField("learned_net")
    )


def make_solverstate(iteration, learned_net, history, current_step):
    """Build a SolverState from arrays (``history``: list of ndarrays)."""
    from caffepy.proto import caffe_pb2

    state = caffe_pb2.SolverState()
    state.iter = int(iteration)
    state.learned_net = os.fspath(learned_net)
    state.current_step = int(current_step)
    for arr in history:
        proto_from_array(arr, proto=state.history.add())
    return state


def write_solverstate(path, state):
    """Write a SolverState atomically."""
    atomic_write_bytes(path, state.SerializeToString())


def history_arrays(state, shapes, names, dtype=np.float32, solver_type="SGD", sets=1):
    """The history blobs of ``state`` as arrays, checked against the solver.

    Args:
        state: the SolverState.
        shapes: the expected shape of each history blob (in order).
        names: a label for each history blob (e.g. ``"ip1/0"``), for errors.
        dtype: the arrays' dtype.
        solver_type: for the error message.
        sets: history blobs per learnable parameter (2 for AdaDelta and Adam).

    Raises:
        SolverError: wrong number of blobs, or a blob whose shape does not fit.
    """
    if len(state.history) != len(shapes):
        per = (
            "one per learnable parameter"
            if sets == 1
            else f"{sets} per learnable parameter"
        )
        raise SolverError(
            f"the solver state holds {len(state.history)} history blobs but a "
            f"{solver_type} solver on this net expects {len(shapes)} ({per}); the "
            "state was written for another net or another solver type"
        )
    arrays = []
    for proto, shape, name in zip(state.history, shapes, names):
        got = proto_shape(proto)
        if not _shape_fits(proto, got, tuple(shape)):
            raise SolverError(
                f"history blob for parameter {name} has shape {list(got)} but the "
                f"parameter has shape {list(shape)}"
            )
        values = array_from_proto(proto, dtype=dtype)
        arrays.append(values.reshape(shape))
    return arrays


def _shape_fits(proto, got, want):
    if got == want:
        return True
    # Legacy 4-D blobs (num/channels/height/width) match as Caffe's ShapeEquals:
    # the shape padded with leading 1s to four axes.
    if not proto.HasField("shape") and len(want) <= 4:
        return got == (1,) * (4 - len(want)) + want
    return False


_ITER_IN_NAME = re.compile(r"_iter_(\d+)\.caffemodel(\.h5)?$")


def check_state_numbers(path, iteration, current_step, learned_net):
    """Refuse a state whose iteration or lr step is negative, that names no
    weights, or whose weights file is named for another iteration.

    Raises:
        SolverError: naming the state file and the value received.
    """
    path = os.fspath(path)
    if iteration < 0:
        raise SolverError(
            f"{path}: iter is {iteration}; a solver state's iteration is >= 0 (the "
            "file is corrupt or was edited)"
        )
    if current_step < 0:
        raise SolverError(
            f"{path}: current_step is {current_step}; the lr policy's step is >= 0"
        )
    if not learned_net:
        raise SolverError(
            f"{path}: names no learned_net (the weights to resume from); resuming "
            "would start from fresh random weights. Point --snapshot to a state a "
            "snapshot wrote, or start with --weights"
        )
    m = _ITER_IN_NAME.search(os.fspath(learned_net))
    if m and int(m.group(1)) != iteration:
        raise SolverError(
            f"{path}: the state is at iteration {iteration} but its learned_net "
            f"{learned_net!r} is the snapshot of iteration {m.group(1)}; the "
            "weights and the solver history would not belong together"
        )


def check_finite_history(path, arrays, names):
    """Refuse history arrays holding NaN or inf (a state saved after the run
    diverged).

    Raises:
        SolverError: naming the state and the first parameter affected.
    """
    for arr, name in zip(arrays, names):
        if not np.isfinite(arr).all():
            raise SolverError(
                f"{os.fspath(path)}: the solver history of parameter {name} holds "
                "NaN or infinite values; the run had diverged when it was saved: "
                "resume from an earlier snapshot"
            )


def check_sidecar_crc(sidecar, state_path, model_path):
    """Refuse a snapshot whose files do not belong together: the sidecar records
    the CRC-32 of the weights and of the state it was written with (a run killed
    while overwriting a snapshot, or two runs sharing a prefix, leave a mix).

    Raises:
        SolverError: a file whose CRC differs from the sidecar's.
    """
    crcs = (sidecar or {}).get("crc32")
    if not isinstance(crcs, dict):
        return
    for key, path in (("solverstate", state_path), ("learned_net", model_path)):
        want = crcs.get(key)
        if want is None:
            continue
        if file_crc32(path) != want:
            raise SolverError(
                f"{os.fspath(state_path)}: {path} is not the file its snapshot was "
                f"written with (its CRC-32 differs from the one in "
                f"{os.path.basename(sidecar_path(state_path))}); the snapshot's "
                "files are a mix of two writes: resume from another snapshot"
            )


def sidecar_bytes(payload):
    """The JSON sidecar's bytes for ``payload`` (with the format version)."""
    return json.dumps(dict(payload, version=SIDECAR_VERSION), indent=1).encode()


def write_sidecar(state_path, payload):
    """Write the JSON sidecar next to ``state_path`` atomically."""
    atomic_write_bytes(sidecar_path(state_path), sidecar_bytes(payload))


def read_sidecar(state_path):
    """The sidecar's dict, or None when there is none (Caffe's snapshots)."""
    path = sidecar_path(state_path)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            payload = json.load(f)
    except (OSError, ValueError) as err:
        raise SolverError(f"cannot read {path}: {err}") from None
    if not isinstance(payload, dict):
        raise SolverError(f"{path}: not a caffepy solver-state sidecar")
    return payload


def resolve_learned_net(learned_net, state_path):
    """Find the caffemodel a state names: as given (relative to the working
    directory, as Caffe), then relative to the solverstate's folder."""
    if os.path.isabs(learned_net) or os.path.exists(learned_net):
        return learned_net
    beside = os.path.join(os.path.dirname(os.path.abspath(state_path)), learned_net)
    if os.path.exists(beside):
        return beside
    beside_base = os.path.join(
        os.path.dirname(os.path.abspath(state_path)), os.path.basename(learned_net)
    )
    if os.path.exists(beside_base):
        return beside_base
    raise SolverError(
        f"the solver state {state_path} names the weights {learned_net!r}, which "
        "exists neither relative to the working directory nor beside the state"
    )
