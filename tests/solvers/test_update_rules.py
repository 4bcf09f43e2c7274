"""Each update rule against a closed-form NumPy reimplementation (float64) on a
tiny least-squares problem: InnerProduct + EuclideanLoss, several steps, with
weight decay, lr_mult 2 / decay_mult 0 on the bias, clipping, iter_size and L1."""

import math

import numpy as np
import pytest

from caffepy.solvers import get_solver
from tests.solvers.common import K, feed, ls_batches, solver_param

STEPS = 5

RULES = {
    "SGD": "momentum: 0.9",
    "Nesterov": "momentum: 0.9",
    "AdaGrad": "delta: 1e-6",
    "RMSProp": "rms_decay: 0.9 delta: 1e-6",
    "AdaDelta": "momentum: 0.95 delta: 1e-6",
    "Adam": "momentum: 0.9 momentum2: 0.999 delta: 1e-8",
}


def _grads(w, b, x, y):
    """Gradients of sum((x w^T + b - y)^2) / (2 N)."""
    dp = (x @ w.T + b - y) / x.shape[0]
    return dp.T @ x, dp.sum(axis=0)


class Reference:
    """Caffe's solver on plain float64 arrays, written from the formulas."""

    def __init__(self, rule, p, w, b):
        self.rule, self.p = rule, p
        self.params = [w.astype(np.float64), b.astype(np.float64)]
        self.lr_mult, self.decay_mult = [1.0, 2.0], [1.0, 0.0]
        self.h = [np.zeros_like(a) for a in self.params]
        self.h2 = [np.zeros_like(a) for a in self.params]
        self.iter = 0

    def step(self, passes, rate):
        p = self.p
        grads = [np.zeros_like(a) for a in self.params]
        for x, y in passes:
            for g, d in zip(grads, _grads(*self.params, x, y)):
                g += d
        if p.clip_gradients >= 0:
            norm = math.sqrt(sum(float((g * g).sum()) for g in grads))
            if norm > p.clip_gradients:
                grads = [g * (p.clip_gradients / norm) for g in grads]
        grads = [g / p.iter_size for g in grads]
        for i, (w, g) in enumerate(zip(self.params, grads)):
            decay = p.weight_decay * self.decay_mult[i]
            reg = np.sign(w) if p.regularization_type == "L1" else w
            g = g + decay * reg
            lr = rate * self.lr_mult[i]
            w -= self.update(i, g, lr)
        self.iter += 1

    def update(self, i, g, lr):
        p, h, h2 = self.p, self.h, self.h2
        if self.rule == "SGD":
            h[i] = p.momentum * h[i] + lr * g
            return h[i]
        if self.rule == "Nesterov":
            prev = h[i]
            h[i] = p.momentum * h[i] + lr * g
            return (1 + p.momentum) * h[i] - p.momentum * prev
        if self.rule == "AdaGrad":
            h[i] = h[i] + g * g
            return lr * g / (np.sqrt(h[i]) + p.delta)
        if self.rule == "RMSProp":
            h[i] = p.rms_decay * h[i] + (1 - p.rms_decay) * g * g
            return lr * g / (np.sqrt(h[i]) + p.delta)
        if self.rule == "AdaDelta":
            m = p.momentum
            h[i] = m * h[i] + (1 - m) * g * g
            d = g * np.sqrt((h2[i] + p.delta) / (h[i] + p.delta))
            h2[i] = m * h2[i] + (1 - m) * d * d
            return lr * d
        if self.rule == "Adam":
            b1, b2, t = p.momentum, p.momentum2, self.iter + 1
            h[i] = b1 * h[i] + (1 - b1) * g
            h2[i] = b2 * h2[i] + (1 - b2) * g * g
            corr = math.sqrt(1 - b2**t) / (1 - b1**t)
            return lr * corr * h[i] / (np.sqrt(h2[i]) + p.delta)
        raise AssertionError(self.rule)

    @property
    def history(self):
        twice = self.rule in ("AdaDelta", "Adam")
        return self.h + (self.h2 if twice else [])


def _run(rule, extra, dtype, steps=STEPS):
    text = (
        f'type: "{rule}" {RULES[rule]} base_lr: 0.05 lr_policy: "inv" '
        f"gamma: 0.1 power: 0.75 weight_decay: 0.02 max_iter: 100 {extra}"
    )
    solver = get_solver(solver_param(text), dtype=dtype)
    p = solver.param
    w, b = (blob.data.copy() for blob in solver.net.params["ip"])
    ref = Reference(rule, p, w, b)
    batches = ls_batches(steps, p.iter_size)
    feed(solver, ("x", "y"), [pb for step in batches for pb in step])
    for k in range(steps):
        rate = p.base_lr * (1 + p.gamma * k) ** -p.power
        ref.step(batches[k], rate)
        solver.step(1)
    return solver, ref


@pytest.mark.parametrize(
    "extra", ["", "clip_gradients: 0.5", "iter_size: 3", 'regularization_type: "L1"']
)
@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule_float32(rule, extra):
    solver, ref = _run(rule, extra, np.float32)
    for blob, want in zip(solver.net.params["ip"], ref.params):
        assert blob.data.dtype == np.float32
        np.testing.assert_allclose(blob.data, want, rtol=2e-5, atol=2e-6)
    assert len(solver.history) == len(ref.history)
    for h, want in zip(solver.history, ref.history):
        assert h.dtype == np.float32
        np.testing.assert_allclose(h, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule_float64(rule):
    solver, ref = _run(rule, "clip_gradients: 0.5 iter_size: 2", np.float64)
    for blob, want in zip(solver.net.params["ip"], ref.params):
        np.testing.assert_allclose(blob.data, want, rtol=1e-10, atol=1e-12)
    for h, want in zip(solver.history, ref.history):
        np.testing.assert_allclose(h, want, rtol=1e-9, atol=1e-12)


def test_clip_actually_clips():
    # the threshold above is small enough that every step is scaled
    solver = get_solver(
        solver_param('type: "SGD" base_lr: 0.1 lr_policy: "fixed" clip_gradients: 0.5')
    )
    x, y = ls_batches(1)[0][0]
    solver.net.blobs["x"].data[...] = x
    solver.net.blobs["y"].data[...] = y * 100
    solver.net.clear_param_diffs()
    solver.net.forward_backward()
    solver.clip_gradients()
    norm = math.sqrt(sum(float((b.diff**2).sum()) for b in solver.net.learnable_params))
    assert norm == pytest.approx(0.5, rel=1e-5)


def test_frozen_parameter_is_not_updated():
    net = solver_param("").net_param
    net.layer[1].param[1].lr_mult = 0  # the bias
    param = solver_param(
        'type: "Adam" base_lr: 0.1 lr_policy: "fixed" weight_decay: 0.1', net=""
    )
    param.net_param.CopyFrom(net)
    solver = get_solver(param)
    w0, b0 = (blob.data.copy() for blob in solver.net.params["ip"])
    feed(solver, ("x", "y"), [pb for step in ls_batches(3) for pb in step])
    solver.step(3)
    w, b = solver.net.params["ip"]
    np.testing.assert_array_equal(b.data, b0)
    assert not np.allclose(w.data, w0)
    assert b.data.shape == (K,)
