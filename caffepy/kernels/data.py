"""The data transformation kernel: crop, mirror, mean subtraction and scaling.

Caffe's ``DataTransformer::Transform`` for a whole batch at once. For item ``i``,
channel ``c`` and output position ``(y, x)`` of a ``crop_h x crop_w`` window::

    src_y = h_off[i] + y,  src_x = w_off[i] + x
    out[i, c, y, x'] = (src[i, c, src_y, src_x] - mean[c, src_y, src_x]) * scale

with ``x' = crop_w - 1 - x`` when ``mirror[i]`` else ``x``. The mean is indexed
at the *source* position (a mean file is as large as the uncropped image), and
the mirror flips the output, so the mean pixel travels with its data pixel.

The kernel is serial on purpose: it runs in the prefetch thread, beside the
compute thread's parallel kernels, and releases the GIL (``nogil``).
"""

from caffepy.kernels.config import njit


@njit
def transform_batch(src, h_off, w_off, mirror, mean, scale, out):
    """Crop, mirror, subtract the mean and scale a batch.

    Args:
        src: (N, C, H, W) uint8 or float input images.
        h_off, w_off: (N,) int64 crop offsets per item.
        mirror: (N,) bool, flip item i horizontally.
        mean: (C, H, W) float array of ``out``'s dtype (zeros for no mean).
        scale: scalar of ``out``'s dtype.
        out: (N, C, crop_h, crop_w) float32/float64 output, overwritten.
    """
    n_img, chans, crop_h, crop_w = out.shape
    for i in range(n_img):
        ho = h_off[i]
        wo = w_off[i]
        flip = mirror[i]
        for c in range(chans):
            for y in range(crop_h):
                sy = ho + y
                for x in range(crop_w):
                    sx = wo + x
                    # NOTE: (x - mean) * scale in the output dtype, as Caffe's Dtype
                    # arithmetic, so float32 results match Caffe bit for bit.
                    v = (out.dtype.type(src[i, c, sy, sx]) - mean[c, sy, sx]) * scale
                    if flip:
                        out[i, c, y, crop_w - 1 - x] = v
                    else:
                        out[i, c, y, x] = v
