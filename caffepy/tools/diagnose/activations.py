"""One forward and backward of a user's net, and what its statistics say.

``activation_report`` runs one forward and backward of a user's net and reports,
per blob and parameter, the statistics behind the initialisation lessons (spread,
saturation, dead ReLUs, gradient norms, update/weight ratios), then says in words
which layers vanish, explode, saturate or die.
"""

from dataclasses import dataclass

import numpy as np

from caffepy.tools.netsurgery import LABEL_LAYERS, class_axis

#: Layers whose bottom[i] holds 0/1 targets.
BINARY_TARGETS = {"SigmoidCrossEntropyLoss": 1, "ContrastiveLoss": 2}
#: Thresholds of the findings.
VANISH_STD = 1e-3
EXPLODE_STD = 1e3
SATURATED = 0.3
DEAD = 0.3
RATIO_HIGH = 1e-1
RATIO_LOW = 1e-6


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
            wanted.append((1, scores.shape[scores.canonical_axis(class_axis(lp))]))
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
    rep = BlobReport(
        name,
        layer_param.name,
        t,
        tuple(data.shape),
        float(d.mean()) if d.size else 0.0,
        float(d.std()) if d.size else 0.0,
        grad_norm=grad,
        finite=finite,
    )
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
        notes.append(
            "inputs filled with unit gaussians"
            + (
                "; labels with random classes for "
                + ", ".join(f"'{k}' (0..{v - 1})" for k, v in labels.items())
                if labels
                else ""
            )
        )
    net.clear_param_diffs()
    # NOTE: a net being diagnosed may overflow on purpose; its NaN/inf are
    # reported as findings rather than warned about.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        loss = float(net.forward_backward())
    has_loss = any(any(layer.loss_weights) for layer in net.layers)
    if not has_loss:
        notes.append(
            "the net has no loss in this phase, so no gradient flows "
            "(use --phase TRAIN with a train_val net)"
        )
    with_grad = set()
    for li, lp in enumerate(net.layer_param):
        for name, need in zip(lp.bottom, net.bottom_need_backward[li]):
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
            g = (
                blob.diff.astype(np.float64, copy=False)
                if blob.has_diff
                else np.zeros(1)
            )
            lr = base_lr * lr_of[id(blob)]
            norm, gnorm = float(np.linalg.norm(d)), float(np.linalg.norm(g))
            rep = ParamReport(
                f"{layer.name}/{j}",
                tuple(blob.shape),
                float(d.mean()),
                float(d.std()),
                norm,
                gnorm,
                lr,
            )
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
            out.append(
                f"{where}: activations are not finite (NaN or inf) in '{b.name}'"
            )
            continue
        if len(b.shape) == 0:
            continue
        if b.std < VANISH_STD and abs(b.mean) < VANISH_STD:
            out.append(f"{where}: activations vanish (std {b.std:.1g})")
        elif b.std > EXPLODE_STD:
            out.append(f"{where}: activations explode (std {b.std:.2g})")
        if b.saturated is not None and b.saturated > SATURATED:
            ends = "±1" if b.type == "TanH" else "0 or 1"
            out.append(
                f"{where}: saturates ({b.saturated:.0%} at {ends}; "
                "gradients through it vanish)"
            )
        if b.dead is not None and b.dead > DEAD:
            out.append(
                f"{where}: dead ReLUs ({b.dead:.0%} of the channels never "
                "fire in this batch)"
            )
        if b.grad_norm is not None and not np.isfinite(b.grad_norm):
            out.append(f"{where}: gradients are not finite in '{b.name}'")
    for p in params:
        if p.norm == 0 and p.name.endswith("/0") and len(p.shape) > 1:
            out.append(
                f"param {p.name}: all weights are zero (no weight_filler in the "
                "prototxt, and no --weights given?)"
            )
        elif not np.isfinite(p.grad_norm):
            out.append(f"param {p.name}: gradient is not finite")
        elif p.ratio is not None and p.ratio > RATIO_HIGH:
            out.append(
                f"param {p.name}: update/weight ratio {p.ratio:.2g} is large "
                "(about 1e-3 is healthy): the learning rate is likely too high"
            )
        elif p.ratio is not None and p.ratio < RATIO_LOW:
            out.append(
                f"param {p.name}: update/weight ratio {p.ratio:.2g} is tiny "
                "(about 1e-3 is healthy): its gradients vanish or the "
                "learning rate is too low"
            )
    return out


def _g(x, fmt=".3g"):
    return "-" if x is None else format(x, fmt)


def _table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = [
        "  ".join(
            str(c).ljust(w) if i < 2 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(header, widths))
        ).rstrip()
    ]
    lines.append("-" * len(lines[0]))
    for r in rows:
        lines.append(
            "  ".join(
                str(c).ljust(w) if i < 2 else str(c).rjust(w)
                for i, (c, w) in enumerate(zip(r, widths))
            ).rstrip()
        )
    return lines


def format_activation_report(rep):
    from caffepy.layer import TRAIN

    phase = "TRAIN" if rep.phase == TRAIN else "TEST"
    title = (
        f"{rep.net or 'net'} ({phase}): one forward and backward, loss {rep.loss:.4g}"
    )
    lines = [title, ""]
    rows = []
    for b in rep.blobs:
        sat = (
            f"{b.saturated:.0%} sat"
            if b.saturated is not None
            else f"{b.dead:.0%} dead"
            if b.dead is not None
            else ""
        )
        rows.append(
            [
                b.name,
                f"{b.layer} ({b.type})",
                "x".join(map(str, b.shape)) or "scalar",
                _g(b.mean),
                _g(b.std),
                sat,
                _g(b.grad_norm),
            ]
        )
    lines += _table(
        ["blob", "written by", "shape", "mean", "std", "sat/dead", "|grad|"], rows
    )
    if rep.params:
        lines.append("")
        rows = [
            [
                p.name,
                "x".join(map(str, p.shape)),
                _g(p.mean),
                _g(p.std),
                _g(p.norm),
                _g(p.grad_norm),
                _g(p.lr),
                _g(p.ratio, ".2g"),
            ]
            for p in rep.params
        ]
        lines += _table(
            ["param", "shape", "mean", "std", "|w|", "|grad|", "lr", "lr*|grad|/|w|"],
            rows,
        )
    lines.append("")
    lines += [f"note: {n}" for n in rep.notes]
    if rep.findings:
        lines.append("findings:")
        lines += [f"  {f}" for f in rep.findings]
    else:
        lines.append("findings: none; activations and gradients look healthy")
    return "\n".join(lines)


def diagnose_net(
    model, weights="", phase="TRAIN", lr=0.01, seed=1701, level=0, stages=()
):
    """``caffepy diagnose activations``: build ``model``, fill its inputs, run one
    forward and backward, and return the formatted report."""
    import caffepy
    from caffepy import rng

    rng.set_random_seed(seed)
    net = caffepy.Net(
        model,
        getattr(caffepy, phase),
        level=level,
        stages=list(stages),
        weights=weights or None,
    )
    try:
        return format_activation_report(activation_report(net, lr, seed))
    finally:
        for layer in net.data_layers:
            if hasattr(layer, "close"):
                layer.close()
