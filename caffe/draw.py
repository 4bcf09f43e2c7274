"""``caffe.draw``: the same module object as caffepy.pycaffe.draw."""

import sys

from caffepy.pycaffe import draw as _impl

sys.modules[__name__] = _impl
