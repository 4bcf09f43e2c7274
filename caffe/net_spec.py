"""``caffe.net_spec``: the same module object as caffepy.pycaffe.net_spec."""

import sys

from caffepy.pycaffe import net_spec as _impl

sys.modules[__name__] = _impl
