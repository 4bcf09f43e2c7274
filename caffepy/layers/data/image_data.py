"""ImageData's share of the list in data-parallel training.

:class:`DealtImageListSource` is the ImageData layer's source when N solvers
train together: rank r of N reads lines r, r+N, r+2N, ... of the stream the list
gives a single process (in list order, or in each epoch's shuffled order, which
every rank draws alike from the layer's seed), as Caffe's ``DataLayer::Skip``
deals Datum records. Skipped lines are never read from disk.
"""

from __future__ import annotations

from typing import Any

from caffepy.data.sources import ImageListSource


class DealtImageListSource(ImageListSource):
    """An :class:`~caffepy.data.sources.ImageListSource` that keeps every N-th
    line of the stream, starting at line ``rank``.

    Between batches every rank stands at the same line, the first of the next
    N batches, so :meth:`state` is the same on every rank and resumes the run
    with any number of ranks (in one process: the batches a single process with
    ``iter_size: N`` would read next).

    Args:
        rank, size: this solver's rank and the solver count (0 and 1: every
            line, as the plain source).
        *args, **kwargs: as :class:`~caffepy.data.sources.ImageListSource`.
    """

    def __init__(self, *args: Any, rank: int = 0, size: int = 1, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.rank, self.size = int(rank), int(size)

    def _advance(self, lines: int) -> None:
        """Move ``lines`` lines on in the stream (a new epoch reshuffles)."""
        for _ in range(lines):
            self.position += 1
            if self.position >= len(self.lines):
                self.position = 0
                self.epoch += 1
                self._order = self._make_order(self.epoch)

    def fill(self, batch: Any) -> None:
        if self.size == 1:
            super().fill(batch)
            return
        import numpy as np

        from caffepy.data.sources import _Names

        n, rank, others = self.batch_size, self.rank, self.size - 1
        arrays, paths = [], []
        labels = np.empty(n, np.float64)
        self._advance(rank)
        for i in range(n):
            index = self._index()
            image, path = self._read(index)
            arrays.append(image)
            paths.append(path)
            labels[i] = self.lines[index][1]
            self._advance(1 + (others if i < n - 1 else others - rank))
        self._emit(batch, arrays, labels, _Names("image {!r}", paths))
