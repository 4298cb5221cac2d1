"""The σ → 0 limit, computed through the program's own traced densities."""

import math

import pyro
import pytest
import torch
from pyro.infer import TraceEnum_ELBO

from kmeans_limit.inference import kmeans_objective, nearest_centroid
from kmeans_limit.models import spherical_gmm, spherical_gmm_marginal

SIGMAS = [1.0, 0.3, 0.1, 0.03, 0.01, 0.001]


@pytest.fixture
def problem(three_blobs):
    X, centres = three_blobs
    means = centres + torch.tensor([[0.3, -0.2], [0.1, 0.4], [-0.5, 0.2]], dtype=torch.float64)
    weights = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    labels = torch.arange(3).repeat_interleave(20)  # the generating labels, not the nearest centroids
    return X, means, weights, labels


def traced(model, X, means, weights, sigma, **extra):
    data = {"means": means, "weights": weights, **extra}
    trace = pyro.poutine.trace(pyro.condition(model, data=data)).get_trace(X, n_clusters=3, sigma=sigma)
    trace.compute_log_prob()
    return trace.nodes


@pytest.mark.parametrize("sigma", SIGMAS)
def test_scaled_complete_data_log_likelihood_is_inertia_plus_exact_terms(problem, sigma):
    X, means, weights, labels = problem
    nodes = traced(spherical_gmm, X, means, weights, sigma, z=labels)
    log_joint = (nodes["x"]["log_prob_sum"] + nodes["z"]["log_prob_sum"]).item()
    n, d = X.shape
    extra = (
        n * d * sigma**2 * math.log(2 * math.pi * sigma**2) - 2 * sigma**2 * torch.log(weights[labels]).sum()
    )
    inertia = kmeans_objective(X, means, labels)
    assert -2 * sigma**2 * log_joint == pytest.approx(inertia + extra.item(), rel=1e-12, abs=1e-10)


def test_scaled_complete_data_log_likelihood_tends_to_inertia(problem):
    X, means, weights, labels = problem
    inertia = kmeans_objective(X, means, labels)
    gaps = []
    for sigma in SIGMAS:
        nodes = traced(spherical_gmm, X, means, weights, sigma, z=labels)
        log_joint = (nodes["x"]["log_prob_sum"] + nodes["z"]["log_prob_sum"]).item()
        gaps.append(abs(-2 * sigma**2 * log_joint - inertia))
    assert all(a > b for a, b in zip(gaps, gaps[1:], strict=False))
    assert gaps[-1] < 1e-3 * inertia


@pytest.mark.parametrize("sigma", SIGMAS)
def test_scaled_marginal_log_likelihood_is_bounded_around_min_distance(problem, sigma):
    """Per point: 0 <= −2σ² log p(x_n) − min_k‖x_n − μ_k‖² − Dσ² log(2πσ²) <= −2σ² log π_{k*}."""
    X, means, weights, _ = problem
    log_px = traced(spherical_gmm_marginal, X, means, weights, sigma)["x"]["log_prob"]
    labels, min_sq = nearest_centroid(X, means)
    excess = -2 * sigma**2 * log_px - min_sq - X.shape[1] * sigma**2 * math.log(2 * math.pi * sigma**2)
    assert (excess >= -1e-9).all()
    assert (excess <= -2 * sigma**2 * torch.log(weights[labels]) + 1e-9).all()


def test_scaled_marginal_log_likelihood_tends_to_kmeans_objective(problem):
    X, means, weights, _ = problem
    target = kmeans_objective(X, means)
    values = [
        -2 * s**2 * traced(spherical_gmm_marginal, X, means, weights, s)["x"]["log_prob_sum"].item()
        for s in SIGMAS
    ]
    assert abs(values[-1] - target) < 1e-3 * target
    assert abs(values[-1] - target) < abs(values[0] - target)


def test_responsibilities_become_one_hot_at_the_nearest_centroid(problem):
    X, means, weights, _ = problem
    nearest = nearest_centroid(X, means)[0]
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    model = pyro.condition(spherical_gmm, data={"means": means, "weights": weights})
    max_off = []
    for sigma in [2.0, 0.5, 0.1, 0.02]:
        probs = elbo.compute_marginals(model, lambda *a, **k: None, X, n_clusters=3, sigma=sigma)["z"].probs
        max_off.append((1 - probs.gather(1, nearest[:, None])).max().item())
    assert max_off[0] > 0.01 and max_off[-1] < 1e-12
    assert all(a >= b for a, b in zip(max_off, max_off[1:], strict=False))


def test_kmeans_objective_exact_small_case():
    X = torch.tensor([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [10.0, 2.0]], dtype=torch.float64)
    means = torch.tensor([[1.0, 0.0], [10.0, 1.0]], dtype=torch.float64)
    assert kmeans_objective(X, means) == 4.0
    assert kmeans_objective(X, means, labels=[0, 0, 1, 0]) == 1 + 1 + 1 + (81 + 4)
    assert kmeans_objective(X, means, sample_weight=[1.0, 0.0, 2.0, 1.0]) == 1 + 2 + 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"labels": [0, 0, 2, 0]}, r"labels should lie in \[0, 1\]"),
        ({"labels": [0, 1]}, "labels of shape"),
        ({"means": [[1.0, 0.0, 0.0]]}, "means have 3 features"),
        ({"sample_weight": [1.0, -1.0, 1.0, 1.0]}, "sample_weight should be >= 0"),
    ],
)
def test_kmeans_objective_bad_input(kwargs, match):
    X = torch.zeros(4, 2, dtype=torch.float64)
    args = {"means": torch.zeros(2, 2), **kwargs}
    with pytest.raises(ValueError, match=match):
        kmeans_objective(X, **args)


@pytest.mark.parametrize(
    ("X", "match"),
    [
        (torch.zeros(4), "should be 2-D"),
        (torch.zeros(0, 2), "is empty"),
        (torch.tensor([[0.0, float("nan")]]), "NaN or inf"),
        (torch.tensor([[0.0, float("inf")]]), "NaN or inf"),
    ],
)
def test_kmeans_objective_bad_data(X, match):
    with pytest.raises(ValueError, match=match):
        kmeans_objective(X, torch.zeros(1, 2))
