"""Caffe's phases: a net is built for training or for testing (``Phase`` in
caffe.proto; pycaffe's ``caffe.TRAIN`` and ``caffe.TEST``)."""

TRAIN = 0
TEST = 1

__all__ = ["TEST", "TRAIN"]
