"""compute_image_mean: the mean image of an LMDB or LevelDB database of Datum.

Caffe's ``tools/compute_image_mean.cpp``: every record (encoded ones decoded in
their native colour) must have the first record's size; the mean is the
element-wise average, written as a BlobProto with the legacy 4-D fields
(1 x C x H x W, no ``shape``), the format mean_file expects. The per-channel
means Caffe prints are the plane averages of the mean.

Sums are exact (integers in int64, floats in float64), so large databases do not
lose precision as Caffe's float accumulator does past 2^24.
"""

import numpy as np

from caffepy.errors import DataError


def compute_image_mean(db_path, out_path=None, backend="lmdb"):
    """Compute (and optionally write) the mean image of a database.

    Args:
        db_path: an LMDB (or LevelDB) database of Datum.
        out_path: where to write the mean (binaryproto), or None.
        backend: "lmdb" or "leveldb" (a LevelDB folder is read as LevelDB).

    Returns:
        (mean, channel_means): the float32 mean, shape (1, C, H, W), and the
        list of the C per-channel averages.

    Raises:
        DataError: a missing or empty database, an undecodable record,
            or records of different sizes (e.g. an encoded database of images of
            several sizes: convert with resize_height/resize_width).
    """
    from caffepy.data.datum import datum_to_array, parse_datum
    from caffepy.data.db import open_db_reader

    with open_db_reader(db_path, backend) as reader:
        total = first_key = None
        count = 0
        for key, value in reader.items():
            name = f"record {key!r} of {reader.path!r}"
            image = datum_to_array(parse_datum(value, name), name)
            if total is None:
                first_key = key
                acc = np.int64 if image.dtype == np.uint8 else np.float64
                total = np.zeros(image.shape, acc)
            elif image.shape != total.shape:
                have = "x".join(map(str, image.shape))
                want = "x".join(map(str, total.shape))
                raise DataError(
                    f"{name} is {have} ({image.size} values) but the first record "
                    f"{first_key!r} is {want} ({total.size}); compute_image_mean needs "
                    "records of one size (convert the images with resize_height and "
                    "resize_width)"
                )
            total += image
            count += 1
    mean = (total / count).astype(np.float32)[None]
    # NOTE: Caffe sums each plane sequentially in a float and divides by H*W;
    # cumsum is sequential, so the printed means match Caffe's digit for digit.
    planes = mean[0].reshape(mean.shape[1], -1)
    dim = np.float32(planes.shape[1])
    channel_means = [float(np.cumsum(p, dtype=np.float32)[-1] / dim) for p in planes]
    if out_path is not None:
        from caffepy.io.blobproto import write_binaryproto

        write_binaryproto(out_path, mean, legacy_4d=True)
    return mean, channel_means


def format_mean(mean, channel_means, out_path=None):
    """Caffe's per-channel lines, and where the mean was written."""
    lines = [f"mean_value channel [{c}]: {m:.6g}" for c, m in enumerate(channel_means)]
    if out_path:
        lines.append(f"Wrote {out_path} (shape {tuple(mean.shape)})")
    return "\n".join(lines)
