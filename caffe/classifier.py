"""``caffe.classifier``: the same module object as caffepy.pycaffe.classifier."""

import sys

from caffepy.pycaffe import classifier as _impl

sys.modules[__name__] = _impl
