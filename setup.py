"""Build hook: generate caffepy/proto/caffe_pb2.py from protos/caffe.proto."""

import os
import subprocess
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def generate_proto():
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


class BuildPyWithProto(build_py):
    def run(self):
        generate_proto()
        super().run()


setup(cmdclass={"build_py": BuildPyWithProto})
