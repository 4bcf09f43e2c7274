"""Several GPUs: ``--gpu 0,1``/``all`` parsing and launch planning, the NCCL
reducer driven by a stand-in communicator on host arrays (the real NCCL path
needs GPUs and CuPy's NCCL: not run here), and pycaffe's NCCL surface.

Oracles: the launch plan of Caffe's ``-gpu`` (one rank per GPU); the NCCL
reducer must take exactly the steps of the MPI reducer (same sums, same 1/N),
calling ncclAllReduce in place on each parameter's own diff buffer.
"""

import ctypes

import numpy as np
import pytest
from google.protobuf import text_format

from caffepy.errors import CaffepyError, GpuUnavailableError, ParallelError
from caffepy.parallel import launch, nccl, state
from caffepy.parallel.comm import Communicator
from caffepy.parallel.reduce import GradientReducer
from caffepy.proto import caffe_pb2
from caffepy.solvers import get_solver
from caffepy.tools import device
from caffepy.tools import train as train_tool
from tests.parallel.test_reduce import NET


@pytest.fixture(autouse=True)
def _one_process():
    yield
    state.set_solver_count(1)
    state.set_solver_rank(0)
    state.set_multiprocess(False)


# -- --gpu ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected", [("0", 0), (" 3 ", 3), ("0,1", [0, 1]), ("all", "all")]
)
def test_parse_gpus(text, expected):
    assert device.parse_gpus(text) == expected


@pytest.mark.parametrize("text", ["0,x", "-1", "1,1", ""])
def test_parse_gpus_refuses(text):
    with pytest.raises(ValueError):
        device.parse_gpus(text)


def test_resolve_gpus_against_the_machine():
    assert device.resolve_gpus("all", count=3) == [0, 1, 2]
    assert device.resolve_gpus([1, 0], count=2) == [1, 0]
    with pytest.raises(GpuUnavailableError) as info:
        device.resolve_gpus([0, 3], count=2)
    assert str(info.value) == (
        "--gpu 0,3: GPU 3 does not exist on this machine (2 CUDA devices: 0,1)"
    )


def test_plan_gpus():
    plan = train_tool.plan_gpus
    assert plan(None) == ("single", None)
    assert plan(2) == ("single", 2)
    assert plan([1], environ={}, count=2) == ("single", 1)
    assert plan([0, 1], environ={}, count=2) == ("launch", [0, 1])
    assert plan("all", environ={}, count=2) == ("launch", [0, 1])
    ranks = {"PMI_RANK": "1", "PMI_SIZE": "2"}
    assert plan([2, 0], environ=ranks, count=3) == ("rank", 0)
    with pytest.raises(ParallelError, match="names 2 GPUs.*started 3 ranks"):
        plan([0, 1], environ={"PMI_RANK": "0", "PMI_SIZE": "3"}, count=2)


def test_relaunch_command_runs_this_command_once_per_gpu():
    argv = ["/py", "-m", "caffepy", "train", "--solver", "s", "--gpu", "all"]
    cmd = train_tool.relaunch_command([0, 1, 2], argv, "/bin/mpiexec")
    assert cmd == ["/bin/mpiexec", "-n", "3", *argv]


def test_two_gpus_on_this_machine_is_one_clear_line(tmp_path, capsys):
    from caffepy import cli

    # The tests run under numba's CUDA simulator: one device, id 0.
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--solver", str(tmp_path / "s"), "--gpu", "0,1"])
    assert info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "caffepy: error: --gpu 0,1: GPU 1 does not exist on this machine "
        "(1 CUDA device: 0)"
    ]


# -- the NCCL reducer with a stand-in communicator ----------------------------------
class _Lib:
    NCCL_FLOAT32, NCCL_FLOAT64, NCCL_SUM = 7, 8, 0

    def __init__(self):
        self.depth = 0
        self.groups = 0

    def groupStart(self):  # noqa: N802 - CuPy's names
        self.depth += 1

    def groupEnd(self):  # noqa: N802
        self.depth -= 1
        self.groups += 1


class _FakeNccl:
    """NCCL rank 0 of 2 on host memory: the other rank's diff of the parameter
    at address ``ptr`` is ``other[ptr]``; its weights are ``root_data``."""

    def __init__(self, lib):
        self.lib = lib
        self.other = {}
        self.calls = []

    def size(self):
        return 2

    def _view(self, ptr, count, dtype):
        ctype = ctypes.c_float if dtype == 7 else ctypes.c_double
        return np.ctypeslib.as_array((ctype * count).from_address(ptr))

    def allReduce(self, send, recv, count, dtype, op, stream):  # noqa: N802
        assert self.lib.depth == 1  # inside a group
        self.calls.append(("allReduce", send, recv, count, dtype, op, stream))
        self._view(recv, count, dtype)[...] += self.other[send]

    def bcast(self, buf, count, dtype, root, stream):
        self.calls.append(("bcast", buf, count, dtype, root, stream))


class _OtherRank(Communicator):
    """The MPI stand-in of test_reduce, for the host reducer."""

    size, rank = 2, 0

    def __init__(self, reducer_other):
        self.other = reducer_other
        self.reducer = None

    def allreduce_sum(self, buf, what=""):
        r = self.reducer
        if buf.size == 2:  # the NCCL reducer's action flags
            return
        parts = [self.other[id(b)].reshape(-1) for b in r.params]
        buf += np.concatenate([*parts, np.zeros(2, r.dtype)])


def _solver():
    return get_solver(text_format.Parse(NET, caffe_pb2.SolverParameter()))


def _others(solver):
    gen = np.random.default_rng(9)
    return {
        id(b): gen.normal(size=b.shape).astype(np.float32)
        for b in solver.net.learnable_params
    }


@pytest.mark.parametrize("layer_wise", [False, True])
def test_nccl_reducer_equals_the_mpi_reducer(layer_wise):
    ref = _solver()
    host = _OtherRank(_others(ref))
    host.reducer = GradientReducer(host, ref.net.learnable_params, ref.dtype)
    host.reducer.attach(ref)
    ref.step(3)

    solver = _solver()
    lib = _Lib()
    fake = _FakeNccl(lib)
    by_id = _others(solver)
    for blob in solver.net.learnable_params:
        fake.other[blob.diff.ctypes.data] = by_id[id(blob)].reshape(-1)
    flags = _OtherRank({})
    reducer = nccl.NcclReducer(
        fake, solver.net, solver.dtype, host=flags, layer_wise=layer_wise, lib=lib
    )
    reducer.attach(solver)
    solver.step(3)
    for a, b in zip(ref.net.learnable_params, solver.net.learnable_params):
        np.testing.assert_array_equal(a.data, b.data)
    # In place on each parameter's own diff (no staging copy), float32, sum.
    diffs = {b.diff.ctypes.data: b.count for b in solver.net.learnable_params}
    reduces = [c for c in fake.calls if c[0] == "allReduce"]
    assert len(reduces) == 3 * len(diffs)
    for _, send, recv, count, dtype, op, _stream in reduces:
        assert send == recv and diffs[send] == count and (dtype, op) == (7, 0)
    # Whole net: one group per iteration; layer-wise: one per layer with params.
    assert lib.groups == (3 * 2 if layer_wise else 3)


def test_nccl_bcast_sends_every_weight_from_rank_zero():
    solver = _solver()
    fake = _FakeNccl(_Lib())
    reducer = nccl.NcclReducer(fake, solver.net, solver.dtype, lib=fake.lib)
    reducer.bcast_params()
    datas = [b.data.ctypes.data for b in solver.net.learnable_params]
    assert [c[1] for c in fake.calls] == datas
    assert {c[4] for c in fake.calls} == {0}


def test_start_ranks_dispatches_to_nccl(monkeypatch):
    solver = _solver()
    fake = _FakeNccl(_Lib())
    got = {}

    class Two(Communicator):
        size, rank = 2, 1

        def allgather(self, obj, what=""):
            got["mine"] = obj
            return [b"u" * 128, obj]

    monkeypatch.setattr(nccl, "new_uid", lambda: pytest.fail("only rank 0"))
    monkeypatch.setattr(
        nccl,
        "open_comm",
        lambda size, uid, rank: got.update(open=(size, uid, rank)) or fake,
    )
    monkeypatch.setitem(launch._current, "comm", Two())
    monkeypatch.setattr(nccl, "nccl_module", lambda: _Lib())
    launch.start_ranks(solver, nccl=True)
    assert got == {"mine": b"", "open": (2, b"u" * 128, 1)}
    assert isinstance(launch._current["reducer"], nccl.NcclReducer)
    assert [c[0] for c in fake.calls] == ["bcast"] * 4


# -- pycaffe ------------------------------------------------------------------------
def test_pycaffe_nccl_refuses_clearly_without_nccl():
    import caffe

    assert caffe.has_nccl() is False  # CPU / simulator
    with pytest.raises(CaffepyError, match=r"caffe.NCCL cannot run here: NCCL needs"):
        caffe.NCCL(_solver(), b"\0" * 128)
    with pytest.raises(ParallelError, match="cannot make an NCCL id"):
        caffe.NCCL.new_uid()


def test_pycaffe_nccl_as_bvlc_train_py_uses_it(monkeypatch):
    import caffe

    solver = _solver()
    lib = _Lib()
    fake = _FakeNccl(lib)
    for blob in solver.net.learnable_params:
        fake.other[blob.diff.ctypes.data] = np.zeros(blob.count, np.float32)
    monkeypatch.setattr(nccl, "has_nccl", lambda: True)
    monkeypatch.setattr(nccl, "nccl_module", lambda: lib)
    monkeypatch.setattr(nccl, "open_comm", lambda size, uid, rank: fake)
    caffe.set_solver_count(2)
    caffe.set_solver_rank(0)
    caffe.set_multiprocess(True)
    assert (caffe.solver_count(), caffe.solver_rank()) == (2, 0)
    with pytest.raises(CaffepyError, match="one process per GPU"):
        caffe.NCCL(solver)
    net = caffe.NCCL(solver, b"u" * 128)
    net.bcast()
    solver.add_callback(net)
    solver.net.after_backward(net)
    solver.step(1)
    reduces = [c for c in fake.calls if c[0] == "allReduce"]
    assert len(reduces) == 4  # each parameter once, as its layer finished
