"""The data transformation kernel: crop, mirror, mean subtraction and scaling.

:func:`transform_batch` is Caffe's ``DataTransformer::Transform`` for a whole
batch at once. For item ``i``, channel ``c`` and output position ``(y, x)`` of a
``crop_h x crop_w`` window::

    src_y = h_off[i] + y,  src_x = w_off[i] + x
    out[i, c, y, x'] = (src[i, c, src_y, src_x] - mean[c, src_y, src_x]) * scale

with ``x' = crop_w - 1 - x`` when ``mirror[i]`` else ``x``. The mean is indexed
at the *source* position (a mean file is as large as the uncropped image), and
the mirror flips the output, so the mean pixel travels with its data pixel.

The images lie in one flat array at given offsets, so a Data layer transforms
the pixels of its records straight from the bytes it read (no copy per record).

The kernel is serial on purpose: it runs in the prefetch thread, beside the
compute thread's parallel kernels, and releases the GIL (``nogil``).
"""

from numba import uint64 as u64

from caffepy.kernels.config import njit


@njit
def transform_batch(
    src, offsets, height, width, h_off, w_off, mirror, mean, scale, out
):
    """Crop, mirror, subtract the mean and scale a batch.

    Args:
        src: 1-D uint8 or float array holding the C x H x W images (C order);
            image ``i`` starts at ``src[offsets[i]]``.
        offsets: (N,) int64 start of each image in ``src``.
        height, width: H and W of every image (C is ``out``'s).
        h_off, w_off: (N,) int64 crop offsets per item.
        mirror: (N,) bool, flip item i horizontally.
        mean: (C, H, W) C-contiguous array of ``out``'s dtype (zeros for no mean).
        scale: scalar of ``out``'s dtype.
        out: (N, C, crop_h, crop_w) C-contiguous float32/float64 output,
            overwritten.
    """
    n_img, chans, crop_h, crop_w = out.shape
    of = out.reshape(out.size)
    mf = mean.reshape(mean.size)
    kind = out.dtype.type
    for i in range(n_img):
        ho = h_off[i]
        wo = w_off[i]
        flip = mirror[i]
        base = offsets[i]
        for c in range(chans):
            for y in range(crop_h):
                m = u64((c * height + ho + y) * width + wo)
                s = u64(base) + m
                o = u64(((i * chans + c) * crop_h + y) * crop_w)
                # NOTE: (x - mean) * scale in the output dtype, as Caffe's Dtype
                # arithmetic, so float32 results match Caffe bit for bit.
                if flip:
                    last = o + u64(crop_w - 1)
                    for x in range(crop_w):
                        ux = u64(x)
                        of[last - ux] = (kind(src[s + ux]) - mf[m + ux]) * scale
                else:
                    for x in range(crop_w):
                        ux = u64(x)
                        of[o + ux] = (kind(src[s + ux]) - mf[m + ux]) * scale
