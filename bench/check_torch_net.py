"""Check that ``torch_net.py`` computes what caffepy computes, net by net.

    python bench/check_torch_net.py [--only resnet50,googlenet] [--batch 2]

For every benchmarked model it builds the prepared nets the benchmark times,
once in caffepy and once translated to PyTorch, copies caffepy's weights into
the PyTorch net, feeds both the same random batch and compares:

- **deploy** (TEST phase): every blob after the forward; BatchNorm gets random
  stored statistics first, so the global-statistics path is compared too;
- **train** (TRAIN phase, Dropout ratio set to 0 so both draw no masks): every
  blob, the weighted loss (GoogLeNet's three heads) and every parameter's
  gradient after one forward+backward; then two updates of the benchmark's own
  solvers (``caffepy_worker.make_solver`` and ``torch_worker._Trainer``: SGD
  with the solver file's momentum, weight decay, lr policy and every
  parameter's lr_mult / decay_mult) and the weights after them.

Both frameworks compute in float64 by default (``--dtype float32`` for what
the benchmark times): in float32 the gradients of the deep nets differ by up to
a few percent between the frameworks, and each differs as much from a float64
reference, because rounding flips near-ties (CaffeNet's biases of 1 make many
max-pooling windows near-ties), so only float64 can tell a translation error
from rounding. Differences are relative to the largest magnitude of each
array (for the weights after the updates: relative to how far the updates
moved them). It prints one line per net and, for ``run.py``, a ``BENCH`` JSON
line; the exit status is 1 when any difference is above its tolerance.
"""

import argparse
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import DATA_SHAPES, REPO, emit, prepare_net, random_batch  # noqa: E402

sys.path.insert(0, REPO)

TRAIN_MODELS = (
    "lenet",
    "cifar10_quick",
    "cifar10_full",
    "caffenet",
    "googlenet",
    "vgg16",
    "resnet50",
)
DEPLOY_MODELS = ("lenet", "cifar10_quick", "caffenet", "googlenet", "vgg16", "resnet50")
#: largest relative difference accepted, per dtype (summation orders differ)
TOLERANCE = {
    "float64": {"blobs": 1e-9, "loss": 1e-9, "grads": 1e-7, "weights": 1e-7},
    "float32": {"blobs": 1e-4, "loss": 1e-5, "grads": 5e-2, "weights": 5e-2},
}


def _rel(a, b, floor=1e-12):
    import numpy as np

    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        return float("inf")
    scale = max(float(np.abs(b).max(initial=0.0)), floor)
    return float(np.abs(a - b).max(initial=0.0)) / scale


def _worst(pairs, floor=1e-12):
    """(largest relative difference, its name) over (name, a, b) triples."""
    worst = (0.0, "-")
    for name, a, b in pairs:
        d = _rel(a, b, floor)
        if d > worst[0] or d != d:
            worst = (d, name)
    return worst


def _floor(arrays):
    """A millionth of the largest magnitude among ``arrays``: the scale below
    which a difference is rounding. NOTE: a bias followed by a BatchNorm in
    training mode (ResNet-50's conv1) has an exactly zero gradient; both
    frameworks return rounding noise there, which must not count as relative."""
    import numpy as np

    return max(1e-6 * float(np.abs(a).max(initial=0.0)) for a in arrays)


def copy_weights(net, tnet):
    """caffepy's parameters (and BatchNorm statistics) into the TorchNet."""
    import numpy as np
    import torch

    with torch.no_grad():
        for name, tparams in tnet.layer_params.items():
            blobs = net.params[name]
            if len(blobs) != len(tparams):
                raise ValueError(
                    f"{name}: caffepy has {len(blobs)} parameter blobs, "
                    f"the translation {len(tparams)}"
                )
            for blob, p in zip(blobs, tparams):
                p.copy_(torch.from_numpy(np.asarray(blob.data)).reshape(p.shape))
        for name, keys in tnet.layer_buffers.items():
            mean, var = (tnet.get_buffer(k) for k in keys)
            b = net.params[name]
            s = float(b[2].data[0]) or 1.0
            mean.copy_(torch.from_numpy(np.asarray(b[0].data) / s))
            var.copy_(torch.from_numpy(np.asarray(b[1].data) / s))


def _compare_blobs(net, tblobs):
    pairs = []
    for name, value in tblobs.items():
        if name in net.blobs:
            pairs.append((name, net.blobs[name].data, value.detach().numpy()))
    return _worst(pairs)


def check_deploy(model, tmp, batch, dtype):
    import numpy as np
    import torch
    from common import read_net
    from torch_net import TorchNet

    import caffepy

    dst = os.path.join(tmp, f"{model}_deploy.prototxt")
    src = os.path.join(REPO, "models", model, "deploy.prototxt")
    inputs = prepare_net(src, dst, batch, 1)
    net = caffepy.Net(dst, caffepy.TEST, dtype=dtype)
    rng = np.random.default_rng(1701)
    for layer in net.layers:
        if layer.type == "BatchNorm":
            c = layer.blobs[0].data.shape
            layer.blobs[0].data[...] = rng.normal(0, 0.1, c)
            layer.blobs[1].data[...] = rng.uniform(0.5, 1.5, c)
            layer.blobs[2].data[...] = 1
    tnet = TorchNet(read_net(dst), inputs)
    tnet.eval()
    copy_weights(net, tnet)
    feed = random_batch(inputs, dtype=dtype)
    for name, value in feed.items():
        net.blobs[name].data[...] = value
    net.forward_prefilled()
    with torch.no_grad():
        tblobs = tnet(**{k: torch.from_numpy(v) for k, v in feed.items()})
    return {"blobs": _compare_blobs(net, tblobs)}


def check_train(model, tmp, batch, dtype):
    import numpy as np
    import torch
    from caffepy_worker import make_solver
    from torch_worker import _Trainer

    dst = os.path.join(tmp, f"{model}_train.prototxt")
    src = os.path.join(REPO, "models", model, "train_val.prototxt")
    inputs = prepare_net(src, dst, batch, 0, DATA_SHAPES[model], dropout_ratio=0.0)
    spec = {
        "solver": f"models/{model}/solver.prototxt",
        "file": dst,
        "inputs": {k: list(v) for k, v in inputs.items()},
        "dtype": dtype,
    }
    solver = make_solver(spec)
    trainer = _Trainer(spec)
    net, tnet = solver.net, trainer.model
    copy_weights(net, tnet)
    net.clear_param_diffs()
    loss = net.forward_backward()
    tblobs = trainer.forward_backward()
    tloss = float(tnet.loss(tblobs).detach())
    grads, before = [], {}
    for name, tparams in tnet.layer_params.items():
        for j, (blob, p) in enumerate(zip(net.params[name], tparams)):
            grads.append((f"{name}[{j}]", blob.diff, p.grad.numpy()))
            before[(name, j)] = p.detach().numpy().copy()
    result = {
        "blobs": _compare_blobs(net, tblobs),
        "loss": (_rel([loss], [tloss]), f"{loss:.6g} / {tloss:.6g}"),
        "grads": _worst(grads, _floor([b for _, _, b in grads])),
    }
    solver.step(2)
    trainer.step(2)
    # NOTE: two passes without keeping arrays (VGG-16 has 138M parameters):
    # the largest movement first (the floor), then each parameter's difference
    pairs = []
    for name, tparams in tnet.layer_params.items():
        for j, (blob, p) in enumerate(zip(net.params[name], tparams)):
            pairs.append((f"{name}[{j}]", (name, j), blob, p))
    with torch.no_grad():
        floor = _floor(p.numpy() - before[key] for _, key, _, p in pairs)
        worst = (0.0, "-")
        for label, key, blob, p in pairs:
            w0, wt = before[key], p.numpy()
            wc = np.asarray(blob.data).reshape(wt.shape)
            # NOTE: relative to how far the updates moved the weights, less
            # float32 rounding of the weights themselves (a small lr moves a
            # weight by a few of its ulps; each framework rounds on its own).
            ulps = 4 * np.spacing(np.abs(w0).astype(dtype))
            err = np.maximum(np.abs(wc - wt) - ulps, 0).max(initial=0.0)
            scale = max(float(np.abs(wt - w0).max(initial=0.0)), floor)
            d = float(err) / scale
            if d > worst[0] or d != d:
                worst = (d, label)
    result["weights"] = worst
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="models to check (default: all)")
    ap.add_argument("--batch", type=int, default=2, help="batch size (default 2)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    args = ap.parse_args()
    only = {m for m in args.only.split(",") if m}
    import torch

    torch.set_default_dtype(getattr(torch, args.dtype))
    from caffepy.kernels.config import set_num_threads

    set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    os.chdir(REPO)
    results, failed = {}, False
    with tempfile.TemporaryDirectory(prefix="caffepy-check-") as tmp:
        cases = [("deploy", m) for m in DEPLOY_MODELS] + [
            ("train", m) for m in TRAIN_MODELS
        ]
        for kind, model in cases:
            if only and model not in only and f"{kind}.{model}" not in only:
                continue
            fn = check_deploy if kind == "deploy" else check_train
            try:
                res = fn(model, tmp, args.batch, args.dtype)
            except Exception as exc:  # report every net, then fail
                print(f"{kind:6} {model:14} FAILED: {type(exc).__name__}: {exc}")
                failed = True
                results[f"{kind}.{model}"] = None
                continue
            tol = TOLERANCE[args.dtype]
            bad = [k for k, (d, _) in res.items() if not d <= tol[k]]
            failed |= bool(bad)
            parts = "; ".join(f"{k} {d:.1e} ({where})" for k, (d, where) in res.items())
            print(f"{kind:6} {model:14} {'MISMATCH' if bad else 'ok':8} {parts}")
            sys.stdout.flush()
            results[f"{kind}.{model}"] = {k: d for k, (d, _) in res.items()}
    emit(results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
