"""Ancestral sampling: the draws follow the program's laws, within Monte-Carlo error, over several seeds."""

import pytest
import torch
from scipy import stats

from kmeans_limit.inference import sample_from, sample_prior
from kmeans_limit.models import Priors

SEEDS = [0, 1, 2]
MEANS = torch.tensor([[-3.0, 0.0, 1.0], [0.0, 3.0, -1.0], [3.0, 0.0, 0.0]], dtype=torch.float64)
WEIGHTS = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)


@pytest.mark.parametrize("seed", SEEDS)
def test_label_frequencies_match_weights(seed):
    draws = sample_from(MEANS, 20_000, weights=WEIGHTS, sigma=0.7, seed=seed)
    counts = torch.bincount(draws.z, minlength=3).double()
    p_value = stats.chisquare(counts.numpy(), (20_000 * WEIGHTS).numpy()).pvalue
    assert p_value > 1e-3


@pytest.mark.parametrize("seed", SEEDS)
def test_per_cluster_mean_and_covariance_are_mu_and_sigma2_identity(seed):
    sigma = 0.7
    draws = sample_from(MEANS, 20_000, weights=WEIGHTS, sigma=sigma, seed=seed)
    for k in range(3):
        rows = draws.x[draws.z == k]
        n_k = rows.shape[0]
        mean_se = sigma / n_k**0.5
        assert ((rows.mean(0) - MEANS[k]).abs() < 4 * mean_se).all()
        cov = torch.cov(rows.T)
        diag_se = sigma**2 * (2 / (n_k - 1)) ** 0.5
        off_se = sigma**2 / n_k**0.5
        assert ((cov.diagonal() - sigma**2).abs() < 4 * diag_se).all()
        off = cov - torch.diag(cov.diagonal())
        assert (off.abs() < 4 * off_se).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_prior_draws_follow_the_priors(seed):
    priors = Priors(alpha=2.0, m0=1.0, tau0=1.5, a0=3.0, b0=2.0)
    draws = sample_prior(5, n_clusters=3, n_features=2, priors=priors, num_datasets=2000, seed=seed)
    sigma2 = (draws.sigma**2).numpy()
    assert stats.kstest(sigma2, stats.invgamma(a=3.0, scale=2.0).cdf).pvalue > 1e-3
    # Each weight of a symmetric Dirichlet(α·1_K) is Beta(α, (K − 1)α).
    assert stats.kstest(draws.weights[:, 0].numpy(), stats.beta(2.0, 4.0).cdf).pvalue > 1e-3
    assert stats.kstest(draws.means[:, 1, 0].numpy(), stats.norm(1.0, 1.5).cdf).pvalue > 1e-3
    assert torch.allclose(draws.weights.sum(-1), torch.ones(2000, dtype=torch.float64))


@pytest.mark.parametrize("seed", SEEDS)
def test_prior_data_given_latents_are_normal_around_their_centroid(seed):
    draws = sample_prior(200, n_clusters=3, n_features=2, sigma=0.5, num_datasets=50, seed=seed)
    centroid = torch.gather(draws.means, 1, draws.z[..., None].expand(-1, -1, 2))
    standardized = ((draws.x - centroid) / 0.5).flatten().numpy()
    assert stats.kstest(standardized, stats.norm.cdf).pvalue > 1e-3
