"""Data commands: ``convert_imageset``, ``compute_image_mean``, ``data`` and
``extract_features``."""

import click

from caffepy.cli import cli
from caffepy.cli.common import device_option, split_csv


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


def _dataset_options(backend="lmdb"):
    """DIR, --source, --backend (default ``backend``) and --limit."""
    return lambda f: _add_dataset_options(f, backend)


def _add_dataset_options(f, backend):
    f = click.option(
        "--source",
        default=None,
        type=click.Path(file_okay=False),
        help="Folder of the downloaded files (default: DIR).",
    )(f)
    backends = click.Choice(["lmdb", "leveldb"])
    f = click.option("--backend", default=backend, type=backends, show_default=True)(f)
    f = click.option("--limit", type=int, default=None, help="Records per file.")(f)
    return click.argument("out_dir", metavar="DIR", type=click.Path(file_okay=False))(f)


@data.command("mnist")
@_dataset_options()
def data_mnist(out_dir, source, backend, limit):
    """MNIST's IDX files -> mnist_{train,test}_<backend> (convert_mnist_data)."""
    from caffepy.tools.datasets import convert_mnist, format_result

    result = convert_mnist(source or out_dir, out_dir, backend, limit)
    click.echo(format_result("MNIST", result))


@data.command("cifar10")
@_dataset_options()
def data_cifar10(out_dir, source, backend, limit):
    """CIFAR-10's binary batches -> cifar10_{train,test}_<backend> + mean."""
    from caffepy.tools.datasets import convert_cifar10, format_result

    result = convert_cifar10(source or out_dir, out_dir, backend, limit)
    click.echo(format_result("CIFAR-10", result))


@data.command("cifar100")
@_dataset_options()
@click.option("--label", default="fine", type=click.Choice(["fine", "coarse"]))
def data_cifar100(out_dir, source, backend, limit, label):
    """CIFAR-100's train.bin/test.bin -> cifar100_{train,test}_<backend> + mean."""
    from caffepy.tools.datasets import convert_cifar100, format_result

    result = convert_cifar100(source or out_dir, out_dir, backend, limit, label)
    click.echo(format_result("CIFAR-100", result))


@data.command("mnist-siamese")
@click.option(
    "--seed",
    type=click.IntRange(0, 2**32 - 1),
    default=None,
    help="Seed of the pairs (default: a fresh one, printed, as Caffe draws anew).",
)
@_dataset_options(backend="leveldb")
def data_mnist_siamese(out_dir, source, backend, limit, seed):
    """MNIST's IDX files -> mnist_siamese_{train,test}_<backend>: random image pairs
    as 2-channel Datums, label 1 for the same digit (convert_mnist_siamese_data)."""
    from caffepy.tools.datasets import convert_mnist_siamese, format_result

    result = convert_mnist_siamese(source or out_dir, out_dir, backend, limit, seed)
    click.echo(format_result("MNIST siamese", result))


@cli.command("extract_features")
@click.argument("weights", type=click.Path(exists=True, dir_okay=False))
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.argument("blobs", metavar="BLOB1[,BLOB2...]")
@click.argument("dbs", metavar="DB1[,DB2...]")
@click.argument("num_mini_batches", type=click.IntRange(min=0))
@click.option(
    "--backend",
    default="lmdb",
    type=click.Choice(["lmdb", "leveldb"]),
    show_default=True,
    help="The databases' format.",
)
@device_option
@click.option("--threads", type=int, default=0, help="CPU threads (default: all).")
def extract_features_cmd(weights, model, blobs, dbs, num_mini_batches, **options):
    """Forward a net (TEST phase) NUM_MINI_BATCHES times and store each item of
    each named blob as a Datum (float_data) record of a new database, keys
    0000000000, 0000000001, ... (Caffe's extract_features)."""
    from caffepy.tools.extract_features import extract_features, format_counts

    names = split_csv(blobs)
    counts = extract_features(
        weights, model, names, split_csv(dbs), num_mini_batches, **options
    )
    click.echo(format_counts(counts, names))
