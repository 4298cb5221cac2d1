"""Gibbs and NUTS against the exact posterior (enumeration + conjugacy + quadrature) on small data.

The strongest check the samplers have: no second sampler to share a mistake with. Every
label-invariant quantity the reference knows (σ and σ² when learned, the sorted weights, the
log-likelihood Σ_n log p(x_n | θ), P(z_i = z_j) for every pair) must lie within 4 Monte-Carlo
standard errors (``az.mcse`` of the fit, combined with the reference's own for the log-likelihood).
With about 30 correlated quantities a data set, a correct sampler fails one at 4 MCSE with
probability of order 1e-3; the seeds are fixed, so the outcome is reproducible.
"""

import numpy as np
import pytest

from kmeans_limit.inference import fit_posterior
from kmeans_limit.inference.exact import exact_posterior
from kmeans_limit.inference.reference import compare_to_reference
from kmeans_limit.models import Priors


def dataset(name: str) -> tuple[np.ndarray, int]:
    rng = np.random.default_rng({"two_1d": 1, "overlap_1d": 2, "three_2d": 3}[name])
    if name == "two_1d":  # two groups of 4, 3σ apart
        return np.concatenate([rng.normal(-1.5, 0.6, (4, 1)), rng.normal(1.5, 0.6, (4, 1))]), 2
    if name == "overlap_1d":  # 10 rows, no clear split
        return rng.normal(0.0, 1.0, (10, 1)), 2
    centres = np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]])
    return centres[[0, 0, 0, 1, 1, 1, 2, 2, 2]] + rng.normal(0, 0.7, (9, 2)), 3


def data_priors(X: np.ndarray) -> Priors:
    """``data_scaled_priors`` with one m0 for every feature (the mean of the column means)."""
    return Priors(m0=float(X.mean()), tau0=2 * float(X.std(0).mean()), b0=0.5 * float(X.var(0).mean()))


def assert_agrees(name: str, sigma, method: str, **options) -> None:
    X, k = dataset(name)
    priors = data_priors(X)
    reference = exact_posterior(X, k, sigma=sigma, priors=priors, n_draws=200_000)
    fit = fit_posterior(X, k, method=method, sigma=sigma, priors=priors, progress=False, **options)
    table = compare_to_reference({method: fit}, reference)
    bad = table[table["z_mcse"].abs() >= 4]
    assert bad.empty, bad.to_string()
    if sigma is None:
        row = table.set_index("parameter").loc["sigma"]
        assert abs(row["sd"] / row["reference_sd"] - 1) < 0.1, row.to_string()


GIBBS = {"num_samples": 1500, "num_warmup": 200, "num_chains": 4, "seed": 11}
NUTS = {"num_samples": 500, "num_warmup": 300, "num_chains": 2, "seed": 12}


@pytest.mark.parametrize("sigma", [0.6, None], ids=["fixed", "learned"])
@pytest.mark.parametrize("name", ["two_1d", "overlap_1d"])
def test_gibbs_agrees_with_the_exact_posterior(name, sigma):
    """About 3 s each (the reference 1 s, 4 × 1700 sweeps 2 s)."""
    assert_agrees(name, sigma, "gibbs", **GIBBS)


@pytest.mark.slow
@pytest.mark.parametrize("sigma", [0.8, None], ids=["fixed", "learned"])
def test_gibbs_agrees_with_the_exact_posterior_with_three_clusters(sigma):
    assert_agrees("three_2d", sigma, "gibbs", **{**GIBBS, "num_samples": 4000})


@pytest.mark.slow
@pytest.mark.parametrize("sigma", [0.6, None], ids=["fixed", "learned"])
@pytest.mark.parametrize("name", ["two_1d", "overlap_1d"])
def test_nuts_agrees_with_the_exact_posterior(name, sigma):
    """10-20 s each."""
    assert_agrees(name, sigma, "nuts", **NUTS)
