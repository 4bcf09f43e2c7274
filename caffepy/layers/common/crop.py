"""Crop: cut bottom[0] to the shape of bottom[1] at given offsets."""

from __future__ import annotations

from caffepy import backend
from caffepy.errors import LayerError, ShapeError
from caffepy.layer import Layer, canonical_axis
from caffepy.registry import register_layer


@register_layer("Crop")
class CropLayer(Layer):
    """Crop bottom[0] to the shape of bottom[1] on the axes from ``axis`` on.

    Parameters (``crop_param``): axis (default 2); offset: none (0), one for all
    cropped axes, or one per cropped axis.

    Bottoms: data, reference (only its shape is used). Top: the crop.
    Gradient: the top diff placed at the offsets in a zero bottom diff; the
    reference gets none (zeros if asked).
    """

    uses_ops = ("copy",)

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
        ops = backend.ops()
        ops.copy(ops.data(bottom[0])[self.slices], ops.mutable_data(top[0]))

    def backward(self, top, propagate_down, bottom):
        ops = backend.ops()
        if propagate_down[0]:
            dx = ops.mutable_diff(bottom[0])
            dx[...] = 0
            dx[self.slices] = ops.diff(top[0])
        if len(propagate_down) > 1 and propagate_down[1]:
            ops.mutable_diff(bottom[1])[...] = 0
