"""Snapshots of a solver: atomic writes, restore, and caffepy's JSON sidecar.

A snapshot is ``<prefix>_iter_<N>.caffemodel``, then the sidecar
``.solverstate.caffepy.json``, then ``.solverstate``, each written atomically
(:mod:`caffepy.io.atomic`): a ``.solverstate`` on disk means its whole snapshot
is complete, and a kill at any moment leaves every earlier snapshot whole. The
file formats are in :mod:`caffepy.solvers.state`.
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
from caffepy.errors import SnapshotError, SolverError
from caffepy.io.atomic import atomic_write_bytes
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

    def snapshot_filename(self, extension: str) -> str:
        return f"{self.param.snapshot_prefix}_iter_{self.iter}{extension}"

    def snapshot(self) -> tuple[str, str]:
        """Write ``<prefix>_iter_<N>.caffemodel`` then ``.solverstate`` (with the
        JSON sidecar), each atomically; return (caffemodel path, solverstate path).

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
        model_file = self.snapshot_filename(".caffemodel")
        state_file = self.snapshot_filename(".solverstate")
        if not self._temp_files_cleaned:
            self._temp_files_cleaned = True
            remove_stale_temp_files(p.snapshot_prefix)
        sidecar = state_io.sidecar_path(state_file)
        fresh = [f for f in (model_file, sidecar) if not os.path.exists(f)]
        writing = model_file
        try:
            log.info("Snapshotting to binary proto file %s", model_file)
            atomic_write_bytes(
                model_file, self.net.to_proto(p.snapshot_diff).SerializeToString()
            )
            log.info("Snapshotting solver state to binary proto file %s", state_file)
            # The sidecar goes before the solverstate: a .solverstate on disk means
            # the whole snapshot is complete.
            writing = sidecar
            state_io.write_sidecar(state_file, self._sidecar_payload(model_file))
            writing = state_file
            history = [self.ops.to_host(h) for h in self.history]
            state_io.write_solverstate(
                state_file,
                state_io.make_solverstate(
                    self.iter, model_file, history, self.current_step
                ),
            )
        except OSError as err:
            for f in fresh:  # an incomplete snapshot must not look like one
                with contextlib.suppress(OSError):
                    os.unlink(f)
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
        """Resume from a ``.solverstate`` (Caffe's or ours): iteration, weights from
        its ``learned_net``, lr position, history; with caffepy's sidecar also the
        random state and the data cursors.

        Raises:
            SolverError: an unreadable state, or history that does not match the
                net and the update rule; a sidecar that is not valid.
        """
        path = os.fspath(path)
        state = state_io.read_solverstate(path)
        n = len(self._params)
        shapes = [b.shape for b in self._params] * self.history_sets
        names = self._param_names * self.history_sets
        if self.history_sets > 1:
            names = [f"{nm} (history set {k // n + 1})" for k, nm in enumerate(names)]
        arrays = state_io.history_arrays(
            state, shapes, names, self.dtype, self.type_name, self.history_sets
        )
        if state.HasField("learned_net") and state.learned_net:
            model = state_io.resolve_learned_net(state.learned_net, path)
            self.net.copy_from(model)
            self.last_snapshot = model
        self.iter = state.iter
        self.current_step = state.current_step
        for h, a in zip(self.history, arrays):
            self.ops.copy(self.ops.from_host(a), h)
        sidecar = state_io.read_sidecar(path)
        if sidecar is not None:
            self._apply_sidecar(sidecar, path)
        log.info("Restored solver state from %s (iteration %d)", path, self.iter)

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
