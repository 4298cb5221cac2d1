"""The hard fits are equivariant under X' = a·X + b: centroids a·μ + b, the same labels, σ times a.

Lloyd, EM and annealing are defined by distances, so moving and scaling the data moves and scales
the answer and nothing else. In float64 that must hold to 1e-8 relative to the data's spread
(``a`` times the spread of X), whether or not :func:`prepare_data` centres X' (it does for the large
offsets below, and the test checks so), for a tiny (1e-6) and a huge (1e6) scale. The budget: the
rows of X' are X's times a plus b, rounded to float64, an error of 2^-53 (|b| + a|x|), about
1e-11 a·spread for the largest offset (1e5 spreads); each fit amplifies such perturbations by its
conditioning, far below 1e3 for these well-separated blobs.
"""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

from kmeans_limit.inference import anneal, em, kmeans_objective, kmeans_plusplus, lloyd
from kmeans_limit.inference.data import prepare_data

F64 = torch.float64
REL = 1e-8


@pytest.fixture(scope="module")
def blobs() -> torch.Tensor:
    X, _ = make_blobs(90, centers=[[0, 0, 0], [6, 1, 0], [1, 6, 2]], cluster_std=1.0, random_state=5)
    return torch.from_numpy(X)


def spread(X: torch.Tensor) -> float:
    return prepare_data(X).variance ** 0.5


#: (scale a, offset b in units of a·spread of X, whether X' is centred)
TRANSFORMS = [
    (1e-6, 0.0, False),
    (1e-6, 50.0, True),
    (1.0, 50.0, True),
    (1.0, 1e5, True),
    (3.7, 0.3, False),
    (1e6, 0.0, False),
    (1e6, 50.0, True),
]


def transformed(X: torch.Tensor, a: float, b_spreads: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a·X + b, b)`` with ``b`` of norm ``b_spreads · a · spread(X)`` along a fixed direction."""
    direction = torch.tensor([0.6, -0.48, 0.64], dtype=F64)  # unit norm
    b = b_spreads * a * spread(X) * direction
    return a * X + b, b


def assert_points(got: torch.Tensor, expected: torch.Tensor, a: float, X: torch.Tensor) -> None:
    torch.testing.assert_close(got, expected, rtol=0, atol=REL * a * spread(X))


@pytest.mark.parametrize(("a", "b_spreads", "centred"), TRANSFORMS)
def test_lloyd_is_equivariant(blobs, a, b_spreads, centred):
    X = blobs
    Xt, b = transformed(X, a, b_spreads)
    assert prepare_data(Xt).centred == centred
    init = X[[0, 1, 2]] + 0.5
    fit = lloyd(X, init)
    moved = lloyd(Xt, a * init + b)
    assert torch.equal(moved.labels, fit.labels) and moved.n_iter == fit.n_iter
    assert_points(moved.means, a * fit.means + b, a, X)
    assert moved.inertia == pytest.approx(a * a * fit.inertia, rel=REL)
    assert kmeans_objective(Xt, moved.means) == pytest.approx(a * a * fit.inertia, rel=REL)


@pytest.mark.parametrize(("a", "b_spreads", "centred"), TRANSFORMS)
@pytest.mark.parametrize("fixed_sigma", [None, 1.3])
def test_em_is_equivariant(blobs, a, b_spreads, centred, fixed_sigma):
    X = blobs
    Xt, b = transformed(X, a, b_spreads)
    assert prepare_data(Xt).centred == centred
    init = X[[0, 1, 2]] + 0.5
    fit = em(X, init, sigma=fixed_sigma, max_iter=300)
    moved = em(Xt, a * init + b, sigma=None if fixed_sigma is None else a * fixed_sigma, max_iter=300)
    assert moved.n_iter == fit.n_iter and moved.converged == fit.converged
    assert_points(moved.means, a * fit.means + b, a, X)
    torch.testing.assert_close(moved.weights, fit.weights, rtol=0, atol=REL)
    assert moved.sigma == pytest.approx(a * fit.sigma, rel=REL)
    # log p(x') = log p(x) − D log a for every row: the log-likelihood moves by N·D·log a.
    shift = X.shape[0] * X.shape[1] * np.log(a)
    assert moved.log_likelihood == pytest.approx(fit.log_likelihood - shift, rel=REL, abs=REL * abs(shift))


@pytest.mark.parametrize(("a", "b_spreads", "centred"), TRANSFORMS)
def test_anneal_is_equivariant(blobs, a, b_spreads, centred):
    X = blobs
    Xt, b = transformed(X, a, b_spreads)
    assert prepare_data(Xt).centred == centred
    fit, moved = anneal(X, 3), anneal(Xt, 3)
    assert torch.equal(moved.labels, fit.labels)
    assert_points(moved.means, a * fit.means + b, a, X)
    torch.testing.assert_close(moved.weights, fit.weights, rtol=0, atol=REL)
    assert moved.inertia == pytest.approx(a * a * fit.inertia, rel=REL)
    assert moved.sigma_star == pytest.approx(a * fit.sigma_star, rel=REL)
    # The path: the same levels, σ and the critical σ times a, centroids moved.
    assert moved.path.sigma.shape == fit.path.sigma.shape and moved.n_iter == fit.n_iter
    torch.testing.assert_close(moved.path.sigma, a * fit.path.sigma, rtol=REL, atol=0)
    torch.testing.assert_close(moved.critical_sigmas, a * fit.critical_sigmas, rtol=REL, atol=0)
    assert_points(moved.path.means, a * fit.path.means + b, a, X)
    assert torch.equal(moved.path.n_distinct, fit.path.n_distinct)


@pytest.mark.parametrize(("a", "b_spreads", "centred"), TRANSFORMS)
def test_kmeans_plusplus_picks_the_same_rows(blobs, a, b_spreads, centred):
    X = blobs
    Xt, b = transformed(X, a, b_spreads)
    assert_points(kmeans_plusplus(Xt, 3, seed=4), a * kmeans_plusplus(X, 3, seed=4) + b, a, X)
