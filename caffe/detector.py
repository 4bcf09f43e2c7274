"""``caffe.detector``: the same module object as caffepy.pycaffe.detector."""

import sys

from caffepy.pycaffe import detector as _impl

sys.modules[__name__] = _impl
