"""Simulation-based calibration (Talts et al. 2018) of the Gibbs sampler and NUTS.

Draw θ ~ prior and X ~ p(X | θ) from the program, fit the posterior, and rank θ's value of a test
quantity among the posterior draws. When inference is right the ranks are uniform. The quantities are
permutation-invariant: σ, the largest weight and the log-likelihood of X (Modrák et al. 2023).
Uniformity is checked by a chi-square test on binned ranks, at level 0.001 per quantity.
"""

import numpy as np
import pytest
from scipy.stats import chisquare

from kmeans_limit.inference import fit_posterior, sample_prior
from kmeans_limit.inference.density import pointwise_log_likelihood
from kmeans_limit.models import Priors

N_SAMPLES, N_CLUSTERS, N_FEATURES = 30, 2, 1
#: The prior the data are drawn from, and the one the fits must use: fit_posterior's default is scaled
#: to each data set, another prior, which SBC would rightly find miscalibrated.
PRIORS = Priors()
N_BINS = 10


def prior_values(draws, r: int) -> dict[str, float]:
    """The test quantities at the data set's true parameters."""
    weights, means, sigma = draws.weights[r], draws.means[r], draws.sigma[r]
    log_lik = pointwise_log_likelihood(draws.x[r], weights[None], means[None], sigma[None]).sum()
    return {"sigma": sigma.item(), "max_weight": weights.max().item(), "log_lik": log_lik.item()}


def posterior_values(idata, thin: int) -> dict[str, np.ndarray]:
    """The same quantities at every ``thin``-th posterior draw (nearly independent draws)."""
    post = idata.posterior.isel(draw=slice(None, None, thin))
    log_lik = idata.log_likelihood["x"].isel(draw=slice(None, None, thin)).sum("observation")
    return {
        "sigma": post["sigma"].values.ravel(),
        "max_weight": post["weights"].max("cluster").values.ravel(),
        "log_lik": log_lik.values.ravel(),
    }


def sbc_ranks(n_datasets: int, thin: int, **fit_kwargs) -> tuple[dict[str, np.ndarray], int]:
    """Ranks of the true values among the posterior draws, per quantity; and the number of draws L."""
    draws = sample_prior(
        N_SAMPLES,
        n_clusters=N_CLUSTERS,
        n_features=N_FEATURES,
        priors=PRIORS,
        num_datasets=n_datasets,
        seed=2024,
    )
    ranks = {"sigma": [], "max_weight": [], "log_lik": []}
    for r in range(n_datasets):
        idata = fit_posterior(
            draws.x[r], N_CLUSTERS, priors=PRIORS, seed=r, progress=False, relabel=False, **fit_kwargs
        )
        truth, posterior = prior_values(draws, r), posterior_values(idata, thin)
        for name in ranks:
            ranks[name].append(int((posterior[name] < truth[name]).sum()))
    return {name: np.array(values) for name, values in ranks.items()}, len(posterior["sigma"])


def assert_uniform(ranks: dict[str, np.ndarray], n_draws: int) -> None:
    """Chi-square test of the binned ranks against the discrete uniform on 0..n_draws."""
    edges = np.linspace(0, n_draws + 1, N_BINS + 1)
    share = np.histogram(np.arange(n_draws + 1), bins=edges)[0] / (n_draws + 1)
    for name, values in ranks.items():
        counts = np.histogram(values, bins=edges)[0]
        p_value = chisquare(counts, share * len(values)).pvalue
        assert p_value > 1e-3, f"{name}: ranks not uniform (p = {p_value:.2g}), bin counts {counts.tolist()}"


@pytest.mark.slow
def test_gibbs_is_calibrated():
    # 2 chains × 1000 kept sweeps, every 10th: 200 nearly independent draws.
    ranks, n_draws = sbc_ranks(200, thin=10, method="gibbs", num_samples=1000, num_warmup=200, num_chains=2)
    assert n_draws == 200
    assert_uniform(ranks, n_draws)


@pytest.mark.slow
def test_nuts_is_calibrated():
    # 1 chain × 400 draws, every 2nd: 200 draws.
    ranks, n_draws = sbc_ranks(100, thin=2, method="nuts", num_samples=400, num_warmup=200, num_chains=1)
    assert n_draws == 200
    assert_uniform(ranks, n_draws)
