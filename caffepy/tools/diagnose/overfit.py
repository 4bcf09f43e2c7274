"""The overfit check: the one to run before any long training.

With regularisation off, a correct net memorises a few dozen examples in a few
dozen iterations; one that cannot has a bug.
"""

import logging
from dataclasses import dataclass, field

import numpy as np

from caffepy.errors import CaffepyError
from caffepy.tools.netsurgery import LABEL_LAYERS, class_axis


@dataclass
class OverfitResult:
    samples: int
    reached: int = None  # iteration (updates before the forward) of 100%, or None
    best_accuracy: float = 0.0
    best_iter: int = 0
    last_loss: float = float("nan")
    iterations: int = 0
    history: list = field(default_factory=list)  # (iter, loss, accuracy)


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
        from caffepy.data.db import open_db_reader

        with open_db_reader(
            layer.data_param.source, layer.data_param.backend
        ) as reader:
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
    from caffepy.net import filter_net
    from caffepy.phase import TRAIN
    from caffepy.proto import caffe_pb2
    from caffepy.solvers import get_solver
    from caffepy.tools.netsurgery import data_to_input, solver_train_net

    sp = read_solver(solver_path)
    train = solver_train_net(sp)
    state = train.param.state
    state.phase = TRAIN
    filtered = filter_net(train.param, state)
    inputs, label_tops = {}, set()

    def sample_shapes(lp):
        if len(lp.top) < 2:
            raise CaffepyError(
                f"{lp.type} layer '{lp.name}' has no label top: "
                "the overfit check needs labels"
            )
        arrays = read_samples(lp, samples)
        inputs.update(zip(lp.top, arrays))
        label_tops.add(lp.top[1])
        return [arr.shape for arr in arrays]

    modified = data_to_input(filtered, sample_shapes, types=("Data", "ImageData"))
    for lp in modified.layer:
        lp.ClearField("include")
        lp.ClearField("exclude")
        if lp.type == "Dropout":
            lp.dropout_param.dropout_ratio = 0.0
    if not inputs:
        raise CaffepyError(
            "the train net has no Data or ImageData layer to take the samples from"
        )
    clf = next(
        (
            lp
            for lp in filtered.layer
            if lp.type in LABEL_LAYERS
            and len(lp.bottom) >= 2
            and lp.bottom[1] in label_tops
        ),
        None,
    )
    if clf is None:
        raise CaffepyError(
            "the overfit check measures classification accuracy: the "
            "train net needs a SoftmaxWithLoss or Accuracy layer reading "
            "the data layer's labels"
        )
    ignore = (
        clf.loss_param.ignore_label if clf.loss_param.HasField("ignore_label") else None
    )
    new_sp = caffe_pb2.SolverParameter()
    new_sp.CopyFrom(sp)
    for f in (
        "net",
        "train_net",
        "train_net_param",
        "test_net",
        "test_net_param",
        "test_iter",
        "test_state",
        "train_state",
        "weights",
    ):
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
    return solver, inputs, (clf.bottom[0], clf.bottom[1], class_axis(clf), ignore), n


def subset_accuracy(scores, labels, axis=1, ignore=None):
    """Fraction of (non-ignored) labels equal to the scores' argmax along axis."""
    pred = np.argmax(scores, axis=axis)
    lab = np.asarray(labels).reshape(pred.shape).astype(np.int64)
    valid = np.ones(lab.shape, bool) if ignore is None else lab != ignore
    if not valid.any():
        return 0.0
    return float(np.mean(pred[valid] == lab[valid]))


def overfit(
    solver_path, samples=32, max_iter=None, lr=None, every=10, progress=None, seed=1701
):
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
        solver_path, samples, lr, seed
    )
    net = solver.net
    limit = int(max_iter) if max_iter else min(int(solver.param.max_iter) or 1000, 1000)
    result = OverfitResult(samples=n)
    losses = []
    solver.add_callback(lambda it, loss, rate: losses.append(float(loss)))
    for it in range(limit):
        for name, arr in inputs.items():
            net.blobs[name].data[...] = arr
        solver.step(1)
        acc = subset_accuracy(
            net.blobs[scores_name].data, net.blobs[labels_name].data, axis, ignore
        )
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
        return (
            f"reached 100% training accuracy on {result.samples} samples at "
            f"iteration {result.reached} (loss {result.last_loss:.3g}): the net "
            "can learn; now train it on all the data"
        )
    how = (
        "the loss became NaN or inf (learning rate too high, or a layer that "
        "divides by zero)"
        if not np.isfinite(result.last_loss)
        else f"best {result.best_accuracy:.1%} at iteration {result.best_iter}, final "
        f"loss {result.last_loss:.3g}"
    )
    return (
        f"never reached 100% training accuracy on {result.samples} samples in "
        f"{result.iterations} iterations ({how}). A net that cannot overfit a "
        "tiny subset with regularisation off usually has a bug: labels that do "
        "not match the data (or num_output smaller than the classes), a learning "
        "rate too low (loss barely moves) or too high (loss jumps or diverges), "
        "or a broken layer (check it with `caffepy diagnose activations`)"
    )


def run_overfit(
    solver_path,
    samples=32,
    max_iter=0,
    lr=None,
    every=10,
    seed=1701,
    threads=0,
    echo=print,
):
    """``caffepy diagnose overfit``: run :func:`overfit`, passing a progress line
    to ``echo`` every ``every`` iterations; return (reached 100%?, message)."""
    from caffepy.tools.device import set_threads

    set_threads(threads)

    def progress(it, loss, acc):
        echo(f"iteration {it}: loss {loss:.4g}, accuracy on the subset {acc:.1%}")

    result = overfit(
        solver_path, samples, max_iter or None, lr, max(every, 1), progress, seed
    )
    return result.reached is not None, overfit_message(result)
