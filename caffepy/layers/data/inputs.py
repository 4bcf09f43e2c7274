"""Input and DummyData: tops the user fills, or fillers fill."""

from __future__ import annotations

from caffepy.errors import LayerError
from caffepy.layer import Layer
from caffepy.registry import register_layer


def shape_of(layer, blob_shape, what: str = "shape") -> tuple[int, ...]:
    """A BlobShape message as a tuple, refusing negative and zero dimensions (an
    empty input is always a mistake, and layers downstream need data)."""
    dims = tuple(int(d) for d in blob_shape.dim)
    if any(d < 0 for d in dims):
        raise LayerError(layer, f"{what} {list(dims)} has a negative dimension")
    if any(d == 0 for d in dims):
        raise LayerError(
            layer,
            f"{what} {list(dims)} has a dimension 0; every dimension must be "
            "at least 1",
        )
    return dims


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
