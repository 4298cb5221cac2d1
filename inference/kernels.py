"""Chunked kernels shared by Lloyd, EM, annealing and the Gibbs sampler.

Every kernel walks the rows of ``X`` in chunks, so memory stays O(chunk · K): no N × K matrix is
ever made for all N at once. They run in the data's dtype (float32 or float64) on the data's device.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

import torch

__all__ = [
    "SufficientStats",
    "chunk_rows",
    "hard_temperature",
    "log_responsibilities",
    "nearest_centroid",
    "squared_distances",
    "sufficient_stats",
]

#: About this many N×K entries are held at once (8 MB in float64).
CHUNK_ENTRIES = 1 << 20


def chunk_rows(n_samples: int, n_clusters: int, chunk_size: int | None = None) -> Iterator[slice]:
    """Slices of rows ``[start, stop)`` covering ``range(n_samples)``.

    The default chunk holds about ``CHUNK_ENTRIES`` distances (at least 1 row and at most all of them).
    """
    if chunk_size is None:
        chunk_size = max(1, CHUNK_ENTRIES // max(1, n_clusters))
    for start in range(0, n_samples, chunk_size):
        yield slice(start, min(start + chunk_size, n_samples))


def squared_distances(
    X: torch.Tensor, means: torch.Tensor, means_sq: torch.Tensor | None = None
) -> torch.Tensor:
    """Squared Euclidean distances ``‖x_n − μ_k‖²`` of a chunk of rows.

    Parameters
    ----------
    X : tensor of shape (n_rows, n_features)
    means : tensor of shape (n_clusters, n_features)
    means_sq : tensor of shape (n_clusters,), optional
        ``‖μ_k‖²``, when the caller has it already.

    Returns
    -------
    tensor of shape (n_rows, n_clusters), clamped at 0 (the expansion ‖x‖² − 2x·μ + ‖μ‖² can round below).
    """
    if means_sq is None:
        means_sq = (means * means).sum(-1)
    x_sq = (X * X).sum(-1, keepdim=True)
    return (x_sq - 2.0 * X @ means.T + means_sq).clamp_min_(0.0)


def hard_temperature(sigma: float, dtype: torch.dtype) -> bool:
    """Whether σ is 0 or so small that 1/(2σ²) overflows ``dtype``: the k-means limit itself."""
    if sigma == 0:
        return True
    return 1.0 / (2.0 * sigma * sigma) >= torch.finfo(dtype).max


def log_responsibilities(
    X: torch.Tensor, means: torch.Tensor, log_weights: torch.Tensor, sigma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tempered log-responsibilities and log-densities of a chunk of rows.

    ``log γ_nk = log π_k − ‖x_n − μ_k‖²/(2σ²) − log Σ_j π_j exp(−‖x_n − μ_j‖²/(2σ²))`` and
    ``log p(x_n) = log Σ_k π_k Normal(x_n | μ_k, σ² I_D)``.

    Parameters
    ----------
    X : tensor of shape (n_rows, n_features)
    means : tensor of shape (n_clusters, n_features)
    log_weights : tensor of shape (n_clusters,)
        May hold ``-inf`` for components of weight 0.
    sigma : float >= 0
        At σ = 0 (or a σ whose 1/(2σ²) overflows the dtype) the responsibilities are one-hot at the
        nearest centroid (first index on ties) and the log-densities are ``-inf`` off the centroids.

    Returns
    -------
    log_gamma : tensor of shape (n_rows, n_clusters)
    log_density : tensor of shape (n_rows,)
    """
    d2 = squared_distances(X, means)
    d2_min = d2.min(-1, keepdim=True).values
    if hard_temperature(sigma, X.dtype):
        labels = d2.argmin(-1)
        log_gamma = torch.full_like(d2, -math.inf).scatter_(-1, labels[:, None], 0.0)
        return log_gamma, torch.full_like(d2_min.squeeze(-1), -math.inf)
    beta = 1.0 / (2.0 * sigma * sigma)
    logits = log_weights - beta * (d2 - d2_min)
    lse = torch.logsumexp(logits, -1, keepdim=True)
    log_norm = 0.5 * X.shape[-1] * math.log(2.0 * math.pi * sigma * sigma)
    log_density = (lse - beta * d2_min).squeeze(-1) - log_norm
    return logits - lse, log_density


def nearest_centroid(
    X: torch.Tensor, means: torch.Tensor, chunk_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest-centroid labels and squared distances, chunked.

    Returns
    -------
    labels : long tensor of shape (n_samples,)
    min_sq_dist : tensor of shape (n_samples,)
    """
    labels = torch.empty(X.shape[0], dtype=torch.long, device=X.device)
    min_sq = torch.empty(X.shape[0], dtype=X.dtype, device=X.device)
    means_sq = (means * means).sum(-1)
    for rows in chunk_rows(X.shape[0], means.shape[0], chunk_size):
        d2 = squared_distances(X[rows], means, means_sq)
        min_sq[rows], labels[rows] = d2.min(-1)
    return labels, min_sq


class SufficientStats(NamedTuple):
    """Responsibility-weighted statistics of the data, per component.

    Attributes
    ----------
    counts : tensor of shape (n_clusters,)
        ``N_k = Σ_n w_n γ_nk``.
    sums : tensor of shape (n_clusters, n_features)
        ``S_k = Σ_n w_n γ_nk x_n``.
    sums_sq : tensor of shape (n_clusters,)
        ``Q_k = Σ_n w_n γ_nk ‖x_n‖²``.
    scatter : tensor of shape (n_clusters, n_features, n_features) or None
        ``Σ_n w_n γ_nk x_n x_nᵀ`` when asked for (for the splitting criterion of annealing).
    log_likelihood : float
        ``Σ_n w_n log p(x_n)`` (``-inf`` at σ = 0, where there is no density).
    entropy : float
        ``Σ_n w_n H(γ_n·)``, the responsibility entropy in nats (0 at σ = 0).
    """

    counts: torch.Tensor
    sums: torch.Tensor
    sums_sq: torch.Tensor
    scatter: torch.Tensor | None
    log_likelihood: float
    entropy: float


def sufficient_stats(
    X: torch.Tensor,
    means: torch.Tensor,
    log_weights: torch.Tensor,
    sigma: float,
    *,
    sample_weight: torch.Tensor | None = None,
    scatter: bool = False,
    chunk_size: int | None = None,
) -> SufficientStats:
    """The E step: responsibility-weighted sufficient statistics at σ, accumulated over row chunks.

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features)
    means : tensor of shape (n_clusters, n_features)
    log_weights : tensor of shape (n_clusters,)
    sigma : float >= 0
        0 gives hard (nearest-centroid) assignments: the statistics of Lloyd's algorithm.
    sample_weight : tensor of shape (n_samples,), optional
    scatter : bool, default False
        Also accumulate the per-component second-moment matrices.
    chunk_size : int, optional
        Rows per chunk.

    Returns
    -------
    SufficientStats
    """
    n_clusters, n_features = means.shape
    counts = X.new_zeros(n_clusters)
    sums = X.new_zeros(n_clusters, n_features)
    sums_sq = X.new_zeros(n_clusters)
    second = X.new_zeros(n_clusters, n_features, n_features) if scatter else None
    log_likelihood, entropy = 0.0, 0.0
    for rows in chunk_rows(X.shape[0], n_clusters, chunk_size):
        x = X[rows]
        log_gamma, log_density = log_responsibilities(x, means, log_weights, sigma)
        gamma = log_gamma.exp()
        row_entropy = -torch.special.xlogy(gamma, gamma).sum(-1)
        if sample_weight is not None:
            w = sample_weight[rows]
            gamma = gamma * w[:, None]
            log_density = torch.where(w > 0, log_density * w, 0.0)
            row_entropy = row_entropy * w
        counts += gamma.sum(0)
        sums += gamma.T @ x
        sums_sq += gamma.T @ (x * x).sum(-1)
        if second is not None:
            second += torch.einsum("nk,ni,nj->kij", gamma, x, x)
        log_likelihood += log_density.sum().item()
        entropy += row_entropy.sum().item()
    return SufficientStats(counts, sums, sums_sq, second, log_likelihood, entropy)
