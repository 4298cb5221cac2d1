"""The exact posterior of the spherical mixture on a few rows: enumeration, conjugacy and quadrature.

A reference to measure samplers against. Every partition of the rows into at most K clusters is
enumerated; given the partition the means are integrated out in closed form (conjugate Normal), the
weights too (Dirichlet-multinomial), and a learned σ² by one-dimensional Gauss–Legendre quadrature.
The label-invariant posterior expectations that come out (σ's moments, sorted weights, co-clustering,
the log-likelihood, log p(X)) are exact to the stated quadrature or Monte-Carlo accuracy.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy.special import gammaln, logsumexp

from ..models import Priors, data_scaled_priors, prior_mean
from ._partitions import count_partitions, log_label_multiplicity, set_partitions, sorted_dirichlet_mean
from .data import Data, prepare_data
from .validation import as_data, check_positive_int, check_seed, check_sigma

__all__ = ["MAX_PARTITIONS", "ExactPosterior", "exact_posterior"]

#: The most partitions :func:`exact_posterior` enumerates (N = 12 rows into K = 3 clusters: 88,574).
MAX_PARTITIONS = 200_000
#: Partitions evaluated at once (memory O(chunk · K · nodes)).
_CHUNK = 4096
#: Quadrature rules double from this many nodes until two successive rules agree to _TOLERANCE.
_FIRST_NODES, _MAX_NODES, _TOLERANCE = 32, 1024, 1e-10
#: Log-density below the maximum beyond which σ² is left out of the integral (e^-50 ≈ 2e-22).
_LOG_CUT = 50.0


class ExactPosterior(NamedTuple):
    """Exact posterior expectations of the label-invariant quantities of a small data set.

    Attributes
    ----------
    sigma_mean, sigma_sd, sigma2_mean : float
        ``E[σ | X]``, ``sd[σ | X]`` and ``E[σ² | X]`` when σ is learned; NaN when σ is fixed.
    weights_sorted_mean : ndarray of shape (n_clusters,)
        ``E[w_(1) ≥ ... ≥ w_(K) | X]``: the posterior means of the weights in decreasing order.
    coclustering : ndarray of shape (n_samples, n_samples)
        ``P(z_i = z_j | X)`` (ones on the diagonal).
    log_likelihood_mean : float
        ``E[Σ_n log p(x_n | θ) | X]`` with ``log p(x_n | θ) = log Σ_k π_k Normal(x_n | μ_k, σ² I)``
        (z summed out, as in ``fit_posterior``'s log-likelihood group): a Monte-Carlo average over
        ``n_draws`` independent exact posterior draws of θ.
    log_likelihood_mcse : float
        Its Monte-Carlo standard error, sd / √n_draws (the draws are independent).
    log_marginal_likelihood : float
        ``log p(X)``, the evidence, in the data's units.
    n_partitions : int
        Partitions enumerated.
    quadrature_nodes : int
        Gauss–Legendre nodes of the σ² integral (0 when σ is fixed).
    quadrature_error : float
        The largest change between the last two quadrature rules (in log p(X), relative in σ's
        moments, and the L1 distance of the partitions' probabilities); 0 when σ is fixed.
    sigma : float or None
        The fixed σ, or None when learned.
    priors : Priors
        The priors used, in the data's units.
    """

    sigma_mean: float
    sigma_sd: float
    sigma2_mean: float
    weights_sorted_mean: np.ndarray
    coclustering: np.ndarray
    log_likelihood_mean: float
    log_likelihood_mcse: float
    log_marginal_likelihood: float
    n_partitions: int
    quadrature_nodes: int
    quadrature_error: float
    sigma: float | None
    priors: Priors


class _Partitions(NamedTuple):
    """Sufficient statistics of every partition (block j of a partition is label j), centred frame."""

    labels: np.ndarray  # (P, N) int8
    counts: np.ndarray  # (P, K) float
    sums: np.ndarray  # (P, K, D): Σ of the rows in each block
    within: np.ndarray  # (P,): Σ_n ‖x_n − x̄_{z_n}‖²
    between: np.ndarray  # (P, K): n_k ‖x̄_k − m0‖² (0 for empty blocks)
    n_blocks: np.ndarray  # (P,)
    log_prior: np.ndarray  # (P,): log of K!/(K−m)! · p(z) (Dirichlet-multinomial)

    def take(self, index) -> _Partitions:
        return _Partitions(*(field[index] for field in self))


def _partition_stats(x: np.ndarray, n_clusters: int, m0: np.ndarray, alpha: float) -> _Partitions:
    labels = set_partitions(x.shape[0], n_clusters)
    onehot = labels[:, :, None] == np.arange(n_clusters)  # (P, N, K)
    counts = onehot.sum(1).astype(np.float64)
    sums = np.einsum("pnk,nd->pkd", onehot.astype(np.float64), x)
    centre = sums / np.maximum(counts, 1.0)[..., None]
    resid = x[None] - np.take_along_axis(centre, labels[..., None].astype(np.int64), axis=1)
    within = (resid * resid).sum((1, 2))
    offset = centre - m0
    between = counts * (offset * offset).sum(-1)
    n_blocks = (counts > 0).sum(1)
    n, alpha_k = x.shape[0], alpha
    log_pz = (
        gammaln(n_clusters * alpha_k)
        - gammaln(n + n_clusters * alpha_k)
        + (gammaln(counts + alpha_k) - gammaln(alpha_k)).sum(1)
    )
    log_prior = log_label_multiplicity(n_clusters, n_blocks) + log_pz
    return _Partitions(labels, counts, sums, within, between, n_blocks, log_prior)


def _log_joint(parts: _Partitions, log_s2: np.ndarray, dims: tuple, priors: Priors, learned: bool):
    """``log p(z-partition, X | σ²) [+ log p(log σ²)]`` at every partition and node: (P, G).

    Per cluster with n rows, per feature, ``x_i = μ + ε`` is Normal with covariance ``σ² I + τ0² 11ᵀ``:
    ``−(n−1)/2 log σ² − ½ log(σ² + nτ0²) − SS/2σ² − n(x̄ − m0)²/2(σ² + nτ0²) − n/2 log 2π``.
    """
    n, d = dims
    sig2 = np.exp(log_s2)[None, None, :]
    v = sig2 + parts.counts[:, :, None] * priors.tau0**2  # (P, K, G)
    per_cluster = np.where(
        parts.counts[:, :, None] > 0, 0.5 * d * np.log(v) + parts.between[:, :, None] / (2 * v), 0.0
    ).sum(1)
    out = (
        parts.log_prior[:, None]
        - 0.5 * n * d * math.log(2 * math.pi)
        - 0.5 * d * (n - parts.n_blocks)[:, None] * log_s2[None, :]
        - parts.within[:, None] / (2 * sig2[0])
        - per_cluster
    )
    if learned:  # σ² ~ InverseGamma(a0, b0), as a density in log σ² (Jacobian σ²)
        a0, b0 = priors.a0, priors.b0
        out = out + (a0 * math.log(b0) - math.lgamma(a0) - a0 * log_s2 - b0 * np.exp(-log_s2))[None, :]
    return out


def _chunks(n_items: int):
    for start in range(0, n_items, _CHUNK):
        yield slice(start, min(start + _CHUNK, n_items))


def _log_density_of_log_s2(parts, grid, dims, priors) -> np.ndarray:
    """``log Σ_z p(z, X, log σ²)`` on a grid of log σ²."""
    total = np.full(grid.shape[0], -np.inf)
    for rows in _chunks(parts.labels.shape[0]):
        total = np.logaddexp(total, logsumexp(_log_joint(parts.take(rows), grid, dims, priors, True), axis=0))
    return total


def _sigma_range(parts, centre: float, dims, priors) -> tuple[float, float]:
    """The interval of log σ² holding all but e^-50 of the joint density, by a scan of step 0.1."""
    lo, hi = centre - 25.0, centre + 25.0
    for _ in range(20):
        grid = np.arange(lo, hi + 0.05, 0.1)
        density = _log_density_of_log_s2(parts, grid, dims, priors)
        top = density.max()
        if density[0] > top - _LOG_CUT:
            lo -= 25.0
        elif density[-1] > top - _LOG_CUT:
            hi += 25.0
        else:
            keep = np.flatnonzero(density >= top - _LOG_CUT)
            return grid[keep[0]] - 0.5, grid[keep[-1]] + 0.5
    raise RuntimeError("exact_posterior: the posterior of σ² did not fit in a scanned range of log σ²")


def _integrate(parts, nodes, log_weights, dims, priors, learned):
    """Per-partition log mass (P,), log p(X), and log E[σ], log E[σ²] (unnormalized, log domain)."""
    log_mass = np.empty(parts.labels.shape[0])
    log_moments = np.full(2, -np.inf)
    for rows in _chunks(parts.labels.shape[0]):
        joint = _log_joint(parts.take(rows), nodes, dims, priors, learned) + log_weights[None, :]
        log_mass[rows] = logsumexp(joint, axis=1)
        for q in (1, 2):
            log_moments[q - 1] = np.logaddexp(log_moments[q - 1], logsumexp(joint + 0.5 * q * nodes[None, :]))
    log_evidence = logsumexp(log_mass)
    return log_mass, log_evidence, log_moments - log_evidence


def _quadrature(parts, dims, priors, centre):
    """Gauss–Legendre rules on the σ² range, doubled until two successive rules agree."""
    lo, hi = _sigma_range(parts, centre, dims, priors)
    previous, n_nodes = None, _FIRST_NODES
    while True:
        t, w = np.polynomial.legendre.leggauss(n_nodes)
        nodes, log_w = 0.5 * (hi - lo) * t + 0.5 * (hi + lo), np.log(0.5 * (hi - lo) * w)
        result = _integrate(parts, nodes, log_w, dims, priors, True)
        if previous is not None:
            change = max(
                abs(result[1] - previous[1]),
                float(np.abs(np.expm1(result[2] - previous[2])).max()),
                float(np.abs(np.exp(result[0] - result[1]) - np.exp(previous[0] - previous[1])).sum()),
            )
            if change < _TOLERANCE or n_nodes >= _MAX_NODES:
                if change >= _TOLERANCE:
                    raise RuntimeError(
                        f"exact_posterior: the σ² quadrature did not converge ({n_nodes} nodes, "
                        f"change {change:.2g}); the posterior of σ² is too irregular for it"
                    )
                return result, nodes, log_w, change
        previous, n_nodes = result, 2 * n_nodes


def _coclustering(parts: _Partitions, prob: np.ndarray) -> np.ndarray:
    n = parts.labels.shape[1]
    total = np.zeros((n, n))
    for rows in _chunks(parts.labels.shape[0]):
        labels = parts.labels[rows]
        total += np.einsum("p,pij->ij", prob[rows], labels[:, :, None] == labels[:, None, :])
    return np.clip(total, 0.0, 1.0)


def _weights_sorted(parts: _Partitions, prob: np.ndarray, alpha: float) -> np.ndarray:
    """Σ_z P(z) E[sorted Dirichlet(α + n(z))], one integral per distinct multiset of counts."""
    shapes, inverse = np.unique(-np.sort(-parts.counts, axis=1), axis=0, return_inverse=True)
    shape_prob = np.bincount(inverse.reshape(-1), weights=prob, minlength=shapes.shape[0])
    means = np.stack([sorted_dirichlet_mean(alpha + s) for s in shapes])
    return shape_prob @ means


def _log_likelihood_draws(parts, prob, x, priors, m0, quad, sigma, n_draws, seed):
    """Σ_n log p(x_n | θ) at ``n_draws`` independent draws of θ from the exact posterior."""
    rng = np.random.default_rng(seed)
    index = rng.choice(prob.shape[0], size=n_draws, p=prob / prob.sum())
    if quad is None:
        sig2 = np.full(n_draws, sigma**2)
    else:  # σ² from its conditional given the partition, discretized on the quadrature nodes
        nodes, log_w = quad
        unique, inverse = np.unique(index, return_inverse=True)
        joint = _log_joint(parts.take(unique), nodes, x.shape, priors, True) + log_w[None, :]
        cdf = np.cumsum(np.exp(joint - logsumexp(joint, axis=1, keepdims=True)), axis=1)
        u, inverse = rng.random(n_draws), inverse.reshape(-1)
        pick = np.concatenate([(cdf[inverse[r]] < u[r, None]).sum(1) for r in _chunks(n_draws)])
        sig2 = np.exp(nodes[np.minimum(pick, nodes.shape[0] - 1)])
    counts, sums = parts.counts[index], parts.sums[index]
    gam = rng.standard_gamma(priors.alpha + counts)
    log_w = np.log(gam / gam.sum(1, keepdims=True))
    var = 1.0 / (1.0 / priors.tau0**2 + counts / sig2[:, None])  # (M, K)
    loc = var[..., None] * (m0 / priors.tau0**2 + sums / sig2[:, None, None])
    means = loc + np.sqrt(var)[..., None] * rng.standard_normal(loc.shape)
    d = x.shape[1]
    sq = ((x[None, :, None, :] - means[:, None, :, :]) ** 2).sum(-1)  # (M, N, K)
    log_norm = -0.5 * d * np.log(2 * math.pi * sig2)[:, None, None] - sq / (2 * sig2[:, None, None])
    return logsumexp(log_w[:, None, :] + log_norm, axis=2).sum(1)


def _check_priors(priors, data: Data) -> Priors:
    if priors is None:
        return data_scaled_priors(data.mean.tolist(), data.variance)
    if not isinstance(priors, Priors):
        raise ValueError(f"priors should be a kmeans_limit.Priors, got {type(priors).__name__}")
    return priors


def exact_posterior(
    X,
    n_clusters: int,
    *,
    sigma: float | None = None,
    priors: Priors | None = None,
    max_partitions: int = MAX_PARTITIONS,
    n_draws: int = 100_000,
    seed: int = 0,
) -> ExactPosterior:
    """The exact posterior of the spherical mixture on a small data set, by enumeration.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features), or Data
        A few rows (see ``max_partitions``); computed in float64.
    n_clusters : int
        K >= 1 (it may exceed the number of rows).
    sigma : float > 0, optional
        Fixes σ; ``None`` learns it under σ² ~ InverseGamma(a0, b0).
    priors : Priors, optional
        In the data's units; by default ``data_scaled_priors(mean, variance)`` of X, the default of
        :func:`~kmeans_limit.inference.fit_posterior`.
    max_partitions : int, default MAX_PARTITIONS (200,000)
        The most set partitions to enumerate.
    n_draws : int, default 100,000
        Independent exact posterior draws behind ``log_likelihood_mean``.
    seed : int, default 0
        Of those draws (nothing else is random).

    Returns
    -------
    ExactPosterior

    Raises
    ------
    ValueError
        For bad input, and when the rows have more than ``max_partitions`` partitions into at most K
        clusters (the message names N, K, the count and the limit).

    Notes
    -----
    *Enumeration.* The assignments z are not enumerated as the K^N labelled vectors but as the set
    partitions of the rows into m ≤ K blocks (restricted growth strings, ``Σ_{m≤K} S(N, m)`` of
    them). ``p(z)`` (Dirichlet-multinomial) and ``p(X | z, σ²)`` do not change when the labels are
    permuted, so each partition stands for exactly ``K!/(K−m)!`` labelled vectors, a factor kept in
    its prior mass. N = 12, K = 3 is 88,574 partitions (against 531,441 vectors); N = 16, K = 2 is
    32,768; K >= N is the Bell number of N (N = 10: 115,975).

    *Means and weights.* Given z, each cluster's rows are, feature by feature, Normal with covariance
    ``σ² I + τ0² 11ᵀ`` (the mean integrated out), so ``p(X | z, σ²)`` is in closed form; the weights
    integrate to the Dirichlet-multinomial ``Γ(Kα)/Γ(N+Kα) Π_k Γ(n_k+α)/Γ(α)``.

    *σ learned.* The means' prior is not scaled by σ², so ``p(X | z) = ∫ p(X | z, σ²) p(σ²) dσ²`` has
    no closed form. It is computed in ``s = log σ²``: a scan of step 0.1 finds the interval where
    ``Σ_z p(z, X, s)`` is within e^50 of its maximum (padded by 0.5), and Gauss–Legendre rules of
    32, 64, ... nodes on it are used until two successive rules agree to 1e-10 (in log p(X), the
    relative value of E[σ] and E[σ²], and the L1 distance between the partitions' probabilities;
    ``quadrature_error`` reports it). The integrand is smooth and decays like
    ``exp(−b0 e^{−s})`` on the left and ``e^{−(ND/2+a0)s}`` on the right, so the rules converge
    geometrically.

    *Log-likelihood.* ``E[log Σ_k π_k N(x_n | μ_k, σ²)]`` has no closed form; it is averaged over
    ``n_draws`` independent draws from the exact posterior: a partition by its probability, σ² from
    its conditional discretized on the quadrature nodes (so the estimator's expectation is the
    quadrature of the conditional expectation), labels j for block j (the quantity is label-free),
    ``weights ~ Dirichlet(α + n)`` and ``means_k ~ Normal`` from the conjugate update.

    Everything is computed on centred rows with ``priors.shifted(offset)``; every quantity returned is
    invariant under the shift (the density's Jacobian is 1), so none is moved back.
    """
    data = X if isinstance(X, Data) else prepare_data(as_data(X).double().cpu())
    if data.weight is not None:
        raise ValueError("exact_posterior does not take sample weights (the model has none)")
    n_clusters = check_positive_int("n_clusters", n_clusters)
    sigma = check_sigma(sigma, allow_zero=False, allow_none=True)
    max_partitions = check_positive_int("max_partitions", max_partitions)
    n_draws = check_positive_int("n_draws", n_draws)
    seed = check_seed(seed)
    priors = _check_priors(priors, data)
    x = data.rows.double().cpu().numpy()
    n, d = x.shape
    count = count_partitions(n, n_clusters)
    if count > max_partitions:
        raise ValueError(
            f"exact_posterior enumerates the {count:,} partitions of N={n} rows into at most K={n_clusters} "
            f"clusters, more than max_partitions={max_partitions:,}; pass fewer rows (a subset) or raise "
            "max_partitions"
        )
    shifted = priors.shifted(data.offset.double())
    m0 = prior_mean(shifted, d, data.rows.double().cpu()).numpy()
    parts = _partition_stats(x, n_clusters, m0, shifted.alpha)
    if sigma is None:
        centre = math.log(max(data.variance, priors.b0 / (priors.a0 + 1.0)))
        (log_mass, log_evidence, log_moments), nodes, log_w, error = _quadrature(
            parts, (n, d), shifted, centre
        )
        quad = (nodes, log_w)
        sigma_mean, sigma2_mean = np.exp(log_moments)
        sigma_sd = math.sqrt(max(sigma2_mean - sigma_mean**2, 0.0))
    else:
        nodes, log_w = np.array([2 * math.log(sigma)]), np.zeros(1)
        log_mass, log_evidence, _ = _integrate(parts, nodes, log_w, (n, d), shifted, False)
        quad, error, sigma_mean, sigma_sd, sigma2_mean = None, 0.0, math.nan, math.nan, math.nan
    prob = np.exp(log_mass - log_evidence)
    log_lik = _log_likelihood_draws(parts, prob, x, shifted, m0, quad, sigma, n_draws, seed)
    return ExactPosterior(
        sigma_mean=float(sigma_mean),
        sigma_sd=float(sigma_sd),
        sigma2_mean=float(sigma2_mean),
        weights_sorted_mean=_weights_sorted(parts, prob, shifted.alpha),
        coclustering=_coclustering(parts, prob),
        log_likelihood_mean=float(log_lik.mean()),
        log_likelihood_mcse=float(log_lik.std(ddof=1) / math.sqrt(n_draws)) if n_draws > 1 else math.nan,
        log_marginal_likelihood=float(log_evidence),
        n_partitions=count,
        quadrature_nodes=0 if quad is None else int(nodes.shape[0]),
        quadrature_error=float(error),
        sigma=sigma,
        priors=priors,
    )
