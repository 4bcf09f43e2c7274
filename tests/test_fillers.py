"""Filler statistics against their formulas."""

import math

import numpy as np
import pytest
from google.protobuf import text_format

from caffepy.errors import CaffepyError
from caffepy.fillers import filler_values
from caffepy.proto import caffe_pb2


def fp(text):
    return text_format.Parse(text, caffe_pb2.FillerParameter())


SHAPE = (64, 32, 3, 3)  # fan_in 288, fan_out 576


def test_constant_default_is_zero():
    assert np.all(filler_values(fp(""), (3, 4)) == 0)
    assert np.all(filler_values(fp("type: 'constant' value: 2.5"), (3,)) == 2.5)


def test_uniform_range_and_mean():
    v = filler_values(fp("type: 'uniform' min: -2 max: 3"), (200, 100))
    assert v.min() >= -2 and v.max() <= 3
    assert abs(v.mean() - 0.5) < 0.05


def test_gaussian_moments():
    v = filler_values(fp("type: 'gaussian' mean: 1 std: 0.5"), (300, 100))
    assert abs(v.mean() - 1) < 0.01 and abs(v.std() - 0.5) < 0.01


def test_gaussian_sparse_keeps_fraction():
    v = filler_values(fp("type: 'gaussian' std: 1 sparse: 10"), (100, 1000))
    assert abs((v != 0).mean() - 10 / 100) < 0.01


@pytest.mark.parametrize(
    "norm,n", [("FAN_IN", 288), ("FAN_OUT", 576), ("AVERAGE", 432)]
)
def test_xavier_bound_and_variance(norm, n):
    v = filler_values(fp(f"type: 'xavier' variance_norm: {norm}"), SHAPE)
    a = math.sqrt(3.0 / n)
    assert np.abs(v).max() <= a + 1e-7
    assert abs(v.var() - 1.0 / n) / (1.0 / n) < 0.05


@pytest.mark.parametrize(
    "norm,n", [("FAN_IN", 288), ("FAN_OUT", 576), ("AVERAGE", 432)]
)
def test_msra_variance(norm, n):
    v = filler_values(fp(f"type: 'msra' variance_norm: {norm}"), SHAPE)
    assert abs(v.mean()) < 0.01
    assert abs(v.var() - 2.0 / n) / (2.0 / n) < 0.05


def test_positive_unitball_rows_sum_to_one():
    v = filler_values(fp("type: 'positive_unitball'"), (10, 3, 4))
    assert np.all(v >= 0)
    np.testing.assert_allclose(v.reshape(10, -1).sum(1), 1, rtol=1e-5)


def test_bilinear_kernel_matches_formula():
    v = filler_values(fp("type: 'bilinear'"), (2, 1, 4, 4))
    f = math.ceil(4 / 2)
    c = (4 - 1) / (2 * f)
    for y in range(4):
        for x in range(4):
            want = (1 - abs(x / f - c)) * (1 - abs(y / f - c))
            assert v[1, 0, y, x] == pytest.approx(want)
    with pytest.raises(CaffepyError, match="square"):
        filler_values(fp("type: 'bilinear'"), (2, 1, 3, 4))


def test_unknown_filler_suggests():
    with pytest.raises(CaffepyError, match="did you mean 'xavier'"):
        filler_values(fp("type: 'xavir'"), (2, 2))


def test_bad_filler_parameters_are_named():
    with pytest.raises(CaffepyError, match="std >= 0, got -1"):
        filler_values(fp("type: 'gaussian' std: -1"), (2, 2))
    with pytest.raises(CaffepyError, match="min <= max"):
        filler_values(fp("type: 'uniform' min: 1 max: 0"), (2, 2))
