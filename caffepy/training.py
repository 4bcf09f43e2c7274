"""What the train/finetune/time commands share: fine-tuning edits, the weights
report, the progress bar and metrics log, and per-layer timing."""

import fnmatch
import json
import logging
import os
import sys
import time

import numpy as np

log = logging.getLogger("caffepy")


def _ensure_specs(lp):
    """Give ``lp`` one ParamSpec per parameter blob its layer type creates; 0
    (nothing to edit) for layers whose type fixes its own lr_mult (BatchNorm)."""
    from caffepy.registry import layer_class

    cls = layer_class(lp.type, f"layer '{lp.name}'")
    if cls.fixed_lr_mults(lp) is not None:
        return 0
    count = cls.param_blob_count(lp)
    while len(lp.param) < count:
        lp.param.add()
    return count


def edit_learning_rates(net_param, freeze=(), rules=()):
    """Freeze layers matching a glob in ``freeze`` (lr_mult 0, decay_mult 0) and
    multiply the lr_mult of layers matching ``rules`` [(glob, mult)] in place.

    Returns the names of the layers changed.
    """
    changed = []
    for lp in net_param.layer:
        frozen = any(fnmatch.fnmatchcase(lp.name, pat) for pat in freeze)
        mults = [m for pat, m in rules if fnmatch.fnmatchcase(lp.name, pat)]
        if not (frozen or mults) or not _ensure_specs(lp):
            continue
        for spec in lp.param:
            if frozen:
                spec.lr_mult = 0.0
                spec.decay_mult = 0.0
            else:
                for m in mults:
                    spec.lr_mult = spec.lr_mult * m
        changed.append(lp.name)
        log.info(
            "Layer %s: %s",
            lp.name,
            "frozen"
            if frozen
            else "lr_mult " + ", ".join(f"{s.lr_mult:g}" for s in lp.param),
        )
    return changed


def weights_report(net, report, source):
    """A table: which layers were copied from ``source``, ignored, or initialised."""
    copied = set(report.get("copied", []))
    lines = [f"Weights from {source}:"]
    width = max(
        [len(n) for n in net.params] + [len(n) for n in report["ignored"]] + [5]
    )
    for name, blobs in net.params.items():
        state = "copied" if name in copied else "new (initialised by filler)"
        shapes = " ".join("x".join(map(str, b.shape)) for b in blobs)
        lr = _layer_lrs(net, name)
        lines.append(f"  {name:<{width}}  {state:<28} {shapes:<24} lr_mult {lr}")
    for name in report.get("ignored", []):
        lines.append(f"  {name:<{width}}  ignored (not in this net)")
    return "\n".join(lines)


def _layer_lrs(net, layer_name):
    lrs = []
    for label, lr in zip(net.learnable_param_names, net.params_lr):
        if label.rsplit("/", 1)[0] == layer_name:
            lrs.append(f"{lr:g}")
    return ",".join(lrs) or "-"


class TrainingMonitor:
    """Progress bar on a terminal, and a JSON-lines metrics log beside the snapshots.

    Each line of ``<snapshot_prefix>_metrics.jsonl`` holds ``iter``, ``loss``,
    ``smoothed_loss``, ``lr``, ``seconds`` and, after a test, ``test`` results.
    """

    def __init__(self, solver, progress=True):
        self.solver = solver
        self.start = time.time()
        self.first_iter = solver.iter
        self.bar = None
        prefix = _snapshot_prefix(solver)
        self.metrics_path = prefix + "_metrics.jsonl" if prefix else None
        self._metrics = None
        if self.metrics_path:
            os.makedirs(
                os.path.dirname(os.path.abspath(self.metrics_path)), exist_ok=True
            )
            self._metrics = open(self.metrics_path, "a", encoding="utf-8")
        if progress and sys.stderr.isatty():
            from tqdm import tqdm

            total = max(solver.param.max_iter - solver.iter, 0)
            self.bar = tqdm(total=total, unit="it", dynamic_ncols=True, leave=False)
        solver.add_callback(self)
        solver.add_test_callback(self.on_test)
        self.last = {}
        self.last_test = {}

    def __call__(self, iteration, loss, lr, **extra):
        record = {
            "iter": int(iteration),
            "loss": float(loss),
            "lr": float(lr),
            "seconds": round(time.time() - self.start, 4),
        }
        for key, value in extra.items():
            record[key] = value
        self.last = record
        self._write(record)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.3g}")

    def on_test(self, iteration, net_id, results):
        self.last_test[net_id] = dict(results)
        if self._metrics is not None:
            record = {
                "iter": int(iteration),
                "test_net": net_id,
                "seconds": round(time.time() - self.start, 4),
            }
            record.update({f"test/{k}": float(v) for k, v in results})
            self._write(record)

    def _write(self, record):
        if self._metrics is None:
            return
        try:
            self._metrics.write(json.dumps(record) + "\n")
            self._metrics.flush()
        except OSError as err:
            # NOTE: a full disk must not stop training; snapshots report their own
            # failures.
            log.warning(
                "cannot write the metrics log %s (%s); training goes on without it",
                self.metrics_path,
                err.strerror or err,
            )
            try:
                self._metrics.close()
            except OSError:
                pass
            self._metrics = None

    def close(self):
        if self.bar is not None:
            self.bar.close()
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None

    def print_summary(self):
        s = self.solver
        took = time.time() - self.start
        done = s.iter - self.first_iter
        msg = [
            f"Trained {done} iterations in {took:.1f} s "
            f"({done / took if took else 0:.1f} iter/s)."
        ]
        for net_id, results in sorted(self.last_test.items()):
            msg.append(
                f"Test net #{net_id}: "
                + ", ".join(f"{k} = {v:.4g}" for k, v in results.items())
            )
        model = s.snapshot_filename(".caffemodel")
        if os.path.exists(model):
            msg.append("Model: " + model)
            msg.append("Solver state: " + s.snapshot_filename(".solverstate"))
        if self.metrics_path:
            msg.append("Metrics log: " + self.metrics_path)
        print("\n".join(msg), file=sys.stderr)


def _snapshot_prefix(solver):
    prefix = getattr(solver, "snapshot_prefix", None)
    if prefix:
        return prefix
    return solver.param.snapshot_prefix or None


def fallback_note(layer):
    """``"  (cpu fallback)"`` for a layer that runs on the CPU in GPU mode."""
    from caffepy.backend import mode

    if mode.is_gpu() and not mode.runs_on_gpu(layer):
        return "  (cpu fallback)"
    return ""


def time_net(net, iterations=50):
    """Per-layer forward/backward timings in ms (averages), as Caffe's ``time``."""
    from caffepy.backend import mode

    n = len(net.layers)
    fwd, bwd = np.zeros(n), np.zeros(n)
    sync = mode.ops().synchronize  # GPU work is queued: time it when done
    net.forward_prefilled()  # warm up (JIT compilation, buffers)
    net.backward_prefilled()
    t_fwd = t_bwd = 0.0
    for _ in range(iterations):
        t0 = time.perf_counter()
        for i, layer in enumerate(net.layers):
            t = time.perf_counter()
            layer.Forward(net.bottom_vecs[i], net.top_vecs[i])
            sync()
            fwd[i] += time.perf_counter() - t
        t1 = time.perf_counter()
        for i in range(n - 1, -1, -1):
            if net.layer_need_backward[i]:
                t = time.perf_counter()
                net.layers[i].Backward(
                    net.top_vecs[i], net.bottom_need_backward[i], net.bottom_vecs[i]
                )
                sync()
                bwd[i] += time.perf_counter() - t
        t2 = time.perf_counter()
        t_fwd += t1 - t0
        t_bwd += t2 - t1
    scale = 1000.0 / iterations
    width = max(len(layer.name) for layer in net.layers)
    lines = [f"Average time per layer ({iterations} iterations):"]
    for i, layer in enumerate(net.layers):
        back = (
            f"{bwd[i] * scale:9.3f} ms"
            if net.layer_need_backward[i]
            else "        -   (no backward)"
        )
        lines.append(
            f"  {layer.name:>{width}} {layer.type:<18} forward: "
            f"{fwd[i] * scale:9.3f} ms  backward: {back}" + fallback_note(layer)
        )
    lines.append(f"Average Forward pass: {t_fwd * scale:.3f} ms.")
    lines.append(f"Average Backward pass: {t_bwd * scale:.3f} ms.")
    lines.append(f"Average Forward-Backward: {(t_fwd + t_bwd) * scale:.3f} ms.")
    return "\n".join(lines)
