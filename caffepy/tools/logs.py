"""Parse and plot training logs: caffepy's and BVLC Caffe's (glog) alike.

``parse_log`` reads the lines Caffe prints::

    I1126 07:04:43.709493 17673 solver.cpp:239] Iteration 100 (22.6 iter/s, ...), loss = 0.656
    I1126 07:04:43.710170 17673 solver.cpp:258]     Train net output #0: loss = 0.656 (...)
    I1126 07:04:43.710196 17673 sgd_solver.cpp:112] Iteration 100, lr = 0.00992565
    I1126 07:04:36.137879 17673 solver.cpp:347] Iteration 0, Testing net (#0)
    I1126 07:04:39.237638 17673 solver.cpp:414]     Test net output #0: accuracy = 0.04

(the date may also carry the year, ``I20261126``, as newer glog writes it) and
returns one row per display iteration and one per test, as Caffe's
``tools/extra/parse_log.py`` does; ``write_csv`` writes its ``.train``/``.test`` files.
"""

import csv
import os
import re
from datetime import datetime

_STAMP = re.compile(r"^[IWEF](\d{4}|\d{8}) (\d{2}):(\d{2}):(\d{2}(?:\.\d+)?)")
_ITER = re.compile(r"Iteration (\d+)")
_TRAIN = re.compile(r"Train net output #(\d+): (\S+) = ([-+.\deEnaif]+)")
_TEST = re.compile(r"Test net output #(\d+): (\S+) = ([-+.\deEnaif]+)")
_LR = re.compile(r"lr = ([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)")
_TESTING = re.compile(r"Iteration (\d+), Testing net")


def _stamp(line, year=2000):
    m = _STAMP.match(line)
    if not m:
        return None
    date = m.group(1)
    if len(date) == 8:
        year, month, day = int(date[:4]), int(date[4:6]), int(date[6:])
    else:
        month, day = int(date[:2]), int(date[2:])
    sec = float(m.group(4))
    return datetime(
        year,
        month,
        day,
        int(m.group(2)),
        int(m.group(3)),
        int(sec),
        int(round((sec % 1) * 1e6)) % 1000000,
    )


def parse_log(path):
    """Return (train_rows, test_rows): lists of dicts with NumIters, Seconds,
    LearningRate and one key per net output."""
    train, test = [], []
    start = None
    iteration = -1
    lr = float("nan")
    test_iter = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            t = _stamp(line)
            if t is not None and start is None:
                start = t
            seconds = (t - start).total_seconds() if (t and start) else float("nan")
            m = _TESTING.search(line)
            if m:
                test_iter = int(m.group(1))
            m = _ITER.search(line)
            if m:
                iteration = int(m.group(1))
            m = _LR.search(line)
            if m:
                lr = float(m.group(1))
                for row in reversed(train):
                    if row["NumIters"] == iteration:
                        row["LearningRate"] = lr
                        break
                continue
            m = _TRAIN.search(line)
            if m:
                _add(
                    train,
                    iteration,
                    seconds,
                    lr,
                    m.group(2),
                    float(m.group(3)),
                    int(m.group(1)),
                )
                continue
            m = _TEST.search(line)
            if m:
                it = test_iter if test_iter is not None else iteration
                _add(
                    test,
                    it,
                    seconds,
                    lr,
                    m.group(2),
                    float(m.group(3)),
                    int(m.group(1)),
                )
    return train, test


def _add(rows, iteration, seconds, lr, name, value, index):
    if (
        not rows
        or rows[-1]["NumIters"] != iteration
        or (index == 0 and name in rows[-1])
    ):
        rows.append({"NumIters": iteration, "Seconds": seconds, "LearningRate": lr})
    rows[-1][name] = value


def write_csv(train, test, log_path, out_dir):
    """Write ``<log name>.train`` and ``.test`` as Caffe's parse_log.py does."""
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, os.path.basename(log_path))
    paths = []
    for rows, ext in ((train, ".train"), (test, ".test")):
        keys = ["NumIters", "Seconds", "LearningRate"]
        for row in rows:
            keys += [k for k in row if k not in keys]
        path = base + ext
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=keys, restval="")
            w.writeheader()
            for row in rows:
                w.writerow(
                    {
                        k: (f"{v:g}" if isinstance(v, float) else v)
                        for k, v in row.items()
                    }
                )
        paths.append(path)
    return paths


def plot_logs(log_paths, out_path, x="iters"):
    """Train/test loss, test accuracy and lr of one or more logs, overlaid.

    Raises:
        CaffepyError: ``out_path`` has an extension matplotlib cannot write.
    """
    import matplotlib

    from caffepy.tools.plotting import image_format

    image_format(out_path)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = "NumIters" if x == "iters" else "Seconds"
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax_loss, ax_acc, ax_lr = axes
    for i, path in enumerate(log_paths):
        train, test = parse_log(path)
        name = os.path.basename(path)
        color = f"C{i}"
        if train:
            loss_key = next((k for k in train[0] if "loss" in k), None)
            if loss_key:
                ax_loss.plot(
                    [r[key] for r in train],
                    [r.get(loss_key) for r in train],
                    color=color,
                    label=f"{name} train",
                )
            ax_lr.plot(
                [r[key] for r in train],
                [r["LearningRate"] for r in train],
                color=color,
                label=name,
            )
        if test:
            loss_key = next((k for k in test[0] if "loss" in k), None)
            if loss_key:
                ax_loss.plot(
                    [r[key] for r in test],
                    [r.get(loss_key) for r in test],
                    "--o",
                    ms=3,
                    color=color,
                    label=f"{name} test",
                )
            acc_key = next((k for k in test[0] if "acc" in k), None)
            if acc_key:
                ax_acc.plot(
                    [r[key] for r in test],
                    [r.get(acc_key) for r in test],
                    "-o",
                    ms=3,
                    color=color,
                    label=name,
                )
    xlabel = "iteration" if x == "iters" else "seconds"
    for ax, title in (
        (ax_loss, "loss"),
        (ax_acc, "test accuracy"),
        (ax_lr, "learning rate"),
    ):
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    ax_loss.set_yscale("log")
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path
