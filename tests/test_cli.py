"""The caffepy command: --help everywhere, one-line errors, exit codes."""

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from caffepy.cli import cli


def _commands(group, prefix=()):
    for name, cmd in group.commands.items():
        yield prefix + (name,)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, prefix + (name,))


@pytest.mark.parametrize("path", list(_commands(cli)), ids=" ".join)
def test_every_command_has_help(path):
    res = CliRunner().invoke(cli, [*path, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage:" in res.output and len(res.output.splitlines()) > 3


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "caffepy.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_error_is_one_line_without_traceback(tmp_path):
    bad = tmp_path / "bad.prototxt"
    bad.write_text('layer {\n  name: "x"\n  tpye: "ReLU"\n}\n')
    res = run_cli("time", "--model", str(bad), "--iterations", "1")
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    err = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(err) == 1, res.stderr
    assert f"{bad}:3:3" in err[0] and "did you mean 'type'" in err[0]


def test_weights_with_snapshot_refused():
    res = run_cli(
        "train",
        "--solver",
        "s.prototxt",
        "--weights",
        "a.caffemodel",
        "--snapshot",
        "b.solverstate",
    )
    assert res.returncode == 2 and "not both" in res.stderr
    assert "Traceback" not in res.stderr


def test_caffemodel_as_snapshot_refused():
    res = run_cli("train", "--solver", "s.prototxt", "--snapshot", "x.caffemodel")
    assert res.returncode == 2 and ".solverstate" in res.stderr


def test_help_imports_nothing_heavy():
    code = (
        "import sys, caffepy.cli; "
        "print(sorted(m for m in ('numpy', 'numba', 'caffepy.net') "
        "if m in sys.modules))"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_caffe_single_dash_flags():
    res = CliRunner().invoke(
        cli,
        [
            "train",
            "-solver",
            "s.prototxt",
            "-weights",
            "a.caffemodel",
            "-snapshot=b.solverstate",
        ],
    )
    assert res.exit_code == 2 and "not both" in res.output


@pytest.mark.parametrize(
    "value, message",
    [
        ("gpu0", "expected a GPU id such as 0"),
        ("-1", "a GPU id is 0 or more"),
    ],
)
def test_gpu_id_refused(value, message):
    for cmd in (
        ["train", "--solver", "s.prototxt"],
        ["time", "--model", "m"],
        ["test", "--model", "m", "--weights", "w"],
    ):
        res = CliRunner().invoke(cli, [*cmd, f"--gpu={value}"])
        assert res.exit_code == 2 and message in res.output, res.output


@pytest.mark.parametrize("value", ["all", "0,1"])
def test_several_gpus_only_for_train(value):
    for name, cmd in (
        ("time", ["time", "--model", "m"]),
        ("test", ["test", "--model", "m", "--weights", "w"]),
    ):
        res = CliRunner().invoke(cli, [*cmd, f"--gpu={value}"])
        assert res.exit_code == 2, res.output
        assert f"'{name}' runs on one GPU" in res.output, res.output


def test_train_names_a_missing_gpu(monkeypatch, tmp_path):
    from caffepy.tools import device

    monkeypatch.setattr(device, "gpu_count", lambda: 1)
    (tmp_path / "s.prototxt").write_text('net: "n.prototxt" base_lr: 0.1\n')
    res = CliRunner().invoke(
        cli, ["train", "--solver", str(tmp_path / "s.prototxt"), "--gpu", "0,1"]
    )
    # the error is raised to caffepy's entry point, which prints it in one line
    assert "--gpu 0,1: GPU 1 does not exist on this machine" in str(res.exception)


def _captured_solver_param(monkeypatch, tmp_path, **options):
    from caffepy.tools import device, train

    (tmp_path / "s.prototxt").write_text(
        'net: "n.prototxt" base_lr: 0.1 lr_policy: "fixed" max_iter: 1\n'
    )
    seen = {}

    class Stop(Exception):
        pass

    def fake_solver(param, **kwargs):  # noqa: ARG001
        seen["param"] = param
        raise Stop

    monkeypatch.setattr("caffepy.solvers.get_solver", fake_solver)
    monkeypatch.setattr(device, "use_gpu", lambda i: seen.setdefault("gpu", i))
    with pytest.raises(Stop):
        train.run_training(str(tmp_path / "s.prototxt"), **options)
    return seen


def test_gpu_overrides_the_solver_mode(monkeypatch, tmp_path):
    from caffepy.proto import caffe_pb2

    seen = _captured_solver_param(monkeypatch, tmp_path, gpu=1)
    assert seen["gpu"] == 1
    assert seen["param"].solver_mode == caffe_pb2.SolverParameter.GPU
    assert seen["param"].device_id == 1
    seen = _captured_solver_param(monkeypatch, tmp_path)
    assert "gpu" not in seen and not seen["param"].HasField("solver_mode")


def test_device_query_prints_the_backend_report(monkeypatch):
    from caffepy.tools import device

    monkeypatch.setattr(device, "device_query", lambda i: f"Device id: {i}")
    res = CliRunner().invoke(cli, ["device_query", "-gpu", "0"])
    assert res.exit_code == 0 and res.output.strip() == "Device id: 0"


def test_importing_the_proto_package_spawns_no_process(monkeypatch):
    import importlib
    import importlib.util

    import caffepy.proto
    from caffepy.errors import CaffepyError

    def refuse(*args, **kwargs):
        raise AssertionError("importing caffepy.proto started a process")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    importlib.reload(caffepy.proto)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "caffepy.proto.caffe_pb2" else real(name, *a),
    )
    try:
        with pytest.raises(CaffepyError, match=r"pip install -e \.. \(or `make proto`"):
            importlib.reload(caffepy.proto)
    finally:
        monkeypatch.undo()
        importlib.reload(caffepy.proto)
    assert caffepy.proto.caffe_pb2.NetParameter


def test_cli_package_modules_stay_small():
    from pathlib import Path

    import caffepy.cli

    folder = Path(caffepy.cli.__file__).parent
    sizes = {p.name: len(p.read_text().splitlines()) for p in folder.glob("*.py")}
    assert {"__init__.py", "__main__.py", "train.py", "model.py"} <= set(sizes)
    assert max(sizes.values()) <= 600, sizes


def test_pycaffe_tools_are_commands():
    names = set(cli.commands)
    assert {"classify", "detect", "extract_features"} <= names
    res = CliRunner().invoke(cli, ["detect", "--help"])
    assert "--crop_mode [list|selective_search]" in res.output


def test_draw_net_display_lrm(tmp_path):
    model = tmp_path / "net.prototxt"
    model.write_text(
        'layer { name: "in" type: "Input" top: "x"\n'
        "  input_param { shape { dim: 1 dim: 1 dim: 4 dim: 4 } } }\n"
        'layer { name: "conv" type: "Convolution" bottom: "x" top: "c"\n'
        "  param { lr_mult: 0.5 } param { lr_mult: 0 }\n"
        "  convolution_param { num_output: 2 kernel_size: 3 } }\n"
        'layer { name: "frozen" type: "InnerProduct" bottom: "c" top: "f"\n'
        "  param { lr_mult: 0 } param { lr_mult: 0 }\n"
        "  inner_product_param { num_output: 2 } }\n"
        'layer { name: "ip" type: "InnerProduct" bottom: "f" top: "y"\n'
        "  inner_product_param { num_output: 2 } }\n"
    )
    labels = {}
    for flag in ([], ["--display_lrm"]):
        out = tmp_path / f"net{len(flag)}.dot"
        res = CliRunner().invoke(cli, ["draw_net", str(model), str(out), *flag])
        assert res.exit_code == 0, res.output
        for line in out.read_text().splitlines():
            if "label=" in line and "(" in line:
                name = line.split('label="')[1].split("\\n")[0]
                labels[name, bool(flag)] = line
    assert not any("lr mult" in v for (_, on), v in labels.items() if not on)
    assert "lr mult: 0.5, 0.0" in labels["conv", True]
    assert "lr mult" not in labels["frozen", True]  # both 0: no line, as pycaffe
    assert "lr mult: 1.0, 1.0" in labels["ip", True]  # unset: 1


def test_no_cuda_graph_flag(tmp_path):
    from caffepy.backend import mode

    assert mode.cuda_graph_allowed()
    try:
        res = CliRunner().invoke(
            cli,
            ["train", "--solver", str(tmp_path / "none.prototxt"), "--no-cuda-graph"],
        )
        assert res.exit_code != 0  # the solver file is missing; the flag came first
        assert not mode.cuda_graph_allowed()
    finally:
        mode.set_cuda_graph(True)
