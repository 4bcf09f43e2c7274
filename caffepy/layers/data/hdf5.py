"""HDF5Data (batches from a list of .h5 files) and HDF5Output (bottoms into a
.h5 file), as BVLC Caffe's ``hdf5_data_layer.cpp`` and ``hdf5_output_layer.cpp``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from caffepy import backend
from caffepy.errors import DataError, LayerError
from caffepy.layer import Layer
from caffepy.parallel.state import solver_count, solver_rank
from caffepy.phase import TRAIN
from caffepy.registry import register_layer

log = logging.getLogger("caffepy")


def read_source_list(layer: Layer, source: str) -> list[str]:
    """The .h5 file names a ``hdf5_data_param.source`` lists: whitespace-separated
    tokens, as Caffe reads them (``source_file >> line``); relative names are
    relative to the working directory."""
    try:
        with open(source, encoding="utf-8") as f:
            names = f.read().split()
    except OSError as err:
        raise LayerError(
            layer, f"cannot read the source list {source!r}: {err.strerror or err}"
        ) from None
    if not names:
        raise LayerError(
            layer, f"must have at least 1 HDF5 filename listed in {source!r}"
        )
    return names


@register_layer("HDF5Data")
class HDF5DataLayer(Layer):
    """Batches of rows from the HDF5 files a list file names (Caffe's HDF5Data).

    Parameters (``hdf5_data_param``): ``source`` (a text file listing .h5 files),
    ``batch_size``, ``shuffle`` (default false).

    Tops: one per dataset, named like it (``top: "data"`` reads dataset
    ``data``); top ``j`` is ``batch_size x`` the dataset's shape past its first
    axis, float. Rows are taken in order, a batch continuing into the next file
    and wrapping from the last file to the first. With ``shuffle`` the file order
    is permuted at every pass and the rows at every file load (Caffe's
    ``random_shuffle``), from a generator seeded from caffepy's global RNG, so a
    run with a ``random_seed`` is repeatable and a snapshot resumes it exactly.
    No backward (data layers take no gradient); ``transform_param`` is not
    applied (Caffe ignores it here too).

    Data-parallel training (TRAIN phase, N solvers): rank r of N takes rows
    r, r+N, r+2N, ... of that one stream (Caffe's ``HDF5DataLayer::Skip``), the
    files concatenated in list order (or in the shuffled order, which every
    rank draws alike from the same seed). Between forwards every rank stands at
    the same row, the start of the next N batches, so a snapshot resumes with
    any number of ranks where the stream was.
    """

    uses_ops = ("copy", "from_host")

    exact_num_bottom = 0
    min_num_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.hdf5_data_param
        self.source = p.source
        self.batch_size = int(p.batch_size)
        if self.batch_size <= 0:
            raise LayerError(
                self,
                f"hdf5_data_param batch_size must be positive, got {self.batch_size}",
            )
        self.shuffle = bool(p.shuffle)
        train = self.phase == TRAIN
        # In TEST only rank 0 runs, over every row.
        self.rank = solver_rank() if train else 0
        self.size = solver_count() if train else 1
        self.files = read_source_list(self, self.source)
        self.dataset_names = list(self.layer_param.top)
        self.seed = 0
        if self.shuffle:
            from caffepy import rng

            self.seed = int(rng.get_rng().integers(2**63))
        self.passes = self.loads = 0
        self.file_order = self._file_order(0)
        self.current_file = 0
        self.current_row = 0
        self._loaded: int | None = None
        self._load(self.file_order[0])
        self.row_shapes = [arr.shape[1:] for arr in self.arrays]
        for blob, shape in zip(top, self.row_shapes):
            blob.reshape(self.batch_size, *shape)

    # -- files -------------------------------------------------------------------
    def _file_order(self, epoch: int) -> np.ndarray:
        n = len(self.files)
        if not self.shuffle or n == 1:
            return np.arange(n)
        return np.random.default_rng([self.seed, 0, epoch]).permutation(n)

    def _load(self, index: int) -> None:
        """Read every top's dataset of file ``index`` (Caffe's LoadHDF5FileData)."""
        from caffepy.io.hdf5 import open_hdf5

        name = self.files[index]
        arrays = []
        try:
            f = open_hdf5(name, "HDF5 file", DataError)
        except DataError as err:
            raise LayerError(self, f"{err} (listed in {self.source!r})") from None
        with f:
            for dset in self.dataset_names:
                if dset not in f or hasattr(f[dset], "keys"):
                    raise LayerError(
                        self,
                        f"HDF5 file {name!r} has no dataset {dset!r} (a top is read "
                        f"from the dataset of its name; it has {sorted(f.keys())})",
                    )
                ds = f[dset]
                if ds.ndim < 1 or ds.dtype.kind not in "fiub":
                    raise LayerError(
                        self,
                        f"dataset {dset!r} of {name!r} must be numeric with at least "
                        f"one axis, got dtype {ds.dtype} and shape {ds.shape}",
                    )
                arrays.append(np.asarray(ds[()], dtype=self.dtype))
        rows = {a.shape[0] for a in arrays}
        if len(rows) != 1 or 0 in rows:
            counts = {d: a.shape[0] for d, a in zip(self.dataset_names, arrays)}
            raise LayerError(
                self,
                f"the datasets of {name!r} must have one positive number of rows, got "
                f"{counts}",
            )
        shapes = getattr(self, "row_shapes", None)
        if shapes is not None:
            for dset, arr, shape in zip(self.dataset_names, arrays, shapes):
                if arr.shape[1:] != shape:
                    raise LayerError(
                        self,
                        f"dataset {dset!r} of {name!r} has rows of shape "
                        f"{arr.shape[1:]}, the first file's have {shape}",
                    )
        self.arrays = arrays
        self.rows = arrays[0].shape[0]
        self._loaded = index
        self.row_order = (
            np.random.default_rng([self.seed, 1, self.loads]).permutation(self.rows)
            if self.shuffle
            else None
        )
        self.loads += 1
        log.debug("%s: loaded %s (%d rows)", self.name, name, self.rows)

    def _next(self) -> None:
        """Advance one row (Caffe's HDF5DataLayer::Next)."""
        self.current_row += 1
        if self.current_row < self.rows:
            return
        self.current_row = 0
        if len(self.files) > 1:
            self.current_file += 1
            if self.current_file == len(self.files):
                self.current_file = 0
                self.passes += 1
                self.file_order = self._file_order(self.passes)
            self._load(int(self.file_order[self.current_file]))
        elif self.shuffle:
            self.row_order = np.random.default_rng(
                [self.seed, 1, self.loads]
            ).permutation(self.rows)
            self.loads += 1

    def _skip(self, rows: int) -> None:
        """Advance past ``rows`` rows (those the other ranks take)."""
        for _ in range(rows):
            self._next()

    # -- hooks -------------------------------------------------------------------
    def reshape(self, bottom, top):
        for blob, shape in zip(top, self.row_shapes):
            blob.reshape(self.batch_size, *shape)

    def forward(self, bottom, top):
        batches = [
            np.empty((self.batch_size, *shape), self.dtype) for shape in self.row_shapes
        ]
        rank, others = self.rank, self.size - 1
        # Rows g+rank, g+rank+N, ... of the group of N batches starting at g;
        # afterwards every rank stands at the next group's start.
        self._skip(rank)
        for i in range(self.batch_size):
            row = self.current_row
            if self.row_order is not None:
                row = int(self.row_order[row])
            for out, arr in zip(batches, self.arrays):
                out[i] = arr[row]
            self._next()
            self._skip(others if i < self.batch_size - 1 else others - rank)
        ops = backend.ops()
        for blob, batch in zip(top, batches):
            ops.copy(ops.from_host(batch), ops.mutable_data(blob))

    def backward(self, top, propagate_down, bottom):
        pass

    # -- snapshot state ----------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Where the next batch starts (JSON-able), for snapshots."""
        return {
            "pass": self.passes,
            "file": self.current_file,
            "row": self.current_row,
            "loads": self.loads,
            "seed": self.seed,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Resume at a position :meth:`state` returned."""
        try:
            passes, current = int(state["pass"]), int(state["file"])
            row, loads, seed = (
                int(state["row"]),
                int(state["loads"]),
                int(state["seed"]),
            )
        except (KeyError, TypeError, ValueError, OverflowError):
            raise LayerError(self, f"not an HDF5Data state: {state!r}") from None
        if not 0 <= current < len(self.files) or min(passes, row, seed) < 0:
            raise LayerError(self, f"not an HDF5Data state for {self.files}: {state!r}")
        self.seed, self.passes = seed, passes
        self.file_order = self._file_order(passes)
        self.current_file = current
        self.loads = max(loads - 1, 0)
        self._load(int(self.file_order[current]))
        if row >= self.rows:
            raise LayerError(
                self, f"row {row} is out of range for {self.files[self._loaded]!r}"
            )
        self.current_row = row


@register_layer("HDF5Output")
class HDF5OutputLayer(Layer):
    """Writes its two bottoms into an HDF5 file (Caffe's HDF5Output).

    Parameters (``hdf5_output_param``): ``file_name``, created (truncated) at
    setup and closed when the net is closed.

    Bottoms: data and label, with the same first axis; no tops. A forward
    writes them as float datasets ``data`` and ``label``, each reshaped to 4-D
    as Caffe's legacy num/channels/height/width accessors do (missing trailing
    axes become 1; more than 4 axes is an error). As in Caffe, a file holds one
    forward's batch: a second forward is an error (Caffe fails there too).
    """

    exact_num_bottom = 2
    exact_num_top = 0

    def setup(self, bottom, top):
        from caffepy.io.hdf5 import h5py_module

        self.file_name = self.layer_param.hdf5_output_param.file_name
        h5py = h5py_module()
        try:
            self._file = h5py.File(self.file_name, "w")
        except OSError as err:
            raise LayerError(
                self, f"cannot create HDF5 file {self.file_name!r}: {err}"
            ) from None
        self.written = False

    def reshape(self, bottom, top):
        pass

    @staticmethod
    def _legacy_4d(shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(shape) + (1,) * (4 - len(shape))

    def forward(self, bottom, top):
        if self._file is None:
            raise LayerError(self, f"{self.file_name!r} was closed (net.close())")
        if self.written:
            raise LayerError(
                self,
                f"{self.file_name!r} already holds the datasets of a forward; as in "
                "Caffe, an HDF5Output file holds one batch (build a new net per file)",
            )
        if bottom[0].shape[:1] != bottom[1].shape[:1]:
            raise LayerError(
                self,
                f"data and label must have the same number of rows, got shapes "
                f"{bottom[0].shape} and {bottom[1].shape}",
            )
        for name, blob in zip(("data", "label"), bottom):
            if len(blob.shape) > 4:
                raise LayerError(
                    self,
                    f"bottom {name!r} has {len(blob.shape)} axes {blob.shape}; "
                    "HDF5Output writes 4-D blobs (Caffe's legacy accessors)",
                )
            values = np.asarray(blob.data, self.dtype).reshape(
                self._legacy_4d(blob.shape)
            )
            self._file.create_dataset(name, data=values)
        self._file.flush()
        self.written = True
        log.info("Successfully saved %d rows", bottom[0].shape[0])

    def backward(self, top, propagate_down, bottom):
        pass

    def close(self) -> None:
        if getattr(self, "_file", None) is not None:
            self._file.close()
            self._file = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
