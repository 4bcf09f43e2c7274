"""``caffe.proto.caffe_pb2``: the same module object as caffepy.proto.caffe_pb2."""

import sys

from caffepy.proto import caffe_pb2 as _impl

sys.modules[__name__] = _impl
