"""Build hook: generate caffepy/proto/caffe_pb2.py from protos/caffe.proto.

The one place protoc runs: ``pip install .`` and ``pip install -e .`` call it
through ``build_py``; ``make proto`` calls :func:`generate_proto` directly.
"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def generate_proto() -> str:
    """Run grpcio-tools' protoc on protos/caffe.proto; return the module's path."""
    out = os.path.join(HERE, "caffepy", "proto")
    subprocess.check_call(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I" + os.path.join(HERE, "protos"),
            "--python_out=" + out,
            os.path.join(HERE, "protos", "caffe.proto"),
        ]
    )
    return os.path.join(out, "caffe_pb2.py")


if __name__ == "__main__":  # run by pip's build backend, not by `make proto`
    from setuptools import setup
    from setuptools.command.build_py import build_py

    class BuildPyWithProto(build_py):
        def run(self):
            generate_proto()
            super().run()

    setup(cmdclass={"build_py": BuildPyWithProto})
