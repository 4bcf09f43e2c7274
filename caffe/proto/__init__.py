"""``caffe.proto``: holds ``caffe_pb2``, caffepy's generated protobuf module."""

from caffe.proto import caffe_pb2  # noqa: F401
