"""The data pipeline: Datum records in LMDB, the DataTransformer, prefetching.

- :mod:`caffepy.data.datum`: Datum <-> numpy, image decoding (OpenCV).
- :mod:`caffepy.data.db`: LMDB reader (positional, resumable) and writer.
- :mod:`caffepy.data.transformer`: crop, mirror, mean, scale (Caffe's semantics).
- :mod:`caffepy.data.sources`: batch sources for the Data and ImageData layers.
- :mod:`caffepy.data.prefetch`: the prefetch thread.
"""

from caffepy.data.datum import array_to_datum, datum_to_array, parse_datum
from caffepy.data.db import LMDBReader, LMDBWriter, resolve_source
from caffepy.data.transformer import DataTransformer

__all__ = [
    "DataTransformer",
    "LMDBReader",
    "LMDBWriter",
    "array_to_datum",
    "datum_to_array",
    "parse_datum",
    "resolve_source",
]
