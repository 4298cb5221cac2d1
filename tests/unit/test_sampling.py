"""Ancestral sampling: shapes, the σ = 0 limit, seeding and bad input."""

import numpy as np
import pytest
import torch

from kmeans_limit.inference import sample_from, sample_prior
from kmeans_limit.models import Priors

MEANS = torch.tensor([[0.0, 0.0], [5.0, 5.0]], dtype=torch.float64)


def test_prior_shapes_and_dtype():
    draws = sample_prior(40, n_clusters=3, n_features=2, num_datasets=5, seed=1)
    assert draws.x.shape == (5, 40, 2) and draws.z.shape == (5, 40)
    assert draws.means.shape == (5, 3, 2) and draws.weights.shape == (5, 3) and draws.sigma.shape == (5,)
    assert draws.x.dtype == torch.float64 and (draws.sigma > 0).all()
    single = sample_prior(10, n_clusters=2, n_features=1, dtype=torch.float32)
    assert single.x.shape == (1, 10, 1) and single.x.dtype == torch.float32


def test_fixed_sigma_is_reported_for_every_dataset():
    draws = sample_prior(10, n_clusters=2, n_features=2, sigma=0.25, num_datasets=3)
    assert torch.equal(draws.sigma, torch.full((3,), 0.25, dtype=torch.float64))


def test_sigma_zero_returns_the_centroids_exactly():
    draws = sample_prior(30, n_clusters=4, n_features=2, sigma=0.0, num_datasets=3, seed=2)
    centroid = torch.gather(draws.means, 1, draws.z[..., None].expand(-1, -1, 2))
    assert torch.equal(draws.x, centroid)
    generated = sample_from(MEANS, 25, sigma=0, seed=3)
    assert torch.equal(generated.x, MEANS[generated.z])


def test_equal_weights_by_default_and_dtype_follows_means():
    generated = sample_from(MEANS.float(), 4000, sigma=0.1, seed=0)
    assert generated.x.dtype == torch.float32
    assert abs(generated.z.double().mean().item() - 0.5) < 4 * 0.5 / 4000**0.5


def test_same_seed_same_draws_and_global_rng_untouched():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = sample_prior(20, n_clusters=2, n_features=2, seed=7)
    b = sample_prior(20, n_clusters=2, n_features=2, seed=7)
    c = sample_prior(20, n_clusters=2, n_features=2, seed=8)
    g1, g2 = sample_from(MEANS, 20, sigma=1.0, seed=5), sample_from(MEANS, 20, sigma=1.0, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(a.x, c.x)
    assert torch.equal(g1.x, g2.x) and torch.equal(g1.z, g2.z)


def test_accepts_numpy_parameters():
    generated = sample_from(np.array([[0.0], [1.0]]), 5, weights=np.array([0.5, 0.5]), sigma=0.5)
    assert generated.x.shape == (5, 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sigma": -0.1}, "sigma=-0.1 should be a finite number >= 0"),
        ({"sigma": float("nan")}, "sigma=nan"),
        ({"sigma": None}, "sigma=None"),
        ({"sigma": 1.0, "weights": [0.5, 0.6]}, "should be non-negative and sum to 1"),
        ({"sigma": 1.0, "weights": [1.2, -0.2]}, "should be non-negative"),
        ({"sigma": 1.0, "weights": [1.0, 0.0, 0.0]}, r"should have shape \(2,\)"),
        ({"sigma": 1.0, "weights": [float("nan"), 1.0]}, "weights holds NaN"),
        ({"sigma": 1.0, "n_samples": 0}, "n_samples=0 should be an integer >= 1"),
        ({"sigma": 1.0, "means": [[float("nan"), 0.0]]}, "means holds NaN"),
        ({"sigma": 1.0, "means": [0.0, 1.0]}, "means of shape"),
    ],
)
def test_sample_from_bad_input(kwargs, match):
    args = {"means": MEANS, "n_samples": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        sample_from(args.pop("means"), args.pop("n_samples"), **args)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_clusters": 0}, "n_clusters=0 should be an integer >= 1"),
        ({"n_features": 2.5}, "n_features=2.5"),
        ({"num_datasets": 0}, "num_datasets=0"),
        ({"sigma": -1.0}, "sigma=-1.0"),
        ({"seed": -3}, "seed=-3"),
        ({"seed": 2**32}, r"seed=4294967296 should be an integer in \[0, 2\*\*32 - 1\]"),
        ({"priors": {"alpha": 1.0}}, "priors should be a kmeans_limit.Priors"),
    ],
)
def test_sample_prior_bad_input(kwargs, match):
    args = {"n_clusters": 2, "n_features": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        sample_prior(10, **args)


def test_prior_draws_with_one_m0_a_feature():
    priors = Priors(m0=(100.0, -5.0), tau0=0.5)
    draws = sample_prior(3, n_clusters=4, n_features=2, priors=priors, num_datasets=500, seed=1)
    centre = draws.means.reshape(-1, 2).mean(0)
    assert (centre - torch.tensor([100.0, -5.0], dtype=torch.float64)).abs().max() < 4 * 0.5 / 2000**0.5
    with pytest.raises(ValueError, match="priors.m0 has 2 values but the data have n_features=3"):
        sample_prior(3, n_clusters=2, n_features=3, priors=priors)
