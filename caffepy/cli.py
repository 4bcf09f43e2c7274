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

from caffepy.tools.cliargs import CaffeGroup, GpuId


def _gpu_option(f):
    return click.option(
        "--gpu",
        type=GpuId(),
        default=None,
        help="Run on this GPU (overrides the solver's solver_mode and device_id); "
        "default: the CPU, or what the solver file says.",
    )(f)


def _debug():
    return os.environ.get("CAFFEPY_DEBUG", "") not in ("", "0")


def _split_csv(value):
    return [v for v in (value or "").split(",") if v]


@click.group(cls=CaffeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.version_option(package_name="caffepy")
def cli(debug):
    """caffepy: train and fine-tune Caffe models from prototxt files, in Python."""
    if debug:
        os.environ["CAFFEPY_DEBUG"] = "1"


# -- training ------------------------------------------------------------------
_EFFECTS = click.Choice(["stop", "snapshot", "none"])


def _train_options(f):
    f = click.option(
        "--no-divergence-check",
        is_flag=True,
        help="Keep training when the loss or the weights become NaN or "
        "infinite (Caffe's behaviour); by default training stops "
        "there and keeps the last finite snapshot.",
    )(f)
    f = _gpu_option(f)
    f = click.option(
        "--threads",
        type=int,
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
        "--no-progress",
        is_flag=True,
        help="No progress bar (it only shows on a terminal anyway).",
    )(f)
    return f


def _training(
    sigint_effect,
    sighup_effect,
    level,
    stage,
    threads,
    gpu,
    no_progress,
    no_divergence_check,
):
    """The keyword arguments of tools.train.run_training from the shared options."""
    return dict(
        sigint_effect=sigint_effect,
        sighup_effect=sighup_effect,
        level=level,
        stages=_split_csv(stage),
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
    type=int,
    default=50,
    show_default=True,
    help="Number of test batches.",
)
@click.option(
    "--phase", type=click.Choice(["TRAIN", "TEST"]), default="TEST", show_default=True
)
@click.option("--level", type=int, default=0)
@click.option("--stage", default="")
@click.option("--threads", type=int, default=0)
@_gpu_option
def test_cmd(model, weights, stage, **options):
    """Score a model: forward --iterations batches and average each output."""
    from caffepy.tools.score import score_model

    click.echo(score_model(model, weights, stages=_split_csv(stage), **options))


@cli.command("time")
@click.option("--model", required=True, type=click.Path(), help="The net prototxt.")
@click.option("--iterations", type=int, default=50, show_default=True)
@click.option(
    "--phase", type=click.Choice(["TRAIN", "TEST"]), default="TRAIN", show_default=True
)
@click.option("--weights", default="", help="Optional weights to load.")
@click.option("--level", type=int, default=0)
@click.option("--stage", default="")
@click.option("--threads", type=int, default=0)
@_gpu_option
def time_cmd(model, stage, **options):
    """Time each layer's forward and backward (Caffe's `caffe time`)."""
    from caffepy.tools.score import time_model

    click.echo(time_model(model, stages=_split_csv(stage), **options))


@cli.command("device_query")
@click.option(
    "--gpu", type=GpuId(), default=0, show_default=True, help="The GPU to describe."
)
def device_query_cmd(gpu):
    """Print a GPU's properties (Caffe's `caffe device_query`)."""
    from caffepy.tools.device import device_query

    click.echo(device_query(gpu))


# -- data ------------------------------------------------------------------------
@cli.command("convert_imageset")
@click.argument("root", type=click.Path())
@click.argument("listfile", type=click.Path())
@click.argument("db", type=click.Path())
@click.option("--gray", is_flag=True, help="Load images in grayscale.")
@click.option("--shuffle", is_flag=True, help="Shuffle the order of images.")
@click.option("--resize_height", type=int, default=0, help="Resize to this height.")
@click.option("--resize_width", type=int, default=0, help="Resize to this width.")
@click.option("--check_size", is_flag=True, help="Check all images have one size.")
@click.option("--encoded", is_flag=True, help="Store encoded image bytes.")
@click.option("--encode_type", default="", help="png or jpg for --encoded.")
@click.option("--backend", default="lmdb", type=click.Choice(["lmdb", "leveldb"]))
def convert_imageset_cmd(root, listfile, db, backend, **options):
    """Convert a list of images (`path label` lines) to an LMDB/LevelDB of Datum."""
    from caffepy.tools.convert_imageset import convert_imageset, format_stats

    click.echo(
        format_stats(convert_imageset(root, listfile, db, backend=backend, **options))
    )


@cli.command("compute_image_mean")
@click.argument("db", type=click.Path())
@click.argument("output", required=False, type=click.Path())
@click.option("--backend", default="lmdb", type=click.Choice(["lmdb", "leveldb"]))
def compute_image_mean_cmd(db, output, backend):
    """Compute the mean image of an LMDB or LevelDB; write it as a .binaryproto."""
    from caffepy.tools.compute_image_mean import compute_image_mean, format_mean

    click.echo(format_mean(*compute_image_mean(db, output, backend), output))


@cli.group()
def data():
    """Make ready-to-train datasets."""


@data.command("fashion-mnist")
@click.argument("out_dir", type=click.Path(), default="data")
@click.option(
    "--source",
    default="/usr/share/datasets/fashion-mnist",
    show_default=True,
    help="Folder with the four IDX files.",
)
@click.option("--no-download", is_flag=True, help="Never download the IDX files.")
def data_fashion_mnist(out_dir, source, no_download):
    """Write Fashion-MNIST train/test LMDBs (from Debian's dataset-fashion-mnist)."""
    from caffepy.tools.fashion_mnist import make_fashion_mnist_lmdbs

    result = make_fashion_mnist_lmdbs(
        out_dir, source_dir=source, download=not no_download
    )
    click.echo(f"Fashion-MNIST LMDBs ready in {out_dir}: {result}")


def _dataset_options(f):
    f = click.option(
        "--source",
        default=None,
        type=click.Path(file_okay=False),
        help="Folder of the downloaded files (default: DIR).",
    )(f)
    backends = click.Choice(["lmdb", "leveldb"])
    f = click.option("--backend", default="lmdb", type=backends)(f)
    f = click.option("--limit", type=int, default=None, help="Records per file.")(f)
    return click.argument("out_dir", metavar="DIR", type=click.Path(file_okay=False))(f)


@data.command("mnist")
@_dataset_options
def data_mnist(out_dir, source, backend, limit):
    """MNIST's IDX files -> mnist_{train,test}_<backend> (convert_mnist_data)."""
    from caffepy.tools.datasets import convert_mnist, format_result

    result = convert_mnist(source or out_dir, out_dir, backend, limit)
    click.echo(format_result("MNIST", result))


@data.command("cifar10")
@_dataset_options
def data_cifar10(out_dir, source, backend, limit):
    """CIFAR-10's binary batches -> cifar10_{train,test}_<backend> + mean."""
    from caffepy.tools.datasets import convert_cifar10, format_result

    result = convert_cifar10(source or out_dir, out_dir, backend, limit)
    click.echo(format_result("CIFAR-10", result))


@data.command("cifar100")
@_dataset_options
@click.option("--label", default="fine", type=click.Choice(["fine", "coarse"]))
def data_cifar100(out_dir, source, backend, limit, label):
    """CIFAR-100's train.bin/test.bin -> cifar100_{train,test}_<backend> + mean."""
    from caffepy.tools.datasets import convert_cifar100, format_result

    result = convert_cifar100(source or out_dir, out_dir, backend, limit, label)
    click.echo(format_result("CIFAR-100", result))


# -- logs and diagnostics ------------------------------------------------------------
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

    click.echo(diagnose_net(model, weights, phase, lr, seed, level, _split_csv(stage)))


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
@click.option("--threads", type=int, default=0)
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


@cli.command("draw_net")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.argument("output", type=click.Path(dir_okay=False))
@click.option(
    "--rankdir",
    type=click.Choice(["LR", "TB", "RL", "BT"]),
    default="LR",
    show_default=True,
    help="Direction of the graph: left-right or top-bottom.",
)
@click.option(
    "--phase",
    type=click.Choice(["TRAIN", "TEST", "ALL"]),
    default="TRAIN",
    show_default=True,
    help="Which phase's layers to draw (ALL: every layer).",
)
@click.option(
    "--input-shape",
    default="",
    help="C,H,W (or N,C,H,W) of data layers whose database is not here, "
    "to show blob shapes.",
)
@click.option(
    "--engine",
    type=click.Choice(["auto", "dot", "matplotlib"]),
    default="auto",
    show_default=True,
    help="Graphviz's dot when installed, else matplotlib.",
)
def draw_net_cmd(model, output, rankdir, phase, input_shape, engine):
    """Draw a net (.png, .svg, .pdf or .dot): layers with their key parameters,
    blobs with their shapes."""
    from caffepy.tools.draw_net import draw_net
    from caffepy.tools.summary import parse_shape

    used, notes = draw_net(
        model,
        output,
        rankdir=rankdir,
        phase=phase,
        input_shape=parse_shape(input_shape),
        engine=None if engine == "auto" else engine,
    )
    for note in notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"Wrote {output} (drawn with {used})")


@cli.command("summary")
@click.option(
    "--model",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="The net prototxt.",
)
@click.option(
    "--phase", type=click.Choice(["TRAIN", "TEST"]), default="TRAIN", show_default=True
)
@click.option(
    "--input-shape",
    default="",
    help="C,H,W (or N,C,H,W) of data layers whose database is not here.",
)
def summary_cmd(model, phase, input_shape):
    """Per layer: output shape, parameters, FLOPs and activation memory, with
    totals; checks a Data layer's database against the net. No data needed."""
    import caffepy
    from caffepy.tools.summary import format_summary, parse_shape, summarize

    click.echo(
        format_summary(
            summarize(model, getattr(caffepy, phase), parse_shape(input_shape))
        )
    )


@cli.command("export")
@click.option(
    "--model",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="The net prototxt (deploy, or train/val: its TEST phase is exported).",
)
@click.option(
    "--weights",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="The trained .caffemodel (default: the fillers' values).",
)
@click.option(
    "--onnx",
    "onnx_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The ONNX file to write.",
)
@click.option(
    "--opset", type=int, default=17, show_default=True, help="The ONNX opset (13+)."
)
@click.option(
    "--check",
    is_flag=True,
    help="Run the model once in ONNX Runtime against caffepy and print the difference.",
)
@click.option(
    "--keep-dropout", is_flag=True, help="Keep Dropout as ONNX Dropout nodes."
)
@click.option(
    "--keep-softmax",
    is_flag=True,
    help="Write a SoftmaxWithLoss as its Softmax (output 'prob') instead of "
    "removing it.",
)
@click.option(
    "--static-batch",
    is_flag=True,
    help="Keep the net's batch size instead of a dynamic batch axis N.",
)
@click.option(
    "--input-shape",
    default="",
    help="C,H,W (or N,C,H,W) of data layers whose database is not here.",
)
@click.option("--stage", default="", help="Comma-separated net stages.")
def export_cmd(model, weights, onnx_path, opset, check, static_batch, **options):
    """Export a net and its weights to ONNX with Caffe's exact semantics
    (needs pip install 'caffepy[onnx]')."""
    from caffepy.tools.export import export_onnx
    from caffepy.tools.summary import parse_shape

    summary = export_onnx(
        model,
        weights,
        onnx_path,
        opset=opset,
        dynamic_batch=not static_batch,
        keep_dropout=options["keep_dropout"],
        keep_softmax=options["keep_softmax"],
        input_shape=parse_shape(options["input_shape"]),
        stages=_split_csv(options["stage"]),
        check=check,
    )
    click.echo(summary.format())


# -- format upgrades -----------------------------------------------------------------
@cli.command("upgrade_net_proto_text")
@click.argument("input_file", type=click.Path())
@click.argument("output_file", type=click.Path())
def upgrade_net_proto_text(input_file, output_file):
    """Upgrade a legacy (V0/V1) net prototxt to the current format."""
    from caffepy.io.prototxt import read_net, write_text

    write_text(output_file, read_net(input_file))
    click.echo(f"Wrote upgraded NetParameter text proto to {output_file}")


@cli.command("upgrade_net_proto_binary")
@click.argument("input_file", type=click.Path())
@click.argument("output_file", type=click.Path())
def upgrade_net_proto_binary(input_file, output_file):
    """Upgrade a legacy (V0/V1) .caffemodel to the current format."""
    from caffepy.io.prototxt import read_weights, write_binary

    write_binary(output_file, read_weights(input_file))
    click.echo(f"Wrote upgraded NetParameter binary proto to {output_file}")


@cli.command("upgrade_solver_proto_text")
@click.argument("input_file", type=click.Path())
@click.argument("output_file", type=click.Path())
def upgrade_solver_proto_text(input_file, output_file):
    """Upgrade a legacy solver prototxt (solver_type enum) to the current format."""
    from caffepy.io.prototxt import read_solver, write_text

    write_text(output_file, read_solver(input_file))
    click.echo(f"Wrote upgraded SolverParameter text proto to {output_file}")


def main(argv=None):
    """Entry point: run the click group, turning caffepy errors into one line."""
    from caffepy.errors import CaffepyError
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
    except (CaffepyError, OSError, MemoryError) as err:
        if _debug():
            raise
        click.echo(f"caffepy: error: {err}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
