"""In-process parts of data-parallel training: rank discovery, the missing-MPI
error, the start-up consistency check, the gradient averaging and the
round-robin dealing of records (no mpiexec needed)."""

import subprocess
import sys

import numpy as np
import pytest

from caffepy.errors import ParallelError
from caffepy.parallel import launch, state
from caffepy.parallel.comm import Communicator, SingleProcess
from caffepy.parallel.reduce import GradientReducer
from caffepy.proto import caffe_pb2


@pytest.fixture(autouse=True)
def _one_process():
    yield
    state.set_solver_count(1)
    state.set_solver_rank(0)
    state.set_multiprocess(False)


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, (0, 1)),
        ({"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "4"}, (2, 4)),
        ({"PMI_RANK": "1", "PMI_SIZE": "3"}, (1, 3)),
        ({"PMI_RANK": "0"}, (0, 1)),
    ],
)
def test_env_rank_size(env, expected):
    assert launch.env_rank_size(env) == expected


@pytest.mark.parametrize(
    "env", [{"PMI_RANK": "x", "PMI_SIZE": "2"}, {"PMI_RANK": "2", "PMI_SIZE": "2"}]
)
def test_env_rank_size_refuses_nonsense(env):
    with pytest.raises(ParallelError, match="PMI_RANK"):
        launch.env_rank_size(env)


def test_single_process_imports_no_mpi():
    code = (
        "import sys\n"
        "from caffepy.parallel.launch import init_parallel\n"
        "comm = init_parallel({})\n"
        "import caffepy.layers, caffepy.tools.train\n"
        "assert (comm.rank, comm.size) == (0, 1)\n"
        "print('mpi4py' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_two_ranks_without_mpi4py_is_one_clear_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py fails
    with pytest.raises(ParallelError, match=r"pip install 'caffepy\[mpi\]'"):
        launch.init_parallel({"PMI_RANK": "1", "PMI_SIZE": "2"})
    # The command says it in one line and exits non-zero.
    from caffepy import cli

    monkeypatch.setenv("PMI_RANK", "0")
    monkeypatch.setenv("PMI_SIZE", "2")
    solver = tmp_path / "s.prototxt"
    solver.write_text('net: "none.prototxt"\nbase_lr: 0.1\nlr_policy: "fixed"\n')
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--solver", str(solver)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "rank 0 of 2" in err[0] and "pip install 'caffepy[mpi]'" in err[0]


class _FakeTwo(Communicator):
    """Rank ``rank`` of 2; the other rank holds ``other`` (its buffer or object)."""

    size = 2

    def __init__(self, rank=0, other=None):
        self.rank = rank
        self.other = other

    def allreduce_sum(self, buf, what=""):
        buf += self.other

    def allgather(self, obj, what=""):
        pair = [obj, self.other(obj) if callable(self.other) else self.other]
        return pair if self.rank == 0 else pair[::-1]


class _Blob:
    def __init__(self, diff):
        self.diff = diff
        self.count = diff.size


def test_reducer_averages_gradients_and_agrees_on_actions():
    gen = np.random.default_rng(1701)
    mine = [gen.normal(size=s).astype(np.float32) for s in [(3, 4), (4,), (2, 1, 3)]]
    theirs = [gen.normal(size=a.shape).astype(np.float32) for a in mine]
    other = np.concatenate([t.ravel() for t in theirs] + [np.float32([1.0, 0.0])])
    blobs = [_Blob(m.copy()) for m in mine]
    reducer = GradientReducer(_FakeTwo(0, other), blobs, np.float32)
    agreed = reducer.reduce(set())
    for blob, a, b in zip(blobs, mine, theirs):
        np.testing.assert_array_equal(blob.diff, (a + b) * np.float32(0.5))
    assert agreed == {"stop"}  # the other rank asked to stop


def _solver_param(base_lr):
    p = caffe_pb2.SolverParameter()
    p.base_lr = base_lr
    p.lr_policy = "fixed"
    return p


def test_consistency_check_names_the_difference():
    net = caffe_pb2.NetParameter(name="n")
    same = _FakeTwo(0, None)
    same.other = lambda obj: obj  # the other rank sent the same thing
    launch.check_consistency(same, _solver_param(0.1), net)

    other_digests = None

    def other(obj):
        nonlocal other_digests
        if isinstance(obj, dict):  # the digests
            import hashlib

            text = launch._describe(_solver_param(0.5))
            other_digests = dict(obj, solver=hashlib.sha256(text.encode()).hexdigest())
            return other_digests
        return launch._describe(_solver_param(0.5))

    with pytest.raises(ParallelError, match=r"different solvers: rank 1") as info:
        launch.check_consistency(_FakeTwo(0, other), _solver_param(0.1), net)
    assert "'base_lr: 0.1' on rank 0 vs 'base_lr: 0.5' on rank 1" in str(info.value)
    assert info.value.root_only


def test_root_only_param():
    p = _solver_param(0.1)
    p.test_iter.append(5)
    p.test_interval = 10
    p.snapshot, p.snapshot_prefix = 100, "x/snap"
    kept = caffe_pb2.SolverParameter()
    kept.CopyFrom(p)
    launch.root_only_param(p, 0)
    assert p == kept
    launch.root_only_param(p, 1)
    assert (list(p.test_iter), p.test_interval, p.snapshot) == ([], 0, 0)
    assert not p.HasField("snapshot_prefix") and not p.snapshot_after_train


def test_pycaffe_surface_reads_the_shared_state():
    import caffepy
    from caffepy.pycaffe import api

    state.set_solver_count(4)
    state.set_solver_rank(3)
    assert (api.solver_count(), api.solver_rank()) == (4, 3)
    assert (caffepy.solver_count(), caffepy.solver_rank()) == (4, 3)
    caffepy.set_multiprocess(True)
    assert state.multiprocess()
    with pytest.raises(ParallelError):
        state.set_solver_count(0)


def _datum_db(tmp_path, n):
    from caffepy.data.datum import array_to_datum
    from tests.data.common import write_lmdb

    records = [
        (
            f"{i:08d}",
            array_to_datum(np.full((1, 1, 1), i, np.uint8), i).SerializeToString(),
        )
        for i in range(n)
    ]
    return write_lmdb(tmp_path / "db", records)


def _labels(source, batches):
    from caffepy.data.prefetch import Batch

    out = []
    for _ in range(batches):
        b = Batch()
        source.fill(b)
        out += b.label.data.astype(int).tolist()
    return out


@pytest.mark.parametrize("size", [1, 2, 3])
def test_records_are_dealt_round_robin(tmp_path, size):
    from caffepy.data.sources import DatumSource
    from caffepy.data.transformer import DataTransformer

    n, batch, batches = 5, 3, 4
    path = _datum_db(tmp_path, n)
    stream = [k % n for k in range(size * batch * batches)]  # the wrapping stream
    for rank in range(size):
        tf = DataTransformer(
            caffe_pb2.TransformationParameter(), 0, np.random.default_rng(0)
        )
        src = DatumSource(path, batch, tf, rank=rank, size=size)
        got = _labels(src, 2)
        # Resuming from the state continues the same deal.
        tf2 = DataTransformer(
            caffe_pb2.TransformationParameter(), 0, np.random.default_rng(0)
        )
        again = DatumSource(path, batch, tf2, rank=rank, size=size)
        again.set_state(src.state())
        got += _labels(again, 2)
        expected = [x for k, x in enumerate(stream) if k % size == rank]
        assert got == expected[: batch * batches]
        src.close()
        again.close()


def test_rank_zero_state_resumes_one_process_where_the_ranks_were(tmp_path):
    from caffepy.data.sources import DatumSource
    from caffepy.data.transformer import DataTransformer

    path = _datum_db(tmp_path, 7)
    tf = DataTransformer(
        caffe_pb2.TransformationParameter(), 0, np.random.default_rng(0)
    )
    rank0 = DatumSource(path, 2, tf, rank=0, size=2)
    _labels(rank0, 2)  # ranks 0 and 1 took records 0..7 (wrapping at 7)
    tf2 = DataTransformer(
        caffe_pb2.TransformationParameter(), 0, np.random.default_rng(0)
    )
    alone = DatumSource(path, 2, tf2)
    alone.set_state(rank0.state())
    assert _labels(alone, 1) == [1, 2]  # record 8 of the stream is record 1
    rank0.close()
    alone.close()


def test_single_process_communicator_is_the_identity():
    comm = SingleProcess()
    x = np.arange(4.0)
    comm.allreduce_sum(x)
    comm.bcast(x)
    comm.barrier()
    assert x.tolist() == [0, 1, 2, 3] and comm.allgather("a") == ["a"]


def test_pycaffe_sees_the_mpi_world_before_anything_sets_it(monkeypatch):
    import caffe

    monkeypatch.setenv("PMI_RANK", "1")
    monkeypatch.setenv("PMI_SIZE", "3")
    monkeypatch.setitem(state._state, "count", None)
    monkeypatch.setitem(state._state, "rank", None)
    assert (caffe.solver_count(), caffe.solver_rank()) == (3, 1)
    caffe.set_solver_count(1)  # set explicitly: the environment no longer counts
    assert caffe.solver_count() == 1
