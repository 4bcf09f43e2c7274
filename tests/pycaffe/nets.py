"""Small prototxt nets the pycaffe tests share (shaped as BVLC's pycaffe tests)."""

import os
import tempfile


def write_temp(text, suffix=".prototxt"):
    """Write ``text`` to a new temporary file; return its path."""
    fd, path = tempfile.mkstemp(suffix=suffix)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def simple_net_text(num_output):
    """DummyData -> Convolution -> InnerProduct -> SoftmaxWithLoss."""
    return f"""name: 'testnet' force_backward: true
    layer {{ type: 'DummyData' name: 'data' top: 'data' top: 'label'
      dummy_data_param {{ num: 5 channels: 2 height: 3 width: 4
        num: 5 channels: 1 height: 1 width: 1
        data_filler {{ type: 'gaussian' std: 1 }}
        data_filler {{ type: 'constant' }} }} }}
    layer {{ type: 'Convolution' name: 'conv' bottom: 'data' top: 'conv'
      convolution_param {{ num_output: 11 kernel_size: 2 pad: 3
        weight_filler {{ type: 'gaussian' std: 1 }}
        bias_filler {{ type: 'constant' value: 2 }} }}
      param {{ decay_mult: 1 }} param {{ decay_mult: 0 }} }}
    layer {{ type: 'InnerProduct' name: 'ip' bottom: 'conv' top: 'ip_blob'
      inner_product_param {{ num_output: {num_output}
        weight_filler {{ type: 'gaussian' std: 2.5 }}
        bias_filler {{ type: 'constant' value: -3 }} }} }}
    layer {{ type: 'SoftmaxWithLoss' name: 'loss' bottom: 'ip_blob'
      bottom: 'label' top: 'loss' }}"""


def input_net_text(batch, channels=3, height=8, width=8, num_output=4):
    """Input -> InnerProduct -> Softmax: a deploy net for batching tests."""
    return f"""name: 'deploy' force_backward: true
    layer {{ name: 'data' type: 'Input' top: 'data'
      input_param {{ shape {{ dim: {batch} dim: {channels} dim: {height}
        dim: {width} }} }} }}
    layer {{ name: 'ip' type: 'InnerProduct' bottom: 'data' top: 'ip'
      inner_product_param {{ num_output: {num_output}
        weight_filler {{ type: 'gaussian' std: 0.1 }}
        bias_filler {{ type: 'constant' value: 0.1 }} }} }}
    layer {{ name: 'prob' type: 'Softmax' bottom: 'ip' top: 'prob' }}"""
