"""What the upgrade steps share: the logger, the V1 message, field tests."""

import logging

from caffepy.proto import caffe_pb2

log = logging.getLogger("caffepy")

_V1 = caffe_pb2.V1LayerParameter


def _is_set(message, field):
    if field.is_repeated:
        return len(getattr(message, field.name)) > 0
    return message.HasField(field.name)
