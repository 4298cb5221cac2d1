"""Greedy k-means++ seeding (Arthur & Vassilvitskii 2007), as scikit-learn does it, in row chunks."""

from __future__ import annotations

import math

import torch

from ._comm import LOCAL, Comm
from .kernels import chunk_rows, serial_if_small, squared_distances
from .validation import (
    as_data,
    check_n_clusters,
    check_positive_int,
    check_sample_weight,
    make_generator,
)

__all__ = ["kmeans_plusplus", "kmeans_plusplus_core"]


def kmeans_plusplus(
    X,
    n_clusters: int,
    *,
    seed: int = 0,
    sample_weight=None,
    n_local_trials: int | None = None,
) -> torch.Tensor:
    """Initial centroids by greedy k-means++.

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features)
    n_clusters : int
        K, at most the number of distinct rows of ``X``.
    seed : int, default 0
    sample_weight : tensor of shape (n_samples,), optional
        Rows are drawn with probability proportional to ``w_n D(x_n)²``.
    n_local_trials : int, optional
        Candidates drawn for each centroid after the first; the one that lowers the potential most is
        kept. Default ``2 + int(log K)``, scikit-learn's choice.

    Returns
    -------
    tensor of shape (n_clusters, n_features)
        Rows of ``X``, in the data's dtype and on its device.

    Notes
    -----
    The first centroid is a row drawn with probability ∝ ``w_n``; each next one is the best of
    ``n_local_trials`` rows drawn with probability ∝ ``w_n min_k ‖x_n − μ_k‖²``, "best" meaning the
    smallest potential ``Σ_n w_n min_k ‖x_n − μ_k‖²`` after adding it (Arthur & Vassilvitskii,
    "k-means++: the advantages of careful seeding", SODA 2007; the greedy variant is scikit-learn's
    ``_kmeans_plusplus``). Distances are computed a chunk of rows at a time.
    """
    X = as_data(X)
    n_clusters = check_n_clusters(n_clusters, X)
    weight = check_sample_weight(sample_weight, X)
    if n_local_trials is None:
        n_local_trials = 2 + int(math.log(n_clusters))
    n_local_trials = check_positive_int("n_local_trials", n_local_trials)
    if weight is None:
        weight = torch.ones(X.shape[0], dtype=X.dtype, device=X.device)
    generator = make_generator(seed, X.device)
    with serial_if_small(X.shape[0] * n_local_trials * n_clusters * (X.shape[1] + 1)):
        return kmeans_plusplus_core(X, n_clusters, weight, n_local_trials, generator)


def _draw_rows(X, cumulative: torch.Tensor, n_draws: int, generator: torch.Generator, comm: Comm):
    """Rows drawn with probability ∝ the increments of ``cumulative`` (inverse-CDF sampling).

    Returns
    -------
    tensor of shape (n_draws, n_features)
    """
    uniform = torch.rand(n_draws, generator=generator, dtype=cumulative.dtype, device=cumulative.device)
    return comm.pick_rows(X, cumulative, uniform * comm.total(cumulative[-1].item()))


def _potentials(X, weight, closest, candidates) -> torch.Tensor:
    """``Σ_n w_n min(closest_n, ‖x_n − c‖²)`` for each candidate row c, of shape (n_candidates,)."""
    total = X.new_zeros(candidates.shape[0])
    candidates_sq = (candidates * candidates).sum(-1)
    for rows in chunk_rows(X.shape[0], candidates.shape[0]):
        d2 = squared_distances(X[rows], candidates, candidates_sq)
        total += torch.minimum(d2, closest[rows, None]).T @ weight[rows]
    return total


def _distances_to(X, centre) -> torch.Tensor:
    """``‖x_n − c‖²`` for one centre c, of shape (n_samples,), chunked."""
    out = X.new_empty(X.shape[0])
    for rows in chunk_rows(X.shape[0], 1):
        out[rows] = squared_distances(X[rows], centre[None]).squeeze(-1)
    return out


def kmeans_plusplus_core(
    X: torch.Tensor,
    n_clusters: int,
    weight: torch.Tensor,
    n_local_trials: int,
    generator: torch.Generator,
    comm: Comm = LOCAL,
) -> torch.Tensor:
    """Greedy k-means++ on validated inputs; see :func:`kmeans_plusplus`.

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features)
    n_clusters : int
    weight : tensor of shape (n_samples,)
    n_local_trials : int
    generator : torch.Generator
        On the data's device (the same seed in every process).
    comm : Comm, default LOCAL
        Where the other rows are: rows are drawn from all of them.

    Returns
    -------
    tensor of shape (n_clusters, n_features)
    """
    centres = X.new_empty(n_clusters, X.shape[1])
    centres[0] = _draw_rows(X, torch.cumsum(weight.double(), 0), 1, generator, comm)[0]
    closest = _distances_to(X, centres[0])
    for k in range(1, n_clusters):
        cumulative = torch.cumsum((weight * closest).double(), 0)
        if comm.total(cumulative[-1].item()) <= 0:  # every row sits on a centre: draw by weight alone
            cumulative = torch.cumsum(weight.double(), 0)
        candidates = _draw_rows(X, cumulative, n_local_trials, generator, comm)
        potentials = comm.sum_(_potentials(X, weight, closest, candidates))[0]
        centres[k] = candidates[potentials.argmin()]
        torch.minimum(closest, _distances_to(X, centres[k]), out=closest)
    return centres
