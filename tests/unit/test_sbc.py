"""sbc(): calibrated Gibbs passes, MAP fails, results depend on the seed alone; plot_sbc renders.

Sizes are chosen for seconds: N = 10 rows, K = 2, D = 1. A correct sampler passes the chi-square
test at 0.001 with probability 0.999 per quantity; MAP repeats one point, so every rank is 0 or L.
"""

import numpy as np
import pytest

from kmeans_limit.inference.sbc import SBCResult, quantity_names, rank_uniformity, sbc
from kmeans_limit.sbc_plots import plot_sbc

GIBBS = dict(
    method="gibbs", n_simulations=24, n_samples=10, num_samples=60, num_warmup=40, num_chains=2, thin=2
)
MAP = dict(method="map", n_simulations=20, n_samples=10, num_samples=10, num_chains=1, thin=1, num_steps=30)


@pytest.fixture(scope="module")
def gibbs_result() -> SBCResult:
    return sbc(2, **GIBBS, n_bins=3, seed=5, progress=False)


def test_a_small_sbc_of_gibbs_passes(gibbs_result):
    """About 4 s: 24 fits of 2 chains × 100 sweeps."""
    assert gibbs_result.n_draws == 60 and gibbs_result.n_bins == 3
    assert set(gibbs_result.ranks) == {"sigma", "weights_sorted[0]", "weights_sorted[1]", "log_likelihood"}
    for name, p in gibbs_result.p_values.items():
        assert p > 1e-3, (name, p, gibbs_result.ranks[name])
    for ranks in gibbs_result.ranks.values():
        assert ranks.shape == (24,) and ranks.min() >= 0 and ranks.max() <= 60
    assert gibbs_result.seeds.dtype == np.uint32 and gibbs_result.seeds.shape == (24, 2)


def test_a_small_sbc_of_map_fails():
    """About 6 s: 20 MAP fits of 30 steps. A point ranks every true value at 0 or L."""
    result = sbc(2, **MAP, n_bins=4, seed=5, progress=False)
    for name, ranks in result.ranks.items():
        assert set(np.unique(ranks)) <= {0, result.n_draws}, name
        assert result.p_values[name] < 1e-3, (name, result.p_values[name])


SMALL = dict(GIBBS, n_simulations=4, num_samples=20, num_warmup=10, n_bins=2, progress=False)


def test_the_seed_alone_decides():
    a = sbc(2, **SMALL, seed=9, sigma=0.5)
    b = sbc(2, **SMALL, seed=9, sigma=0.5)
    c = sbc(2, **SMALL, seed=10, sigma=0.5)
    for name in a.ranks:
        np.testing.assert_array_equal(a.ranks[name], b.ranks[name])
    assert "sigma" not in a.ranks and a.settings["sigma"] == 0.5
    assert any(not np.array_equal(a.truth[n], c.truth[n]) for n in a.truth)


@pytest.mark.slow
def test_processes_change_nothing():
    """About 25 s on a loaded machine: each spawned worker imports torch and Pyro."""
    a = sbc(2, **SMALL, seed=9, sigma=0.5)
    b = sbc(2, **SMALL, seed=9, sigma=0.5, n_jobs=2)
    for name in a.ranks:
        np.testing.assert_array_equal(a.ranks[name], b.ranks[name])
        np.testing.assert_array_equal(a.truth[name], b.truth[name])


def test_rank_uniformity_uses_exact_bin_shares():
    # 0..10 (11 ranks) in 3 bins of 4, 3, 4 ranks: the uniform ranks themselves fit perfectly.
    assert rank_uniformity(np.arange(11), 10, 3) == pytest.approx(1.0)
    assert rank_uniformity(np.zeros(50, int), 10, 3) < 1e-10
    assert quantity_names(1, None) == ["sigma", "log_likelihood"]
    assert quantity_names(3, 0.5) == [
        "weights_sorted[0]",
        "weights_sorted[1]",
        "weights_sorted[2]",
        "log_likelihood",
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "em"}, "method='em'"),
        ({"n_simulations": 1}, "n_simulations=1"),
        ({"n_samples": 1}, "n_samples=1 should be an integer >= 2"),
        ({"sigma": 0.0}, "sigma=0.0"),
        ({"seed": 2**32}, "seed="),
        ({"n_bins": 1000}, "n_bins=1000 should be at most"),
        ({"priors": "flat"}, "priors should be"),
        ({"n_jobs": 0}, "n_jobs=0"),
    ],
)
def test_bad_input_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sbc(2, **{"n_simulations": 10, "progress": False, **kwargs})


def test_plot_sbc_renders(gibbs_result, tmp_path):
    figure = plot_sbc(gibbs_result)
    assert len(figure.axes) == 2 * len(gibbs_result.ranks)
    path = tmp_path / "sbc.png"
    figure.savefig(path, dpi=80)
    assert path.stat().st_size > 10_000
    with pytest.raises(ValueError, match="band=1.5"):
        plot_sbc(gibbs_result, band=1.5)
