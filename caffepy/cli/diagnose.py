"""Logs and diagnostics: ``parse_log``, ``plot_log`` and ``diagnose``."""

import click

from caffepy.cli import cli
from caffepy.cli.common import split_csv


@cli.command("parse_log")
@click.argument("log_file", type=click.Path(exists=True, dir_okay=False))
@click.argument("output_dir", type=click.Path(file_okay=False), default=".")
def parse_log_cmd(log_file, output_dir):
    """Write LOG.train and LOG.test CSV files (as Caffe's parse_log.py)."""
    from caffepy.tools.logs import parse_log, write_csv

    train, test = parse_log(log_file)
    if not train and not test:
        raise click.ClickException(f"{log_file}: no training or test lines found")
    for path in write_csv(train, test, log_file, output_dir):
        click.echo(f"Wrote {path}")


@cli.command("plot_log")
@click.argument(
    "logs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False)
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False),
    help="The image to write (.png, .svg or .pdf).",
)
@click.option(
    "--x",
    "x_axis",
    type=click.Choice(["iters", "seconds"]),
    default="iters",
    show_default=True,
    help="What the x axis counts.",
)
def plot_log_cmd(logs, out, x_axis):
    """Plot train/test loss, test accuracy and lr of one or more training logs."""
    from caffepy.tools.logs import plot_logs

    plot_logs(list(logs), out, x=x_axis)
    click.echo(f"Wrote {out}")


@cli.group()
def diagnose():
    """See why initialisation, BatchNorm and the overfit check matter."""


@diagnose.command("init")
@click.option("--layers", type=int, default=10, show_default=True)
@click.option("--width", type=int, default=500, show_default=True)
@click.option("--batch", type=int, default=1000, show_default=True)
@click.option(
    "--nonlinearity",
    "nonlinearities",
    multiple=True,
    type=click.Choice(["tanh", "relu", "sigmoid"]),
    help="tanh (default), relu or sigmoid; repeat to compare them.",
)
@click.option(
    "--filler",
    "fillers",
    multiple=True,
    help="xavier, msra, gaussian:STD or FillerParameter text such as "
    "\"type: 'gaussian' std: 0.01\"; repeat to compare side by side.",
)
@click.option(
    "--batchnorm", is_flag=True, help="BatchNorm + Scale before each nonlinearity."
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default="",
    help="Save a figure: per-layer histograms and mean/std curves.",
)
def diagnose_init(layers, width, batch, nonlinearities, fillers, batchnorm, out):
    """Activation statistics of a deep fully connected net, layer by layer."""
    from caffepy.tools.diagnose.init import run_init

    run_init(
        layers, width, batch, nonlinearities, fillers, batchnorm, out, echo=click.echo
    )


@diagnose.command("activations")
@click.option(
    "--model",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="The net prototxt (Data layers need their database).",
)
@click.option("--weights", default="", help="Weights to load (.caffemodel).")
@click.option(
    "--phase", type=click.Choice(["TRAIN", "TEST"]), default="TRAIN", show_default=True
)
@click.option(
    "--lr",
    type=float,
    default=0.01,
    show_default=True,
    help="Learning rate for the update/weight ratios (base_lr).",
)
@click.option(
    "--seed",
    type=int,
    default=1701,
    show_default=True,
    help="Random seed for the fillers and the filled inputs.",
)
@click.option("--level", type=int, default=0)
@click.option("--stage", default="")
def diagnose_activations(model, weights, phase, lr, seed, level, stage):
    """One forward and backward of a net: activation and gradient statistics per
    blob and parameter, and which layers vanish, explode, saturate or die.

    Input layers get unit-gaussian data, and random valid classes where a loss or
    accuracy layer reads them as labels."""
    from caffepy.tools.diagnose.activations import diagnose_net

    click.echo(diagnose_net(model, weights, phase, lr, seed, level, split_csv(stage)))


@diagnose.command("overfit")
@click.option(
    "--solver",
    "solver_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="The solver prototxt.",
)
@click.option(
    "--samples",
    type=int,
    default=32,
    show_default=True,
    help="How many of the train data's first records to overfit.",
)
@click.option(
    "--max-iter",
    type=int,
    default=0,
    help="Give up after this many iterations (default: the solver's "
    "max_iter, at most 1000).",
)
@click.option("--lr", type=float, default=None, help="Override the solver's base_lr.")
@click.option(
    "--every",
    type=int,
    default=10,
    show_default=True,
    help="Print loss and accuracy every this many iterations.",
)
@click.option(
    "--seed",
    type=int,
    default=1701,
    show_default=True,
    help="Random seed, unless the solver sets random_seed.",
)
@click.option("--threads", type=click.IntRange(min=0), default=0)
def diagnose_overfit(solver_path, samples, max_iter, lr, every, seed, threads):
    """Overfit a tiny subset: train on the first --samples records with weight
    decay and dropout off until training accuracy is 100%.

    Exits non-zero when it never gets there: a net that cannot memorise 32
    examples usually has a bug (labels, learning rate, a broken layer)."""
    from caffepy.tools.diagnose.overfit import run_overfit

    if samples < 1:
        raise click.BadParameter(
            f"must be at least 1, got {samples}", param_hint="--samples"
        )
    ok, message = run_overfit(
        solver_path, samples, max_iter, lr, every, seed, threads, echo=click.echo
    )
    if not ok:
        raise click.ClickException(message)
    click.echo(message)
