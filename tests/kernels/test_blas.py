"""kernels/blas.py: which BLAS the kernels call (``CAFFEPY_BLAS``), and that
Intel MKL (``caffepy[mkl]``) and numpy's OpenBLAS give the same numbers."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from caffepy.kernels import blas

HAVE_MKL = blas._mkl_library() is not None

#: A forward and backward over the kernels that call the BLAS: row-column and
#: im2col convolutions, Winograd, a grouped one, inner products.
_SCRIPT = r"""
import json, sys
import numpy as np
import caffepy
from caffepy.kernels import blas
from google.protobuf import text_format
from caffepy.proto import caffe_pb2
text = '''
layer { name: 'in' type: 'Input' top: 'data' top: 't'
        input_param { shape { dim: 2 dim: 16 dim: 12 dim: 12 } shape { dim: 2 dim: 5 } } }
layer { name: 'c1' type: 'Convolution' bottom: 'data' top: 'c1'
        convolution_param { num_output: 16 kernel_size: 3 pad: 1
                            weight_filler { type: 'xavier' } } }
layer { name: 'c2' type: 'Convolution' bottom: 'c1' top: 'c2'
        convolution_param { num_output: 8 kernel_size: 5 stride: 2 group: 2
                            weight_filler { type: 'xavier' } } }
layer { name: 'ip' type: 'InnerProduct' bottom: 'c2' top: 'ip'
        inner_product_param { num_output: 5 weight_filler { type: 'xavier' } } }
layer { name: 'loss' type: 'EuclideanLoss' bottom: 'ip' bottom: 't' top: 'loss' }
'''
caffepy.set_random_seed(3)
net = caffepy.Net(param=text_format.Parse(text, caffe_pb2.NetParameter()),
                  phase=caffepy.TRAIN)
rng = np.random.default_rng(3)
for name in net.inputs:
    net.blobs[name].data[...] = rng.standard_normal(net.blobs[name].shape)
net.forward_prefilled()
net.backward_prefilled()
out = {"blas": blas.NAME, "loss": float(net.blobs["loss"].data),
       "grads": [p.diff.ravel().tolist() for ps in net.params.values() for p in ps],
       "dx": net.blobs["data"].diff.ravel().tolist()}
json.dump(out, sys.stdout)
"""


def _run(choice, code=_SCRIPT):
    env = dict(os.environ, CAFFEPY_BLAS=choice)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done


def test_openblas_on_request():
    done = _run("openblas", "from caffepy.kernels import blas; print(blas.NAME)")
    assert done.stdout.split() == ["openblas"]


def test_mkl_on_request_or_a_line_naming_the_extra():
    done = _run("mkl", "from caffepy.kernels import blas; print(blas.NAME)")
    if HAVE_MKL:
        assert done.stdout.split() == ["mkl"]
    else:
        assert done.stdout.split() == ["openblas"]
        assert "pip install 'caffepy[mkl]'" in done.stderr


def test_an_unknown_choice_warns_and_is_ignored():
    done = _run("atlas", "from caffepy.kernels import blas; print(blas.NAME)")
    assert "CAFFEPY_BLAS='atlas'" in done.stderr
    assert done.stdout.split()[-1] in ("mkl", "openblas")


@pytest.mark.skipif(not HAVE_MKL, reason="Intel MKL is not installed (caffepy[mkl])")
def test_mkl_and_openblas_agree():
    mkl = json.loads(_run("mkl").stdout)
    ref = json.loads(_run("openblas").stdout)
    assert (mkl["blas"], ref["blas"]) == ("mkl", "openblas")
    np.testing.assert_allclose(mkl["loss"], ref["loss"], rtol=1e-5)
    for got, want in zip(mkl["grads"], ref["grads"], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(mkl["dx"], ref["dx"], rtol=1e-4, atol=1e-5)
