"""Model commands: ``draw_net``, ``summary``, ``export`` and ``upgrade_*``."""

import click

from caffepy.cli import cli
from caffepy.cli.common import split_csv


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
