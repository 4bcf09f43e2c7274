"""``caffe.io``: the same module object as caffepy.pycaffe.io."""

import sys

from caffepy.pycaffe import io as _impl

sys.modules[__name__] = _impl
