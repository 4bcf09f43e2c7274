"""The initialisation experiment: activation statistics of a deep fully connected net.

``init_experiment`` builds the seed notes' experiment with caffepy's own layers
and fillers: a deep fully connected net (InnerProduct -> [BatchNorm -> Scale] ->
nonlinearity, repeated), fed unit-gaussian input, and records each layer's
activation statistics. What it shows, with 10 layers of 500 tanh units:

- gaussian std 0.01: activations shrink towards 0 layer after layer (nothing to learn from);
- gaussian std 1: tanh saturates (almost every unit at ±1, gradients vanish);
- xavier: the spread stays steady for tanh, but halves per layer for ReLU;
- msra (He): the spread stays steady for ReLU;
- with BatchNorm before each nonlinearity, pre-activations stay near unit std whatever
  the filler.
"""

from dataclasses import dataclass, field

import numpy as np

from caffepy.errors import CaffepyError, did_you_mean

NONLINEARITIES = {"tanh": "TanH", "relu": "ReLU", "sigmoid": "Sigmoid"}
_SHORT_FILLERS = {
    "xavier": "type: 'xavier'",
    "msra": "type: 'msra'",
    "he": "type: 'msra'",
    "gaussian": "type: 'gaussian' std: 0.01",
    "zero": "type: 'constant' value: 0",
    "constant": "type: 'constant' value: 0",
}


_FILLER_FORMS = (
    "xavier, msra, he, gaussian, zero, constant, gaussian:STD (STD a positive "
    "number) or FillerParameter text such as \"type: 'gaussian' std: 0.01\""
)


def _bad_filler(spec, why):
    return CaffepyError(f"--filler {spec!r}: {why}; expected {_FILLER_FORMS}")


def filler_text(spec: str) -> str:
    """FillerParameter text for 'xavier', 'msra', 'gaussian:0.01' or
    FillerParameter text (checked: it parses and names a known filler).

    Raises:
        CaffepyError: a spec of none of these forms, naming it and the forms.
    """
    from google.protobuf import text_format

    from caffepy.fillers import FILLERS
    from caffepy.proto import caffe_pb2

    key = spec.strip().lower()
    if key in _SHORT_FILLERS:
        return _SHORT_FILLERS[key]
    if key.startswith("gaussian:"):
        try:
            std = float(key.split(":", 1)[1])
        except ValueError:
            std = float("nan")
        if not 0 < std < float("inf"):
            raise _bad_filler(
                spec, "the std after 'gaussian:' is not a positive number"
            )
        return f"type: 'gaussian' std: {std!r}"
    if key.isidentifier():
        raise _bad_filler(
            spec, "unknown filler name" + did_you_mean(key, _SHORT_FILLERS)
        )
    try:
        fp = text_format.Parse(spec, caffe_pb2.FillerParameter())
    except text_format.ParseError as err:
        reason = str(err).split(":", 2)[-1].strip().rstrip(".")
        raise _bad_filler(spec, f"not FillerParameter text ({reason})") from None
    if fp.type not in FILLERS:
        raise _bad_filler(
            spec, f"unknown filler type {fp.type!r}" + did_you_mean(fp.type, FILLERS)
        )
    return spec.strip()


def _filler_label(spec):
    from google.protobuf import text_format

    from caffepy.proto import caffe_pb2

    fp = text_format.Parse(filler_text(spec), caffe_pb2.FillerParameter())
    if fp.type == "gaussian":
        return f"gaussian std {fp.std:g}"
    if fp.type == "constant":
        return f"constant {fp.value:g}"
    return fp.type


def init_net_text(
    layers=10,
    width=500,
    nonlinearity="tanh",
    filler="gaussian",
    batchnorm=False,
    batch=1000,
):
    """The prototxt of the experiment's net (TRAIN phase, so BatchNorm uses batch stats)."""
    if nonlinearity not in NONLINEARITIES:
        raise CaffepyError(
            f"unknown nonlinearity {nonlinearity!r}; choose one of "
            + ", ".join(NONLINEARITIES)
        )
    if layers < 1 or width < 1 or batch < 2:
        raise CaffepyError("need layers >= 1, width >= 1 and batch >= 2")
    ftext = filler_text(filler)
    parts = [
        'name: "init_experiment"',
        (
            'layer { name: "input" type: "Input" top: "a0" '
            f"input_param {{ shape {{ dim: {batch} dim: {width} }} }} }}"
        ),
    ]
    for i in range(1, layers + 1):
        parts.append(
            f'layer {{ name: "fc{i}" type: "InnerProduct" bottom: "a{i - 1}" '
            f'top: "z{i}" inner_product_param {{ num_output: {width} '
            f"weight_filler {{ {ftext} }} bias_filler {{ type: 'constant' }} }} }}"
        )
        pre = f"z{i}"
        if batchnorm:
            parts.append(
                f'layer {{ name: "bn{i}" type: "BatchNorm" bottom: "z{i}" '
                f'top: "n{i}" }}'
            )
            parts.append(
                f'layer {{ name: "scale{i}" type: "Scale" bottom: "n{i}" '
                f'top: "s{i}" scale_param {{ bias_term: true }} }}'
            )
            pre = f"s{i}"
        parts.append(
            f'layer {{ name: "act{i}" type: "{NONLINEARITIES[nonlinearity]}" '
            f'bottom: "{pre}" top: "a{i}" }}'
        )
    return "\n".join(parts) + "\n"


@dataclass
class LayerStats:
    layer: int
    pre_mean: float
    pre_std: float
    mean: float
    std: float
    saturated: float  # tanh/sigmoid: fraction at the flat ends; ReLU: fraction dead
    values: np.ndarray = field(repr=False, default=None)


@dataclass
class InitResult:
    filler: str
    nonlinearity: str
    batchnorm: bool
    layers: list

    @property
    def label(self):
        bn = " + BatchNorm" if self.batchnorm else ""
        return f"{_filler_label(self.filler)} + {self.nonlinearity}{bn}"


def _saturation(values, nonlinearity):
    if nonlinearity == "tanh":
        return float(np.mean(np.abs(values) > 0.99))
    if nonlinearity == "sigmoid":
        return float(np.mean((values < 0.01) | (values > 0.99)))
    return float(np.mean(values <= 0))


def init_experiment(
    layers=10,
    width=500,
    nonlinearity="tanh",
    filler="gaussian",
    batchnorm=False,
    batch=1000,
    seed=1701,
    keep_values=True,
):
    """Run one forward of the experiment's net; return per-layer statistics."""
    import caffepy
    from caffepy import rng
    from caffepy.io.prototxt import parse_net_text

    rng.set_random_seed(seed)
    text = init_net_text(layers, width, nonlinearity, filler, batchnorm, batch)
    net = caffepy.Net(param=parse_net_text(text), phase=caffepy.TRAIN)
    gen = np.random.default_rng(seed)
    net.blobs["a0"].data[...] = gen.standard_normal((batch, width))
    net.forward_prefilled()
    stats = []
    for i in range(1, layers + 1):
        pre = net.blobs[f"s{i}" if batchnorm else f"z{i}"].data
        act = net.blobs[f"a{i}"].data
        stats.append(
            LayerStats(
                layer=i,
                pre_mean=float(pre.mean()),
                pre_std=float(pre.std()),
                mean=float(act.mean()),
                std=float(act.std()),
                saturated=_saturation(act, nonlinearity),
                values=act.reshape(-1).copy() if keep_values else None,
            )
        )
    return InitResult(filler, nonlinearity, batchnorm, stats)


def format_table(result):
    what = "dead" if result.nonlinearity == "relu" else "saturated"
    lines = [
        f"{result.label}",
        f"{'layer':>5} {'pre-act std':>12} {'mean':>11} {'std':>11} {what:>10}",
    ]
    for s in result.layers:
        lines.append(
            f"{s.layer:>5} {s.pre_std:>12.4g} {s.mean:>11.4g} {s.std:>11.4g} "
            f"{s.saturated:>9.1%}"
        )
    return "\n".join(lines)


def _hist_range(res):
    """The x range of a run's histograms: the nonlinearity's, or for ReLU the
    spread of layer 1's active units."""
    if res.nonlinearity == "tanh":
        return -1.0, 1.0
    if res.nonlinearity == "sigmoid":
        return 0.0, 1.0
    first = res.layers[0].values
    active = first[first > 0] if first is not None else np.zeros(0)
    hi = float(np.percentile(active, 99.5)) if active.size else 1.0
    return 0.0, hi if hi > 0 else 1.0


def plot_init(results, out_path, dpi=100):
    """Per-layer activation histograms (one row per run) and mean/std curves.

    Several runs (fillers, nonlinearities, with or without BatchNorm) are drawn
    side by side: one row of histograms each, and one curve each in the bottom
    mean/std plots. ReLU histograms leave out the zeros (their share is the
    "dead" column of the table) and keep layer 1's x range along the row, so a
    shrinking spread piles up at 0 and an exploding one at the right edge.
    """
    import matplotlib

    from caffepy.tools.plotting import image_format

    image_format(out_path)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not results:
        raise CaffepyError("plot_init needs at least one result")
    nl = max(len(r.layers) for r in results)
    rows = len(results)
    fig = plt.figure(figsize=(1.45 * nl + 1.6, 1.05 * rows + 2.9))
    gs = fig.add_gridspec(
        rows + 1,
        nl,
        height_ratios=[1] * rows + [2.6],
        left=0.13,
        right=0.99,
        top=0.95,
        bottom=0.07,
        hspace=0.45,
        wspace=0.12,
    )
    for row, res in enumerate(results):
        lo, hi = _hist_range(res)
        for col in range(nl):
            ax = fig.add_subplot(gs[row, col])
            if col < len(res.layers) and res.layers[col].values is not None:
                vals = res.layers[col].values
                if res.nonlinearity == "relu":
                    vals = vals[vals > 0]
                # NOTE: one x range per row (layer 1's for ReLU), values beyond it
                # piled on the edge bins, so shrinking or growing spreads show.
                ax.hist(np.clip(vals, lo, hi), bins=40, range=(lo, hi), color=f"C{row}")
            ax.set_xlim(lo, hi)
            ax.set_xticks([lo, hi] if res.nonlinearity == "relu" else [lo, 0, hi])
            ax.set_xticklabels([f"{t:.2g}" for t in ax.get_xticks()])
            ax.set_yticks([])
            ax.tick_params(labelsize=5, pad=1)
            if row == 0:
                ax.set_title(f"layer {col + 1}", fontsize=8)
            if col == 0:
                ax.set_ylabel(
                    res.label, fontsize=7, rotation=0, ha="right", va="center"
                )
    ax_mean = fig.add_subplot(gs[rows, : nl // 2])
    ax_std = fig.add_subplot(gs[rows, nl // 2 :])
    for i, res in enumerate(results):
        xs = [s.layer for s in res.layers]
        ax_mean.plot(
            xs, [s.mean for s in res.layers], "o-", color=f"C{i}", label=res.label, ms=3
        )
        ax_std.plot(
            xs, [max(s.std, 1e-30) for s in res.layers], "o-", color=f"C{i}", ms=3
        )
    ax_std.set_title("activation std per layer (log scale)", fontsize=8)
    ax_std.set_yscale("log")
    ax_mean.set_yscale("symlog", linthresh=1e-2)
    ax_mean.set_title("activation mean per layer (symlog scale)", fontsize=8)
    ax_mean.legend(fontsize=6, ncol=2 if rows > 4 else 1)
    for ax in (ax_mean, ax_std):
        ax.tick_params(labelsize=7)
        ax.set_xlabel("layer", fontsize=7)
        ax.grid(alpha=0.3)
    fig.savefig(out_path, dpi=dpi)
    plt.close(fig)
    return out_path


def run_init(
    layers=10,
    width=500,
    batch=1000,
    nonlinearities=(),
    fillers=(),
    batchnorm=False,
    out="",
    echo=print,
):
    """``caffepy diagnose init``: one run per (nonlinearity, filler), each table
    passed to ``echo`` as it is done, then the figure at ``out`` if given."""
    for filler in fillers:  # every spec and the figure's path, before any run
        filler_text(filler)
    if out:
        from caffepy.tools.plotting import image_format

        image_format(out)
    results = []
    for nonlinearity in nonlinearities or ("tanh",):
        for filler in fillers or ("gaussian",):
            res = init_experiment(
                layers,
                width,
                nonlinearity,
                filler,
                batchnorm,
                batch,
                keep_values=bool(out),
            )
            results.append(res)
            echo(format_table(res))
            echo("")
    if out:
        plot_init(results, out)
        echo(f"Wrote {out}")
    return results
