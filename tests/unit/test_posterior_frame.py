"""fit_posterior's canonical labels, the unit frame of the gradient-based methods, and MAP in comparisons."""

import numpy as np
import pytest
import torch

from kmeans_limit.datasets import load_faithful
from kmeans_limit.inference import compare_posteriors, fit_posterior
from kmeans_limit.inference.data import prepare_data
from kmeans_limit.inference.posterior import frame_scale
from kmeans_limit.inference.relabel import CANONICAL_REFERENCE, canonical_reference

QUICK = dict(num_samples=60, num_warmup=60, num_chains=2, progress=False)


@pytest.fixture(scope="module")
def faithful():
    return load_faithful(standardized=True).data.double()


def test_separate_runs_of_different_methods_share_one_labelling(faithful):
    # Component 0 is the heavier cluster of the annealed hard fit (weight 0.64) in every run: before,
    # Gibbs and NUTS run alone could call it 0 and 1.
    fits = {
        "gibbs": fit_posterior(faithful, 2, method="gibbs", seed=3, **QUICK),
        "nuts": fit_posterior(faithful, 2, method="nuts", seed=8, **QUICK),
        "map": fit_posterior(faithful, 2, method="map", seed=1, num_steps=300, **QUICK),
    }
    for name, idata in fits.items():
        weights = idata.posterior["weights"].mean(("chain", "draw")).values
        assert weights[0] > 0.55 > 0.45 > weights[1], name
        assert idata.posterior.attrs["relabel_reference"] == CANONICAL_REFERENCE
        assert idata.sample_stats.attrs["relabelled"] == "pivot"


def test_canonical_reference_orders_by_weight_and_is_equivariant(faithful):
    reference = canonical_reference(faithful, 2)
    data = prepare_data(faithful)
    labels = torch.cdist(data.rows, data.to_rows(reference)).argmin(1)
    counts = torch.bincount(labels, minlength=2)
    assert counts[0] > counts[1]
    moved = canonical_reference(3.0 * faithful + 1e4, 2)
    assert torch.allclose(moved, 3.0 * reference + 1e4, rtol=1e-10, atol=1e-8)


def test_frame_scale_is_the_power_of_two_nearest_the_spread(faithful):
    assert frame_scale(prepare_data(faithful)) == 1.0
    assert frame_scale(prepare_data(faithful * 300.0)) == 256.0
    assert frame_scale(prepare_data(faithful * 1e-3)) == 2.0**-10
    assert frame_scale(prepare_data(torch.ones(5, 2))) == 1.0  # no spread: left alone


@pytest.mark.parametrize("method", ["nuts", "map"])
def test_gradient_methods_are_exactly_equivariant_under_powers_of_two(faithful, method):
    # The rows are divided by a power of 2 before NUTS or Adam see them, so X and 2^k X run the very
    # same arithmetic: draws exactly 2^k times, weights equal. Without the unit frame NUTS's step
    # size adaptation and Adam's steps differ with the units, and these differ by far more.
    options = dict(QUICK, num_chains=1, seed=5, **({"num_steps": 200} if method == "map" else {}))
    base = fit_posterior(faithful, 2, method=method, **options)
    scaled = fit_posterior(faithful * 1024.0, 2, method=method, **options)
    post, post_scaled = base.posterior, scaled.posterior
    np.testing.assert_array_equal(post_scaled["means"].values, post["means"].values * 1024.0)
    np.testing.assert_array_equal(post_scaled["sigma"].values, post["sigma"].values * 1024.0)
    np.testing.assert_array_equal(post_scaled["weights"].values, post["weights"].values)


def test_compare_reports_map_as_a_point_without_spread(faithful):
    gibbs = fit_posterior(faithful, 2, method="gibbs", seed=0, **QUICK)
    point = fit_posterior(faithful, 2, method="map", seed=0, num_steps=300, **QUICK)
    table = compare_posteriors({"gibbs": gibbs, "map": point, "map again": point})
    assert np.isfinite(table[["mean_a", "mean_b", "energy_distance"]].to_numpy()).all()
    with_map = table[table["b"] == "map"]
    assert with_map["point_b"].all() and not with_map["point_a"].any()
    assert with_map["sd_b"].isna().all() and with_map["sd_ratio"].isna().all()
    assert np.isfinite(with_map["z_mcse"]).all()  # the gap in the sampler's MCSE
    two_points = table[table["a"] == "map"]
    assert two_points["z_mcse"].isna().all()  # no Monte-Carlo error on either side: not ±inf
    assert not np.isinf(table.select_dtypes("number").to_numpy()).any()
