"""The prefetching data layers: ``Data`` (an LMDB of Datum) and ``ImageData`` (a
list of files).

Both prefetch in a daemon thread (Caffe's ``BasePrefetchingDataLayer``): up to
``data_param.prefetch`` batches are decoded and transformed while the net
computes. Randomness (rand_skip, mirror, random crop, shuffles) comes from a
generator the layer seeds from :func:`caffepy.rng.get_rng` at setup and that
only the prefetch thread uses, so the n-th batch is the same for the same seed
however the threads interleave.

``state()`` / ``set_state()`` snapshot the data cursor and that generator as of
the batches the net consumed (not those prefetched), so a solver can resume the
data stream exactly. ``close()`` stops the thread (it also stops when the layer
is garbage-collected).
"""

from __future__ import annotations

import copy
import weakref

import numpy as np

from caffepy import rng as _rng
from caffepy.data.prefetch import Prefetcher
from caffepy.data.transformer import DataTransformer
from caffepy.errors import LayerError
from caffepy.layer import Layer
from caffepy.parallel.state import solver_count, solver_rank
from caffepy.phase import TRAIN
from caffepy.registry import register_layer


def _shutdown(prefetcher, source):
    prefetcher.stop()
    source.close()


class _PrefetchingDataLayer(Layer):
    """Shared machinery: a source, a transformer, a prefetcher, a resumable state."""

    uses_ops = ("copy",)
    exact_num_bottom = 0
    min_num_top = 1
    max_num_top = 2

    def _make_source(self, transformer):
        raise NotImplementedError

    def _batch_size(self):
        raise NotImplementedError

    def setup(self, bottom, top):
        batch_size = self._batch_size()
        if batch_size <= 0:
            raise LayerError(self, f"batch_size must be positive, got {batch_size}")
        # NOTE: one generator per layer, seeded from the global RNG here; only the
        # prefetch thread draws from it afterwards, so batches stay deterministic.
        seed = int(_rng.get_rng().integers(2**63))
        self._seed = seed
        self.transformer = DataTransformer(
            self.layer_param.transform_param,
            self.phase,
            rng=np.random.default_rng(seed),
            dtype=self.dtype,
            owner=self,
        )
        self.source = self._make_source(self.transformer)
        shape = self.source.first_shape()
        top[0].reshape((batch_size,) + tuple(shape))
        if len(top) > 1:
            top[1].reshape((batch_size,))
        self._consumed = self.source.state()
        self._prefetcher = Prefetcher(
            self.source,
            self.layer_param.data_param.prefetch,
            self.dtype,
            name=f"caffepy-data-{self.name}",
        )
        self._finalizer = weakref.finalize(
            self, _shutdown, self._prefetcher, self.source
        )

    def reshape(self, bottom, top):
        """Tops take each batch's shape in forward (the first record's at setup)."""

    def forward(self, bottom, top):
        if not self._finalizer.alive:
            raise LayerError(self, "the layer was closed")
        try:
            batch = self._prefetcher.next()
        except BaseException:
            # Whatever the thread read past the last consumed batch is dropped,
            # so a retry reads the same records again.
            self._prefetcher.stop()
            self.source.set_state(self._consumed)
            raise
        batch.copy_into(top)
        self._consumed = batch.state
        self._prefetcher.release(batch)

    def backward(self, top, propagate_down, bottom):
        """Data layers have no bottoms: nothing to propagate."""

    def state(self):
        """The data cursor and RNG state after the last consumed batch (JSON-able)."""
        return copy.deepcopy(self._consumed)

    def set_state(self, state):
        """Resume from a :meth:`state`: the next forward gives the batch that came
        next when the state was taken."""
        self._prefetcher.stop()
        self.source.set_state(state)
        self._consumed = self.source.state()

    def close(self) -> None:
        """Stop the prefetch thread and close the source (idempotent; the layer
        refuses to forward afterwards)."""
        self._finalizer()


@register_layer("Data")
class DataLayer(_PrefetchingDataLayer):
    """Batches of Datum records from an LMDB database, prefetched.

    Reads records in key order from ``data_param.source`` (relative to the
    working directory), wrapping around at the end, ``batch_size`` per forward,
    and transforms them with ``transform_param`` (see
    :class:`~caffepy.data.transformer.DataTransformer`).

    Parameters (``data_param``; proto defaults): ``source``, ``batch_size``,
    ``backend`` (LEVELDB, the proto default: a folder holding an LMDB database is
    read as LMDB with a warning; a real LevelDB is refused), ``rand_skip`` (0: in
    TRAIN, skip a random number in [0, rand_skip) of records at the start),
    ``prefetch`` (4: batches decoded ahead; 0 reads synchronously).
    ``transform_param``: scale (1), mirror (false), crop_size (0), mean_file or
    mean_value, force_color / force_gray (false) for encoded records.

    Tops: data (N, C, h, w), h/w the crop size or the record's; the shape comes
    from the first record of each batch (records of different sizes are fine
    when cropped). Optional label (N,).

    No gradient.
    """

    def _batch_size(self):
        return int(self.layer_param.data_param.batch_size)

    def _make_source(self, transformer):
        from caffepy.data.sources import DatumSource

        dp = self.layer_param.data_param
        if not dp.source:
            raise LayerError(self, "data_param.source is empty; give the LMDB path")
        return DatumSource(
            dp.source,
            dp.batch_size,
            transformer,
            backend=dp.backend,
            rand_skip=dp.rand_skip if self.phase == TRAIN else 0,
            # In TEST only rank 0 runs, over every record (Caffe's Skip()).
            rank=solver_rank() if self.phase == TRAIN else 0,
            size=solver_count() if self.phase == TRAIN else 1,
        )


@register_layer("ImageData")
class ImageDataLayer(_PrefetchingDataLayer):
    """Batches of image files listed as ``path label`` lines, prefetched.

    Each image is ``root_folder + path`` read with OpenCV (colour, BGR, or gray),
    resized bilinearly to ``new_height x new_width`` when both are set, then
    transformed with ``transform_param`` as in the Data layer.

    Parameters (``image_data_param``; proto defaults): ``source`` (the list
    file), ``root_folder`` (""), ``batch_size`` (1), ``shuffle`` (false: when
    true the order is permuted at setup and at every epoch), ``new_height`` /
    ``new_width`` (0: no resize), ``is_color`` (true), ``rand_skip`` (0: in
    TRAIN, start at a random line in [0, rand_skip)). Prefetch depth:
    ``data_param.prefetch`` (4), as Caffe.

    Tops: data (N, C, h, w) and optional label (N,). No gradient.
    """

    def _batch_size(self):
        return int(self.layer_param.image_data_param.batch_size)

    def _make_source(self, transformer):
        from caffepy.layers.data.image_data import DealtImageListSource

        ip = self.layer_param.image_data_param
        if not ip.source:
            raise LayerError(
                self, "image_data_param.source is empty; give the list file"
            )
        if (ip.new_height > 0) != (ip.new_width > 0):
            raise LayerError(
                self,
                f"new_height and new_width must both be set or both be 0, got "
                f"{ip.new_height} and {ip.new_width}",
            )
        return DealtImageListSource(
            ip.source,
            ip.root_folder,
            ip.batch_size,
            transformer,
            shuffle=ip.shuffle,
            new_height=ip.new_height,
            new_width=ip.new_width,
            is_color=ip.is_color,
            rand_skip=ip.rand_skip if self.phase == TRAIN else 0,
            seed=self._seed,
            # rank r of N reads lines r, r+N, ... (TEST: rank 0 alone, all).
            rank=solver_rank() if self.phase == TRAIN else 0,
            size=solver_count() if self.phase == TRAIN else 1,
        )
