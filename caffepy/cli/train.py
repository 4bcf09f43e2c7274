"""``caffepy train``, ``finetune``, ``test``, ``time`` and ``device_query``."""

import click

from caffepy.cli import cli
from caffepy.cli.common import gpu_option, split_csv
from caffepy.tools.cliargs import GpuId

_EFFECTS = click.Choice(["stop", "snapshot", "none"])


class GpuIds(click.ParamType):
    """Caffe's ``-gpu`` for training: one id, ids separated by commas, or
    ``all`` (one rank per GPU, gradients reduced with NCCL)."""

    name = "IDS"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, list)):
            return value
        from caffepy.tools.device import parse_gpus

        try:
            return parse_gpus(value)
        except ValueError as err:
            self.fail(str(err), param, ctx)


def _gpus_option(f):
    return click.option(
        "--gpu",
        type=GpuIds(),
        default=None,
        help="Train on this GPU, or on several ('0,1' or 'all': one process per "
        "GPU, started through mpiexec, gradients summed with NCCL); overrides the "
        "solver's solver_mode and device_id. Default: the CPU, or what the "
        "solver file says.",
    )(f)


def _train_options(f):
    f = click.option(
        "--no-divergence-check",
        is_flag=True,
        help="Keep training when the loss or the weights become NaN or "
        "infinite (Caffe's behaviour); by default training stops "
        "there and keeps the last finite snapshot.",
    )(f)
    f = _gpus_option(f)
    f = click.option(
        "--threads",
        type=click.IntRange(min=0),
        default=0,
        help="Threads for BLAS and kernels (default: all cores).",
    )(f)
    f = click.option(
        "--stage", default="", help="Comma-separated net stages for the train net."
    )(f)
    f = click.option("--level", type=int, default=0, help="Net level.")(f)
    f = click.option(
        "--sighup_effect",
        type=_EFFECTS,
        default="snapshot",
        show_default=True,
        help="What SIGHUP does.",
    )(f)
    f = click.option(
        "--sigint_effect",
        type=_EFFECTS,
        default="stop",
        show_default=True,
        help="What Ctrl-C (SIGINT) does.",
    )(f)
    f = click.option(
        "--sigterm_effect",
        type=_EFFECTS,
        default="snapshot",
        show_default=True,
        help="What SIGTERM (kill, docker stop, SLURM) does; it always ends the "
        "run: 'snapshot' snapshots first, 'stop' keeps only snapshot_after_train.",
    )(f)
    f = click.option(
        "--no-progress",
        is_flag=True,
        help="No progress bar (it only shows on a terminal anyway).",
    )(f)
    f = click.option(
        "--no-cuda-graph",
        is_flag=True,
        help="GPU mode: run every iteration's kernels one by one instead of "
        "replaying them from a captured CUDA graph (as CAFFEPY_CUDA_GRAPH=0).",
    )(f)
    return f


def _training(
    sigint_effect,
    sighup_effect,
    sigterm_effect,
    level,
    stage,
    threads,
    gpu,
    no_progress,
    no_divergence_check,
    no_cuda_graph,
):
    """The keyword arguments of tools.train.run_training from the shared options."""
    if no_cuda_graph:
        from caffepy.backend import mode

        mode.set_cuda_graph(False)
    return dict(
        sigint_effect=sigint_effect,
        sighup_effect=sighup_effect,
        sigterm_effect=sigterm_effect,
        level=level,
        stages=split_csv(stage),
        threads=threads,
        gpu=gpu,
        progress=not no_progress,
        divergence_check=not no_divergence_check,
    )


@cli.command()
@click.option(
    "--solver",
    "solver_path",
    required=True,
    type=click.Path(),
    help="The solver prototxt.",
)
@click.option(
    "--weights",
    default="",
    help="Start from these weights (comma-separated .caffemodel files).",
)
@click.option("--snapshot", default="", help="Resume training from this .solverstate.")
@_train_options
def train(solver_path, weights, snapshot, **options):
    """Train a model from a solver prototxt (Caffe's `caffe train`)."""
    from caffepy.tools.train import train as run

    run(solver_path, weights, snapshot, **_training(**options))


@cli.command()
@click.option(
    "--solver",
    "solver_path",
    required=True,
    type=click.Path(),
    help="The solver prototxt of the fine-tuning run.",
)
@click.option(
    "--weights",
    required=True,
    help="The pretrained .caffemodel to start from (copied by layer name).",
)
@click.option(
    "--freeze",
    multiple=True,
    help="Freeze layers whose name matches this glob (lr_mult 0); repeatable.",
)
@click.option(
    "--lr-mult",
    "lr_mults",
    multiple=True,
    help="PATTERN=MULT: scale the lr_mult of matching layers; repeatable.",
)
@_train_options
def finetune(solver_path, weights, freeze, lr_mults, **options):
    """Fine-tune pretrained weights: copy by layer name, freeze, per-layer rates."""
    from caffepy.tools.train import finetune as run

    run(solver_path, weights, freeze, lr_mults, **_training(**options))


@cli.command("test")
@click.option("--model", required=True, type=click.Path(), help="The net prototxt.")
@click.option("--weights", required=True, help="The .caffemodel to test.")
@click.option(
    "--iterations",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Number of test batches.",
)
@click.option(
    "--phase", type=click.Choice(["TRAIN", "TEST"]), default="TEST", show_default=True
)
@click.option("--level", type=int, default=0)
@click.option("--stage", default="")
@click.option("--threads", type=click.IntRange(min=0), default=0)
@gpu_option
def test_cmd(model, weights, stage, **options):
    """Score a model: forward --iterations batches and average each output."""
    from caffepy.tools.score import score_model

    click.echo(score_model(model, weights, stages=split_csv(stage), **options))


@cli.command("time")
@click.option("--model", required=True, type=click.Path(), help="The net prototxt.")
@click.option("--iterations", type=click.IntRange(min=1), default=50, show_default=True)
@click.option(
    "--phase", type=click.Choice(["TRAIN", "TEST"]), default="TRAIN", show_default=True
)
@click.option("--weights", default="", help="Optional weights to load.")
@click.option("--level", type=int, default=0)
@click.option("--stage", default="")
@click.option("--threads", type=click.IntRange(min=0), default=0)
@gpu_option
def time_cmd(model, stage, **options):
    """Time each layer's forward and backward (Caffe's `caffe time`)."""
    from caffepy.tools.score import time_model

    click.echo(time_model(model, stages=split_csv(stage), **options))


@cli.command("device_query")
@click.option(
    "--gpu", type=GpuId(), default=0, show_default=True, help="The GPU to describe."
)
def device_query_cmd(gpu):
    """Print a GPU's properties (Caffe's `caffe device_query`)."""
    from caffepy.tools.device import device_query

    click.echo(device_query(gpu))
