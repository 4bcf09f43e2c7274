"""``caffe.coord_map``: the same module object as caffepy.pycaffe.coord_map."""

import sys

from caffepy.pycaffe import coord_map as _impl

sys.modules[__name__] = _impl
