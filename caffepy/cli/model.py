"""Model commands: ``draw_net``, ``summary``, ``export``, ``upgrade_*``,
``classify`` and ``detect``."""

import click

from caffepy.cli import cli
from caffepy.cli.common import device_option, split_csv


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
@click.option(
    "--display_lrm",
    is_flag=True,
    help="Show the lr_mult of Convolution, Deconvolution and InnerProduct layers.",
)
def draw_net_cmd(model, output, rankdir, phase, input_shape, engine, display_lrm):
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
        display_lrm=display_lrm,
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
        stages=split_csv(options["stage"]),
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


# -- pycaffe's classify.py and detect.py ---------------------------------------------
def _int_list(count=None):
    """A click callback: "2,1,0" -> (2, 1, 0) ("" -> None), ``count`` values."""

    def parse(ctx, param, value):
        if value is None or not value.strip():
            return None
        try:
            values = tuple(int(v) for v in value.split(","))
        except ValueError:
            raise click.BadParameter(
                f"expected comma-separated integers, got {value!r}"
            ) from None
        if count is not None and len(values) != count:
            raise click.BadParameter(f"expected {count} integers, got {value!r}")
        return values

    return parse


def _preprocessing_options(f):
    """pycaffe's Transformer settings shared by classify and detect."""
    f = click.option(
        "--channel_swap",
        default="",
        callback=_int_list(),
        help="Order to permute input channels (default: 2,1,0, RGB -> Caffe's "
        "BGR, for 3-channel inputs).",
    )(f)
    f = click.option(
        "--raw_scale",
        type=float,
        default=255.0,
        show_default=True,
        help="Multiply the [0, 1] images by this before the mean is subtracted.",
    )(f)
    f = click.option(
        "--input_scale",
        type=float,
        default=None,
        help="Multiply the input by this after the mean is subtracted.",
    )(f)
    f = click.option(
        "--mean_file",
        default="",
        help="Mean image (.npy K x H x W, or .binaryproto) whose per-channel "
        "means are subtracted; default: none.",
    )(f)
    f = device_option(f)
    f = click.option(
        "--pretrained_model",
        default=None,
        type=click.Path(exists=True, dir_okay=False),
        help="The trained .caffemodel (default: the fillers' weights).",
    )(f)
    return click.option(
        "--model_def",
        required=True,
        type=click.Path(exists=True, dir_okay=False),
        help="The deploy prototxt (its first input is the image batch).",
    )(f)


@cli.command("classify")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.argument("output", type=click.Path(dir_okay=False))
@_preprocessing_options
@click.option(
    "--center_only",
    is_flag=True,
    help="Score the center crop alone instead of averaging ten crops.",
)
@click.option(
    "--images_dim",
    default="256,256",
    show_default=True,
    callback=_int_list(2),
    help="height,width images are resized to before cropping.",
)
@click.option(
    "--ext",
    default="jpg",
    show_default=True,
    help="Image extension read from folders given as INPUT.",
)
@click.option(
    "--labels",
    "--labels_file",
    "labels",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="Class names, line i naming class i: print each input's top-k.",
)
@click.option(
    "--top-k",
    "top_k",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="How many classes --labels prints per input.",
)
def classify_cmd(inputs, output, **options):
    """Classify images (files, folders of *.EXT, or a .npy of H x W x K images)
    and save the N x classes scores to OUTPUT (.npy), as pycaffe's classify.py."""
    from caffepy.tools.classify import classify

    result = classify(list(inputs), output, **options)
    click.echo(
        f"Classified {len(result.names)} inputs in {result.seconds:.2f} s; "
        f"saved the scores to {output}"
    )
    if result.top:
        click.echo(result.format())


@cli.command("detect")
@click.argument("input_file", type=click.Path(exists=True, dir_okay=False))
@click.argument("output_file", type=click.Path(dir_okay=False))
@_preprocessing_options
@click.option(
    "--crop_mode",
    type=click.Choice(["list", "selective_search"]),
    default="list",
    show_default=True,
    help="Where windows come from: the CSV (selective_search is not available).",
)
@click.option(
    "--context_pad",
    type=click.IntRange(min=0),
    default=16,
    show_default=True,
    help="Pixels of the net's input showing context around each window.",
)
def detect_cmd(input_file, output_file, **options):
    """Score windows of images, as pycaffe's detect.py: INPUT_FILE is a CSV with
    columns filename,ymin,xmin,ymax,xmax; OUTPUT_FILE (.csv, or .h5 with h5py)
    gets each window with its class scores."""
    from caffepy.tools.detect import detect, format_detected

    count, seconds = detect(input_file, output_file, **options)
    click.echo(format_detected(count, seconds, output_file))
