"""``caffepy warmup``: fill Numba's cache with the common kernels."""

import click

from caffepy.cli import cli


@cli.command("warmup")
@click.option(
    "--all", "everything", is_flag=True,
    help="Also LRN, BatchNorm/Scale, Dropout and Eltwise (ResNet, GoogLeNet...).",
)  # fmt: skip
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Processes compiling at once (default: one per core).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=0),
    default=0,
    help="Kernel threads of each process (default: all cores, as training).",
)
def warmup_cmd(everything, jobs, threads):
    """Compile the kernels that training LeNet or CIFAR10 and deploying a net
    use, so that the first `caffepy train` starts in about a second instead of
    compiling first. Run it once after installing (`make demo` does)."""
    from caffepy.tools.warmup import COMMON, EXTRA, warmup

    units = COMMON + EXTRA if everything else COMMON
    result = warmup(units, jobs=jobs, threads=threads or None, log=click.echo)
    where = f" in {result['cache']}" if result["cache"] else ""
    click.echo(
        f"Compiled {len(result['units'])} kernel groups in "
        f"{result['seconds']:.1f} s{where}"
    )
