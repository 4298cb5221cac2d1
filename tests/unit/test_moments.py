"""The compiled column moments that :func:`prepare_data` takes of CPU rows, against exact sums."""

import math

import numpy as np
import pytest
import torch

from kmeans_limit.inference import _moments
from kmeans_limit.inference._comm import LOCAL
from kmeans_limit.inference.data import _moments as data_moments


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_rows", [1, _moments.BLOCK, 3 * _moments.BLOCK + 7])
def test_column_moments_equal_exact_sums(dtype, n_rows):
    """Far from the origin (offset 1e4 times the spread): every sum within a few float64 ulps of
    the exactly rounded one (``math.fsum`` of the float64 terms)."""
    rng = np.random.default_rng(n_rows)
    x = (rng.normal(size=(n_rows, 5)) * 3.0 + 3e4).astype(dtype)
    sums, second = _moments.column_moments(x)
    wide = x.astype(np.float64)
    want = np.array([math.fsum(wide[:, t]) for t in range(5)])
    np.testing.assert_allclose(sums, want, rtol=1e-14, atol=0)
    assert second == pytest.approx(math.fsum((wide * wide).ravel()), rel=1e-14)
    assert sums.dtype == np.float64


def test_prepare_data_takes_the_same_moments_on_every_route():
    """Contiguous CPU rows go through the compiled pass, others through the chunked tensor sums:
    the same means and mean squared norm."""
    X = torch.randn(5000, 8, dtype=torch.float64) * 2.0 + 50.0
    strided = torch.randn(5000, 16, dtype=torch.float64)[:, ::2]
    strided.copy_(X)
    assert not strided.is_contiguous()
    mean, second, n = data_moments(X, LOCAL)
    mean_s, second_s, n_s = data_moments(strided, LOCAL)
    torch.testing.assert_close(mean, mean_s, rtol=1e-14, atol=0)
    assert second == pytest.approx(second_s, rel=1e-14) and n == n_s == 5000
