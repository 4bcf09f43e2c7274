"""The protobuf module generated from protos/caffe.proto (never edited by hand).

``caffe_pb2`` is produced by the build (``pip install .`` or ``make proto``). In a
source checkout where it is missing or older than the schema, it is regenerated
here with grpcio-tools' protoc so that a fresh clone works too.
"""

import os
import subprocess
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_SCHEMA = os.path.join(_HERE, "..", "..", "protos", "caffe.proto")
_MODULE = os.path.join(_HERE, "caffe_pb2.py")


def _stale():
    if not os.path.exists(_SCHEMA):
        return False  # installed package: the build generated the module
    return not os.path.exists(_MODULE) or (
        os.path.getmtime(_MODULE) < os.path.getmtime(_SCHEMA)
    )


if _stale():  # pragma: no cover - exercised on a fresh clone
    subprocess.check_call(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I" + os.path.dirname(os.path.abspath(_SCHEMA)),
            "--python_out=" + _HERE,
            os.path.abspath(_SCHEMA),
        ]
    )

from caffepy.proto import caffe_pb2  # noqa: E402

__all__ = ["caffe_pb2"]
