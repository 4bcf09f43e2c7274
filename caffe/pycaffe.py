"""``caffe.pycaffe``: the same module object as caffepy.pycaffe.api."""

import sys

from caffepy.pycaffe import api as _impl

sys.modules[__name__] = _impl
