"""The closed-form densities behind the samplers, held against the marginal program's own."""

import pyro
import pytest
import torch

from kmeans_limit.inference.density import (
    _stick_breaking,
    log_prior,
    pointwise_log_likelihood,
)
from kmeans_limit.models import Priors, spherical_gmm_marginal

PRIORS = Priors(alpha=0.7, m0=-0.2, tau0=1.3, a0=3.0, b0=1.1)


@pytest.fixture
def X():
    return torch.randn(40, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1.5


def draws(n_draws=4, n_clusters=3, n_features=3, seed=1):
    generator = torch.Generator().manual_seed(seed)
    weights = torch.softmax(torch.randn(n_draws, n_clusters, generator=generator, dtype=torch.float64), -1)
    means = torch.randn(n_draws, n_clusters, n_features, generator=generator, dtype=torch.float64)
    sigma = 0.3 + torch.rand(n_draws, generator=generator, dtype=torch.float64)
    return weights, means, sigma


def marginal_trace(X, weights, means, sigma, fixed_sigma=None, priors=PRIORS):
    data = {"weights": weights, "means": means}
    if fixed_sigma is None:
        data["sigma"] = sigma
    conditioned = pyro.condition(spherical_gmm_marginal, data=data)
    return pyro.poutine.trace(conditioned).get_trace(
        X, n_clusters=weights.shape[-1], sigma=fixed_sigma, priors=priors
    )


@pytest.mark.parametrize("learn_sigma", [True, False])
def test_log_prior_and_likelihood_equal_the_program(X, learn_sigma):
    weights, means, sigma = draws()
    lp = log_prior(weights, means, sigma if learn_sigma else None, PRIORS)
    pointwise = pointwise_log_likelihood(X, weights, means, sigma, chunk_size=7)
    for m in range(weights.shape[0]):
        trace = marginal_trace(X, weights[m], means[m], sigma[m], None if learn_sigma else sigma[m].item())
        trace.compute_log_prob()
        program_prior = sum(trace.nodes[name]["log_prob_sum"] for name in ("weights", "means"))
        if learn_sigma:
            program_prior = program_prior + trace.nodes["sigma"]["log_prob_sum"]
        assert torch.isclose(lp[m], program_prior, rtol=0, atol=1e-10)
        assert torch.allclose(pointwise[m], trace.nodes["x"]["log_prob"], rtol=0, atol=1e-10)


def test_pointwise_log_likelihood_by_hand():
    X = torch.tensor([[0.0], [2.0]], dtype=torch.float64)
    weights = torch.tensor([[0.25, 0.75]], dtype=torch.float64)
    means = torch.tensor([[[0.0], [1.0]]], dtype=torch.float64)
    sigma = torch.tensor([0.5], dtype=torch.float64)
    normal = torch.distributions.Normal(means[0, :, 0], 0.5)
    expected = torch.stack([torch.logsumexp(weights[0].log() + normal.log_prob(x), 0) for x in X[:, 0]])
    assert torch.allclose(pointwise_log_likelihood(X, weights, means, sigma)[0], expected, atol=1e-12)


def test_stick_breaking_is_torchs_transform():
    u = torch.randn(4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    transform = torch.distributions.transforms.StickBreakingTransform()
    weights, _, log_det = _stick_breaking(u)
    assert torch.allclose(weights, transform(u), atol=1e-14)
    assert torch.isclose(log_det, transform.log_abs_det_jacobian(u, transform(u)), atol=1e-12)


def test_float32_densities_stay_float32():
    X = torch.randn(20, 2, generator=torch.Generator().manual_seed(0))
    weights, means, sigma = (t.float() for t in draws(n_features=2))
    assert pointwise_log_likelihood(X, weights, means, sigma).dtype == torch.float32
    assert log_prior(weights, means, sigma, PRIORS).dtype == torch.float32


def test_log_prior_with_one_m0_a_feature_equals_the_program(X):
    priors = Priors(alpha=0.7, m0=(5.0, -3.0, 100.0), tau0=1.3, a0=3.0, b0=1.1)
    weights, means, sigma = draws()
    lp = log_prior(weights, means, sigma, priors)
    for m in range(weights.shape[0]):
        trace = marginal_trace(X, weights[m], means[m], sigma[m], priors=priors)
        trace.compute_log_prob()
        program = sum(trace.nodes[name]["log_prob_sum"] for name in ("weights", "means", "sigma"))
        assert torch.isclose(lp[m], program, rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="priors.m0 has 3 values but the data have n_features=2"):
        log_prior(weights, means[..., :2], sigma, priors)
