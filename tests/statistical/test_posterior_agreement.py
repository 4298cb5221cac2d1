"""Gibbs and NUTS target the same posterior; with σ fixed and labels known it is the analytic one.

Tolerances are in Monte-Carlo standard errors (``az.mcse``): posterior means within 4 combined MCSE,
posterior sds within 20 % (the sd estimates' own relative error is about 1/√(2·ESS), 3–4 % here).
"""

import numpy as np
import pytest
import torch

from kmeans_limit.inference import arviz_compat, compare_posteriors, fit_posterior, relabel, sample_from
from kmeans_limit.models import Priors

#: name → (centres, weights, σ, N, seed); all D = 2.
DATASETS = {
    "separated": ([[-3.0, 0.0], [3.0, 0.0], [0.0, 3.0]], None, 0.5, 90, 0),
    "overlapping": ([[-1.0, 0.0], [1.0, 0.0]], None, 0.7, 80, 1),
    "unequal": ([[-2.0, 0.0], [2.0, 0.5]], [0.8, 0.2], 0.6, 100, 2),
}
GIBBS = {"method": "gibbs", "num_samples": 2000, "num_warmup": 300, "num_chains": 4, "progress": False}
NUTS = {"method": "nuts", "num_samples": 400, "num_warmup": 200, "num_chains": 2, "progress": False}


def dataset(name: str) -> tuple[torch.Tensor, int]:
    centres, weights, sigma, n_samples, seed = DATASETS[name]
    data = sample_from(
        torch.tensor(centres, dtype=torch.float64), n_samples, weights=weights, sigma=sigma, seed=seed
    )
    return data.x, len(centres)


def assert_agree(name: str, nuts_options: dict, seed: int = 0) -> None:
    X, n_clusters = dataset(name)
    gibbs = fit_posterior(X, n_clusters, seed=10 + seed, **GIBBS)
    nuts = fit_posterior(X, n_clusters, seed=20 + seed, **nuts_options)
    assert not nuts.sample_stats["diverging"].any()
    table = compare_posteriors({"nuts": nuts, "gibbs": gibbs})
    assert len(table) == 1 + n_clusters + 2 * n_clusters
    bad_means = table[table["z_mcse"].abs() >= 4]
    assert bad_means.empty, bad_means.to_string()
    bad_sds = table[(table["sd_ratio"] - 1).abs() >= 0.2]
    assert bad_sds.empty, bad_sds.to_string()


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_gibbs_and_nuts_agree(name):
    """About 11 s a data set: 2 NUTS chains of 400 draws, 4 Gibbs chains of 2000."""
    assert_agree(name, NUTS)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("name", sorted(DATASETS))
def test_gibbs_and_nuts_agree_over_seeds_with_longer_chains(name, seed):
    assert_agree(name, {**NUTS, "num_samples": 1000, "num_warmup": 400}, seed=seed)


def analytic_means_posterior(X, labels, sigma, priors):
    """``means_k | X, z, σ ~ Normal(m_k, v_k I)``: 1/v_k = 1/τ0² + N_k/σ², m_k = v_k (m0/τ0² + S_k/σ²)."""
    loc, scale = [], []
    for k in range(int(labels.max()) + 1):
        rows = X[labels == k]
        precision = 1 / priors.tau0**2 + len(rows) / sigma**2
        loc.append((priors.m0 / priors.tau0**2 + rows.sum(0) / sigma**2) / precision)
        scale.append(precision**-0.5)
    return torch.stack(loc).numpy(), np.array(scale)


@pytest.mark.parametrize(
    ("method", "options", "sd_tolerance"),
    [
        ("gibbs", {"num_samples": 1000, "num_chains": 4}, 0.05),
        ("nuts", {"num_samples": 300, "num_chains": 2}, 0.15),
    ],
)
def test_means_posterior_with_fixed_sigma_and_known_labels_is_the_analytic_normal(
    method, options, sd_tolerance
):
    """Clusters 40σ apart: every z is certain, so the means' posterior is the conjugate Normal."""
    sigma, priors = 0.5, Priors(m0=0.5, tau0=3.0)
    centres = torch.tensor([[-10.0, 0.0], [10.0, 1.0]], dtype=torch.float64)
    data = sample_from(centres, 40, weights=[0.6, 0.4], sigma=sigma, seed=5)
    loc, scale = analytic_means_posterior(data.x, data.z, sigma, priors)
    idata = fit_posterior(
        data.x,
        2,
        method=method,
        sigma=sigma,
        priors=priors,
        num_warmup=200,
        progress=False,
        seed=1,
        **options,
    )
    idata = relabel(idata, reference=centres)
    means = idata.posterior["means"]
    mcse = arviz_compat.mcse(arviz_compat.group(idata, "posterior")[["means"]], method="mean")["means"].values
    assert (np.abs(means.mean(("chain", "draw")).values - loc) < 4 * mcse).all()
    sd = means.std(("chain", "draw")).values
    assert (np.abs(sd / scale[:, None] - 1) < sd_tolerance).all()
