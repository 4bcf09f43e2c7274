"""pycaffe's Net.save_hdf5 / load_hdf5 (BVLC's test_net.py: test_save_hdf5)."""

import numpy as np
import pytest

pytest.importorskip("h5py")

NET = """
name: "tiny"
layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 2 dim: 3 dim: 5 dim: 5 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_size: 3
    weight_filler { type: "gaussian" std: 0.1 } bias_filler { type: "gaussian" } } }
layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip"
  inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }
"""


def test_save_hdf5_then_load_hdf5_restores_every_parameter(tmp_path):
    import caffe

    model = tmp_path / "net.prototxt"
    model.write_text(NET)
    net = caffe.Net(str(model), caffe.TRAIN)
    path = str(tmp_path / "weights.caffemodel.h5")
    net.save_hdf5(path)
    other = caffe.Net(str(model), caffe.TRAIN)
    for name in other.params:
        for b in other.params[name]:
            b.data[...] = 0
    other.load_hdf5(path)
    for name in net.params:
        for a, b in zip(net.params[name], other.params[name]):
            np.testing.assert_array_equal(a.data, b.data)
