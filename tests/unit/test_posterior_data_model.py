"""The posterior side on the one data model: rows prepared once, priors in the data's units.

A fit of ``X + b`` is the fit of ``X`` moved by ``b``: the rows the samplers see are the same (to
rounding), the data-scaled priors move with the data, and the draws come back in the data's units.
With the same seed the chains are the same continuous function of the rows (Gibbs and NUTS make their
discrete choices, z and the tree, from uniform draws compared with probabilities that move by the
rounding only), so the draws agree to a few rounding errors of the rows, not just in distribution.
"""

import math

import numpy as np
import pytest
import torch

from kmeans_limit.inference import (
    arviz_compat,
    assignment_probabilities,
    coclustering_matrix,
    fit_posterior,
    invariant_summary,
    relabel,
    tempered_path,
)
from kmeans_limit.inference.data import prepare_data
from kmeans_limit.models import Priors, data_scaled_priors

QUICK = {"progress": False, "num_samples": 30, "num_warmup": 20, "num_chains": 2}
BY_METHOD = {
    "gibbs": QUICK,
    "nuts": {**QUICK, "method": "nuts", "num_samples": 10, "num_warmup": 10},
    "svi": {**QUICK, "method": "svi", "num_steps": 50},
    "map": {**QUICK, "method": "map", "num_steps": 50},
}
PRIOR_KEYS = ("priors", "prior_alpha", "prior_m0", "prior_tau0", "prior_a0", "prior_b0")


@pytest.fixture(scope="module")
def blobs():
    """Three blobs, float64, with column means exactly 0 (so that X is its own rows)."""
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-4.0, 0.0], [0.0, 4.0], [4.0, 0.0]], dtype=torch.float64)
    X = centres.repeat_interleave(20, 0) + 0.6 * torch.randn(60, 2, generator=generator, dtype=torch.float64)
    return X - X.mean(0)


def shifted(idata, offset) -> dict:
    """The draws of a fit, means moved back by ``offset``, as float64 arrays."""
    post = idata.posterior
    return {
        "weights": post["weights"].values.astype(np.float64),
        "means": post["means"].values.astype(np.float64) - np.asarray(offset, np.float64),
        "sigma": post["sigma"].values.astype(np.float64),
    }


def test_default_priors_are_data_scaled_and_recorded_in_every_group(blobs):
    X = 10.0 * blobs + torch.tensor([50.0, -20.0], dtype=torch.float64)
    idata = fit_posterior(X, 3, **QUICK)
    data = prepare_data(X)
    expected = data_scaled_priors(data.mean, data.variance)
    assert expected.tau0 == pytest.approx(2 * math.sqrt(data.variance)) and expected.b0 == pytest.approx(
        0.5 * data.variance
    )
    for group in arviz_compat.group_names(idata):
        attrs = idata[group].attrs
        assert attrs["priors"] == "data-scaled"
        np.testing.assert_allclose(attrs["prior_m0"], [50.0, -20.0], rtol=1e-12)
        assert attrs["prior_tau0"] == expected.tau0 and attrs["prior_b0"] == expected.b0
        assert attrs["prior_alpha"] == 1.0 and attrs["prior_a0"] == 2.0


def test_given_priors_mean_what_they_say_and_round_trip_through_netcdf(blobs, tmp_path):
    priors = Priors(alpha=2.0, m0=(1.0, -1.0), tau0=0.01, a0=3.0, b0=0.4)
    idata = fit_posterior(blobs, 3, priors=priors, **QUICK)
    assert np.abs(idata.posterior["means"].values - [1.0, -1.0]).max() < 0.05  # pinned at m0 by tau0
    path = tmp_path / "fit.nc"
    arviz_compat.to_netcdf(idata, path)
    loaded = arviz_compat.from_netcdf(path)
    for group in ("posterior", "sample_stats", "log_likelihood", "observed_data"):
        attrs = loaded[group].attrs
        assert attrs["priors"] == "given"
        np.testing.assert_array_equal(attrs["prior_m0"], [1.0, -1.0])
        assert (attrs["prior_alpha"], attrs["prior_tau0"], attrs["prior_a0"], attrs["prior_b0"]) == (
            2.0,
            0.01,
            3.0,
            0.4,
        )


def test_a_scalar_m0_is_recorded_once_a_feature(blobs):
    idata = fit_posterior(blobs, 3, priors=Priors(m0=0.5), **QUICK)
    np.testing.assert_array_equal(idata.posterior.attrs["prior_m0"], [0.5, 0.5])


def test_data_without_spread_need_priors():
    X = torch.full((6, 2), 3.0, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"priors=None: the data have no spread .* pass priors=Priors"):
        fit_posterior(X, 1, **QUICK)
    idata = fit_posterior(X, 1, priors=Priors(m0=3.0), **QUICK)
    assert np.isfinite(idata.posterior["sigma"].values).all()


def test_a_per_feature_m0_of_another_length_is_refused(blobs):
    with pytest.raises(ValueError, match="priors.m0 has 3 values but the data have n_features=2"):
        fit_posterior(blobs, 2, priors=Priors(m0=(0.0, 0.0, 0.0)), **QUICK)


@pytest.mark.parametrize("method", list(BY_METHOD))
@pytest.mark.parametrize(("dtype", "offset", "tol"), [(torch.float64, 1e8, 1e-6), (torch.float32, 1e3, 2e-3)])
def test_a_fit_far_from_the_origin_is_the_fit_at_the_origin_moved(blobs, method, dtype, offset, tol):
    """Same seed, X and X + b: the same draws to the rounding of X + b (float64 1e8: 1.5e-8; float32
    1e3: 6e-5), amplified by a few steps of the chains. Before, Gibbs at 1e3 in float32 gave σ 0.70
    for 0.39 (issue 12) and the stored log-likelihood was off by nats a point at 1e7."""
    b = torch.tensor([offset, -offset / 2], dtype=torch.float64)
    options = {**BY_METHOD[method], "seed": 3, "relabel": False}
    near = fit_posterior(blobs.to(dtype), 3, **options)
    far = fit_posterior((blobs + b).to(dtype), 3, **options)
    assert far.posterior.attrs["priors"] == "data-scaled"
    ours, theirs = shifted(far, b.numpy()), shifted(near, [0.0, 0.0])
    for name in ("weights", "means", "sigma"):
        np.testing.assert_allclose(
            ours[name], theirs[name], rtol=0, atol=tol * (10 if name == "means" else 1)
        )
    # The stored densities: lp and the pointwise log-likelihood are those of the same draws (float64).
    scale = 1.0 if dtype == torch.float64 else 1e2  # float32 draws differ by ~1e-4 in σ ≈ 0.6: ~1e-2 nats
    np.testing.assert_allclose(
        far.log_likelihood["x"].values, near.log_likelihood["x"].values, rtol=0, atol=1e3 * tol * scale
    )
    np.testing.assert_array_equal(far.observed_data["x"].values, (blobs + b).to(dtype).numpy())
    assert far.posterior["means"].dtype == np.dtype(str(dtype).removeprefix("torch."))


def test_a_fit_given_as_data_is_the_fit_given_as_x(blobs):
    X = blobs + 1e6
    a = fit_posterior(X, 3, seed=1, **QUICK)
    b = fit_posterior(prepare_data(X), 3, seed=1, **QUICK)
    for name in ("weights", "means", "sigma"):
        np.testing.assert_allclose(a.posterior[name].values, b.posterior[name].values, rtol=1e-12)
    np.testing.assert_allclose(b.observed_data["x"].values, X.numpy(), rtol=1e-15)
    with pytest.raises(ValueError, match="fit_posterior takes no sample weights"):
        fit_posterior(prepare_data(X, torch.ones(60)), 3, **QUICK)


def test_the_posterior_predictive_is_in_the_data_units(blobs):
    b = torch.tensor([1e6, 3e6], dtype=torch.float64)
    idata = fit_posterior(blobs + b, 3, seed=2, posterior_predictive=True, **QUICK)
    replicated = idata.posterior_predictive["x"].values.reshape(-1, 2)
    assert np.abs(replicated.mean(0) - b.numpy()).max() < 0.3


def test_summaries_far_from_the_origin_equal_those_at_the_origin(blobs):
    """Rows and means meet after moving both by the same offset: at 1e8 in float64 the raw
    ‖x‖² − 2x·μ + ‖μ‖² would keep no digit of distances of order 1 (its rounding is ~1e16·1e-16)."""
    b = torch.tensor([1e8, -2e8], dtype=torch.float64)
    near = fit_posterior(blobs, 3, seed=4, **QUICK)
    far = fit_posterior(blobs + b, 3, seed=4, **QUICK)
    probs_near, probs_far = assignment_probabilities(near), assignment_probabilities(far)
    np.testing.assert_allclose(probs_far, probs_near, atol=1e-6)
    new = torch.tensor([[-4.0, 0.1], [2.0, 2.0]], dtype=torch.float64)
    np.testing.assert_allclose(
        assignment_probabilities(far, new + b), assignment_probabilities(near, new), atol=1e-6
    )
    np.testing.assert_allclose(
        coclustering_matrix(far, max_draws=10), coclustering_matrix(near, max_draws=10), atol=1e-6
    )
    for method in ("pivot", "stephens"):
        relabelled_near, relabelled_far = relabel(near, method=method), relabel(far, method=method)
        np.testing.assert_allclose(
            relabelled_far.posterior["means"].values - b.numpy(),
            relabelled_near.posterior["means"].values,
            atol=1e-6,
        )
    table_near, table_far = invariant_summary(near), invariant_summary(far)
    np.testing.assert_allclose(table_far["mean"].values, table_near["mean"].values, rtol=1e-6)


def test_tempered_path_far_from_the_origin(blobs):
    """Each σ starts from the last draws of the previous one, in data units, moved with the rows."""
    b = torch.tensor([1e8, 1e8], dtype=torch.float64)
    centres = torch.tensor([[-4.0, 0.0], [0.0, 4.0], [4.0, 0.0]], dtype=torch.float64) - blobs.mean(0)
    options = {"num_samples": 20, "num_warmup": 10, "seed": 5}
    near = tempered_path(blobs, 3, [1.0, 0.1], centroids=centres, **options)
    far = tempered_path(blobs + b, 3, [1.0, 0.1], centroids=centres + b, **options)
    columns = ["means_sd", "centroid_distance", "hard_agreement", "assignment_entropy"]
    np.testing.assert_allclose(
        far.summary[columns].values, near.summary[columns].values, rtol=1e-5, atol=1e-6
    )
    assert far.summary["hard_agreement"].iloc[-1] == 1.0
