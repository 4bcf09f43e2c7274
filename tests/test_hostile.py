"""Hostile inputs and situations, in process: exceptions of any type, user code
that fails, bad numbers, files that are not regular files, snapshots that do not
belong together, shared snapshot prefixes and nets of thousands of layers."""

import json
import logging
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import caffepy
from caffepy.errors import (
    InputFileError,
    LayerError,
    SnapshotPrefixInUse,
    SolverError,
    one_line,
)
from caffepy.io.atomic import AtomicGroup, atomic_write_bytes, check_output_path
from caffepy.io.prototxt import field_location, layer_location, read_net
from caffepy.solvers import state as state_io
from tests.solvers.common import LS_NET, solver_param

INPUT = 'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }'


# -- one line for any exception ------------------------------------------------------
def test_main_turns_any_exception_into_one_line(monkeypatch, capsys, tmp_path):
    from caffepy import cli
    from caffepy.tools import score

    def boom(*args, **kwargs):
        raise KeyError("surprise")

    monkeypatch.setattr(score, "score_model", boom)
    monkeypatch.delenv("CAFFEPY_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["test", "--model", "m.prototxt", "--weights", "w"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("caffepy: error: unexpected KeyError")
    assert "test_hostile.py:" in err[0] and "--debug" in err[0]


def test_one_line_keeps_caffepy_errors_and_flattens_newlines():
    assert one_line(SolverError("a\nb")) == "a b"
    assert one_line(ValueError("x")).startswith("unexpected ValueError")


# -- Python layers -------------------------------------------------------------------
def _python_net(tmp_path, monkeypatch, source):
    (tmp_path / "userlayer.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "userlayer", raising=False)
    (tmp_path / "net.prototxt").write_text(
        INPUT + '\nlayer { name: "mine" type: "Python" bottom: "x" top: "y" '
        'python_param { module: "userlayer" layer: "Mine" } }\n'
    )
    return str(tmp_path / "net.prototxt")


LAYER = """import caffepy


class Mine(caffepy.Layer):
    def setup(self, bottom, top):
        {setup}

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        {forward}

    def backward(self, top, propagate_down, bottom):
        pass
"""


def test_python_layer_setup_error_names_layer_and_user_line(tmp_path, monkeypatch):
    path = _python_net(
        tmp_path, monkeypatch, LAYER.format(setup="{}['k']", forward="pass")
    )
    with pytest.raises(LayerError) as info:
        caffepy.Net(path, caffepy.TEST)
    msg = str(info.value)
    assert "Python layer 'mine'" in msg and "net.prototxt:2" in msg
    assert "KeyError in Mine.setup" in msg
    assert f"{tmp_path / 'userlayer.py'}:6" in msg


def test_python_layer_forward_error_names_user_line(tmp_path, monkeypatch):
    path = _python_net(
        tmp_path, monkeypatch, LAYER.format(setup="pass", forward="1 / 0")
    )
    net = caffepy.Net(path, caffepy.TEST)
    with pytest.raises(
        LayerError, match=r"ZeroDivisionError in Mine.forward at .*userlayer.py:12"
    ):
        net.forward()


def test_python_layer_syntax_error_names_file_and_line(tmp_path, monkeypatch):
    path = _python_net(tmp_path, monkeypatch, "import caffepy\nclass Mine(:\n")
    with pytest.raises(LayerError, match=r"'mine'.*syntax error.*userlayer.py:2"):
        caffepy.Net(path, caffepy.TEST)


# -- numbers ---------------------------------------------------------------------------
BASE = 'base_lr: 0.1 lr_policy: "fixed" max_iter: 1 '


@pytest.mark.parametrize(
    "fields, expect",
    [
        ("base_lr: nan", "base_lr must be >= 0; got nan"),
        ("base_lr: -0.1", "base_lr must be >= 0; got -0.1"),
        ("weight_decay: inf", "weight_decay must be >= 0; got inf"),
        ("weight_decay: -1", "weight_decay must be >= 0"),
        ("momentum: nan", "momentum must lie in [0, 1]; got nan"),
        ("momentum: 1.5", "momentum must lie in [0, 1]; got 1.5"),
        ("clip_gradients: inf", "clip_gradients must be a finite norm"),
        ("clip_gradients: nan", "clip_gradients must be a finite norm"),
        ('lr_policy: "inv" gamma: inf power: 1', "gamma must be finite"),
        ('lr_policy: "inv" gamma: 0.1 power: nan', "power must be finite"),
        ('type: "Adam" momentum2: 1', "momentum2 must lie in [0, 1)"),
        ('type: "Adam" delta: 0', "delta must be > 0"),
        ('type: "AdaDelta" delta: -1', "delta must be > 0"),
        ('type: "RMSProp" rms_decay: nan', "rms_decay must lie in [0, 1)"),
        ('type: "AdaDelta" momentum: 1', "momentum must lie in [0, 1)"),
    ],
)
def test_solver_numbers_are_validated_with_the_line(tmp_path, fields, expect):
    pairs = dict(re.findall(r'(\w+):\s*("[^"]*"|\S+)', BASE))
    pairs.update(re.findall(r'(\w+):\s*("[^"]*"|\S+)', fields))
    text = LS_NET + "".join(f"{k}: {v}\n" for k, v in pairs.items())
    path = tmp_path / "solver.prototxt"
    path.write_text(text)
    with pytest.raises(SolverError) as info:
        caffepy.get_solver(str(path))
    msg = str(info.value)
    assert expect in msg
    field = expect.split()[0]
    line = text.splitlines().index(
        next(x for x in text.splitlines() if x.lstrip().startswith(field + ":"))
    )
    assert f"{path}:{line + 1}: " in msg


def test_test_iter_zero_is_refused():
    param = solver_param(BASE + "test_iter: 0 test_interval: 1")
    with pytest.raises(SolverError, match="test_iter must be >= 1"):
        caffepy.get_solver(param)


def test_power_layer_with_infinite_power(tmp_path):
    net = tmp_path / "net.prototxt"
    net.write_text(
        INPUT + '\nlayer { name: "p" type: "Power" bottom: "x" top: "y" '
        "power_param { power: inf } }\n"
    )
    with pytest.raises(
        LayerError, match=r"Power layer 'p'.*power must be finite; got inf"
    ):
        caffepy.Net(str(net), caffepy.TEST)


def test_lr_mult_must_be_finite():
    import click

    from caffepy.tools.train import parse_lr_mults

    assert parse_lr_mults(["fc*=10"]) == [("fc*", 10.0)]
    for bad in ("fc=nan", "fc=inf", "fc=-1"):
        with pytest.raises(click.BadParameter, match="finite number >= 0"):
            parse_lr_mults([bad])


# -- files that are not regular files ---------------------------------------------------
def test_writers_never_replace_what_is_not_a_regular_file(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "dir").mkdir()
    (tmp_path / "real").write_bytes(b"keep")
    os.symlink(tmp_path / "real", tmp_path / "link")
    for target, what in [
        (fifo, "FIFO"),
        (tmp_path / "dir", "directory"),
        ("/dev/null", "character device"),
        (tmp_path / "link", "symbolic link"),
    ]:
        with pytest.raises(InputFileError, match=what):
            atomic_write_bytes(target, b"x")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert os.path.islink(tmp_path / "link")
    assert (tmp_path / "real").read_bytes() == b"keep"
    assert not list(tmp_path.glob(".*.tmp"))
    check_output_path(tmp_path / "absent")  # fine


@pytest.mark.parametrize(
    "umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)]
)
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "f", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "f").st_mode) == mode


def test_a_failed_group_renames_nothing_and_leaves_no_temp(tmp_path):
    (tmp_path / "a").write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with AtomicGroup() as group:
            group.write_bytes(tmp_path / "a", b"new")
            raise RuntimeError("killed")
    assert (tmp_path / "a").read_bytes() == b"old"
    assert not list(tmp_path.glob(".*.tmp"))


def test_inputs_that_are_not_regular_files_are_refused_without_blocking(tmp_path):
    from caffepy.io.prototxt import read_solver, read_weights

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    start = time.monotonic()
    for reader in (read_net, read_solver, read_weights, state_io.read_solverstate):
        for path in (fifo, "/dev/zero"):
            with pytest.raises(InputFileError, match="got a (FIFO|character device)"):
                reader(str(path))
    assert time.monotonic() - start < 5


def test_prefix_lock_refuses_a_second_live_process(tmp_path):
    from caffepy.solvers.snapshot import prefix_lock

    prefix = str(tmp_path / "snap" / "run")
    code = (
        "import sys, time\n"
        "from caffepy.solvers.snapshot import prefix_lock\n"
        f"prefix_lock({prefix!r}); print('locked', flush=True); time.sleep(30)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SnapshotPrefixInUse, match=f"process {holder.pid}"):
            prefix_lock(prefix)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    prefix_lock(prefix)  # released by the OS when the holder died


# -- resume validates what it loads ---------------------------------------------------
@pytest.fixture
def snapshot(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    param = solver_param(BASE + 'snapshot_prefix: "snap/ls" type: "Nesterov"')
    solver = caffepy.get_solver(param)
    model, state = solver.snapshot()
    return param, model, state


def _rewrite_state(state, **fields):
    proto = state_io.read_solverstate(state)
    for key, value in fields.items():
        setattr(proto, key, value)
    with open(state, "wb") as f:  # (the sidecar's CRC is dropped below)
        f.write(proto.SerializeToString())
    sidecar = Path(state + ".caffepy.json")
    side = json.loads(sidecar.read_text())
    side.pop("crc32")
    sidecar.write_text(json.dumps(side))


def test_resume_refuses_a_negative_iteration(snapshot):
    param, _, state = snapshot
    _rewrite_state(state, iter=-3)
    with pytest.raises(SolverError, match="iter is -3"):
        caffepy.get_solver(param).restore(state)


def test_resume_refuses_a_state_without_weights(snapshot):
    param, _, state = snapshot
    _rewrite_state(state, learned_net="")
    with pytest.raises(SolverError, match="names no learned_net"):
        caffepy.get_solver(param).restore(state)


def test_resume_refuses_weights_of_another_iteration(snapshot):
    param, _, state = snapshot
    _rewrite_state(state, iter=7)
    with pytest.raises(SolverError, match="at iteration 7 but its learned_net"):
        caffepy.get_solver(param).restore(state)


def test_resume_refuses_another_solver_type(snapshot):
    param, _, state = snapshot
    param.type = "SGD"  # same history layout as Nesterov
    with pytest.raises(SolverError, match="written by a Nesterov solver"):
        caffepy.get_solver(param).restore(state)


def test_resume_refuses_nan_weights_and_history(snapshot):
    param, model, state = snapshot
    solver = caffepy.get_solver(param)
    solver.history[0][...] = np.nan
    solver.snapshot()
    with pytest.raises(SolverError, match="history of parameter .* NaN"):
        caffepy.get_solver(param).restore(state)
    solver = caffepy.get_solver(param)
    solver.divergence_check = False
    solver.net.params["ip"][0].data[0, 0] = np.inf
    solver.snapshot()
    with pytest.raises(SolverError, match="layer 'ip', parameter 0.*diverged"):
        caffepy.get_solver(param).restore(state)


def test_resume_refuses_a_mixed_snapshot(snapshot):
    param, model, state = snapshot
    other = caffepy.get_solver(param)
    other.net.params["ip"][1].data[...] = 5
    other.net.save(model)  # the weights of another write, the old state
    with pytest.raises(SolverError, match="mix of two writes"):
        caffepy.get_solver(param).restore(state)


def test_resume_without_sidecar_warns(snapshot):
    param, _, state = snapshot
    os.unlink(state + ".caffepy.json")
    seen = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = logging.getLogger("caffepy")
    logger.addHandler(handler)
    try:
        caffepy.get_solver(param).restore(state)
    finally:
        logger.removeHandler(handler)
    assert any("will not be bit-identical" in m for m in seen), seen


# -- scale -------------------------------------------------------------------------------
def test_layer_and_field_locations_in_one_pass():
    text = (
        'name: "a"  # { a brace in a comment\nbase_lr: 0.1\n'
        'layer { name: "a" top: "x{" param { name: "b" } }\n'
        "# layer { name: \"c\" }\nlayer {\n  name: 'b'\n}\n"
    )
    assert layer_location(text, "a") == 3
    assert layer_location(text, "b") == 6  # the layer's, not the param's
    assert layer_location(text, "c") is None
    assert field_location(text, "base_lr") == 2


def test_a_net_of_20000_layers_builds(tmp_path):
    # (no time bound: the build is linear, and a bound would only measure the
    # machine's load; a quadratic step would show as this test never ending)
    lines = [INPUT.replace('top: "x"', 'top: "x0"')]
    lines += [
        f'layer {{ name: "r{i}" type: "{("ReLU", "Power")[i % 2]}" '
        f'bottom: "x{i}" top: "x{i + 1}" }}'
        for i in range(20000)
    ]
    path = tmp_path / "big.prototxt"
    path.write_text("\n".join(lines) + "\n")
    net = caffepy.Net(str(path), caffepy.TEST)
    assert len(net.layers) == 20001
    assert net.layer_names[-1] == "r19999"
    net.blobs["x0"].data[...] = -1.0
    assert np.all(net.forward()["x20000"] == 0.0)  # ReLU, then Power (identity)


def test_the_memory_error_names_the_largest_layer(tmp_path, monkeypatch):
    from caffepy.errors import ResourceError
    from caffepy.solvers import memory

    monkeypatch.setattr(memory, "available_memory", lambda: 100)
    param = solver_param(BASE)
    # the Input's tops (20 floats) outweigh the InnerProduct's weights and top (16)
    with pytest.raises(
        ResourceError, match=r"largest layer is Input layer 'input' \(80 B"
    ):
        caffepy.get_solver(param)


# -- memory: counted before allocating -------------------------------------------
HUGE_IP = (
    'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 1 } '
    "} }\n"
    'layer { name: "fc_huge" type: "InnerProduct" bottom: "x" top: "y" '
    'inner_product_param { num_output: 2000000000 weight_filler { type: "gaussian" '
    "std: 0.01 } } }\n"
)


def test_a_huge_layer_is_refused_before_its_weights_are_allocated(
    tmp_path, monkeypatch
):
    from caffepy import fillers
    from caffepy.errors import ResourceError

    def filler_values(*args, **kwargs):  # (never allocates 8 GB when it fails)
        raise AssertionError("the filler ran: the check came too late")

    monkeypatch.setattr(fillers, "filler_values", filler_values)
    monkeypatch.setenv("CAFFEPY_MEMORY_LIMIT", "2G")
    path = tmp_path / "net.prototxt"
    path.write_text(HUGE_IP)
    with pytest.raises(ResourceError) as err:
        caffepy.Net(str(path), caffepy.TEST)
    line = one_line(err.value)
    assert line.startswith(f"InnerProduct layer 'fc_huge' ({path}:2): "), line
    assert "(2000000000, 1) (float32) needs 8000000000 bytes" in line
    assert "2.0 GiB of memory available (CAFFEPY_MEMORY_LIMIT)" in line


def test_the_build_budget_counts_each_buffer_once(tmp_path):
    from caffepy.syncedmem import allocation_budget

    # x is read twice: a Split shares x's data with its two tops
    path = tmp_path / "net.prototxt"
    path.write_text(
        'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 10 '
        "dim: 100 } } }\n"
        'layer { name: "a" type: "ReLU" bottom: "x" top: "a" }\n'
        'layer { name: "b" type: "InnerProduct" bottom: "x" top: "b" '
        "inner_product_param { num_output: 5 } }\n"
    )
    with allocation_budget() as budget:  # the net's build uses this one
        caffepy.Net(str(path), caffepy.TEST)
    weights, bias = 5 * 100 * 4, 5 * 4
    assert budget.by_layer["Input layer 'in'"] == 4000
    assert budget.by_layer["ReLU layer 'a'"] == 4000
    assert budget.by_layer["InnerProduct layer 'b'"] == weights + bias + 10 * 5 * 4
    assert budget.by_layer.get("Split layer 'x_in_0_split'", 0) == 0
    assert budget.used == 4000 + 4000 + weights + bias + 200


def test_training_reshapes_are_not_counted(tmp_path):
    from caffepy.syncedmem import current_budget

    path = tmp_path / "net.prototxt"
    path.write_text(INPUT + "\n")
    net = caffepy.Net(str(path), caffepy.TEST)
    assert current_budget() is None  # the budget ends with the build
    net.blobs["x"].reshape(1000, 1000)  # after the build: nothing to refuse
    assert net.blobs["x"].count == 10**6


@pytest.mark.parametrize("value", ["lots", "-1G", "nan", "inf"])
def test_a_memory_limit_that_is_no_size_is_refused(tmp_path, monkeypatch, value):
    from caffepy.errors import ResourceError

    monkeypatch.setenv("CAFFEPY_MEMORY_LIMIT", value)
    path = tmp_path / "net.prototxt"
    path.write_text(INPUT + "\n")
    with pytest.raises(ResourceError, match="CAFFEPY_MEMORY_LIMIT=.* is not a size"):
        caffepy.Net(str(path), caffepy.TEST)


@pytest.mark.parametrize(
    ("value", "nbytes"), [("1000", 1000), ("512M", 512 << 20), ("2GiB", 2 << 30)]
)
def test_memory_limit_sizes(monkeypatch, value, nbytes):
    from caffepy.syncedmem import memory_limit

    monkeypatch.setenv("CAFFEPY_MEMORY_LIMIT", value)
    assert memory_limit() == nbytes


# -- databases truncated under a reader --------------------------------------------
def test_a_database_truncated_between_reads_is_an_error(tmp_path):
    from caffepy.data.db import LMDBReader
    from caffepy.errors import DataError
    from tests.data.common import raw_db

    db, *_ = raw_db(tmp_path / "train_lmdb", n=50, shape=(3, 32, 32))
    with LMDBReader(db) as reader:
        reader.read()
        os.truncate(os.path.join(db, "data.mdb"), 8192)
        with pytest.raises(DataError) as err:
            reader.read()  # checked before the cursor touches a page
    assert f"database '{db}' was truncated while being read" in str(err.value)
    assert "shrank from" in str(err.value) and "to 8192 bytes" in str(err.value)


def _sigbus_action():
    import ctypes
    import signal

    libc = ctypes.CDLL(None)
    buf = ctypes.create_string_buffer(1024)
    assert libc.sigaction(signal.SIGBUS, None, buf) == 0
    # the handler comes first in glibc's struct sigaction (the rest of its signal
    # mask is not always written)
    return buf.raw[: ctypes.sizeof(ctypes.c_void_p)]


def test_the_bus_error_handler_lives_while_a_database_is_open(tmp_path):
    from caffepy.data import busguard
    from caffepy.data.db import LMDBReader
    from tests.data.common import raw_db

    db, *_ = raw_db(tmp_path / "db", n=3)
    before = _sigbus_action()
    first, second = LMDBReader(db), LMDBReader(db)
    assert busguard.installed()
    assert _sigbus_action() != before
    assert f"database {db} was truncated".encode() in busguard._message[0]
    first.close()
    assert busguard.installed()  # the second reader still reads
    second.close()
    assert not busguard.installed()
    assert _sigbus_action() == before  # faulthandler's (or the default) again


def test_a_list_file_that_is_not_utf8_names_file_and_line(tmp_path):
    from caffepy.data.sources import read_list_file
    from caffepy.errors import DataError

    path = tmp_path / "list.txt"
    path.write_bytes(b"a.png 0\nb.png 1\nna\xefve.png 2\n")
    with pytest.raises(DataError, match=r"list.txt:3: the list file is not UTF-8"):
        read_list_file(str(path))


@pytest.mark.parametrize(
    ("spec", "expect"),
    [
        ("gaussian:x", "the std after 'gaussian:' is not a positive number"),
        ("gaussian:0", "the std after 'gaussian:' is not a positive number"),
        ("msr", "unknown filler name (did you mean 'msra'?)"),
        ("type: 'gausian'", "unknown filler type 'gausian' (did you mean"),
        ("type 'gaussian'", "not FillerParameter text"),
    ],
)
def test_a_malformed_filler_spec_names_spec_and_forms(spec, expect):
    from caffepy.errors import CaffepyError
    from caffepy.tools.diagnose.init import filler_text

    with pytest.raises(CaffepyError) as err:
        filler_text(spec)
    assert str(err.value).startswith(f"--filler {spec!r}: {expect}")
    assert "expected xavier, msra" in str(err.value)


def test_a_figure_with_an_unknown_extension_is_refused_before_plotting(tmp_path):
    from caffepy.errors import CaffepyError
    from caffepy.tools.logs import plot_logs

    log = tmp_path / "missing.log"  # never read: the extension is checked first
    with pytest.raises(CaffepyError, match=r"unknown image extension '\.pnj'.*\.png"):
        plot_logs([str(log)], str(tmp_path / "curves.pnj"))
