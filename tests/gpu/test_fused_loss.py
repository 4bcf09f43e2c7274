"""SoftmaxWithLoss's fused device passes (the forward's sums in one launch, the
backward's scaling inside its kernel) equal the CPU backend and the unfused
device path."""

import numpy as np
import pytest

from caffepy.backend import mode
from caffepy.backend.cuda import loss as cuda_loss

SHAPES = [(4, 5, 1), (2, 3, 6)]  # (outer, C, inner)


def _case(shape, ignore):
    gen = np.random.default_rng(1701)
    outer, c, inner = shape
    logits = gen.normal(size=shape).astype(np.float32)
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = gen.integers(0, c, size=(outer, inner)).astype(np.float32)
    if ignore is not None:
        labels[0, 0] = ignore
    return prob.astype(np.float32), labels


def _run(ops, prob, labels, ignore, normalizer):
    loss = ops.zeros((), np.float32)
    norm = ops.zeros((1,), np.float64)
    dx = ops.zeros(prob.shape, np.float32)
    p, lab = ops.from_host(prob), ops.from_host(labels)
    ops.softmax_loss_forward(p, lab, ignore, normalizer, loss, norm)
    weight = ops.from_host(np.array(2.0, np.float32))
    ops.softmax_loss_backward(p, lab, ignore, norm, weight, dx)
    return float(ops.to_host(loss)), ops.to_host(norm)[0], ops.to_host(dx)


@pytest.mark.parametrize("shape", SHAPES)
# (a count-based divisor, None, comes with an ignore_label: the layer's rule)
@pytest.mark.parametrize("ignore,normalizer", [(None, 3.0), (1, None), (1, 3.0)])
def test_fused_equals_cpu_and_unfused(gpu, monkeypatch, shape, ignore, normalizer):
    prob, labels = _case(shape, ignore)
    fused = _run(gpu, prob, labels, ignore, normalizer)
    monkeypatch.setattr(cuda_loss, "_FUSED_FINISH_MAX", 0)
    unfused = _run(gpu, prob, labels, ignore, normalizer)
    cpu = _run(mode.cpu_ops(), prob, labels, ignore, normalizer)
    for ref in (unfused, cpu):
        assert fused[0] == pytest.approx(ref[0], rel=1e-6)
        assert fused[1] == ref[1]
        np.testing.assert_allclose(fused[2], ref[2], rtol=1e-6, atol=1e-7)
    if ignore is not None:
        assert np.all(fused[2][0, :, 0] == 0)
