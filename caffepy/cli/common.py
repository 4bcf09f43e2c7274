"""Options and helpers shared by the ``caffepy`` command modules (click only)."""

import click

from caffepy.tools.cliargs import GpuId


def gpu_option(f):
    """Add Caffe's ``--gpu ID`` option to a command."""
    return click.option(
        "--gpu",
        type=GpuId(),
        default=None,
        help="Run on this GPU (overrides the solver's solver_mode and device_id); "
        "default: the CPU, or what the solver file says.",
    )(f)


def split_csv(value):
    """``"a,b,,c"`` -> ``["a", "b", "c"]``; ``None`` or ``""`` -> ``[]``."""
    return [v for v in (value or "").split(",") if v]


def device_option(f):
    """Add ``--gpu ID`` to a command that runs a net without a solver."""
    return click.option(
        "--gpu",
        type=GpuId(),
        default=None,
        help="Run on this GPU (default: the CPU).",
    )(f)
