"""Layer-wise gradient reduction (Caffe's layer_wise_reduce) against the
whole-net reduction, in one process with a stand-in for the other rank.

Oracle: both must leave each gradient at (mine + the other rank's) / 2, so two
solvers fed the same batches take identical steps; the layer-wise one must start
its first reduction before the backward of the bottom layer has run.
"""

import numpy as np
from google.protobuf import text_format

from caffepy.parallel.comm import Communicator
from caffepy.parallel.reduce import (
    GradientReducer,
    LayerwiseReducer,
    choose_reducer,
    ready_layers,
)
from caffepy.proto import caffe_pb2
from caffepy.solvers import get_solver

NET = """
net_param {
  name: "shared"
  layer { name: "data" type: "DummyData" top: "x" top: "y"
    dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 3 }
      data_filler { type: "gaussian" std: 1 } data_filler { type: "gaussian" } } }
  layer { name: "ip1" type: "InnerProduct" bottom: "x" top: "h"
    param { name: "w" } param { name: "b" }
    inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.5 }
      bias_filler { type: "constant" value: 0.1 } } }
  layer { name: "relu" type: "ReLU" bottom: "h" top: "h" }
  layer { name: "ip2" type: "InnerProduct" bottom: "h" top: "h2"
    inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.5 } } }
  layer { name: "ip3" type: "InnerProduct" bottom: "h2" top: "p"
    param { name: "w" } param { name: "b" }
    inner_product_param { num_output: 3 } }
  layer { name: "loss" type: "EuclideanLoss" bottom: "p" bottom: "y" top: "loss" }
}
base_lr: 0.1 momentum: 0.9 lr_policy: "fixed" random_seed: 1701 max_iter: 10
"""


class _OtherRank(Communicator):
    """Rank 0 of 2; the other rank's gradient of a parameter is ``other[blob]``
    (found by where the reduced slice lies in the reducer's buffer)."""

    size = 2
    rank = 0

    def __init__(self):
        self.reducer = None
        self.other = {}
        self.started = []  # layer calls seen when each collective started

    def _other_buffer(self):
        r = self.reducer
        parts = [self.other[id(b)].reshape(-1) for b in r.params]
        return np.concatenate([*parts, np.zeros(2, r.dtype)]).astype(r.dtype)

    def allreduce_sum(self, buf, what=""):
        base = self.reducer.buffer
        off = (buf.ctypes.data - base.ctypes.data) // base.itemsize
        buf += self._other_buffer()[off : off + buf.size]

    def start_allreduce_sum(self, buf, what=""):
        self.started.append(what)
        self.allreduce_sum(buf, what)


def _solver():
    param = text_format.Parse(NET, caffe_pb2.SolverParameter())
    return get_solver(param)


def _run(kind, steps=3):
    solver = _solver()
    comm = _OtherRank()
    gen = np.random.default_rng(5)
    for blob in solver.net.learnable_params:
        comm.other[id(blob)] = gen.normal(size=blob.shape).astype(np.float32)
    if kind == "layer-wise":
        reducer = LayerwiseReducer(comm, solver.net, solver.dtype)
    else:
        reducer = GradientReducer(comm, solver.net.learnable_params, solver.dtype)
    comm.reducer = reducer
    reducer.attach(solver)
    solver.step(steps)
    return solver, comm, reducer


def test_ready_layers_wait_for_every_sharer():
    net = _solver().net
    names = [layer.name for layer in net.layers]
    # w, b (ip1 and ip3 share them: complete after ip1), ip2's weight and bias
    assert [names[i] for i in ready_layers(net)] == ["ip1", "ip1", "ip2", "ip2"]


def test_layer_wise_equals_whole_net_reduction():
    a, comm_a, red_a = _run("layer-wise")
    b, _, red_b = _run("whole net")
    for pa, pb in zip(a.net.learnable_params, b.net.learnable_params):
        np.testing.assert_array_equal(pa.data, pb.data)
    assert red_a.reductions == red_b.reductions == 3
    # One collective per layer with parameters, the top one's first.
    assert [w.split(" of layer ")[1].split()[0] for w in comm_a.started[:2]] == [
        "3",
        "1",
    ]


def test_layer_wise_reduction_starts_before_backward_ends():
    solver = _solver()
    comm = _OtherRank()
    for blob in solver.net.learnable_params:
        comm.other[id(blob)] = np.zeros(blob.shape, np.float32)
    reducer = LayerwiseReducer(comm, solver.net, solver.dtype)
    comm.reducer = reducer
    reducer.attach(solver)
    seen = []
    solver.add_after_backward(lambda li: seen.append((li, len(comm.started))))
    solver.step(1)
    # After ip2's backward (layer 3) its chunk is out, while ip1 has not run.
    assert dict(seen)[3] == 1 and dict(seen)[1] == 2


def test_the_solver_field_chooses_the_reducer():
    solver = _solver()
    comm = _OtherRank()
    assert not solver.param.HasField("layer_wise_reduce")  # unset: the measured
    assert type(choose_reducer(comm, solver)) is GradientReducer  # default
    solver.param.layer_wise_reduce = False
    assert type(choose_reducer(comm, solver)) is GradientReducer
    solver.param.layer_wise_reduce = True
    assert type(choose_reducer(comm, solver)) is LayerwiseReducer
