"""The ``caffepy`` command: Caffe's tools with Caffe's flag names, friendlier.

Each command parses its arguments and calls one function of :mod:`caffepy.tools`;
heavy imports happen inside the commands so ``--help`` is instant. Caffe's
single-dash spellings (``-solver s.prototxt``, ``-gpu 0``, ``-iterations=10``)
are accepted beside ``--solver``. Every caffepy error prints as one line and a
non-zero exit; ``--debug`` (or ``CAFFEPY_DEBUG=1``) shows the traceback instead.
"""

import os
import sys

import click

from caffepy.tools.cliargs import CaffeGroup


def _debug():
    return os.environ.get("CAFFEPY_DEBUG", "") not in ("", "0")


@click.group(cls=CaffeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.version_option(package_name="caffepy")
def cli(debug):
    """caffepy: train and fine-tune Caffe models from prototxt files, in Python."""
    if debug:
        os.environ["CAFFEPY_DEBUG"] = "1"


def main(argv=None):
    """Entry point: run the click group, turning caffepy errors into one line."""
    from caffepy.tools.glog import setup_logging

    setup_logging()
    try:
        cli.main(args=argv, prog_name="caffepy", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 - every failure ends in one line
        if _debug():
            raise
        from caffepy.errors import one_line

        click.echo(f"caffepy: error: {one_line(err)}", err=True)
        sys.exit(getattr(err, "exit_status", 1))


# The command modules register themselves on ``cli``.
from caffepy.cli import data, diagnose, model, train, warmup  # noqa: E402, F401
