"""The protobuf module generated from protos/caffe.proto (never edited by hand).

``caffe_pb2`` is written by the build: ``pip install .`` / ``pip install -e .``
(setup.py's ``build_py`` hook) or ``make proto``, which call the same
``generate_proto`` in setup.py. Importing this package never runs protoc.
"""

from importlib.util import find_spec

if find_spec("caffepy.proto.caffe_pb2") is None:  # a checkout that was never built
    from caffepy.errors import CaffepyError

    raise CaffepyError(
        "caffepy/proto/caffe_pb2.py is missing: it is generated from "
        "protos/caffe.proto by the build; run `pip install -e .` (or `make proto`)"
    )

from caffepy.proto import caffe_pb2  # noqa: E402

__all__ = ["caffe_pb2"]
