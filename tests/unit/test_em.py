"""EM for the shared-σ spherical mixture: monotone, its E step the program's own marginals."""

import math

import pyro
import pytest
import torch
from pyro.infer import TraceEnum_ELBO
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning

from kmeans_limit.inference import em, kmeans_plusplus, lloyd
from kmeans_limit.inference.kernels import log_responsibilities
from kmeans_limit.models import spherical_gmm, spherical_gmm_marginal


def blobs(n=300, centers=4, seed=0, std=1.0):
    X, _ = make_blobs(n, n_features=2, centers=centers, cluster_std=std, random_state=seed)
    return torch.from_numpy(X)


@pytest.fixture
def start(three_blobs):
    X, centres = three_blobs
    means = centres + torch.tensor([[0.5, -0.5], [0.3, 0.8], [-1.0, 0.4]], dtype=torch.float64)
    return X, means


@pytest.mark.parametrize("sigma", [5.0, 2.0, 1.0, 0.5, 0.25])
def test_e_step_is_the_programs_marginal_of_z(start, sigma):
    X, means = start
    weights = torch.tensor([0.5, 0.2, 0.3], dtype=torch.float64)
    model = pyro.condition(spherical_gmm, data={"means": means, "weights": weights})
    marginals = TraceEnum_ELBO(max_plate_nesting=1).compute_marginals(
        model, lambda *args, **kwargs: None, X, n_clusters=3, sigma=sigma
    )
    log_gamma, _ = log_responsibilities(X, means, weights.log(), sigma)
    assert torch.allclose(marginals["z"].probs, log_gamma.exp(), rtol=0, atol=1e-10)


@pytest.mark.parametrize("sigma", [3.0, 1.0, 0.4])
def test_log_likelihood_is_the_programs_density_of_x(start, sigma):
    X, means = start
    result = em(X, means, sigma=sigma, max_iter=5, tol=1e300)  # one step
    data = {"means": result.means, "weights": result.weights}
    trace = pyro.poutine.trace(pyro.condition(spherical_gmm_marginal, data=data)).get_trace(
        X, n_clusters=3, sigma=sigma
    )
    trace.compute_log_prob()
    expected = trace.nodes["x"]["log_prob_sum"].item()
    assert result.log_likelihood == pytest.approx(expected, rel=1e-12, abs=1e-10)


def test_learned_sigma_log_likelihood_is_the_programs_density_of_x(start):
    X, means = start
    result = em(X, means)
    data = {"means": result.means, "weights": result.weights}
    trace = pyro.poutine.trace(pyro.condition(spherical_gmm_marginal, data=data)).get_trace(
        X, n_clusters=3, sigma=result.sigma
    )
    trace.compute_log_prob()
    assert result.log_likelihood == pytest.approx(trace.nodes["x"]["log_prob_sum"].item(), rel=1e-12)


DATA_SETS = [
    ("blobs", lambda: blobs()),
    ("overlapping", lambda: blobs(seed=1, std=3.0)),
    ("uniform", lambda: torch.rand(200, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)),
]


@pytest.mark.parametrize(("name", "make"), DATA_SETS)
@pytest.mark.parametrize("sigma", [None, 0.7])
@pytest.mark.parametrize("weights", ["learn", "equal"])
def test_log_likelihood_never_decreases(name, make, sigma, weights):
    X = make()
    init = kmeans_plusplus(X, 4, seed=0)
    result = em(X, init, sigma=sigma, weights=weights, max_iter=5000, tol=1e-9)
    steps = result.history.diff()
    assert (steps >= -1e-9 * result.history.abs().max()).all(), name
    assert result.converged and result.n_iter == len(result.history) - 1
    assert result.log_likelihood == result.history[-1].item()


def test_fixed_point_satisfies_the_m_step_equations():
    X = blobs(seed=3)
    result = em(X, kmeans_plusplus(X, 4, seed=1), max_iter=1000, tol=1e-13)
    log_gamma, _ = log_responsibilities(X, result.means, result.weights.log(), result.sigma)
    gamma = log_gamma.exp()
    counts = gamma.sum(0)
    assert torch.allclose(result.means, gamma.T @ X / counts[:, None], atol=1e-6)
    assert torch.allclose(result.weights, counts / X.shape[0], atol=1e-8)
    d2 = ((X[:, None, :] - result.means[None]) ** 2).sum(-1)
    sigma2 = (gamma * d2).sum() / (X.shape[0] * X.shape[1])
    assert result.sigma**2 == pytest.approx(sigma2.item(), rel=1e-6)


def test_fixed_sigma_and_equal_weights_stay_fixed():
    X = blobs(seed=4)
    result = em(X, X[:3], sigma=0.8, weights="equal", tol=1e-9)
    assert result.sigma == 0.8
    assert torch.allclose(result.weights, torch.full((3,), 1 / 3, dtype=torch.float64))


def test_small_fixed_sigma_is_lloyd():
    X = blobs(seed=5)
    init = kmeans_plusplus(X, 4, seed=2)
    hard = lloyd(X, init, tol=0.0)
    soft = em(X, init, sigma=1e-3, weights="equal", max_iter=300, tol=1e-12)
    assert torch.allclose(soft.means, hard.means, atol=1e-8)


def test_integer_sample_weights_equal_repeated_rows():
    X = blobs(n=120, seed=6)
    counts = torch.randint(1, 4, (X.shape[0],), generator=torch.Generator().manual_seed(0))
    repeated = X.repeat_interleave(counts, dim=0)
    weighted = em(X, X[:3], sample_weight=counts.double(), max_iter=50, tol=1e-3)
    plain = em(repeated, X[:3], max_iter=50, tol=1e-3)
    assert torch.allclose(weighted.means, plain.means, atol=1e-9)
    assert weighted.sigma == pytest.approx(plain.sigma, rel=1e-9)
    assert weighted.log_likelihood == pytest.approx(plain.log_likelihood, rel=1e-9)


def test_init_weights_start_the_weights():
    X = blobs(seed=7)
    skewed = torch.tensor([0.7, 0.1, 0.1, 0.1], dtype=torch.float64)
    one_step = em(X, X[:4], sigma=1.0, init_weights=skewed, max_iter=1, tol=1e300)
    uniform = em(X, X[:4], sigma=1.0, max_iter=1, tol=1e300)
    assert not torch.allclose(one_step.weights, uniform.weights)


def test_max_iter_warns_with_a_convergence_warning():
    X = blobs(seed=8, std=3.0)
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        result = em(X, X[:4], max_iter=2, tol=0.0)
    assert not result.converged and result.n_iter == 2


def test_float32_runs_in_float32():
    X = blobs(seed=9).float()
    result = em(X, X[:4], sigma=0.5, max_iter=500)
    assert result.means.dtype == torch.float32 and math.isfinite(result.log_likelihood)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sigma": 0.0}, "sigma=0.0"),
        ({"sigma": -1.0}, "sigma=-1.0"),
        ({"sigma": float("inf")}, "sigma=inf"),
        ({"weights": "fixed"}, "weights='fixed'"),
        ({"init_weights": torch.tensor([0.5, 0.6])}, "sum to 1"),
        ({"init_weights": torch.tensor([1.0])}, "weights of shape"),
        ({"max_iter": 0}, "max_iter=0"),
        ({"tol": -0.1}, "tol=-0.1"),
        ({"sample_weight": -torch.ones(3)}, "sample_weight should be >= 0"),
        ({"sample_weight": torch.ones(4)}, "sample_weight of shape"),
        ({"init": torch.zeros(2, 5)}, "init have 5 features"),
        ({"X": torch.tensor([[0.0, math.inf], [1.0, 0.0], [0.0, 5.0]])}, "NaN or inf"),
        ({"X": torch.zeros(3)}, "should be 2-D"),
    ],
)
def test_bad_input_is_a_value_error(kwargs, match):
    args = {"X": torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 5.0]]), "init": torch.eye(2), **kwargs}
    X, init = args.pop("X"), args.pop("init")
    with pytest.raises(ValueError, match=match):
        em(X, init, **args)
