"""Simulation-based calibration (Talts et al. 2018) of the Gibbs sampler and NUTS, by ``sbc()``.

Draw θ ~ prior and X ~ p(X | θ) from the program, fit the posterior, and rank θ's value of a test
quantity among the posterior draws. When inference is right the ranks are uniform. The quantities are
permutation-invariant: σ, the sorted weights and the log-likelihood of X (Modrák et al. 2023).
Uniformity is checked by a chi-square test on 10 bins of ranks, at level 0.001 per quantity.
"""

import pytest

from kmeans_limit.inference.sbc import sbc

SETTINGS = dict(n_samples=30, n_features=1, n_bins=10, seed=2024, progress=False)


def assert_calibrated(result) -> None:
    for name, p in result.p_values.items():
        assert p > 1e-3, (
            f"{name}: ranks not uniform (p = {p:.2g}), ranks {sorted(result.ranks[name].tolist())}"
        )


@pytest.mark.slow
def test_gibbs_is_calibrated():
    # 2 chains × 1000 kept sweeps, every 10th: 200 nearly independent draws.
    result = sbc(
        2,
        method="gibbs",
        n_simulations=200,
        num_samples=1000,
        num_warmup=200,
        num_chains=2,
        thin=10,
        **SETTINGS,
    )
    assert result.n_draws == 200
    assert_calibrated(result)


@pytest.mark.slow
def test_nuts_is_calibrated():
    # 1 chain × 400 draws, every 2nd: 200 draws.
    result = sbc(
        2, method="nuts", n_simulations=100, num_samples=400, num_warmup=200, num_chains=1, thin=2, **SETTINGS
    )
    assert result.n_draws == 200
    assert_calibrated(result)


@pytest.mark.slow
def test_gibbs_is_calibrated_at_fixed_sigma_with_three_clusters_in_two_dimensions():
    result = sbc(
        3, method="gibbs", sigma=0.5, n_simulations=100, num_samples=600, num_warmup=200, num_chains=2, thin=6,
        **{**SETTINGS, "n_features": 2},
    )  # fmt: skip
    assert_calibrated(result)


@pytest.mark.slow
def test_svi_is_not_calibrated():
    # Measured (29 min on a loaded 2-core machine): the sorted weights fail (p ≈ 1e-7), σ and the
    # log-likelihood do not (p = 0.40, 0.086): the Gaussian guide misses the weights' posterior.
    result = sbc(
        2, method="svi", n_simulations=100, num_samples=200, num_chains=1, thin=1, num_steps=1500, **SETTINGS
    )
    assert min(result.p_values.values()) < 1e-3, result.p_values
