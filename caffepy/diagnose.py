"""Make the training lore visible: initialisation, activations, the overfit check.

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

``activation_report`` runs one forward and backward of a user's net and reports,
per blob and parameter, the statistics behind those lessons (spread, saturation,
dead ReLUs, gradient norms, update/weight ratios), then says in words which
layers vanish, explode, saturate or die.

``overfit`` is the check to run before any long training: with regularisation
off, a correct net memorises a few dozen examples in a few dozen iterations; one
that cannot has a bug.
"""

import logging
import os
from dataclasses import dataclass, field

import numpy as np

from caffepy.errors import CaffepyError

NONLINEARITIES = {"tanh": "TanH", "relu": "ReLU", "sigmoid": "Sigmoid"}
_SHORT_FILLERS = {
    "xavier": "type: 'xavier'",
    "msra": "type: 'msra'",
    "he": "type: 'msra'",
    "gaussian": "type: 'gaussian' std: 0.01",
    "zero": "type: 'constant' value: 0",
    "constant": "type: 'constant' value: 0",
}


def filler_text(spec):
    """Accept 'xavier', 'msra', 'gaussian:0.01' or FillerParameter text."""
    spec = spec.strip()
    if spec.lower() in _SHORT_FILLERS:
        return _SHORT_FILLERS[spec.lower()]
    if spec.lower().startswith("gaussian:"):
        return f"type: 'gaussian' std: {float(spec.split(':', 1)[1])}"
    return spec


def _filler_label(spec):
    from google.protobuf import text_format

    from caffepy.proto import caffe_pb2

    fp = text_format.Parse(filler_text(spec), caffe_pb2.FillerParameter())
    if fp.type == "gaussian":
        return f"gaussian std {fp.std:g}"
    if fp.type == "constant":
        return f"constant {fp.value:g}"
    return fp.type


def init_net_text(layers=10, width=500, nonlinearity="tanh", filler="gaussian",
                  batchnorm=False, batch=1000):
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
        ('layer { name: "input" type: "Input" top: "a0" '
         f"input_param {{ shape {{ dim: {batch} dim: {width} }} }} }}"),
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


def init_experiment(layers=10, width=500, nonlinearity="tanh", filler="gaussian",
                    batchnorm=False, batch=1000, seed=1701, keep_values=True):
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
        stats.append(LayerStats(
            layer=i, pre_mean=float(pre.mean()), pre_std=float(pre.std()),
            mean=float(act.mean()), std=float(act.std()),
            saturated=_saturation(act, nonlinearity),
            values=act.reshape(-1).copy() if keep_values else None,
        ))
    return InitResult(filler, nonlinearity, batchnorm, stats)


def format_table(result):
    what = "dead" if result.nonlinearity == "relu" else "saturated"
    lines = [f"{result.label}",
             f"{'layer':>5} {'pre-act std':>12} {'mean':>11} {'std':>11} {what:>10}"]
    for s in result.layers:
        lines.append(f"{s.layer:>5} {s.pre_std:>12.4g} {s.mean:>11.4g} {s.std:>11.4g} "
                     f"{s.saturated:>9.1%}")
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

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not results:
        raise CaffepyError("plot_init needs at least one result")
    nl = max(len(r.layers) for r in results)
    rows = len(results)
    fig = plt.figure(figsize=(1.45 * nl + 1.6, 1.05 * rows + 2.9))
    gs = fig.add_gridspec(rows + 1, nl, height_ratios=[1] * rows + [2.6],
                          left=0.13, right=0.99, top=0.95, bottom=0.07,
                          hspace=0.45, wspace=0.12)
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
                ax.hist(np.clip(vals, lo, hi), bins=40, range=(lo, hi),
                        color=f"C{row}")
            ax.set_xlim(lo, hi)
            ax.set_xticks([lo, hi] if res.nonlinearity == "relu" else [lo, 0, hi])
            ax.set_xticklabels([f"{t:.2g}" for t in ax.get_xticks()])
            ax.set_yticks([])
            ax.tick_params(labelsize=5, pad=1)
            if row == 0:
                ax.set_title(f"layer {col + 1}", fontsize=8)
            if col == 0:
                ax.set_ylabel(res.label, fontsize=7, rotation=0, ha="right",
                              va="center")
    ax_mean = fig.add_subplot(gs[rows, : nl // 2])
    ax_std = fig.add_subplot(gs[rows, nl // 2:])
    for i, res in enumerate(results):
        xs = [s.layer for s in res.layers]
        ax_mean.plot(xs, [s.mean for s in res.layers], "o-", color=f"C{i}",
                     label=res.label, ms=3)
        ax_std.plot(xs, [max(s.std, 1e-30) for s in res.layers], "o-",
                    color=f"C{i}", ms=3)
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


# -- one forward/backward of a user's net ------------------------------------------------
#: Layers whose bottom[1] holds class labels for the scores in bottom[0].
LABEL_LAYERS = ("SoftmaxWithLoss", "Accuracy", "MultinomialLogisticLoss",
                "InfogainLoss", "HingeLoss")
#: Layers whose bottom[i] holds 0/1 targets.
BINARY_TARGETS = {"SigmoidCrossEntropyLoss": 1, "ContrastiveLoss": 2}
#: Thresholds of the findings.
VANISH_STD = 1e-3
EXPLODE_STD = 1e3
SATURATED = 0.3
DEAD = 0.3
RATIO_HIGH = 1e-1
RATIO_LOW = 1e-6


def _class_axis(lp):
    if lp.type == "SoftmaxWithLoss":
        return lp.softmax_param.axis
    if lp.type == "Accuracy":
        return lp.accuracy_param.axis
    return 1


def _origins(net):
    """{split top name: the blob it copies} for the Split layers the Net inserted."""
    origin = {}
    for li in net._split_layers:
        lp = net.layer_param[li]
        for t in lp.top:
            origin[t] = origin.get(lp.bottom[0], lp.bottom[0])
    return origin


def label_inputs(net):
    """{input blob name: number of classes} for inputs that loss/accuracy layers
    read as labels (the classes: the scores' size along the class axis, i.e. the
    num_output of the layer before); binary targets count 2 classes."""
    origin = _origins(net)
    found = {}
    for li, lp in enumerate(net.layer_param):
        bottoms = net.bottom_vecs[li]
        wanted = []
        if lp.type in LABEL_LAYERS and len(lp.bottom) >= 2:
            scores = bottoms[0]
            wanted.append((1, scores.shape[scores.canonical_axis(_class_axis(lp))]))
        elif lp.type in BINARY_TARGETS and len(lp.bottom) > BINARY_TARGETS[lp.type]:
            wanted.append((BINARY_TARGETS[lp.type], 2))
        for j, classes in wanted:
            name = origin.get(lp.bottom[j], lp.bottom[j])
            if name in net.inputs:
                found[name] = min(found.get(name, classes), classes)
    return found


def fill_inputs(net, seed=1701):
    """Unit gaussians in the net's Input blobs; random valid labels where a loss
    or accuracy layer reads an input as labels. Returns {name: classes}."""
    gen = np.random.default_rng(seed)
    labels = label_inputs(net)
    for name in net.inputs:
        blob = net.blobs[name]
        if name in labels:
            blob.data[...] = gen.integers(0, labels[name], blob.shape)
        else:
            blob.data[...] = gen.standard_normal(blob.shape)
    return labels


@dataclass
class BlobReport:
    name: str
    layer: str  # the layer that last wrote it
    type: str
    shape: tuple
    mean: float
    std: float
    saturated: float = None  # tanh/sigmoid: fraction at the flat ends
    dead: float = None  # ReLU: fraction of channels never positive in the batch
    grad_norm: float = None  # None: no gradient reaches this blob
    finite: bool = True


@dataclass
class ParamReport:
    name: str  # layer/index
    shape: tuple
    mean: float
    std: float
    norm: float
    grad_norm: float
    lr: float  # base_lr * lr_mult (0: not learned)
    ratio: float = None  # lr * |grad| / |w|


@dataclass
class ActivationReport:
    net: str
    phase: int
    loss: float
    blobs: list
    params: list
    findings: list
    notes: list


def _dead_fraction(data):
    """Fraction of channels (axis 1; units for 2-D blobs) never positive."""
    if data.ndim < 2:
        return float(np.mean(data <= 0))
    moved = np.moveaxis(data, 1, 0).reshape(data.shape[1], -1)
    return float(np.mean(np.all(moved <= 0, axis=1)))


def _blob_report(name, data, layer_param, grad):
    t = layer_param.type
    finite = bool(np.all(np.isfinite(data)))
    d = data.astype(np.float64, copy=False)
    rep = BlobReport(name, layer_param.name, t, tuple(data.shape),
                     float(d.mean()) if d.size else 0.0,
                     float(d.std()) if d.size else 0.0, grad_norm=grad, finite=finite)
    if t == "TanH":
        rep.saturated = float(np.mean(np.abs(d) > 0.99))
    elif t == "Sigmoid":
        rep.saturated = float(np.mean((d < 0.01) | (d > 0.99)))
    elif t == "ReLU" and not layer_param.relu_param.negative_slope:
        rep.dead = _dead_fraction(d)
    return rep


def activation_report(net, base_lr=0.01, seed=1701):
    """Fill the inputs, run one forward and backward, and report (no update)."""
    notes = []
    labels = fill_inputs(net, seed)
    if net.inputs:
        notes.append("inputs filled with unit gaussians" + (
            "; labels with random classes for " + ", ".join(
                f"'{k}' (0..{v - 1})" for k, v in labels.items()) if labels else ""))
    net.clear_param_diffs()
    # NOTE: a net being diagnosed may overflow on purpose; its NaN/inf are
    # reported as findings rather than warned about.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        loss = float(net.forward_backward())
    has_loss = any(any(layer.loss_weights) for layer in net.layers)
    if not has_loss:
        notes.append("the net has no loss in this phase, so no gradient flows "
                     "(use --phase TRAIN with a train_val net)")
    with_grad = set()
    for li, lp in enumerate(net.layer_param):
        for name, need in zip(net.bottom_names[lp.name], net.bottom_need_backward[li]):
            if need:
                with_grad.add(name)
        for name, w in zip(lp.top, net.layers[li].loss_weights):
            if w:
                with_grad.add(name)
    writer = {}
    for li, lp in enumerate(net.layer_param):
        if li in net._split_layers:
            continue
        for name in lp.top:
            writer[name] = li
    blobs = []
    for name, li in writer.items():
        blob = net.blobs[name]
        grad = None
        if name in with_grad and blob.has_diff:
            grad = float(np.linalg.norm(blob.diff.astype(np.float64, copy=False)))
        blobs.append(_blob_report(name, blob.data, net.layer_param[li], grad))
    lr_of = {id(b): lr for b, lr in zip(net.learnable_params, net.params_lr)}
    params = []
    for layer in net.layers:
        for j, blob in enumerate(layer.blobs):
            if id(blob) not in lr_of:
                continue  # shared: reported at its owner
            d = blob.data.astype(np.float64, copy=False)
            g = (blob.diff.astype(np.float64, copy=False) if blob.has_diff
                 else np.zeros(1))
            lr = base_lr * lr_of[id(blob)]
            norm, gnorm = float(np.linalg.norm(d)), float(np.linalg.norm(g))
            rep = ParamReport(f"{layer.name}/{j}", tuple(blob.shape), float(d.mean()),
                              float(d.std()), norm, gnorm, lr)
            if lr and norm > 0 and has_loss:
                rep.ratio = lr * gnorm / norm
            params.append(rep)
    findings = findings_for(blobs, params, set(net.inputs))
    return ActivationReport(net.name, net.phase, loss, blobs, params, findings, notes)


def findings_for(blobs, params, inputs=()):
    """Plain-language findings: which layers vanish, explode, saturate or die."""
    out = []
    for b in blobs:
        if b.name in inputs or b.type in ("Data", "ImageData", "Input", "MemoryData"):
            continue
        where = f"layer {b.layer}"
        if not b.finite:
            out.append(f"{where}: activations are not finite (NaN or inf) in "
                       f"'{b.name}'")
            continue
        if len(b.shape) == 0:
            continue
        if b.std < VANISH_STD and abs(b.mean) < VANISH_STD:
            out.append(f"{where}: activations vanish (std {b.std:.1g})")
        elif b.std > EXPLODE_STD:
            out.append(f"{where}: activations explode (std {b.std:.2g})")
        if b.saturated is not None and b.saturated > SATURATED:
            ends = "±1" if b.type == "TanH" else "0 or 1"
            out.append(f"{where}: saturates ({b.saturated:.0%} at {ends}; "
                       "gradients through it vanish)")
        if b.dead is not None and b.dead > DEAD:
            out.append(f"{where}: dead ReLUs ({b.dead:.0%} of the channels never "
                       "fire in this batch)")
        if b.grad_norm is not None and not np.isfinite(b.grad_norm):
            out.append(f"{where}: gradients are not finite in '{b.name}'")
    for p in params:
        if p.norm == 0 and p.name.endswith("/0") and len(p.shape) > 1:
            out.append(f"param {p.name}: all weights are zero (no weight_filler in the "
                       "prototxt, and no --weights given?)")
        elif not np.isfinite(p.grad_norm):
            out.append(f"param {p.name}: gradient is not finite")
        elif p.ratio is not None and p.ratio > RATIO_HIGH:
            out.append(f"param {p.name}: update/weight ratio {p.ratio:.2g} is large "
                       "(about 1e-3 is healthy): the learning rate is likely too high")
        elif p.ratio is not None and p.ratio < RATIO_LOW:
            out.append(f"param {p.name}: update/weight ratio {p.ratio:.2g} is tiny "
                       "(about 1e-3 is healthy): its gradients vanish or the "
                       "learning rate is too low")
    return out


def _g(x, fmt=".3g"):
    return "-" if x is None else format(x, fmt)


def _table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w)
                       for i, (c, w) in enumerate(zip(header, widths))).rstrip()]
    lines.append("-" * len(lines[0]))
    for r in rows:
        lines.append("  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    return lines


def format_activation_report(rep):
    from caffepy.layer import TRAIN

    phase = "TRAIN" if rep.phase == TRAIN else "TEST"
    title = (f"{rep.net or 'net'} ({phase}): one forward and backward, loss "
             f"{rep.loss:.4g}")
    lines = [title, ""]
    rows = []
    for b in rep.blobs:
        sat = (f"{b.saturated:.0%} sat" if b.saturated is not None else
               f"{b.dead:.0%} dead" if b.dead is not None else "")
        rows.append([b.name, f"{b.layer} ({b.type})",
                     "x".join(map(str, b.shape)) or "scalar",
                     _g(b.mean), _g(b.std), sat, _g(b.grad_norm)])
    lines += _table(["blob", "written by", "shape", "mean", "std", "sat/dead",
                     "|grad|"], rows)
    if rep.params:
        lines.append("")
        rows = [[p.name, "x".join(map(str, p.shape)), _g(p.mean), _g(p.std), _g(p.norm),
                 _g(p.grad_norm), _g(p.lr), _g(p.ratio, ".2g")] for p in rep.params]
        lines += _table(["param", "shape", "mean", "std", "|w|", "|grad|", "lr",
                         "lr*|grad|/|w|"], rows)
    lines.append("")
    lines += [f"note: {n}" for n in rep.notes]
    if rep.findings:
        lines.append("findings:")
        lines += [f"  {f}" for f in rep.findings]
    else:
        lines.append("findings: none; activations and gradients look healthy")
    return "\n".join(lines)


# -- the overfit check ----------------------------------------------------------------
@dataclass
class OverfitResult:
    samples: int
    reached: int = None  # iteration (updates before the forward) of 100%, or None
    best_accuracy: float = 0.0
    best_iter: int = 0
    last_loss: float = float("nan")
    iterations: int = 0
    history: list = field(default_factory=list)  # (iter, loss, accuracy)


def _train_net_param(sp):
    from caffepy.io.prototxt import read_net
    from caffepy.proto import caffe_pb2

    for f in ("net", "train_net"):
        if sp.HasField(f):
            path = getattr(sp, f)
            if not os.path.exists(path):
                raise CaffepyError(f"the solver's {f}: {path!r} does not exist (paths "
                                   f"are relative to the working directory, "
                                   f"{os.getcwd()})")
            return read_net(path)
    for f in ("net_param", "train_net_param"):
        if sp.HasField(f):
            out = caffe_pb2.NetParameter()
            out.CopyFrom(getattr(sp, f))
            return out
    raise CaffepyError("the solver names no train net (net, net_param, train_net or "
                       "train_net_param)")


def read_samples(lp, samples):
    """The first ``samples`` records of a Data/ImageData layer, transformed as in
    the TEST phase (centre crop, no mirror): (data array, label array)."""
    from caffepy.layer import TEST
    from caffepy.net import Net
    from caffepy.proto import caffe_pb2

    layer = caffe_pb2.LayerParameter()
    layer.CopyFrom(lp)
    layer.ClearField("include")
    layer.ClearField("exclude")
    if layer.type == "Data":
        from caffepy.data.db import LMDBReader

        with LMDBReader(layer.data_param.source, layer.data_param.backend) as reader:
            samples = min(samples, len(reader))
        layer.data_param.batch_size = samples
        layer.data_param.prefetch = 0
    else:
        from caffepy.data.sources import read_list_file

        samples = min(samples, len(read_list_file(layer.image_data_param.source)))
        layer.image_data_param.batch_size = samples
        layer.image_data_param.shuffle = False
    param = caffe_pb2.NetParameter()
    param.layer.add().CopyFrom(layer)
    net = Net(param=param, phase=TEST)
    try:
        net.forward_prefilled()
        arrays = [np.array(net.blobs[t].data) for t in layer.top]
    finally:
        for dl in net.layers:
            if hasattr(dl, "close"):
                dl.close()
    return arrays


def overfit_setup(solver_path, samples=32, lr=None, seed=1701):
    """(solver, {input name: array}, (scores, labels, axis, ignore), samples) for
    training on the first ``samples`` records with regularisation off."""
    from caffepy.io.prototxt import read_solver
    from caffepy.layer import TRAIN
    from caffepy.net import filter_net
    from caffepy.proto import caffe_pb2
    from caffepy.solvers import get_solver

    sp = read_solver(solver_path)
    net_param = _train_net_param(sp)
    state = caffe_pb2.NetState(phase=TRAIN)
    state.MergeFrom(net_param.state)
    state.MergeFrom(sp.train_state)
    state.phase = TRAIN
    filtered = filter_net(net_param, state)
    modified = caffe_pb2.NetParameter()
    modified.CopyFrom(filtered)
    del modified.layer[:]
    inputs, label_tops = {}, set()
    for lp in filtered.layer:
        if lp.type in ("Data", "ImageData") and not len(lp.bottom):
            if len(lp.top) < 2:
                raise CaffepyError(f"{lp.type} layer '{lp.name}' has no label top: "
                                   "the overfit check needs labels")
            arrays = read_samples(lp, samples)
            new = modified.layer.add()
            new.name, new.type = lp.name, "Input"
            new.top.extend(lp.top)
            for name, arr in zip(lp.top, arrays):
                new.input_param.shape.add().dim.extend(arr.shape)
                inputs[name] = arr
            label_tops.add(lp.top[1])
            continue
        new = modified.layer.add()
        new.CopyFrom(lp)
        new.ClearField("include")
        new.ClearField("exclude")
        if lp.type == "Dropout":
            new.dropout_param.dropout_ratio = 0.0
    if not inputs:
        raise CaffepyError("the train net has no Data or ImageData layer to take the "
                           "samples from")
    clf = next((lp for lp in filtered.layer if lp.type in LABEL_LAYERS
                and len(lp.bottom) >= 2 and lp.bottom[1] in label_tops), None)
    if clf is None:
        raise CaffepyError("the overfit check measures classification accuracy: the "
                           "train net needs a SoftmaxWithLoss or Accuracy layer reading "
                           "the data layer's labels")
    ignore = (clf.loss_param.ignore_label if clf.loss_param.HasField("ignore_label")
              else None)
    new_sp = caffe_pb2.SolverParameter()
    new_sp.CopyFrom(sp)
    for f in ("net", "train_net", "train_net_param", "test_net", "test_net_param",
              "test_iter", "test_state", "train_state", "weights"):
        new_sp.ClearField(f)
    new_sp.net_param.CopyFrom(modified)
    new_sp.test_interval = 0
    new_sp.test_initialization = False
    new_sp.weight_decay = 0.0
    new_sp.snapshot = 0
    new_sp.snapshot_after_train = False
    new_sp.display = 0
    new_sp.iter_size = 1
    if lr is not None:
        new_sp.base_lr = float(lr)
    if new_sp.random_seed < 0:  # reproducible unless the solver sets its own seed
        new_sp.random_seed = int(seed)
    quiet = logging.getLogger("caffepy")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # the solver logs its whole parameter at INFO
    try:
        solver = get_solver(new_sp)
    finally:
        quiet.setLevel(level)
    for entry in sp.weights:
        for w in entry.split(","):
            if w:
                solver.net.copy_from(w)
    n = len(next(iter(inputs.values())))
    return solver, inputs, (clf.bottom[0], clf.bottom[1], _class_axis(clf), ignore), n


def subset_accuracy(scores, labels, axis=1, ignore=None):
    """Fraction of (non-ignored) labels equal to the scores' argmax along axis."""
    pred = np.argmax(scores, axis=axis)
    lab = np.asarray(labels).reshape(pred.shape).astype(np.int64)
    valid = np.ones(lab.shape, bool) if ignore is None else lab != ignore
    if not valid.any():
        return 0.0
    return float(np.mean(pred[valid] == lab[valid]))


def overfit(solver_path, samples=32, max_iter=None, lr=None, every=10,
            progress=None, seed=1701):
    """Train on the first ``samples`` records with weight decay and dropout off,
    until training accuracy on them is 100% or ``max_iter`` iterations (default:
    the solver's max_iter, at most 1000; the lr policy keeps the solver's own).

    Accuracy is measured on the scores of each training forward (the weights
    before that iteration's update), so it costs no extra forward.

    Args:
        progress: optional ``fn(iter, loss, accuracy)`` called every ``every``
            iterations and at the end.
        seed: the random seed (fillers) when the solver sets no random_seed.
    """
    solver, inputs, (scores_name, labels_name, axis, ignore), n = overfit_setup(
        solver_path, samples, lr, seed)
    net = solver.net
    limit = int(max_iter) if max_iter else min(int(solver.param.max_iter) or 1000, 1000)
    result = OverfitResult(samples=n)
    losses = []
    solver.add_callback(lambda it, loss, rate: losses.append(float(loss)))
    for it in range(limit):
        for name, arr in inputs.items():
            net.blobs[name].data[...] = arr
        solver.step(1)
        acc = subset_accuracy(net.blobs[scores_name].data, net.blobs[labels_name].data,
                              axis, ignore)
        result.last_loss = losses[-1] if losses else float("nan")
        result.iterations = it + 1
        result.history.append((it, result.last_loss, acc))
        if acc > result.best_accuracy:
            result.best_accuracy, result.best_iter = acc, it
        done = acc >= 1.0
        if progress is not None and (it % every == 0 or done):
            progress(it, result.last_loss, acc)
        if done:
            result.reached = it
            break
        if not np.isfinite(result.last_loss):
            break
    return result


def overfit_message(result):
    """What the result means, in words."""
    if result.reached is not None:
        return (f"reached 100% training accuracy on {result.samples} samples at "
                f"iteration {result.reached} (loss {result.last_loss:.3g}): the net "
                "can learn; now train it on all the data")
    how = ("the loss became NaN or inf (learning rate too high, or a layer that "
           "divides by zero)" if not np.isfinite(result.last_loss) else
           f"best {result.best_accuracy:.1%} at iteration {result.best_iter}, final "
           f"loss {result.last_loss:.3g}")
    return (f"never reached 100% training accuracy on {result.samples} samples in "
            f"{result.iterations} iterations ({how}). A net that cannot overfit a "
            "tiny subset with regularisation off usually has a bug: labels that do "
            "not match the data (or num_output smaller than the classes), a learning "
            "rate too low (loss barely moves) or too high (loss jumps or diverges), "
            "or a broken layer (check it with `caffepy diagnose activations`)")
