"""PyTorch side of ``make bench``: the same cases as caffepy_worker.py.

The nets are the prepared prototxts translated by :mod:`torch_net`. Training
uses the solver file's SGD settings (momentum, weight decay, lr policy, every
parameter's lr_mult / decay_mult, as caffepy's solver) and either the same
Fashion-MNIST LMDB as caffepy's Data layer (LeNet: decoded once into numpy
arrays, the same scale and batch size) or the same fixed random batch as
caffepy's Input layers (:func:`common.random_batch`).
"""

import os
import sys
import time

START = time.perf_counter()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    REPO,
    _pb2,
    cpu_ratio,
    emit,
    measure,
    peak_rss_mib,
    random_batch,
    read_net,
    worker_args,
)


def _read_lmdb(path, limit=None):
    """(uint8 images (N, C, H, W), labels (N,)) of an LMDB of raw Datum."""
    import lmdb
    import numpy as np

    datum = _pb2().Datum()
    images, labels = [], []
    env = lmdb.open(path, readonly=True, lock=False)
    with env.begin() as txn:
        for _, value in txn.cursor():
            datum.ParseFromString(value)
            images.append(
                np.frombuffer(datum.data, np.uint8).reshape(
                    datum.channels, datum.height, datum.width
                )
            )
            labels.append(datum.label)
            if limit and len(images) >= limit:
                break
    env.close()
    return np.stack(images), np.asarray(labels, np.int64)


def learning_rate(sp, it):
    """Caffe's lr policies (``caffepy/solvers/lr_policy.py``), at iteration ``it``."""
    import math

    policy, base = sp.lr_policy or "fixed", sp.base_lr
    if policy == "fixed":
        return base
    if policy == "step":
        return base * sp.gamma ** (it // sp.stepsize)
    if policy == "exp":
        return base * sp.gamma**it
    if policy == "inv":
        return base * (1 + sp.gamma * it) ** (-sp.power)
    if policy == "multistep":
        return base * sp.gamma ** sum(1 for v in sp.stepvalue if it >= v)
    if policy == "poly":
        return base * (1 - it / sp.max_iter) ** sp.power
    if policy == "sigmoid":
        return base / (1 + math.exp(-sp.gamma * (it - sp.stepsize)))
    raise ValueError(f"lr_policy {policy!r} is not translated")


class _Trainer:
    """A net's training as the caffepy solver does it, in PyTorch.

    The solver file's SGD settings (momentum, weight decay, lr policy, every
    parameter's lr_mult / decay_mult); ``iter_size`` is 1, as in caffepy's
    worker. With ``spec["source"]`` the batches come from that LMDB (decoded
    once, scaled like the Data layer); otherwise the inputs are one fixed
    random batch (``spec["inputs"]``), as caffepy's Input layers hold.
    """

    def __init__(self, spec, limit=None):
        import torch
        from google.protobuf import text_format
        from torch_net import TorchNet

        sp = _pb2().SolverParameter()
        with open(os.path.join(REPO, spec["solver"]), encoding="utf-8") as f:
            text_format.Merge(f.read(), sp)
        if sp.type not in ("", "SGD"):
            raise ValueError(f"solver type {sp.type!r} is not translated")
        self.sp = sp
        self.model = TorchNet(read_net(spec["file"]), spec["inputs"])
        self.model.train()
        self.opt = torch.optim.SGD(
            self.model.param_groups(sp.base_lr, sp.weight_decay),
            lr=sp.base_lr,
            momentum=sp.momentum,
        )
        self.batch = spec["inputs"]["data"][0]
        self.iter = 0
        self.rate = None
        self.cursor = 0
        self.images = None
        if spec.get("source"):
            self.images, self.labels = _read_lmdb(
                os.path.join(REPO, spec["source"]), limit
            )
            self.scale = spec["scale"]
        else:
            self.feed = random_inputs(spec["inputs"], spec.get("seed", 0))

    def _next(self):
        import torch

        if self.images is None:
            return self.feed
        i, b = self.cursor, self.batch
        if i + b > len(self.images):
            i = 0
        self.cursor = i + b
        x = torch.from_numpy(self.images[i : i + b]).float().mul_(self.scale)
        return {"data": x, "label": torch.from_numpy(self.labels[i : i + b])}

    def forward_backward(self):
        """One forward and backward; returns the blobs."""
        self.opt.zero_grad()
        blobs = self.model(**self._next())
        self.model.loss(blobs).backward()
        return blobs

    def update(self):
        import torch

        rate = learning_rate(self.sp, self.iter)
        if self.rate is not None and rate != self.rate:
            # NOTE: Caffe's history holds lr * gradient (h = m h + lr g; w -= h),
            # PyTorch's buffer the gradient alone (b = m b + g; w -= lr b): when
            # the rate changes (the "inv" and "poly" policies, every iteration)
            # rescaling the buffers keeps the two updates the same.
            bufs = [s["momentum_buffer"] for s in self.opt.state.values()]
            bufs = [b for b in bufs if b is not None]
            if bufs:
                torch._foreach_mul_(bufs, self.rate / rate)
        self.rate = rate
        for g in self.opt.param_groups:
            g["lr"] = rate * g["lr_mult"]
        self.opt.step()
        self.iter += 1

    def step(self, n):
        for _ in range(n):
            self.forward_backward()
            self.update()


def random_inputs(inputs, seed=0):
    """:func:`common.random_batch` as tensors (the numbers caffepy's worker uses)."""
    import torch

    dtype = str(torch.get_default_dtype()).split(".")[-1]
    return {
        k: torch.from_numpy(v) for k, v in random_batch(inputs, seed, dtype).items()
    }


def case_train(spec):
    import statistics

    trainer = _Trainer(spec)
    trainer.step(spec.get("warmup", 20))
    block, rates = spec.get("block", 25), []

    def run():
        for _ in range(spec.get("blocks", 6)):
            t = time.perf_counter()
            trainer.step(block)
            rates.append(block / (time.perf_counter() - t))

    _, ratio = cpu_ratio(run)
    return {
        "it_s": statistics.median(rates),
        "cpu_ratio": ratio,
        "rss_mib": peak_rss_mib(),
    }


def case_first_iter(spec):
    """Start to the first training iteration (the driver times the process)."""
    _Trainer(spec, limit=spec["inputs"]["data"][0]).step(1)
    return {"first_iter_s": time.perf_counter() - START}


def _time_net(item):
    import torch
    from torch_net import TorchNet

    model = TorchNet(read_net(item["file"]), item["inputs"])
    model.train(item["backward"])
    feed = random_inputs(item["inputs"])
    reps, seconds = item.get("reps", 5), item.get("seconds", 1.0)
    warmup = item.get("warmup", 2)

    def fwd():
        with torch.no_grad():
            model(**feed)

    out = {}
    out = {}
    out["fwd"], out["cpu_ratio"] = cpu_ratio(
        lambda: measure(fwd, reps, seconds, warmup)
    )
    if item["backward"]:

        def fb():
            model.zero_grad()
            model.loss(model(**feed)).backward()

        out["fb"] = measure(fb, reps, seconds, warmup)
    return out


def case_nets(spec):
    out = {}
    for item in spec["nets"]:
        for key, value in _time_net(item).items():
            out[f"{item['name']}.{key}"] = value
    return out


def case_data(spec):
    """Reference for the Data layer: a DataLoader over in-memory uint8 arrays,
    scaled to float, batch 64 (what a PyTorch user would feed LeNet with)."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    images, labels = _read_lmdb(os.path.join(REPO, spec["source"]))
    ds = TensorDataset(torch.from_numpy(images), torch.from_numpy(labels))
    loader = DataLoader(ds, batch_size=spec["batch"], shuffle=False)
    n, seen = spec.get("batches", 300), 0
    it = iter(loader)
    t = time.perf_counter()
    for _ in range(n):
        x, _y = next(it)
        x = x.float().mul_(spec["scale"])
        seen += x.shape[0]
    return {"images_s": seen / (time.perf_counter() - t)}


def case_convert(spec):
    """Reference for convert_imageset: decode the PNGs (OpenCV, as caffepy) into
    one uint8 tensor and torch.save it (PyTorch's usual dataset preparation)."""
    import tempfile

    import cv2
    import numpy as np
    import torch

    t = time.perf_counter()
    images, labels = [], []
    with open(spec["list"], encoding="utf-8") as f:
        for line in f:
            name, label = line.rsplit(None, 1)
            images.append(cv2.imread(spec["root"] + name, cv2.IMREAD_GRAYSCALE))
            labels.append(int(label))
    data = torch.from_numpy(np.stack(images)[:, None])
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(
            {"data": data, "label": torch.tensor(labels)}, os.path.join(tmp, "data.pt")
        )
    return {"images_s": len(images) / (time.perf_counter() - t)}


def main():
    args = worker_args()
    import torch

    torch.set_num_threads(args.threads)
    os.chdir(REPO)
    result = globals()["case_" + args.case](args.spec)
    result["torch_threads"] = torch.get_num_threads()
    emit(result)


if __name__ == "__main__":
    main()
