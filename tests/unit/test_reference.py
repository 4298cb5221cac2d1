"""compare_to_reference: the table, its failures when a fit is wrong, and its refusals."""

import math

import numpy as np
import pytest

from kmeans_limit.inference import compare_posteriors, fit_posterior
from kmeans_limit.inference.exact import exact_posterior
from kmeans_limit.inference.reference import compare_to_reference
from kmeans_limit.models import Priors

X = np.array([[-1.9], [-1.2], [-1.5], [1.1], [1.8], [1.4]])
PRIORS = Priors(m0=0.0, tau0=3.0, b0=1.0)
FIT = {"num_samples": 600, "num_warmup": 100, "num_chains": 2, "progress": False}


@pytest.fixture(scope="module")
def reference():
    return exact_posterior(X, 2, priors=PRIORS, n_draws=50_000)


def test_table_of_a_right_and_a_wrong_posterior(reference):
    right = fit_posterior(X, 2, method="gibbs", priors=PRIORS, seed=1, **FIT)
    # The same sampler under other priors targets another posterior: the table must say so.
    wrong = fit_posterior(
        X, 2, method="gibbs", priors=Priors(m0=0.0, tau0=3.0, b0=1.0, alpha=20.0), seed=1, **FIT
    )
    table = compare_to_reference({"right": right, "wrong": wrong}, reference)
    assert list(table.columns) == [
        "method", "parameter", "mean", "reference", "error", "mcse", "z_mcse", "ess", "sd", "reference_sd",
    ]  # fmt: skip
    n_quantities = 2 + 2 + 1 + 15  # σ, σ², two sorted weights, log-likelihood, 6·5/2 pairs
    assert (table["method"] == "right").sum() == n_quantities
    assert table.loc[table["method"] == "right", "z_mcse"].abs().max() < 4
    assert table.loc[table["method"] == "wrong", "z_mcse"].abs().max() > 10
    sigma = table[(table["method"] == "right") & (table["parameter"] == "sigma")].iloc[0]
    assert sigma["reference"] == reference.sigma_mean and sigma["reference_sd"] == reference.sigma_sd


def test_map_is_a_point_and_misses_by_infinitely_many_mcse(reference):
    point = fit_posterior(
        X, 2, method="map", priors=PRIORS, seed=0, num_steps=300, **{**FIT, "num_chains": 1}
    )
    table = compare_to_reference({"map": point}, reference, coclustering=False)
    assert list(table["parameter"]) == [
        "sigma",
        "sigma2",
        "weights_sorted[0]",
        "weights_sorted[1]",
        "log_likelihood",
    ]
    rows = table.set_index("parameter")
    assert math.isinf(rows.loc["sigma", "z_mcse"]) and rows.loc["sigma", "sd"] < 1e-12
    assert abs(rows.loc["log_likelihood", "z_mcse"]) > 4  # only the reference's own MCSE is left


def test_mismatches_are_refused(reference):
    fixed = fit_posterior(X, 2, method="gibbs", sigma=0.5, priors=PRIORS, seed=0, **FIT)
    with pytest.raises(ValueError, match="both should learn σ or fix it"):
        compare_to_reference({"gibbs": fixed}, reference)
    other = fit_posterior(X[:5], 2, method="gibbs", priors=PRIORS, seed=0, **FIT)
    with pytest.raises(ValueError, match="the fit has N=5, K=2 but the reference N=6, K=2"):
        compare_to_reference({"gibbs": other}, reference)
    with pytest.raises(ValueError, match="should be an ExactPosterior"):
        compare_to_reference({"gibbs": fixed}, {"sigma_mean": 1.0})


def test_compare_posteriors_with_a_reference_is_the_comparison_to_it(reference):
    fit = fit_posterior(X, 2, method="gibbs", priors=PRIORS, seed=2, **FIT)
    through_compare = compare_posteriors({"gibbs": fit}, reference=reference)  # one fit is enough
    direct = compare_to_reference({"gibbs": fit}, reference)
    assert through_compare.equals(direct)
    with pytest.raises(ValueError, match="at least two fits, got 1"):
        compare_posteriors({"gibbs": fit})
