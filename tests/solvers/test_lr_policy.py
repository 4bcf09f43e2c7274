"""The learning-rate policy table (Caffe's GetLearningRate formulas)."""

import math

import pytest
from google.protobuf import text_format

from caffepy.errors import SolverError
from caffepy.proto import caffe_pb2
from caffepy.solvers.lr_policy import check_lr_policy, learning_rate


def _param(text):
    return text_format.Parse("base_lr: 0.1 " + text, caffe_pb2.SolverParameter())


TABLE = [
    ('lr_policy: "fixed"', lambda it: 0.1),
    ('lr_policy: "step" gamma: 0.5 stepsize: 3', lambda it: 0.1 * 0.5 ** (it // 3)),
    ('lr_policy: "exp" gamma: 0.9', lambda it: 0.1 * 0.9**it),
    (
        'lr_policy: "inv" gamma: 0.1 power: 0.75',
        lambda it: 0.1 * (1 + 0.1 * it) ** -0.75,
    ),
    ('lr_policy: "poly" power: 2 max_iter: 10', lambda it: 0.1 * (1 - it / 10) ** 2),
    (
        'lr_policy: "sigmoid" gamma: 0.5 stepsize: 4',
        lambda it: 0.1 / (1 + math.exp(-0.5 * (it - 4))),
    ),
    (
        'lr_policy: "multistep" gamma: 0.3 stepvalue: 2 stepvalue: 5',
        lambda it: 0.1 * 0.3 ** ((it >= 2) + (it >= 5)),
    ),
]


@pytest.mark.parametrize(("text", "formula"), TABLE, ids=[t[0] for t in TABLE])
def test_policy_formula(text, formula):
    p = _param(text)
    check_lr_policy(p)
    step = 0
    for it in range(10):
        rate, step = learning_rate(p, it, step)
        assert rate == pytest.approx(formula(it), rel=1e-6), it


def test_step_position():
    p = _param('lr_policy: "step" gamma: 0.5 stepsize: 3')
    assert learning_rate(p, 7, 0)[1] == 2


def test_multistep_advances_one_stepvalue_per_call():
    # As Caffe: resuming at iteration 6 with current_step 0 catches up one
    # stepvalue per iteration, and a restored current_step is honoured.
    p = _param('lr_policy: "multistep" gamma: 0.3 stepvalue: 2 stepvalue: 5')
    rate, step = learning_rate(p, 6, 0)
    assert step == 1 and rate == pytest.approx(0.03)
    rate, step = learning_rate(p, 7, step)
    assert step == 2 and rate == pytest.approx(0.009)
    assert learning_rate(p, 3, 1) == (pytest.approx(0.03), 1)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "lr_policy is not set"),
        ('lr_policy: "fixd"', r"unknown lr_policy 'fixd' \(did you mean 'fixed'\?\)"),
        ('lr_policy: "step" gamma: 0.1', "needs stepsize > 0; got stepsize: 0"),
        ('lr_policy: "sigmoid" gamma: 0.1', "needs stepsize > 0"),
        ('lr_policy: "poly" power: 1', "needs max_iter > 0"),
        ('lr_policy: "exp" gamma: -0.1', "needs gamma >= 0; got gamma: -0.1"),
        (
            'lr_policy: "multistep" gamma: 0.1 stepvalue: 5 stepvalue: 3',
            r"increasing stepvalue; got \[5, 3\]",
        ),
    ],
)
def test_policy_errors(text, match):
    with pytest.raises(SolverError, match=match):
        check_lr_policy(_param(text))


def test_learning_rate_unknown_policy_raises():
    with pytest.raises(SolverError, match="unknown lr_policy"):
        learning_rate(_param('lr_policy: "cosine"'), 0)
