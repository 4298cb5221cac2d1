"""Deterministic annealing: its phase transition, its path, and a Lloyd fixed point at the end."""

import math

import numpy as np
import pyro
import pytest
import torch
from sklearn.datasets import make_blobs

from kmeans_limit.inference import anneal, em, kmeans_objective, lloyd
from kmeans_limit.models import spherical_gmm_marginal


def blobs(n=400, centers=4, seed=0, std=1.0, n_features=2):
    X, _ = make_blobs(n, n_features=n_features, centers=centers, cluster_std=std, random_state=seed)
    return torch.from_numpy(X)


def two_blobs(n=200, gap=10.0, seed=0):
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    X[: n // 2, 0] += gap / 2
    X[n // 2 :, 0] -= gap / 2
    return X


def top_covariance_eigenvalue(X, weight=None):
    weight = np.ones(len(X)) if weight is None else np.asarray(weight)
    X = np.asarray(X)
    mean = weight @ X / weight.sum()
    cov = ((X - mean) * weight[:, None]).T @ (X - mean) / weight.sum()  # the 1/N covariance
    return np.linalg.eigvalsh(cov)[-1]


@pytest.fixture(scope="module")
def annealed():
    X = blobs(seed=1, std=1.5)
    return X, anneal(X, 6)


def test_result_is_a_lloyd_fixed_point(annealed):
    X, result = annealed
    step = lloyd(X, result.means, max_iter=1)
    assert torch.equal(step.labels, result.labels)
    assert torch.allclose(step.means, result.means, rtol=0, atol=1e-12)


def test_result_fields_agree_with_each_other(annealed):
    X, result = annealed
    assert result.inertia == pytest.approx(kmeans_objective(X, result.means, result.labels), rel=1e-12)
    assert result.inertia == pytest.approx(kmeans_objective(X, result.means), rel=1e-12)
    n, d = X.shape
    assert result.sigma_star == pytest.approx(math.sqrt(result.inertia / (n * d)), rel=1e-12)
    counts = torch.bincount(result.labels, minlength=6).double()
    assert torch.allclose(result.weights, counts / n)
    assert result.n_iter > 0


def test_path_records_every_level(annealed):
    X, result = annealed
    path, n, k = result.path, X.shape[1], 6
    levels = path.sigma.shape[0]
    assert path.means.shape == (levels, k, n) and path.weights.shape == (levels, k)
    for field in (path.log_likelihood, path.entropy, path.n_distinct):
        assert field.shape == (levels,)
    assert torch.isfinite(path.means).all() and torch.isfinite(path.weights).all()
    assert torch.isfinite(path.log_likelihood).all() and (path.entropy >= 0).all()
    assert (path.sigma.diff() <= 0).all() and (path.sigma > 0).all()
    assert torch.allclose(path.weights.sum(1), torch.ones(levels, dtype=torch.float64))
    # Above the first transition every centroid, born or not, is the data mean.
    assert torch.allclose(path.means[0], X.mean(0).expand(k, -1), atol=1e-12)
    assert path.n_distinct[0] == 1 and (path.n_distinct.diff() >= 0).all() and path.n_distinct.max() <= k


def test_path_log_likelihood_and_entropy_are_the_programs(annealed):
    """Each level's record is the exact density of the Pyro program at that level's parameters."""
    X, result = annealed
    path = result.path
    for level in sorted({0, len(path.sigma) // 2, len(path.sigma) - 1}):
        means, weights, sigma = path.means[level], path.weights[level], path.sigma[level].item()
        data = {"means": means, "weights": weights}
        trace = pyro.poutine.trace(pyro.condition(spherical_gmm_marginal, data=data)).get_trace(
            X, n_clusters=6, sigma=sigma
        )
        trace.compute_log_prob()
        expected = trace.nodes["x"]["log_prob_sum"].item()
        assert path.log_likelihood[level].item() == pytest.approx(expected, rel=1e-10)
        d2 = ((X[:, None, :] - means[None]) ** 2).sum(-1)
        gamma = torch.softmax(torch.log(weights) - d2 / (2 * sigma**2), -1)
        entropy = -torch.special.xlogy(gamma, gamma).sum(-1).mean().item()
        assert path.entropy[level].item() == pytest.approx(entropy, rel=1e-8, abs=1e-12)


def test_critical_sigmas_one_per_split(annealed):
    X, result = annealed
    assert result.critical_sigmas.shape == (5,)
    assert (result.critical_sigmas > 0).all()
    assert result.critical_sigmas[0] == pytest.approx(math.sqrt(top_covariance_eigenvalue(X)), rel=1e-10)


def test_first_phase_transition_at_top_covariance_eigenvalue():
    X = two_blobs()
    lam = top_covariance_eigenvalue(X)
    result = anneal(X, 2)
    assert result.critical_sigmas[0].item() ** 2 == pytest.approx(lam, rel=0.05)
    assert result.path.sigma[0].item() ** 2 > lam  # the path starts above the transition


@pytest.mark.parametrize(("factor", "split"), [(1.1, False), (0.85, True)])
def test_em_itself_splits_a_duplicated_centroid_only_below_the_transition(factor, split):
    """The physics, not the bookkeeping: EM at fixed σ from two centroids a hair apart."""
    X = two_blobs()
    lam = top_covariance_eigenvalue(X)
    mean = X.mean(0)
    init = torch.stack([mean + torch.tensor([1e-3, 0.0]), mean - torch.tensor([1e-3, 0.0])]).double()
    result = em(X, init, sigma=math.sqrt(factor * lam), weights="equal", max_iter=5000, tol=1e-12)
    gap = (result.means[0] - result.means[1]).norm().item()
    assert (gap > 1.0) == split, gap


def test_weighted_transition_uses_the_weighted_covariance():
    X = two_blobs(seed=1)
    weight = torch.linspace(0.1, 2.0, X.shape[0], dtype=torch.float64)
    result = anneal(X, 2, sample_weight=weight)
    expected = top_covariance_eigenvalue(X, weight)
    assert result.critical_sigmas[0].item() ** 2 == pytest.approx(expected, rel=1e-10)


def test_same_seed_same_result_and_weights_modes():
    X = blobs(seed=2, std=2.0)
    first, second = anneal(X, 5, seed=7), anneal(X, 5, seed=7)
    assert torch.equal(first.means, second.means) and torch.equal(first.path.sigma, second.path.sigma)
    equal = anneal(X, 5, weights="equal")
    assert torch.allclose(equal.path.weights[-1], torch.full((5,), 0.2, dtype=torch.float64))
    assert torch.equal(lloyd(X, equal.means, max_iter=1).labels, equal.labels)
    assert equal.inertia < 1.02 * first.inertia


def test_one_cluster_is_the_mean():
    X = blobs(seed=3)
    result = anneal(X, 1)
    assert torch.allclose(result.means[0], X.mean(0), atol=1e-12)
    assert result.inertia == pytest.approx(((X - X.mean(0)) ** 2).sum().item(), rel=1e-12)
    assert result.critical_sigmas.shape == (0,) and result.path.sigma.shape == (1,)


def test_one_row_or_one_point_is_its_own_centroid():
    for X in (torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 2.0]]).repeat(5, 1)):
        result = anneal(X, 1)
        assert torch.equal(result.means, X[:1]) and result.inertia == 0.0 and result.sigma_star == 0.0


def test_integer_sample_weights_act_like_repeated_rows():
    X = blobs(n=150, seed=4, std=1.2)
    counts = torch.randint(1, 4, (X.shape[0],), generator=torch.Generator().manual_seed(1))
    weighted = anneal(X, 4, sample_weight=counts.double())
    repeated = anneal(X.repeat_interleave(counts, dim=0), 4)
    assert weighted.inertia == pytest.approx(repeated.inertia, rel=1e-9)


def test_schedule_ends_are_respected():
    X = blobs(seed=5, std=1.5)
    lam = top_covariance_eigenvalue(X)
    start = 3.0 * math.sqrt(lam)
    result = anneal(X, 4, sigma_start=start, sigma_end=0.05)
    assert result.path.sigma[0].item() == start
    assert (result.path.sigma >= 0.05).all()
    assert lloyd(X, result.means, max_iter=1).labels.equal(result.labels)


def test_refinement_off_still_gives_a_fixed_point():
    X = blobs(seed=6, std=2.5, centers=6)
    result = anneal(X, 6, n_trials=0)
    assert torch.equal(lloyd(X, result.means, max_iter=1).labels, result.labels)


def test_float32_to_tiny_sigma_never_gives_nan():
    X = blobs(n=200, seed=7, n_features=3).float()
    result = anneal(X, 3, sigma_end=1e-30, cooling=0.5)
    assert result.means.dtype == torch.float32
    assert result.path.sigma.min() < 1e-20
    for tensor in (result.means, result.weights, result.path.means, result.path.weights):
        assert not torch.isnan(tensor).any()
    assert not torch.isnan(result.path.log_likelihood).any() and not torch.isnan(result.path.entropy).any()
    assert math.isfinite(result.inertia)


BAD = [
    ({"X": torch.tensor([[0.0, 1.0], [float("nan"), 2.0], [3.0, 1.0], [4.0, 4.0]])}, "NaN or inf"),
    ({"X": torch.tensor([[0.0, 1.0], [float("inf"), 2.0], [3.0, 1.0], [4.0, 4.0]])}, "NaN or inf"),
    ({"X": torch.arange(6.0)}, "should be 2-D"),
    ({"X": torch.zeros(0, 2)}, "is empty"),
    ({"X": torch.ones(6, 2)}, "1 distinct points, fewer than n_clusters=2"),
    ({"n_clusters": 0}, "n_clusters=0"),
    ({"n_clusters": 2.5}, "n_clusters=2.5"),
    ({"n_clusters": 7}, "n_samples=6 should be >= n_clusters=7"),
    ({"sigma_start": 0.0}, "sigma_start=0.0"),
    ({"sigma_start": -2.0}, "sigma_start=-2.0"),
    ({"sigma_end": 0.0}, "sigma_end=0.0"),
    ({"sigma_end": float("nan")}, "sigma_end=nan"),
    ({"cooling": 1.0}, r"cooling=1.0 should be a finite number in \(0, 1\)"),
    ({"cooling": 0.0}, "cooling=0.0"),
    ({"cooling": 1.5}, "cooling=1.5"),
    ({"weights": "free"}, "weights='free'"),
    ({"seed": -3}, "seed=-3"),
    ({"max_iter": 0}, "max_iter=0"),
    ({"tol": -1e-3}, "tol=-0.001"),
    ({"n_trials": -1}, "n_trials=-1"),
    ({"sample_weight": torch.ones(5)}, r"sample_weight of shape \(5,\) should have shape \(6,\)"),
    ({"sample_weight": torch.tensor([1.0, 1.0, -1.0, 1.0, 1.0, 1.0])}, "sample_weight should be >= 0"),
    ({"sample_weight": torch.zeros(6)}, "sample_weight sums to 0"),
]


@pytest.mark.parametrize(("kwargs", "match"), BAD)
def test_bad_input_is_a_value_error(kwargs, match):
    args = {"X": torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 5.0], [5.0, 5.0], [9.0, 1.0], [3.0, 3.0]])}
    args.update({"n_clusters": 2, **kwargs})
    with pytest.raises(ValueError, match=match):
        anneal(args.pop("X"), args.pop("n_clusters"), **args)


def test_split_proposal_is_two_means_along_the_principal_axis():
    from kmeans_limit.inference._split import propose_split

    X = two_blobs(gap=8.0, seed=2)
    weight = torch.ones(X.shape[0], dtype=X.dtype)
    proposal = propose_split(X, weight)
    assert proposal.critical_sigma2 == pytest.approx(top_covariance_eigenvalue(X), rel=1e-12)
    hard = lloyd(X, torch.stack([proposal.left, proposal.right]), tol=0.0)
    assert torch.allclose(hard.means, torch.stack([proposal.left, proposal.right]), atol=1e-12)
    parent = ((X - X.mean(0)) ** 2).sum().item()
    assert proposal.gain == pytest.approx(parent - hard.inertia, rel=1e-10)
    assert proposal.left_mass + proposal.right_mass == pytest.approx(X.shape[0])


def test_removal_costs_match_deleting_each_centroid():
    from kmeans_limit.inference._split import removal_costs

    X = blobs(n=200, seed=8)
    means = X[[0, 50, 100, 150]]
    weight = torch.rand(200, generator=torch.Generator().manual_seed(0), dtype=X.dtype)
    labels = ((X[:, None] - means[None]) ** 2).sum(-1).argmin(1)
    costs = removal_costs(X, weight, means, labels)
    base = kmeans_objective(X, means, sample_weight=weight)
    for k in range(4):
        rest = torch.cat([means[:k], means[k + 1 :]])
        assert costs[k].item() == pytest.approx(
            kmeans_objective(X, rest, sample_weight=weight) - base, rel=1e-9
        )
