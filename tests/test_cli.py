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
    return subprocess.run([sys.executable, "-m", "caffepy.cli", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


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
    res = run_cli("train", "--solver", "s.prototxt", "--weights", "a.caffemodel",
                  "--snapshot", "b.solverstate")
    assert res.returncode == 2 and "not both" in res.stderr
    assert "Traceback" not in res.stderr


def test_caffemodel_as_snapshot_refused():
    res = run_cli("train", "--solver", "s.prototxt", "--snapshot", "x.caffemodel")
    assert res.returncode == 2 and ".solverstate" in res.stderr
