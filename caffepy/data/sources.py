"""Batch sources for the data layers: an LMDB of Datum, or a list of image files.

A source fills a :class:`~caffepy.data.prefetch.Batch` with the next
``batch_size`` records (transformed) and labels, and has a small JSON-able
``state()`` (its position and RNG state) that ``set_state`` restores exactly.
Sources are used by one thread at a time (the prefetch thread while it runs).
"""

import numpy as np

from caffepy.data.datum import (
    RawBatchParser,
    datum_to_array,
    hwc_to_chw,
    parse_datum,
    read_image,
)
from caffepy.data.db import LMDB, LMDBReader, open_db_reader
from caffepy.errors import DataError


def read_list_file(path):
    """Read a ``path label`` list (Caffe's convert_imageset / ImageData format).

    The label follows the last space, so paths may contain spaces. Blank lines
    are skipped.

    Returns:
        list of (path, label).

    Raises:
        DataError: a missing file, text that is not UTF-8, or a line without an
            integer label.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as err:
        raise DataError(f"cannot read list file {path!r}: {err.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise DataError(
            f"{path}:{line}: the list file is not UTF-8 text (byte "
            f"0x{raw[err.start]:02x} at column {column}); save it as UTF-8"
        ) from None
    lines = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        name, sep, label = line.rpartition(" ")
        try:
            if not sep or not name:
                raise ValueError
            lines.append((name, int(label)))
        except ValueError:
            raise DataError(
                f"{path}:{lineno}: expected 'path label', got {line!r}"
            ) from None
    return lines


def _set_rng_state(generator, state, what):
    """Restore a generator's state from a snapshot, refusing a malformed one."""
    try:
        generator.bit_generator.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as err:
        raise DataError(
            f"not a valid random state for the data layer of {what!r}: {err}"
        ) from None


class _Names:
    """Names of a batch's records for error messages, built only when needed."""

    __slots__ = ("fmt", "items")

    def __init__(self, fmt, items):
        self.fmt, self.items = fmt, items

    def __getitem__(self, i):
        return self.fmt.format(_key_text(self.items[i]))


def _key_text(key):
    """A record key as text (LMDB keys are bytes; readers decode them so)."""
    return key.decode("utf-8", "replace") if isinstance(key, bytes) else key


def _read_lmdb(reader, n):
    """The next ``n`` records of an LMDB reader, as ``n`` calls of its ``read()``
    would give them (wrapping around, moving its position), but with bytes keys,
    one size check and the cursor's own iteration instead of a Python call per
    record.

    Returns:
        (keys, values): two lists of bytes.
    """
    import itertools

    from caffepy.data import db

    reader.check_unchanged()
    cursor = reader._cursor
    keys, values = [], []
    try:
        while len(values) < n:
            want = n - len(values)
            items = list(itertools.islice(cursor.iternext(), want))
            keys.extend(k for k, _ in items)
            values.extend(v for _, v in items)
            # NOTE: iternext() yields the record under the cursor first and
            # stops on the last one yielded (or unpositioned past the end).
            if len(items) < want or not cursor.next():
                cursor.first()
                reader.position = 0
            else:
                reader.position += len(items)
    except db._lmdb().Error as err:
        raise db._corrupt(reader.path, err) from None
    return keys, values


def _stack(arrays, buf):
    """Stack same-shaped arrays into a reused buffer (a grown flat array)."""
    shape = (len(arrays),) + arrays[0].shape
    count = int(np.prod(shape))
    if buf is None or buf.size < count or buf.dtype != arrays[0].dtype:
        buf = np.empty(count, arrays[0].dtype)
    out = buf[:count].reshape(shape)
    np.stack(arrays, out=out)
    return out, buf


class _BatchSource:
    """Shared batch assembly: transform the images, copy the labels."""

    def __init__(self, batch_size, transformer):
        self.batch_size = int(batch_size)
        self.transformer = transformer
        self._buf = None

    def _emit(self, batch, arrays, labels, names):
        shapes = {a.shape for a in arrays}
        first = arrays[0].shape
        if len(shapes) == 1 and len({a.dtype for a in arrays}) == 1:
            images, self._buf = _stack(arrays, self._buf)
            out_shape = self.transformer.output_shape(first, names[0])
        else:
            images = arrays
            k = self.transformer.crop_size
            out_shape = (first[0], k, k) if k else first
        batch.data.reshape((len(arrays),) + out_shape)
        self.transformer.transform(images, batch.data.data, names)
        batch.label.reshape((len(labels),))
        batch.label.data[...] = labels


class DatumSource(_BatchSource):
    """Batches from an LMDB database of Datum records, in key order (wrapping).

    Args:
        path: the database; backend: ``LMDB`` or ``LEVELDB`` (as the prototxt).
        batch_size: records per batch.
        transformer: a :class:`~caffepy.data.transformer.DataTransformer`; its
            ``color`` decides how encoded records decode, its ``rng`` draws the
            skip and the crops/mirrors.
        rand_skip: skip a random number in [0, rand_skip) of records at start.
        rank, size: this solver's rank and the solver count; rank r of N keeps
            the records whose offset in the (wrapping) stream is r modulo N, as
            Caffe's ``DataLayer::Skip`` deals records to its solvers.
    """

    def __init__(
        self, path, batch_size, transformer, backend=LMDB, rand_skip=0, rank=0, size=1
    ):
        super().__init__(batch_size, transformer)
        self.reader = open_db_reader(path, backend)
        self.path = self.reader.path
        self._fmt = "record {!r} of " + repr(self.path)
        if rand_skip:
            skip = int(transformer.rng.integers(0, rand_skip))
            self.reader.seek(skip % len(self.reader))
        self.rank, self.size = int(rank), int(size)
        self.offset = 0
        self._parser = RawBatchParser()
        self._skip_others()

    def _skip_others(self):
        """Move past the records other ranks take, to this rank's next one."""
        while self.offset % self.size != self.rank:
            self.reader.read()
            self.offset += 1

    def _decode(self, key, value):
        name = self._fmt.format(key)
        return datum_to_array(parse_datum(value, name), name, self.transformer.color)

    def first_shape(self):
        """The C x h x w of the next record after the transformation."""
        key, value = self.reader.peek()
        image = self._decode(key, value)
        return self.transformer.check_image(image.shape, self._fmt.format(key))

    def _read(self):
        """This rank's next ``batch_size`` records: (keys, values)."""
        n = self.batch_size
        if self.size == 1 and type(self.reader) is LMDBReader:
            self.offset += n
            return _read_lmdb(self.reader, n)
        keys, values = [], []
        for _ in range(n):
            key, value = self.reader.read()
            keys.append(key)
            values.append(value)
            self.offset += 1
            self._skip_others()
        return keys, values

    def fill(self, batch):
        keys, values = self._read()
        if not self._fill_raw(batch, keys, values):
            self._fill_parsed(batch, keys, values)

    def _fill_raw(self, batch, keys, values):
        """Fill the batch straight from the records' bytes when every one is a
        raw image of one shape (Caffe's usual database), with no protobuf
        object per record. Returns False, having changed nothing, otherwise."""
        parsed = self._parser.parse(values)
        if parsed is None:
            return False
        buf, offsets, labels, shape = parsed
        names = _Names(self._fmt, keys)
        n = len(values)
        batch.data.reshape((n,) + self.transformer.output_shape(shape, names[0]))
        self.transformer.transform_flat(buf, offsets, shape, batch.data.data, names)
        batch.label.reshape((n,))
        batch.label.data[...] = labels
        return True

    def _fill_parsed(self, batch, keys, values):
        """Fill the batch through protobuf: any record (float_data, encoded
        images, sizes that differ), and the errors that name a bad one."""
        arrays = []
        labels = np.empty(len(values), np.float64)
        for i, (key, value) in enumerate(zip(keys, values)):
            name = self._fmt.format(_key_text(key))
            datum = parse_datum(value, name)
            arrays.append(datum_to_array(datum, name, self.transformer.color))
            labels[i] = datum.label
        self._emit(batch, arrays, labels, _Names(self._fmt, keys))

    def state(self):
        state = {
            "position": self.reader.position,
            "rng": self.transformer.rng.bit_generator.state,
        }
        if self.size > 1:
            state["offset"] = self.offset
        return state

    def set_state(self, state):
        try:
            position, rng_state = int(state["position"]), state["rng"]
            offset = int(state.get("offset", position))
        except (KeyError, TypeError, ValueError, OverflowError, AttributeError):
            raise DataError(
                f"not a data layer state for {self.path!r}: {state!r}"
            ) from None
        self.reader.seek(position)
        _set_rng_state(self.transformer.rng, rng_state, self.path)
        self.offset = offset
        self._skip_others()

    def close(self):
        self.reader.close()


class ImageListSource(_BatchSource):
    """Batches of image files listed as ``path label`` (Caffe's ImageData).

    Images are read with ``cv2.imread`` (colour or gray) and resized bilinearly
    to ``new_height x new_width`` when both are positive. With ``shuffle`` the
    order is permuted at the start of every epoch, from a generator seeded by
    ``(seed, epoch)``, so the state stays small.

    Args:
        listfile, root_folder: the list and the prefix joined (as strings, like
            Caffe) to each listed path.
        batch_size, transformer: as :class:`DatumSource`.
        shuffle, new_height, new_width, is_color: from image_data_param.
        rand_skip: start at a random line in [0, rand_skip).
        seed: seed of the per-epoch shuffles.
    """

    def __init__(
        self,
        listfile,
        root_folder,
        batch_size,
        transformer,
        shuffle=False,
        new_height=0,
        new_width=0,
        is_color=True,
        rand_skip=0,
        seed=0,
    ):
        super().__init__(batch_size, transformer)
        self.listfile = listfile
        self.lines = read_list_file(listfile)
        if not self.lines:
            raise DataError(f"list file {listfile!r} lists no images")
        self.root_folder = root_folder
        self.shuffle = bool(shuffle)
        self.new_height, self.new_width = int(new_height), int(new_width)
        self.is_color = bool(is_color)
        self.seed = int(seed)
        self.epoch = 0
        self.position = 0
        self._order = self._make_order(0)
        if rand_skip:
            skip = int(transformer.rng.integers(0, rand_skip))
            if skip >= len(self.lines):
                raise DataError(
                    f"rand_skip drew {skip} but {listfile!r} lists only "
                    f"{len(self.lines)} images"
                )
            self.position = skip

    def _make_order(self, epoch):
        if not self.shuffle:
            return None
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.lines))

    def _index(self):
        return self.position if self._order is None else int(self._order[self.position])

    def _read(self, index):
        name, _ = self.lines[index]
        path = self.root_folder + name
        img = read_image(path, self.new_height, self.new_width, self.is_color)
        if img is None:
            raise DataError(
                f"cannot read image {path!r} (line {index + 1} of {self.listfile!r})"
            )
        return hwc_to_chw(img), path

    def first_shape(self):
        image, path = self._read(self._index())
        return self.transformer.check_image(image.shape, f"image {path!r}")

    def fill(self, batch):
        n = self.batch_size
        arrays, paths = [], []
        labels = np.empty(n, np.float64)
        for i in range(n):
            index = self._index()
            image, path = self._read(index)
            arrays.append(image)
            paths.append(path)
            labels[i] = self.lines[index][1]
            self.position += 1
            if self.position >= len(self.lines):
                self.position = 0
                self.epoch += 1
                self._order = self._make_order(self.epoch)
        self._emit(batch, arrays, labels, _Names("image {!r}", paths))

    def state(self):
        return {
            "position": self.position,
            "epoch": self.epoch,
            "seed": self.seed,
            "rng": self.transformer.rng.bit_generator.state,
        }

    def set_state(self, state):
        try:
            position, epoch = int(state["position"]), int(state["epoch"])
            seed, rng_state = int(state["seed"]), state["rng"]
        except (KeyError, TypeError, ValueError, OverflowError):
            raise DataError(
                f"not an ImageData state for {self.listfile!r}: {state!r}"
            ) from None
        if not 0 <= position < len(self.lines):
            raise DataError(
                f"position {position} is out of range for {self.listfile!r} "
                f"({len(self.lines)} images)"
            )
        if seed < 0 or epoch < 0:
            raise DataError(
                f"not an ImageData state for {self.listfile!r}: negative "
                f"seed {seed} or epoch {epoch}"
            )
        _set_rng_state(self.transformer.rng, rng_state, self.listfile)
        self.position, self.epoch, self.seed = position, epoch, seed
        self._order = self._make_order(epoch)

    def close(self):
        pass
