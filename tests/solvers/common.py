"""Helpers for the solver tests: a tiny least-squares net and batch feeding."""

from collections import deque

import numpy as np
from google.protobuf import text_format

from caffepy.proto import caffe_pb2

N, D, K = 4, 3, 2  # batch, inputs, outputs of the least-squares net

LS_NET = f"""
net_param {{
  name: "least_squares"
  layer {{
    name: "input" type: "Input" top: "x" top: "y"
    input_param {{ shape {{ dim: {N} dim: {D} }} shape {{ dim: {N} dim: {K} }} }}
  }}
  layer {{
    name: "ip" type: "InnerProduct" bottom: "x" top: "p"
    param {{ lr_mult: 1 decay_mult: 1 }}
    param {{ lr_mult: 2 decay_mult: 0 }}
    inner_product_param {{
      num_output: {K}
      weight_filler {{ type: "gaussian" std: 0.5 }}
      bias_filler {{ type: "constant" value: 0.1 }}
    }}
  }}
  layer {{ name: "loss" type: "EuclideanLoss" bottom: "p" bottom: "y" top: "loss" }}
}}
"""


def solver_param(text, net=LS_NET):
    """A SolverParameter from ``net`` + ``text`` (solver fields)."""
    return text_format.Parse(net + text, caffe_pb2.SolverParameter())


def ls_batches(steps, iter_size=1, seed=5):
    """(steps, iter_size) batches (x, y) for the least-squares net."""
    gen = np.random.default_rng(seed)
    return [
        [(gen.normal(size=(N, D)), gen.normal(size=(N, K))) for _ in range(iter_size)]
        for _ in range(steps)
    ]


def feed(solver, names, passes):
    """Make each forward/backward pass of ``solver.net`` first copy the next
    batch of ``passes`` (a list of tuples, one array per input in ``names``)."""
    net = solver.net
    queue = deque(passes)
    original = type(net).forward_backward

    def forward_backward():
        for name, value in zip(names, queue.popleft()):
            net.blobs[name].data[...] = value
        return original(net)

    net.forward_backward = forward_backward
    return queue
