"""The exact posterior against brute-force numerical integration, and its own invariances.

Brute force here means: the assignments enumerated as the K^N labelled vectors (not set partitions),
the means and σ² integrated numerically (``scipy.integrate.quad``, or a product Gauss–Legendre grid in
the fixed-σ test, where w is integrated numerically as well) without any conjugate formula.
"""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import integrate
from scipy.special import betainc, betaln

from kmeans_limit.inference._partitions import count_partitions, set_partitions, sorted_dirichlet_mean
from kmeans_limit.inference.exact import exact_posterior
from kmeans_limit.models import Priors

X3 = np.array([[-1.0], [0.3], [1.6]])
PRIORS = Priors(alpha=2.0, m0=0.2, tau0=1.3, a0=2.5, b0=0.8)


def normal(x, loc, scale):
    return np.exp(-0.5 * ((x - loc) / scale) ** 2) / (scale * math.sqrt(2 * math.pi))


@pytest.mark.parametrize(("n", "k"), [(1, 1), (4, 2), (5, 5), (6, 3), (7, 1), (3, 7)])
def test_set_partitions_are_each_partition_once(n, k):
    labels = set_partitions(n, k)
    assert labels.shape == (count_partitions(n, k), n)
    canonical = {tuple(np.unique(row, return_inverse=True)[1]) for row in labels}
    assert len(canonical) == labels.shape[0]  # no partition twice (each row is already canonical)
    assert labels.max() < k
    # The labelled vectors they stand for, K!/(K-m)! each, are all K^N of them.
    m = np.array([len(np.unique(row)) for row in labels])
    assert sum(math.perm(k, int(b)) for b in m) == k**n


def test_partition_counts():
    assert count_partitions(5, 5) == 52  # Bell(5)
    assert count_partitions(10, 2) == 512  # 1 + S(10, 2)
    assert count_partitions(12, 3) == 88_574


@pytest.mark.parametrize("a", [(2.0, 3.5), (1.0, 1.0), (0.5, 7.0)])
def test_sorted_dirichlet_mean_with_two_components_is_the_beta_closed_form(a):
    # E[max(w, 1 - w)] for w ~ Beta(a, b): a/(a+b) P(Beta(a+1, b) > 1/2) + b/(a+b) P(Beta(a, b+1) < 1/2).
    p, q = a
    expected = p / (p + q) * (1 - betainc(p + 1, q, 0.5)) + q / (p + q) * betainc(p, q + 1, 0.5)
    got = sorted_dirichlet_mean(a)
    assert got[0] == pytest.approx(expected, abs=1e-11)
    assert got.sum() == pytest.approx(1.0, abs=1e-11)


def test_sorted_dirichlet_mean_with_three_components_matches_monte_carlo():
    a = np.array([0.7, 2.0, 5.0])
    draws = np.sort(np.random.default_rng(0).dirichlet(a, size=400_000), axis=1)[:, ::-1]
    se = draws.std(0) / math.sqrt(draws.shape[0])
    got = sorted_dirichlet_mean(a)
    assert np.all(np.abs(got - draws.mean(0)) < 4 * se)
    assert got.sum() == pytest.approx(1.0, abs=1e-11)


def brute_force_fixed_sigma(x, sigma, priors):
    """log p(X), E[max w], P(z_0 = z_1), E[Σ log p(x_n | θ)] on a product grid over (w, μ1, μ2), K = 2."""
    g, gw = np.polynomial.legendre.leggauss(24)
    w = np.concatenate([0.25 * (g + 1), 0.25 * (g + 1) + 0.5])  # [0, 1/2] and [1/2, 1]: max(w, 1-w) kinks
    ww = np.concatenate([0.25 * gw, 0.25 * gw]) * np.exp(
        (priors.alpha - 1) * np.log(w * (1 - w)) - betaln(priors.alpha, priors.alpha)
    )
    g, gw = np.polynomial.legendre.leggauss(200)
    half = 10 * priors.tau0
    mu = priors.m0 + half * g
    mw = half * gw * normal(mu, priors.m0, priors.tau0)
    a = normal(x[:, 0, None], mu[None], sigma)  # (N, G)
    mix = w[:, None, None, None] * a[None, :, :, None] + (1 - w[:, None, None, None]) * a[None, :, None, :]
    lik = mix.prod(1)  # (w, μ1, μ2)

    def expect(f):
        return np.einsum("wij,w,i,j->", lik * f, ww, mw, mw)

    z = expect(1.0)
    resp1 = w[:, None, None, None] * a[None, :, :, None] / mix  # P(z_n = 1 | θ)
    same = resp1[:, 0] * resp1[:, 1] + (1 - resp1[:, 0]) * (1 - resp1[:, 1])
    return (
        math.log(z),
        expect(np.maximum(w, 1 - w)[:, None, None]) / z,
        expect(same) / z,
        expect(np.log(mix).sum(1)) / z,
    )


def test_fixed_sigma_matches_brute_force_integration():
    sigma = 0.8
    log_z, max_w, same01, log_lik = brute_force_fixed_sigma(X3, sigma, PRIORS)
    exact = exact_posterior(X3, 2, sigma=sigma, priors=PRIORS, n_draws=200_000)
    assert exact.log_marginal_likelihood == pytest.approx(log_z, abs=1e-9)
    assert exact.weights_sorted_mean[0] == pytest.approx(max_w, abs=1e-8)
    assert exact.coclustering[0, 1] == pytest.approx(same01, abs=1e-9)
    assert abs(exact.log_likelihood_mean - log_lik) < 4 * exact.log_likelihood_mcse
    assert exact.log_likelihood_mcse < 5e-3
    assert math.isnan(exact.sigma_mean) and exact.quadrature_nodes == 0


def brute_force_learned_sigma(x, priors):
    """log p(X), E[σ], E[σ²], E[max w], P(z_0 = z_1) for K = 2: z over all 2^N labelled vectors, each
    block's mean by ``quad``, the weights by ``quad`` on [0, 1/2] and [1/2, 1], log σ² by ``quad_vec``."""
    x = x[:, 0]
    n = len(x)
    span = (priors.m0 - 12 * priors.tau0, priors.m0 + 12 * priors.tau0)

    def block(rows, sigma):  # ∫ Π_{n in block} N(x_n | μ, σ²) N(μ | m0, τ0²) dμ
        if not rows:
            return 1.0
        f = lambda mu: np.prod(normal(x[rows], mu, sigma)) * normal(mu, priors.m0, priors.tau0)  # noqa: E731
        return integrate.quad(f, *span, points=[x[rows].mean()], epsabs=0, epsrel=1e-12, limit=200)[0]

    def weight_moment(n1, n2, f):  # E_Beta(α, α)[f(w) w^n1 (1-w)^n2]
        log_beta = betaln(priors.alpha, priors.alpha)

        def g(w):
            return (
                f(w) * w**n1 * (1 - w) ** n2 * math.exp((priors.alpha - 1) * math.log(w * (1 - w)) - log_beta)
            )

        return sum(integrate.quad(g, lo, hi, epsabs=0, epsrel=1e-12)[0] for lo, hi in [(0, 0.5), (0.5, 1)])

    vectors = list(itertools.product([0, 1], repeat=n))
    counts = [(z.count(0), z.count(1)) for z in vectors]
    p_z = np.array([weight_moment(*c, lambda w: 1.0) for c in counts])
    max_w = np.array([weight_moment(*c, lambda w: max(w, 1 - w)) for c in counts])
    same = np.array([z[0] == z[1] for z in vectors], dtype=float)
    subsets = {z: [m for m in range(n) if z[m] == 1] for z in vectors}

    def joint(s):  # [1, σ, σ², max w, 1{z_0 = z_1}] summed over z, times p(X | z, σ²) p(log σ²)
        sigma = math.exp(s / 2)
        log_prior_s = (
            priors.a0 * math.log(priors.b0)
            - math.lgamma(priors.a0)
            - priors.a0 * s
            - priors.b0 * math.exp(-s)
        )
        blocks = {tuple(rows): block(rows, sigma) for rows in subsets.values()}
        complement = lambda rows: tuple(m for m in range(n) if m not in rows)  # noqa: E731
        lik = np.array([blocks[tuple(r)] * blocks[complement(r)] for r in subsets.values()])
        total = np.array(
            [p_z @ lik, sigma * (p_z @ lik), sigma**2 * (p_z @ lik), max_w @ lik, (same * p_z) @ lik]
        )
        return total * math.exp(log_prior_s)

    total = integrate.quad_vec(joint, -6.0, 14.0, epsabs=0, epsrel=1e-11)[0]
    return (math.log(total[0]), *(total[1:] / total[0]))


@pytest.mark.parametrize("n", [2, pytest.param(3, marks=pytest.mark.slow)])
def test_learned_sigma_matches_brute_force_integration(n):
    """About 4 s with N = 2 and 16 s with N = 3 (slow)."""
    log_z, sigma_mean, sigma2_mean, max_w, same01 = brute_force_learned_sigma(X3[:n], PRIORS)
    exact = exact_posterior(X3[:n], 2, priors=PRIORS, n_draws=1000)
    assert exact.log_marginal_likelihood == pytest.approx(log_z, abs=1e-8)
    assert exact.sigma_mean == pytest.approx(sigma_mean, rel=1e-8)
    assert exact.sigma2_mean == pytest.approx(sigma2_mean, rel=1e-8)
    assert exact.sigma_sd == pytest.approx(math.sqrt(sigma2_mean - sigma_mean**2), rel=1e-6)
    assert exact.weights_sorted_mean[0] == pytest.approx(max_w, abs=1e-8)
    assert exact.coclustering[0, 1] == pytest.approx(same01, abs=1e-8)
    assert exact.quadrature_error < 1e-10


def test_one_cluster_log_likelihood_mean_is_the_closed_form():
    # K = 1, σ fixed: μ | X ~ N(m, v I), E[log N(x_n | μ, σ² I)] = −D/2 log 2πσ² − (‖x_n − m‖² + D v)/2σ².
    x = np.array([[0.5, -1.0], [1.5, 0.2], [0.9, 0.4], [-0.3, 0.0]])
    sigma, priors = 0.7, Priors(m0=(0.1, -0.2), tau0=1.5)
    v = 1 / (1 / priors.tau0**2 + len(x) / sigma**2)
    m = v * (np.array(priors.m0) / priors.tau0**2 + x.sum(0) / sigma**2)
    expected = (-math.log(2 * math.pi * sigma**2) - (((x - m) ** 2).sum(1) + 2 * v) / (2 * sigma**2)).sum()
    exact = exact_posterior(x, 1, sigma=sigma, priors=priors)
    assert abs(exact.log_likelihood_mean - expected) < 4 * exact.log_likelihood_mcse
    np.testing.assert_array_equal(exact.coclustering, np.ones((4, 4)))
    np.testing.assert_array_equal(exact.weights_sorted_mean, [1.0])


@pytest.mark.parametrize("sigma", [0.6, None])
def test_equivariance_under_affine_maps_of_the_data(sigma):
    """X' = a X + b with data-scaled priors: σ' = a σ, log p(X') = log p(X) − N D log a, the rest equal.

    The rows are centred only when the mean is large, so b = 1e4 also exercises the offset path."""
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(-1, 0.5, (4, 2)), rng.normal(1, 0.5, (3, 2))])
    a, b = 7.0, np.array([1e4, -3e3])
    base = exact_posterior(X, 2, sigma=sigma, n_draws=20_000)
    moved = exact_posterior(a * X + b, 2, sigma=None if sigma is None else a * sigma, n_draws=20_000)
    assert moved.log_marginal_likelihood == pytest.approx(
        base.log_marginal_likelihood - 14 * math.log(a), abs=1e-7
    )
    np.testing.assert_allclose(moved.coclustering, base.coclustering, atol=1e-9)
    np.testing.assert_allclose(moved.weights_sorted_mean, base.weights_sorted_mean, atol=1e-9)
    # The same random draws, moved: the log-likelihood shifts by −N D log a exactly (to rounding).
    assert moved.log_likelihood_mean == pytest.approx(base.log_likelihood_mean - 14 * math.log(a), abs=1e-6)
    if sigma is None:
        assert moved.sigma_mean == pytest.approx(a * base.sigma_mean, rel=1e-8)
        assert moved.sigma_sd == pytest.approx(a * base.sigma_sd, rel=1e-6)


def test_float32_input_and_data_record_give_the_float64_answer():
    X = torch.tensor([[0.1, 0.2], [1.0, 1.3], [-0.4, 0.9], [2.0, 2.2]], dtype=torch.float32)
    a = exact_posterior(X, 2, sigma=0.5, priors=PRIORS, n_draws=100)
    b = exact_posterior(X.double().numpy(), 2, sigma=0.5, priors=PRIORS, n_draws=100)
    assert a.log_marginal_likelihood == b.log_marginal_likelihood


def test_too_many_partitions_is_refused_naming_n_k_and_the_limit():
    with pytest.raises(ValueError, match=r"N=13 rows into at most K=3.*max_partitions=200,000"):
        exact_posterior(np.arange(13.0)[:, None], 3)
    with pytest.raises(ValueError, match="max_partitions=10"):
        exact_posterior(np.arange(5.0)[:, None], 2, max_partitions=10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_clusters": 0}, "n_clusters=0"),
        ({"sigma": -1.0}, "sigma=-1.0"),
        ({"priors": {"alpha": 1}}, "priors should be a kmeans_limit.Priors"),
        ({"seed": -1}, "seed=-1"),
        ({"n_draws": 0}, "n_draws=0"),
    ],
)
def test_bad_input_is_refused(kwargs, message):
    kwargs = {"n_clusters": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        exact_posterior(X3, **kwargs)
