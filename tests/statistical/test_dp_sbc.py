"""Simulation-based calibration (Talts et al. 2018) of the DP blocked Gibbs sampler (slow).

θ = (v, means, σ, α) ~ prior and X ~ p(X | θ) are drawn from the program ``dp_gmm`` itself; the ranks
of σ, α, the number of occupied clusters of the drawn z and the log-likelihood of X (Modrák et al.
2023) among thinned posterior draws must be uniform: a chi-square test on binned ranks at level 0.001
per quantity. The occupied count is discrete, so its ranks are randomised between ties.
"""

import numpy as np
import pyro
import pytest
import torch
from scipy.stats import chisquare

from kmeans_limit.inference.dp_posterior import dp_log_likelihood, fit_dp_posterior
from kmeans_limit.models import Priors, dp_gmm

PRIORS = Priors(m0=0.0, tau0=3.0, a0=3.0, b0=1.0)
N_SAMPLES, MAX_CLUSTERS, N_BINS = 25, 8, 8
ALPHA_PRIOR = (2.0, 2.0)


def prior_draw(seed: int):
    with pyro.poutine.seed(rng_seed=seed), pyro.poutine.trace() as tracer:
        x = dp_gmm(
            max_clusters=MAX_CLUSTERS,
            n_features=1,
            n_samples=N_SAMPLES,
            priors=PRIORS,
            concentration_prior=ALPHA_PRIOR,
            dtype=torch.float64,
        )
    nodes = tracer.trace.nodes
    value = lambda name: nodes[name]["value"]  # noqa: E731
    log_lik = dp_log_likelihood(x, value("weights")[None], value("means")[None], value("sigma")[None]).sum()
    truth = {
        "sigma": value("sigma").item(),
        "alpha": value("alpha").item(),
        "n_occupied": value("z").unique().numel(),
        "log_lik": log_lik.item(),
    }
    return x, truth


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::kmeans_limit.inference.dp_posterior.TruncationWarning")
def test_dp_gibbs_is_calibrated():
    rng = np.random.default_rng(0)
    ranks = {"sigma": [], "alpha": [], "n_occupied": [], "log_lik": []}
    n_datasets, thin = 100, 10
    for r in range(n_datasets):
        x, truth = prior_draw(r)
        idata = fit_dp_posterior(
            x,
            MAX_CLUSTERS,
            priors=PRIORS,
            concentration_prior=ALPHA_PRIOR,
            num_samples=350,
            num_warmup=150,
            num_chains=2,
            seed=r,
        )
        post = idata.posterior.isel(draw=slice(None, None, thin))
        values = {
            "sigma": post.sigma.values.ravel(),
            "alpha": post.alpha.values.ravel(),
            "n_occupied": post.n_occupied.values.ravel(),
            "log_lik": idata.log_likelihood.x.isel(draw=slice(None, None, thin))
            .sum("observation")
            .values.ravel(),
        }
        for name in ranks:
            below, ties = (values[name] < truth[name]).sum(), (values[name] == truth[name]).sum()
            ranks[name].append(int(below + rng.integers(0, ties + 1)))
    n_draws = len(values["sigma"])
    for name, rank in ranks.items():
        counts = np.bincount(
            np.minimum(np.array(rank) * N_BINS // (n_draws + 1), N_BINS - 1), minlength=N_BINS
        )
        assert chisquare(counts).pvalue > 1e-3, f"{name}: ranks not uniform, bins {counts.tolist()}"
