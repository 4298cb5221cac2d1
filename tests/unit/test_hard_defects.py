"""Defects of the hard fits and the E step found in review (issue 12), each pinned by an exact case."""

import math

import pytest
import torch
from sklearn.datasets import make_blobs

from kmeans_limit.inference import anneal, kmeans_objective, kmeans_plusplus, lloyd
from kmeans_limit.inference.kernels import log_responsibilities, nearest_centroid, sufficient_stats

F64 = torch.float64


def tensor(values) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


# Defect 1: empty clusters parked in Lloyd's M step, and rows of weight 0.


def test_lloyd_with_more_centroids_than_distinct_rows():
    """Two distinct rows, three centroids (lloyd allows it): the third is parked, not a crash."""
    X = tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    result = lloyd(X, tensor([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]]))
    assert result.labels.tolist() == [0, 0, 1, 1]
    # The empty centroid sits on the heaviest one (the first, on the tie of two rows each).
    assert torch.equal(result.means, tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]))
    assert result.inertia == 0.0 and result.converged


def test_lloyd_never_moves_an_empty_cluster_onto_a_row_of_weight_zero():
    """The farthest row has weight 0: the empty centroid takes the farthest row that has weight."""
    X = tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [10.0, 0.0]])
    weight = tensor([1.0, 1.0, 1.0, 0.0])
    result = lloyd(X, tensor([[0.0, 0.0], [1.0, 0.0], [50.0, 50.0]]), sample_weight=weight)
    assert torch.equal(result.means, tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]]))
    assert result.labels.tolist() == [0, 1, 2, 2]
    assert result.inertia == 0.0 and result.converged


def test_lloyd_parks_an_empty_cluster_when_only_rows_of_weight_zero_are_off_their_centroids():
    X = tensor([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0]])
    result = lloyd(X, tensor([[0.0, 0.0], [1.0, 0.0], [50.0, 50.0]]), sample_weight=tensor([1.0, 2.0, 0.0]))
    assert torch.equal(result.means, tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0]]))
    assert result.inertia == 0.0 and result.converged


def test_anneal_and_kmeans_plusplus_count_only_rows_of_positive_weight():
    X = tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 5.0]])
    weight = tensor([1.0, 1.0, 0.0])
    match = "X has 2 distinct points of positive sample_weight, fewer than n_clusters=3"
    with pytest.raises(ValueError, match=match):
        anneal(X, 3, sample_weight=weight)
    with pytest.raises(ValueError, match=match):
        kmeans_plusplus(X, 3, sample_weight=weight)


def test_anneal_with_rows_of_weight_zero_ignores_them():
    X, _ = make_blobs(120, centers=[[0, 0], [8, 0], [0, 8]], cluster_std=1.0, random_state=3)
    X = torch.from_numpy(X)
    weight = torch.ones(X.shape[0], dtype=F64)
    weight[::3] = 0.0
    fit = anneal(X, 3, sample_weight=weight)
    kept = anneal(X[weight > 0], 3)
    torch.testing.assert_close(fit.means, kept.means, rtol=0, atol=1e-10)
    assert torch.equal(fit.labels[weight > 0], kept.labels)
    assert fit.labels.shape == (120,) and torch.equal(fit.labels, nearest_centroid(X, fit.means)[0])
    assert fit.inertia == pytest.approx(kmeans_objective(X, fit.means, sample_weight=weight), rel=1e-12)
    centres = kmeans_plusplus(X, 3, sample_weight=weight)
    assert torch.unique(centres, dim=0).shape[0] == 3


# Defect 3: float32 (and float64) responsibilities where β is finite but the logits' 2β is not.


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fraction", [0.51, 0.75, 0.999])
def test_responsibilities_where_beta_is_finite_but_two_beta_overflows(dtype, fraction):
    """β = 1/(2σ²) in [max/2, max): the k-means limit, not NaN (σ ≈ 4-5e-20 in float32)."""
    big = torch.finfo(dtype).max
    sigma = 1.0 / (math.sqrt(2.0 * fraction) * math.sqrt(big))  # β = fraction · max
    beta = 1.0 / (2.0 * sigma * sigma)
    assert big / 2 <= beta < big  # the window itself
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(50, 3, generator=generator, dtype=F64).to(dtype)
    means = X[[0, 10, 20]] + 0.25
    log_weights = torch.tensor([0.2, 0.3, 0.5], dtype=dtype).log()
    log_gamma, log_density = log_responsibilities(X, means, log_weights, sigma)
    labels = nearest_centroid(X, means)[0]
    assert torch.equal(log_gamma.exp(), torch.nn.functional.one_hot(labels, 3).to(dtype))
    assert not log_density.isnan().any()
    stats = sufficient_stats(X, means, log_weights, sigma)
    assert torch.equal(stats.counts, torch.bincount(labels, minlength=3).to(dtype))
    assert not math.isnan(stats.log_likelihood) and not math.isnan(stats.entropy)


# Defect 4: σ = 0 must be the σ → 0 limit, weights of zero included.


def test_zero_sigma_gives_nothing_to_a_component_of_weight_zero():
    """The issue's case: the nearer centroid has weight 0, so the other one takes the row."""
    X, means = tensor([[0.9]]), tensor([[0.0], [1.0]])
    log_weights = tensor([1.0, 0.0]).log()
    for sigma in (1e-150, 0.0):
        log_gamma = log_responsibilities(X, means, log_weights, sigma)[0]
        assert log_gamma.exp().tolist() == [[1.0, 0.0]], sigma


def test_zero_sigma_equals_the_small_sigma_limit_with_weights_of_zero():
    generator = torch.Generator().manual_seed(2)
    X = 3.0 * torch.randn(200, 2, generator=generator, dtype=F64)
    means = X[[0, 1, 2, 3]] + 0.01
    log_weights = tensor([0.0, 0.5, 0.5, 0.0]).log()
    hard = log_responsibilities(X, means, log_weights, 0.0)[0].exp()
    assert torch.equal(hard, log_responsibilities(X, means, log_weights, 1e-150)[0].exp())
    assert (hard[:, [0, 3]] == 0).all()
    stats = sufficient_stats(X, means, log_weights, 0.0)
    assert stats.counts[[0, 3]].tolist() == [0.0, 0.0] and stats.counts.sum().item() == 200.0
