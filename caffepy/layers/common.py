"""Common layers: inputs (Input, DummyData, MemoryData), Softmax, blob plumbing
(Concat, Slice, Split, Flatten, Reshape, Crop, Tile, Silence), Eltwise, ArgMax and
Reduction — Caffe's ``common_layers.hpp`` family before it split its headers.

Every computation here is one or a few vectorised NumPy expressions over views of
the blobs (no per-element Python loops), so no Numba kernel is needed.
"""

import itertools
import logging

import numpy as np

from caffepy.errors import LayerError, ShapeError, UnsupportedError
from caffepy.layer import Layer, canonical_axis
from caffepy.registry import register_layer

log = logging.getLogger("caffepy")


# -- helpers -------------------------------------------------------------------------


def shape_of(layer, blob_shape, what="shape"):
    """A BlobShape message as a tuple, refusing negative and zero dimensions (an
    empty input is always a mistake, and layers downstream need data)."""
    dims = tuple(int(d) for d in blob_shape.dim)
    if any(d < 0 for d in dims):
        raise LayerError(layer, f"{what} {list(dims)} has a negative dimension")
    if any(d == 0 for d in dims):
        raise LayerError(
            layer, f"{what} {list(dims)} has a dimension 0; every dimension must be "
            "at least 1"
        )
    return dims




def alias_top(top, bottom, shape):
    """Make ``top.data`` a view of ``bottom``'s data with another shape (no copy).

    The diff stays the top's own array, so backward still assigns the bottom diff
    explicitly. Called from ``reshape`` (every forward), so a bottom that was
    reallocated by a reshape is re-aliased before it is read.
    """
    top.share_data(bottom)
    top.reshape(shape)


def softmax3(x3, out3):
    """Numerically stable softmax over axis 1 of (outer, channels, inner) arrays.

    ``out3`` may be ``x3`` (in place). Computed in the arrays' dtype, as Caffe.
    """
    # NOTE: subtracting the channel max keeps exp() in (0, 1]: no overflow, and
    # the largest term is exactly 1 so the sum is never below 1.
    m = x3.max(axis=1, keepdims=True)
    np.subtract(x3, m, out=out3)
    np.exp(out3, out=out3)
    out3 /= out3.sum(axis=1, keepdims=True)
    return out3


def _three(blob, axis):
    """(outer, channels, inner) geometry of a blob around ``axis``."""
    return blob.count_range(0, axis), blob.shape[axis], blob.count_range(axis + 1)


# -- inputs ----------------------------------------------------------------------------
@register_layer("Input")
class InputLayer(Layer):
    """Net input: tops whose data the user fills (pycaffe ``net.blobs[...]``).

    Parameters (``input_param``):
        shape: repeated BlobShape; none (tops left as they are), one for every top,
            or one per top.

    Bottoms: none. Tops: one or more blobs of the given shapes.
    ``reshape`` does nothing, so a shape the user sets (``blob.reshape`` then
    ``net.reshape()``) is kept. No computation in forward or backward.
    """

    exact_num_bottom = 0
    min_num_top = 1

    def setup(self, bottom, top):
        shapes = self.layer_param.input_param.shape
        if len(shapes) not in (0, 1, len(top)):
            raise LayerError(
                self,
                f"input_param has {len(shapes)} shapes for {len(top)} tops; give none, "
                "one for all tops, or one per top",
            )
        for i, blob in enumerate(top):
            if len(shapes):
                blob.reshape(shape_of(self, shapes[i if len(shapes) > 1 else 0]))

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        pass


@register_layer("DummyData")
class DummyDataLayer(Layer):
    """Tops filled by fillers (constant 0 by default), for testing and prototyping.

    Parameters (``dummy_data_param``):
        shape: repeated BlobShape, one for all tops or one per top; or the legacy
            ``num``/``channels``/``height``/``width`` (each one value or one per top).
        data_filler: none (constant 0), one for all tops, or one per top.

    Tops: one or more. As Caffe, a top with a constant filler is filled once at
    set-up; a top with any other filler is refilled on every forward.
    """

    exact_num_bottom = 0
    min_num_top = 1

    def setup(self, bottom, top):
        from caffepy.proto import caffe_pb2

        p = self.layer_param.dummy_data_param
        n = len(top)
        fillers = list(p.data_filler)
        if len(fillers) not in (0, 1, n):
            raise LayerError(
                self,
                f"has {len(fillers)} data_filler values for {n} tops; give none, one, "
                "or one per top",
            )
        if not fillers:
            fillers = [caffe_pb2.FillerParameter(type="constant", value=0.0)]
        legacy = len(p.num)
        if legacy and len(p.shape):
            raise LayerError(
                self, "both shape and legacy num/channels/height/width given"
            )
        shapes = []
        if legacy:
            fields = ("num", "channels", "height", "width")
            for f in fields:
                k = len(getattr(p, f))
                if k not in (1, n):
                    raise LayerError(
                        self,
                        f"has {k} '{f}' values for {n} tops; give one or one per top",
                    )
            for i in range(n):
                shapes.append(
                    tuple(
                        int(getattr(p, f)[i if len(getattr(p, f)) > 1 else 0])
                        for f in fields
                    )
                )
        else:
            if len(p.shape) not in (1, n):
                raise LayerError(
                    self,
                    f"has {len(p.shape)} shapes for {n} tops; give one or one per top",
                )
            for i in range(n):
                shapes.append(shape_of(self, p.shape[i if len(p.shape) > 1 else 0]))
        self._fillers = fillers
        self._refill = [f.type != "constant" for f in fillers]
        from caffepy.fillers import fill

        for i, blob in enumerate(top):
            blob.reshape(shapes[i])
            f = self._filler_index(i)
            if not self._refill[f]:
                fill(blob, fillers[f], self)

    def _filler_index(self, i):
        return i if len(self._fillers) > 1 else 0

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        from caffepy.fillers import fill

        for i, blob in enumerate(top):
            f = self._filler_index(i)
            if self._refill[f]:
                fill(blob, self._fillers[f], self)

    def backward(self, top, propagate_down, bottom):
        pass


@register_layer("MemoryData")
class MemoryDataLayer(Layer):
    """Batches from arrays held in memory (pycaffe ``net.set_input_arrays``).

    Parameters (``memory_data_param``): ``batch_size``, ``channels``, ``height``,
    ``width`` (no defaults: all must be positive).

    Tops: data (batch_size, channels, height, width) and label (batch_size,).
    Each forward yields the next ``batch_size`` rows of the arrays given to
    :meth:`set_input_arrays`, wrapping around at the end.

    NOTE: as Caffe's ``MemoryDataLayer::Reset`` (which pycaffe's
    ``set_input_arrays`` calls), the arrays are used as they are: a
    ``transform_param`` is NOT applied to them (Caffe logs a warning; so do we).
    """

    exact_num_bottom = 0
    exact_num_top = 2

    def setup(self, bottom, top):
        p = self.layer_param.memory_data_param
        self.batch_size, self.channels = int(p.batch_size), int(p.channels)
        self.height, self.width = int(p.height), int(p.width)
        if self.batch_size * self.channels * self.height * self.width <= 0:
            raise LayerError(
                self,
                "memory_data_param batch_size, channels, height and width must all be "
                f"positive, got {self.batch_size}, {self.channels}, {self.height}, "
                f"{self.width}",
            )
        self._data = self._labels = None
        self._pos = 0
        self._n = 0
        top[0].reshape(self.batch_size, self.channels, self.height, self.width)
        top[1].reshape(self.batch_size)

    def set_input_arrays(self, data, labels):
        """Use ``data`` (N, C, H, W) and ``labels`` (N,) as the source of batches.

        As pycaffe: both float32 and C-contiguous, N a multiple of batch_size; the
        arrays are referenced, not copied (in a float32 net), so keep them alive
        and unchanged while the net runs. Restarts at the first batch.
        """
        if not isinstance(data, np.ndarray) or not isinstance(labels, np.ndarray):
            raise LayerError(
                self, "set_input_arrays needs numpy arrays for data and labels"
            )
        for name, arr in (("data", data), ("labels", labels)):
            if arr.dtype != np.float32:
                raise LayerError(self, f"{name} array must be float32, got {arr.dtype}")
            if not arr.flags.c_contiguous:
                raise LayerError(self, f"{name} array must be C contiguous")
        want = (self.channels, self.height, self.width)
        if data.ndim != 4 or data.shape[1:] != want:
            raise LayerError(
                self,
                f"data array has shape {data.shape}, expected (N, {want[0]}, {want[1]}, "
                f"{want[2]})",
            )
        if labels.ndim == 4 and labels.shape[1:] == (1, 1, 1):
            labels = labels.reshape(-1)
        if labels.ndim != 1:
            raise LayerError(
                self,
                f"labels array has shape {labels.shape}, expected (N,) or (N, 1, 1, 1)",
            )
        n = data.shape[0]
        if labels.shape[0] != n:
            raise LayerError(
                self,
                f"data and labels must have the same first dimension, got {n} and "
                f"{labels.shape[0]}",
            )
        if n == 0 or n % self.batch_size:
            raise LayerError(
                self,
                f"the first dimension of the input arrays ({n}) must be a positive "
                f"multiple of batch_size {self.batch_size}",
            )
        if self.layer_param.HasField("transform_param"):
            log.warning(
                "%s layer '%s' does not transform array data on set_input_arrays",
                self.type,
                self.name,
            )
        self._data = np.asarray(data, self.dtype)
        self._labels = np.asarray(labels, self.dtype)
        self._n = n
        self._pos = 0

    def reshape(self, bottom, top):
        top[0].reshape(self.batch_size, self.channels, self.height, self.width)
        top[1].reshape(self.batch_size)

    def forward(self, bottom, top):
        if self._data is None:
            raise LayerError(
                self, "has no data: call set_input_arrays(data, labels) before forward"
            )
        b, p = self.batch_size, self._pos
        top[0].data[...] = self._data[p : p + b]
        top[1].data[...] = self._labels[p : p + b]
        self._pos = (p + b) % self._n

    def backward(self, top, propagate_down, bottom):
        pass


# -- softmax ---------------------------------------------------------------------------
@register_layer("Softmax")
class SoftmaxLayer(Layer):
    """y = exp(x - max) / sum(exp(x - max)) over one axis.

    Parameters (``softmax_param``): axis (default 1; negative counts from the end).

    Bottom: any shape. Top: same shape. In-place safe.
    Gradient: dx = y * (dy - sum_axis(dy * y)).
    """

    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        self._axis_param = self.layer_param.softmax_param.axis

    def reshape(self, bottom, top):
        self.axis = canonical_axis(self, bottom[0], self._axis_param)
        if top[0] is not bottom[0]:
            top[0].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        g = _three(bottom[0], self.axis)
        softmax3(bottom[0].data.reshape(g), top[0].data.reshape(g))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        g = _three(bottom[0], self.axis)
        y = top[0].data.reshape(g)
        dy = top[0].diff.reshape(g)
        dx = bottom[0].diff.reshape(g)
        s = np.einsum("ocj,ocj->oj", dy, y)[:, None, :]
        np.subtract(dy, s, out=dx)
        dx *= y


# -- concat / slice / split ----------------------------------------------------------------
def _axis_or_legacy(layer, bottom, param, legacy_name):
    """Resolve ``axis`` vs a deprecated non-negative alias (concat_dim, slice_dim)."""
    if param.HasField(legacy_name):
        if param.HasField("axis"):
            raise LayerError(layer, f"give either axis or {legacy_name}, not both")
        axis = int(getattr(param, legacy_name))
        if axis >= bottom.num_axes:
            raise LayerError(
                layer,
                f"{legacy_name} {axis} is out of range for a bottom of shape "
                f"{bottom.shape}",
            )
        return axis
    return canonical_axis(layer, bottom, param.axis)


@register_layer("Concat")
class ConcatLayer(Layer):
    """Concatenate bottoms along one axis.

    Parameters (``concat_param``): axis (default 1), or the deprecated concat_dim.

    Bottoms: one or more, equal shapes except along the axis. Top: their
    concatenation. Gradient: each bottom gets its slice of the top diff.
    """

    min_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        self.param = self.layer_param.concat_param

    def reshape(self, bottom, top):
        self.axis = axis = _axis_or_legacy(self, bottom[0], self.param, "concat_dim")
        ref = bottom[0].shape
        total = 0
        for i, b in enumerate(bottom):
            s = b.shape
            if (
                len(s) != len(ref)
                or s[:axis] != ref[:axis]
                or s[axis + 1 :] != ref[axis + 1 :]
            ):
                raise ShapeError(
                    self,
                    f"bottom[{i}] has shape {s} but bottom[0] has {ref}; all bottoms must "
                    f"have the same shape except along axis {axis}",
                )
            total += s[axis]
        top[0].reshape(ref[:axis] + (total,) + ref[axis + 1 :])

    def forward(self, bottom, top):
        if len(bottom) == 1:
            top[0].data[...] = bottom[0].data
            return
        np.concatenate([b.data for b in bottom], axis=self.axis, out=top[0].data)

    def backward(self, top, propagate_down, bottom):
        lead = (slice(None),) * self.axis
        off = 0
        for b, pd in zip(bottom, propagate_down):
            n = b.shape[self.axis]
            if pd:
                b.diff[...] = top[0].diff[lead + (slice(off, off + n),)]
            off += n


@register_layer("Slice")
class SliceLayer(Layer):
    """Split a bottom along one axis into several tops.

    Parameters (``slice_param``): axis (default 1) or the deprecated slice_dim;
    slice_point: increasing indices, one fewer than the tops; without them the
    axis is split evenly (its size must be a multiple of the number of tops).

    Gradient: the top diffs, concatenated back.
    """

    exact_num_bottom = 1
    min_num_top = 1

    def setup(self, bottom, top):
        self.param = self.layer_param.slice_param
        self.points = [int(p) for p in self.param.slice_point]
        if self.points and len(self.points) != len(top) - 1:
            raise LayerError(
                self,
                f"has {len(self.points)} slice_point values for {len(top)} tops; give "
                "one fewer than the tops, or none for an even split",
            )
        prev = 0
        for p in self.points:
            if p <= prev:
                raise LayerError(
                    self,
                    f"slice_point values {self.points} must be positive and increasing",
                )
            prev = p

    def reshape(self, bottom, top):
        self.axis = axis = _axis_or_legacy(self, bottom[0], self.param, "slice_dim")
        shape = bottom[0].shape
        dim = shape[axis]
        if self.points:
            if self.points[-1] > dim:
                raise ShapeError(
                    self,
                    f"slice_point {self.points[-1]} is beyond the size {dim} of axis "
                    f"{axis} of bottom shape {shape}",
                )
            bounds = [0] + self.points + [dim]
            sizes = [b - a for a, b in itertools.pairwise(bounds)]
        else:
            if dim % len(top):
                raise ShapeError(
                    self,
                    f"{len(top)} tops do not evenly divide axis {axis} (size {dim}) of "
                    f"bottom shape {shape}; give slice_point values",
                )
            sizes = [dim // len(top)] * len(top)
        self.sizes = sizes
        for t, n in zip(top, sizes):
            t.reshape(shape[:axis] + (n,) + shape[axis + 1 :])

    def _slices(self):
        lead = (slice(None),) * self.axis
        off = 0
        for n in self.sizes:
            yield lead + (slice(off, off + n),)
            off += n

    def forward(self, bottom, top):
        x = bottom[0].data
        for t, sl in zip(top, self._slices()):
            t.data[...] = x[sl]

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dx = bottom[0].diff
        for t, sl in zip(top, self._slices()):
            dx[sl] = t.diff


@register_layer("Split")
class SplitLayer(Layer):
    """One bottom to several tops that share its data (Caffe inserts these when a
    blob feeds several layers).

    Bottom: any shape. Tops: the same data (views, no copy).
    Gradient: the sum of the top diffs.
    """

    exact_num_bottom = 1
    min_num_top = 1

    def setup(self, bottom, top):
        for i, t in enumerate(top):
            if t is bottom[0]:
                raise LayerError(
                    self, f"top[{i}] is its bottom; Split cannot work in place"
                )

    def reshape(self, bottom, top):
        for t in top:
            t.share_data(bottom[0])

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dx = bottom[0].diff
        if len(top) == 1:
            dx[...] = top[0].diff
            return
        np.add(top[0].diff, top[1].diff, out=dx)
        for t in top[2:]:
            dx += t.diff


# -- reshaping -------------------------------------------------------------------------
class _ViewLayer(Layer):
    """Base of Flatten/Reshape: top data is a view of the bottom with a new shape."""

    exact_num_bottom = 1
    exact_num_top = 1

    def _no_in_place(self, bottom, top):
        if top[0] is bottom[0]:
            raise LayerError(self, f"{self.type} cannot work in place (top == bottom)")

    def forward(self, bottom, top):
        pass  # top data is a view of the bottom's (see reshape)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = top[0].diff.reshape(bottom[0].shape)


@register_layer("Flatten")
class FlattenLayer(_ViewLayer):
    """Merge axes [axis, end_axis] into one.

    Parameters (``flatten_param``): axis (default 1), end_axis (default -1);
    negative values count from the end.

    Top shape: shape[:axis] + (prod(shape[axis:end_axis+1]),) + shape[end_axis+1:].
    Top data is a view of the bottom; the gradient is the top diff reshaped.
    """

    def setup(self, bottom, top):
        self._no_in_place(bottom, top)
        self.param = self.layer_param.flatten_param

    def reshape(self, bottom, top):
        b = bottom[0]
        start = canonical_axis(self, b, self.param.axis)
        end = canonical_axis(self, b, self.param.end_axis, "end_axis")
        if end < start:
            raise LayerError(
                self,
                f"end_axis {self.param.end_axis} comes before axis {self.param.axis} "
                f"for bottom shape {b.shape}",
            )
        shape = b.shape[:start] + (b.count_range(start, end + 1),) + b.shape[end + 1 :]
        alias_top(top[0], b, shape)


@register_layer("Reshape")
class ReshapeLayer(_ViewLayer):
    """Change the shape of a blob without changing its data.

    Parameters (``reshape_param``):
        shape: the new dims for the replaced range; 0 copies the bottom's dim at
            that position, -1 (at most once) is inferred from the count.
        axis (default 0), num_axes (default -1 = to the end): the range of bottom
            axes replaced (axis may be negative: -1 is after the last axis).

    Top data is a view of the bottom; the gradient is the top diff reshaped.
    """

    def setup(self, bottom, top):
        self._no_in_place(bottom, top)
        p = self.layer_param.reshape_param
        self.dims = [int(d) for d in p.shape.dim]
        self.copy_axes = [i for i, d in enumerate(self.dims) if d == 0]
        inferred = [i for i, d in enumerate(self.dims) if d == -1]
        bad = [d for d in self.dims if d < -1]
        if bad:
            raise LayerError(self, f"shape dim {bad[0]} is invalid; dims must be >= -1")
        if len(inferred) > 1:
            raise LayerError(
                self,
                f"shape {self.dims} has {len(inferred)} dims of -1; at most one allowed",
            )
        self.inferred_axis = inferred[0] if inferred else None
        self.constant_count = int(
            np.prod([d for d in self.dims if d > 0], dtype=np.int64)
        )
        if p.num_axes < -1:
            raise LayerError(self, f"num_axes {p.num_axes} is invalid; expected >= -1")
        self.axis_param, self.num_axes_param = int(p.axis), int(p.num_axes)

    def reshape(self, bottom, top):
        b = bottom[0]
        n = b.num_axes
        start = self.axis_param if self.axis_param >= 0 else n + self.axis_param + 1
        if not 0 <= start <= n:
            raise LayerError(
                self,
                f"axis {self.axis_param} is out of range for bottom shape {b.shape}",
            )
        end = n if self.num_axes_param == -1 else start + self.num_axes_param
        if end > n:
            raise LayerError(
                self,
                f"axis {self.axis_param} + num_axes {self.num_axes_param} is beyond the "
                f"{n} axes of bottom shape {b.shape}",
            )
        shape = list(b.shape[:start]) + list(self.dims) + list(b.shape[end:])
        for i in self.copy_axes:
            if start + i >= n:
                raise LayerError(
                    self,
                    f"shape dim {i} is 0 (copy) but bottom shape {b.shape} has no axis "
                    f"{start + i}",
                )
            shape[start + i] = b.shape[start + i]
        if self.inferred_axis is not None:
            explicit = (
                self.constant_count * b.count_range(0, start) * b.count_range(end)
            )
            for i in self.copy_axes:
                explicit *= b.shape[start + i]
            if explicit == 0 or b.count % explicit:
                raise ShapeError(
                    self,
                    f"cannot infer the -1 dim of shape {self.dims} from bottom shape "
                    f"{b.shape} (count {b.count} is not a multiple of {explicit})",
                )
            shape[start + self.inferred_axis] = b.count // explicit
        count = int(np.prod(shape, dtype=np.int64))
        if count != b.count:
            raise ShapeError(
                self,
                f"new shape {tuple(shape)} ({count} elements) does not match bottom shape "
                f"{b.shape} ({b.count} elements)",
            )
        alias_top(top[0], b, tuple(shape))


@register_layer("Crop")
class CropLayer(Layer):
    """Crop bottom[0] to the shape of bottom[1] on the axes from ``axis`` on.

    Parameters (``crop_param``): axis (default 2); offset: none (0), one for all
    cropped axes, or one per cropped axis.

    Bottoms: data, reference (only its shape is used). Top: the crop.
    Gradient: the top diff placed at the offsets in a zero bottom diff; the
    reference gets none (zeros if asked).
    """

    exact_num_bottom = 2
    exact_num_top = 1

    def setup(self, bottom, top):
        self.param = self.layer_param.crop_param

    def allow_force_backward(self, bottom_index):
        return bottom_index == 0

    def reshape(self, bottom, top):
        x, ref = bottom
        n = x.num_axes
        start = canonical_axis(self, x, self.param.axis)
        offsets = [int(o) for o in self.param.offset]
        if len(offsets) > 1 and start + len(offsets) != n:
            raise LayerError(
                self,
                f"has {len(offsets)} offsets for the {n - start} axes from axis {start} "
                f"of bottom shape {x.shape}; give one, or one per cropped axis",
            )
        if ref.num_axes != n:
            raise ShapeError(
                self,
                f"bottom shapes {x.shape} and {ref.shape} have different numbers of axes",
            )
        shape, slices = [], []
        for i in range(n):
            off, size = 0, x.shape[i]
            if i >= start:
                size = ref.shape[i]
                if len(offsets) == 1:
                    off = offsets[0]
                elif offsets:
                    off = offsets[i - start]
                if x.shape[i] - off < size:
                    raise ShapeError(
                        self,
                        f"cannot crop axis {i} of {x.shape} to {size} at offset {off} "
                        f"(reference shape {ref.shape})",
                    )
            shape.append(size)
            slices.append(slice(off, off + size))
        self.slices = tuple(slices)
        top[0].reshape(tuple(shape))

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data[self.slices]

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            dx = bottom[0].diff
            dx[...] = 0
            dx[self.slices] = top[0].diff
        if len(propagate_down) > 1 and propagate_down[1]:
            bottom[1].diff[...] = 0


@register_layer("Tile")
class TileLayer(Layer):
    """Repeat the block of axes from ``axis`` on ``tiles`` times.

    Parameters (``tile_param``): axis (default 1), tiles (required, > 0).

    Top shape: the bottom's with shape[axis] * tiles.
    Gradient: the sum of the tiled copies of the top diff.
    """

    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        if top[0] is bottom[0]:
            raise LayerError(self, "Tile cannot work in place (top == bottom)")
        p = self.layer_param.tile_param
        self.tiles = int(p.tiles)
        if self.tiles <= 0:
            raise LayerError(self, f"tiles must be positive, got {self.tiles}")
        self._axis_param = p.axis

    def reshape(self, bottom, top):
        b = bottom[0]
        self.axis = axis = canonical_axis(self, b, self._axis_param)
        self.outer, self.inner = b.count_range(0, axis), b.count_range(axis)
        top[0].reshape(
            b.shape[:axis] + (b.shape[axis] * self.tiles,) + b.shape[axis + 1 :]
        )

    def forward(self, bottom, top):
        y = top[0].data.reshape(self.outer, self.tiles, self.inner)
        y[...] = bottom[0].data.reshape(self.outer, 1, self.inner)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            dy = top[0].diff.reshape(self.outer, self.tiles, self.inner)
            np.sum(dy, axis=1, out=bottom[0].diff.reshape(self.outer, self.inner))


@register_layer("Silence")
class SilenceLayer(Layer):
    """Consume bottoms without output (so they are not net outputs).

    Bottoms: any. Tops: none. Backward writes zero diffs to the bottoms.
    """

    min_num_bottom = 1
    exact_num_top = 0

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        for b, pd in zip(bottom, propagate_down):
            if pd:
                b.diff[...] = 0


# -- element-wise ----------------------------------------------------------------------------
_PROD, _SUM, _MAX = 0, 1, 2


@register_layer("Eltwise")
class EltwiseLayer(Layer):
    """Element-wise PROD, SUM (with coefficients) or MAX of bottoms of one shape.

    Parameters (``eltwise_param``):
        operation: PROD, SUM (default) or MAX.
        coeff: one per bottom, SUM only (default all 1).
        stable_prod_grad (default true): PROD gradient as the product of the other
            inputs (true) or top / bottom (false; wrong where a bottom is 0).

    Gradients: SUM: coeff_i * dy; PROD: dy * prod_{j != i} x_j; MAX: dy to the
    bottom that was the max (ties as Caffe: bottom 1 wins over bottom 0, and a
    later bottom replaces the running max only when strictly greater).
    """

    min_num_bottom = 2
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.eltwise_param
        self.op = p.operation
        coeff = list(p.coeff)
        if coeff and self.op != _SUM:
            raise LayerError(self, "takes coefficients only for operation SUM")
        if coeff and len(coeff) != len(bottom):
            raise LayerError(
                self,
                f"has {len(coeff)} coeff values for {len(bottom)} bottoms; give one per "
                "bottom",
            )
        self.coeff = coeff or [1.0] * len(bottom)
        self.stable_prod_grad = p.stable_prod_grad
        self._mask = None

    def reshape(self, bottom, top):
        ref = bottom[0].shape
        for i, b in enumerate(bottom[1:], 1):
            if b.shape != ref:
                raise ShapeError(
                    self,
                    f"bottom[{i}] has shape {b.shape} but bottom[0] has {ref}; "
                    "Eltwise needs equal shapes",
                )
        top[0].reshape(ref)

    def forward(self, bottom, top):
        y = top[0].data
        if self.op == _SUM and len(bottom) == 2:
            from caffepy.kernels.neuron import axpby

            # NOTE: one parallel pass, the same float operations as below.
            t = self.dtype.type
            axpby(bottom[0].data.reshape(-1), t(self.coeff[0]),
                  bottom[1].data.reshape(-1), t(self.coeff[1]), y.reshape(-1))
        elif self.op == _SUM:
            np.multiply(bottom[0].data, self.dtype.type(self.coeff[0]), out=y)
            for b, c in zip(bottom[1:], self.coeff[1:]):
                if c == 1.0:
                    y += b.data
                else:
                    y += self.dtype.type(c) * b.data
        elif self.op == _PROD:
            np.multiply(bottom[0].data, bottom[1].data, out=y)
            for b in bottom[2:]:
                y *= b.data
        elif self.op == _MAX:
            a, b = bottom[0].data, bottom[1].data
            mask = (a <= b).astype(
                np.int32
            )  # 0 only where bottom 0 is strictly greater
            np.maximum(a, b, out=y)
            for k, blob in enumerate(bottom[2:], 2):
                upd = blob.data > y
                mask[upd] = k
                np.copyto(y, blob.data, where=upd)
            self._mask = mask
        else:
            raise LayerError(self, f"unknown operation {self.op}")

    def backward(self, top, propagate_down, bottom):
        dy = top[0].diff
        for i, (b, pd) in enumerate(zip(bottom, propagate_down)):
            if not pd:
                continue
            dx = b.diff
            if self.op == _SUM:
                np.multiply(dy, self.dtype.type(self.coeff[i]), out=dx)
            elif self.op == _PROD:
                if self.stable_prod_grad:
                    others = [o.data for j, o in enumerate(bottom) if j != i]
                    np.multiply(dy, others[0], out=dx)
                    for o in others[1:]:
                        dx *= o
                else:
                    np.divide(top[0].data, b.data, out=dx)
                    dx *= dy
            else:
                np.multiply(dy, self._mask == i, out=dx)


# -- argmax / reduction ------------------------------------------------------------------------
@register_layer("ArgMax")
class ArgMaxLayer(Layer):
    """Indices (and optionally values) of the top_k largest entries.

    Parameters (``argmax_param``):
        out_max_val (default false): output the values (with ``axis``: only the
            values; without: indices then values).
        top_k (default 1).
        axis (unset): the axis to search; unset searches each item's flattened
            entries (everything after axis 0).

    Tops: with axis, the bottom shape with shape[axis] = top_k; without, (N, 1
    or 2, top_k) padded with 1s to the bottom's number of axes. Indices are
    stored as floats. Ties as Caffe's partial_sort with std::greater on
    (value, index): among equal values the larger index comes first.
    Not differentiable (backward refuses).
    """

    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.argmax_param
        self.out_max_val, self.top_k = p.out_max_val, int(p.top_k)
        self.has_axis = p.HasField("axis")
        self._axis_param = p.axis
        if self.top_k < 1:
            raise LayerError(self, f"top_k must be at least 1, got {self.top_k}")

    def allow_force_backward(self, bottom_index):
        return False

    def reshape(self, bottom, top):
        b = bottom[0]
        if self.has_axis:
            self.axis = canonical_axis(self, b, self._axis_param)
            dim = b.shape[self.axis]
            shape = list(b.shape)
            shape[self.axis] = self.top_k
        else:
            dim = b.count_range(1)
            shape = [1] * max(b.num_axes, 3)
            shape[0] = b.shape[0]
            shape[2] = self.top_k
            if self.out_max_val:
                shape[1] = 2
        if self.top_k > dim:
            raise ShapeError(
                self,
                f"top_k {self.top_k} exceeds the {dim} entries searched in bottom "
                f"shape {b.shape}",
            )
        top[0].reshape(tuple(shape))

    def forward(self, bottom, top):
        k = self.top_k
        if self.has_axis:
            x = np.moveaxis(bottom[0].data, self.axis, -1)
        else:
            x = bottom[0].data.reshape(bottom[0].shape[0], -1)
        dim = x.shape[-1]
        xr = x[..., ::-1]
        # NOTE: on the reversed array, a stable sort (or argmax, which returns the
        # first maximum) puts the larger original index first among equal values.
        if k == 1:
            idx = dim - 1 - np.argmax(xr, axis=-1)[..., None]
        else:
            idx = dim - 1 - np.argsort(-xr, axis=-1, kind="stable")[..., :k]
        if self.has_axis:
            out = np.take_along_axis(x, idx, -1) if self.out_max_val else idx
            top[0].data[...] = np.moveaxis(out, -1, self.axis)
        else:
            y = top[0].data.reshape(x.shape[0], -1)
            y[:, :k] = idx
            if self.out_max_val:
                y[:, k:] = np.take_along_axis(x, idx, -1)

    def backward(self, top, propagate_down, bottom):
        if any(propagate_down):
            raise UnsupportedError(
                f"{self.type} layer '{self.name}' is not differentiable: it cannot "
                "back-propagate to its bottom"
            )


_R_SUM, _R_ASUM, _R_SUMSQ, _R_MEAN = 1, 2, 3, 4


@register_layer("Reduction")
class ReductionLayer(Layer):
    """Reduce all axes from ``axis`` on to one number per leading index.

    Parameters (``reduction_param``):
        operation: SUM (default), ASUM (sum |x|), SUMSQ (sum x^2), MEAN.
        axis (default 0: everything, a 0-d top); coeff (default 1) scales the result.

    Top shape: bottom shape[:axis].
    Gradient: coeff * dy * (1, sign(x), 2x, 1/dim) for SUM, ASUM, SUMSQ, MEAN.
    """

    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.reduction_param
        self.op, self.coeff = p.operation, float(p.coeff)
        if self.op not in (_R_SUM, _R_ASUM, _R_SUMSQ, _R_MEAN):
            raise LayerError(self, f"unknown operation {self.op}")
        self._axis_param = p.axis

    def reshape(self, bottom, top):
        b = bottom[0]
        self.axis = axis = canonical_axis(self, b, self._axis_param)
        self.num, self.dim = b.count_range(0, axis), b.count_range(axis)
        top[0].reshape(b.shape[:axis])

    def forward(self, bottom, top):
        x = bottom[0].data.reshape(self.num, self.dim)
        if self.op == _R_ASUM:
            r = np.abs(x).sum(axis=1)
        elif self.op == _R_SUMSQ:
            r = np.einsum("ij,ij->i", x, x)
        else:
            r = x.sum(axis=1)
        scale = self.coeff / self.dim if self.op == _R_MEAN else self.coeff
        top[0].data[...] = (r * self.dtype.type(scale)).reshape(top[0].shape)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy = top[0].diff.reshape(self.num, 1)
        dx = bottom[0].diff.reshape(self.num, self.dim)
        x = bottom[0].data.reshape(self.num, self.dim)
        if self.op == _R_SUM:
            dx[...] = dy * self.dtype.type(self.coeff)
        elif self.op == _R_MEAN:
            dx[...] = dy * self.dtype.type(self.coeff / self.dim)
        elif self.op == _R_ASUM:
            np.multiply(np.sign(x), dy * self.dtype.type(self.coeff), out=dx)
        else:
            np.multiply(x, dy * self.dtype.type(2.0 * self.coeff), out=dx)
