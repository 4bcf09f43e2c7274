"""Snapshots of a solver: atomic writes, restore, and caffepy's JSON sidecar.

A snapshot is ``<prefix>_iter_<N>.caffemodel``, then the sidecar
``.solverstate.caffepy.json``, then ``.solverstate``, each written atomically
(:mod:`caffepy.io.atomic`): a ``.solverstate`` on disk means its whole snapshot
is complete, and a kill at any moment leaves every earlier snapshot whole. The
file formats are in :mod:`caffepy.solvers.state`. With ``snapshot_format: HDF5``
the files are ``.caffemodel.h5`` and ``.solverstate.h5`` in Caffe's HDF5 layout
(:mod:`caffepy.io.hdf5`), written in the same order, as atomically.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
from collections.abc import Iterator
from typing import Any

from caffepy import rng
from caffepy.errors import SnapshotError, SnapshotPrefixInUse, SolverError
from caffepy.io import hdf5
from caffepy.io.atomic import AtomicGroup, check_input_file, file_crc32
from caffepy.solvers import state as state_io
from caffepy.solvers.divergence import nonfinite_params

log = logging.getLogger("caffepy")


def remove_stale_temp_files(prefix: str) -> None:
    """Remove the temporary files of snapshots whose writer was killed (see
    caffepy.io.atomic: ``.<name>.<random>.tmp`` beside the target)."""
    folder = os.path.dirname(os.path.abspath(prefix))
    pattern = "." + glob.escape(os.path.basename(prefix)) + "_iter_*.tmp"
    for path in glob.glob(os.path.join(folder, pattern)):
        with contextlib.suppress(OSError):
            os.unlink(path)
            log.info("Removed %s, left by a snapshot that was interrupted", path)


_HELD_LOCKS: dict[str, int] = {}


def prefix_lock(prefix: str) -> int:
    """An exclusive ``flock`` on ``<prefix>.lock``, held until the process ends;
    returns its file descriptor (the same one when this process holds it already).

    Raises:
        SnapshotPrefixInUse: another process holds it.
    """
    path = os.path.abspath(os.fspath(prefix)) + ".lock"
    if path in _HELD_LOCKS:
        return _HELD_LOCKS[path]
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        return -1
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        owner = ""
        with contextlib.suppress(OSError, ValueError):
            with open(path, encoding="ascii") as f:
                owner = f" (process {int(f.read().strip())})"
        raise SnapshotPrefixInUse(
            f"snapshot_prefix {prefix!r} is in use by another running training"
            f"{owner}: its lock {path} is held; give this run another "
            "snapshot_prefix, or wait for the other one to end"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode("ascii"))
    _HELD_LOCKS[path] = fd
    return fd


class Snapshotting:
    """Mixin of :class:`~caffepy.solvers.solver.Solver`: snapshot and restore
    (Caffe's ``Solver::Snapshot`` and ``Solver::Restore``)."""

    # Provided by Solver.
    param: Any
    net: Any
    test_nets: list[Any]
    iter: int
    current_step: int
    history: list[Any]
    last_snapshot: str | None
    type_name: str | None
    dtype: Any  # numpy.dtype of the nets
    ops: Any  # the backend's Ops
    divergence_check: bool
    history_sets: int
    _params: list[Any]
    _param_names: list[str]
    _temp_files_cleaned: bool
    _diverged: Any  # Solver._diverged(loss) -> DivergenceError

    def snapshot_filename(self, extension: str) -> str:
        return f"{self.param.snapshot_prefix}_iter_{self.iter}{extension}"

    def _hdf5_format(self) -> bool:
        return self.param.snapshot_format == self.param.HDF5

    def snapshot(self) -> tuple[str, str]:
        """Write ``<prefix>_iter_<N>.caffemodel`` then ``.solverstate`` (with the
        JSON sidecar), each atomically; return (caffemodel path, solverstate path).
        With ``snapshot_format: HDF5``: ``.caffemodel.h5`` and ``.solverstate.h5``.

        A kill at any moment leaves every earlier snapshot whole (a .solverstate
        on disk means its snapshot is complete). A write that fails (a full disk)
        removes what this snapshot wrote and raises SnapshotError; with the
        divergence check on, non-finite weights raise DivergenceError and nothing
        is written.
        """
        p = self.param
        if self.divergence_check and nonfinite_params(self.net):
            # NOTE: never overwrite a good snapshot with NaN weights.
            err = self._diverged(None)
            err.args = (
                f"{err} (the snapshot of iteration {self.iter} was not written)",
            )
            raise err
        use_h5 = self._hdf5_format()
        suffix = ".h5" if use_h5 else ""
        model_file = self.snapshot_filename(".caffemodel" + suffix)
        state_file = self.snapshot_filename(".solverstate" + suffix)
        if not self._temp_files_cleaned:
            self._temp_files_cleaned = True
            remove_stale_temp_files(p.snapshot_prefix)
        sidecar = state_io.sidecar_path(state_file)
        writing = model_file
        try:
            kind = "HDF5" if use_h5 else "binary proto"
            log.info("Snapshotting to %s file %s", kind, model_file)
            # NOTE: the three files are written to temporary names first and
            # renamed weights, sidecar, state: a .solverstate on disk means its
            # whole snapshot is there, and a failure renames nothing.
            with AtomicGroup() as group:
                if use_h5:
                    model_tmp = group.stage(
                        model_file,
                        lambda t: hdf5.save_net_hdf5(self.net, t, p.snapshot_diff),
                    )
                else:
                    model_tmp = group.write_bytes(
                        model_file,
                        self.net.to_proto(p.snapshot_diff).SerializeToString(),
                    )
                log.info("Snapshotting solver state to %s file %s", kind, state_file)
                writing = state_file
                history = [self.ops.to_host(h) for h in self.history]
                if use_h5:
                    state_tmp = group.stage(
                        state_file,
                        lambda t: hdf5.write_solverstate_hdf5(
                            t, self.iter, model_file, history, self.current_step
                        ),
                    )
                else:
                    state_tmp = group.write_bytes(
                        state_file,
                        state_io.make_solverstate(
                            self.iter, model_file, history, self.current_step
                        ).SerializeToString(),
                    )
                writing = sidecar
                payload = self._sidecar_payload(model_file)
                payload["crc32"] = {
                    "learned_net": file_crc32(model_tmp),
                    "solverstate": file_crc32(state_tmp),
                }
                group.write_bytes(sidecar, state_io.sidecar_bytes(payload))
                group.rename_last(state_tmp)
        except OSError as err:
            if isinstance(err, SnapshotPrefixInUse):
                raise
            previous = (
                f"the previous snapshot {self.last_snapshot} is intact"
                if self.last_snapshot
                else "no earlier snapshot was written"
            )
            raise SnapshotError(
                f"cannot write the snapshot of iteration {self.iter} ({writing}): "
                f"{err.strerror or err}; {previous}",
                errno=err.errno,
            ) from None
        self.last_snapshot = model_file
        return model_file, state_file

    def lock_snapshot_prefix(self) -> None:
        """Hold ``<snapshot_prefix>.lock`` for the life of this process, so a
        second live run with the same prefix is refused (the OS releases the lock
        of a run that crashes or is killed).

        Raises:
            SnapshotPrefixInUse: another live process holds the lock.
        """
        prefix = self.param.snapshot_prefix
        if not prefix or getattr(self, "_prefix_lock", None) is not None:
            return
        self._prefix_lock = prefix_lock(prefix)

    def _all_nets(self) -> Iterator[tuple[str, Any]]:
        yield "train", self.net
        for i, net in enumerate(self.test_nets):
            yield f"test/{i}", net

    def _sidecar_payload(self, model_file: str) -> dict[str, Any]:
        layers = {}
        for key, net in self._all_nets():
            states = {}
            for layer in net.data_layers:
                get = getattr(layer, "state", None)
                if not callable(get):
                    continue
                value = get()
                try:
                    json.dumps(value)
                except (TypeError, ValueError):
                    log.warning(
                        "data layer %s: its state is not JSON-able; the snapshot "
                        "will not restore its cursor",
                        layer.name,
                    )
                    continue
                states[layer.name] = value
            if states:
                layers[key] = states
        return {
            "iter": self.iter,
            "learned_net": model_file,
            "solver_type": self.type_name,
            "rng": rng.get_state(),
            "data_layers": layers,
        }

    def restore(self, path: str | os.PathLike) -> None:
        """Resume from a ``.solverstate`` or ``.solverstate.h5`` (Caffe's or ours):
        iteration, weights from its ``learned_net``, lr position, history; with
        caffepy's sidecar also the random state and the data cursors.

        Raises:
            SolverError: an unreadable state, or history that does not match the
                net and the update rule; a sidecar that is not valid.
        """
        path = os.fspath(path)
        check_input_file(path, "solver state")
        n = len(self._params)
        shapes = [b.shape for b in self._params] * self.history_sets
        names = self._param_names * self.history_sets
        if self.history_sets > 1:
            names = [f"{nm} (history set {k // n + 1})" for k, nm in enumerate(names)]
        if hdf5.is_hdf5_path(path):
            h5 = hdf5.read_solverstate_hdf5(path)
            arrays = self._check_h5_history(h5.history, shapes, names, path)
            learned, iteration, step = h5.learned_net, h5.iter, h5.current_step
        else:
            state = state_io.read_solverstate(path)
            arrays = state_io.history_arrays(
                state, shapes, names, self.dtype, self.type_name, self.history_sets
            )
            learned = state.learned_net if state.HasField("learned_net") else None
            iteration, step = state.iter, state.current_step
        state_io.check_state_numbers(path, iteration, step, learned)
        sidecar = state_io.read_sidecar(path)
        self._check_sidecar_type(sidecar, path)
        state_io.check_finite_history(path, arrays, names)
        model = state_io.resolve_learned_net(learned, path)
        state_io.check_sidecar_crc(sidecar, path, model)
        self.net.copy_from(model)
        bad = nonfinite_params(self.net)
        if bad:
            layer, j = bad[0]
            raise SolverError(
                f"{path}: its weights {model} hold NaN or infinite values (layer "
                f"'{layer}', parameter {j}{' and more' if len(bad) > 1 else ''}); "
                "the run had diverged when it was saved: resume from an earlier "
                "snapshot"
            )
        self.last_snapshot = model
        self.iter = iteration
        self.current_step = step
        for h, a in zip(self.history, arrays):
            self.ops.copy(self.ops.from_host(a), h)
        if sidecar is not None:
            self._apply_sidecar(sidecar, path)
        else:
            log.warning(
                "%s has no caffepy sidecar (%s): resuming restores the weights and "
                "the solver history but not the random state or the data cursors, "
                "so the run will not be bit-identical to an uninterrupted one",
                path,
                os.path.basename(state_io.sidecar_path(path)),
            )
        log.info("Restored solver state from %s (iteration %d)", path, self.iter)

    def _check_h5_history(
        self, history: list[Any], shapes: list[Any], names: list[str], path: str
    ) -> list[Any]:
        """The history of a .solverstate.h5, checked against this solver's params
        (Caffe: "Incorrect length of history blobs", then each shape)."""
        if len(history) != len(shapes):
            per = "one" if self.history_sets == 1 else str(self.history_sets)
            raise SolverError(
                f"{path}: the solver state holds {len(history)} history blobs but a "
                f"{self.type_name} solver on this net expects {len(shapes)} ({per} "
                "per learnable parameter); the state was written for another net or "
                "another solver type"
            )
        for arr, shape, name in zip(history, shapes, names):
            if tuple(arr.shape) != tuple(shape):
                raise SolverError(
                    f"{path}: history blob for parameter {name} has shape "
                    f"{list(arr.shape)} but the parameter has shape {list(shape)}"
                )
        return [a.astype(self.dtype, copy=False) for a in history]

    def _check_sidecar_type(self, sidecar: dict[str, Any] | None, path: str) -> None:
        """Refuse a state whose sidecar says another update rule wrote it."""
        saved = (sidecar or {}).get("solver_type")
        if saved and self.type_name and saved != self.type_name:
            raise SolverError(
                f"{path}: the state was written by a {saved} solver (its sidecar "
                f"says so) but this is a {self.type_name} solver; resume with "
                f'type: "{saved}", or start anew from its .caffemodel with '
                "--weights"
            )

    def _apply_sidecar(self, sidecar: dict[str, Any], path: str) -> None:
        where = state_io.sidecar_path(path)
        if sidecar.get("iter") != self.iter:
            log.warning(
                "ignoring %s: it was written for iteration %s, the solver state is "
                "at %d",
                where,
                sidecar.get("iter"),
                self.iter,
            )
            return
        advice = (
            "delete it to resume without it (the data order and random draws then "
            "differ from an uninterrupted run)"
        )
        if sidecar.get("rng") is not None:
            try:
                rng.set_state(sidecar["rng"])
            except (TypeError, ValueError, KeyError, OverflowError) as err:
                raise SolverError(
                    f"{where}: the random state in it is not valid ({err}); {advice}"
                ) from None
        saved = sidecar.get("data_layers") or {}
        if not isinstance(saved, dict) or not all(
            isinstance(v, dict) for v in saved.values()
        ):
            raise SolverError(
                f"{where}: 'data_layers' is not a mapping of net to layer states; "
                f"{advice}"
            )
        for key, net in self._all_nets():
            for layer in net.data_layers:
                value = saved.get(key, {}).get(layer.name)
                if value is not None:
                    layer.set_state(value)
