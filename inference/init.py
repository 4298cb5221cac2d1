"""Greedy k-means++ seeding (Arthur & Vassilvitskii 2007), as scikit-learn does it, in row chunks."""

from __future__ import annotations

import math

import torch

from ._comm import LOCAL, Comm
from .data import Data, prepare_data
from .kernels import chunk_rows, serial_if_small, squared_distances
from .validation import check_n_clusters, check_positive_int, make_generator

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
    X : array-like of shape (n_samples, n_features), or Data
        The rows, or rows prepared by :func:`~kmeans_limit.inference.data.prepare_data`.
    n_clusters : int
        K, at most the number of distinct rows of ``X`` of positive weight.
    seed : int, default 0
    sample_weight : tensor of shape (n_samples,), optional
        Rows are drawn with probability proportional to ``w_n D(x_n)²``; rows of weight 0 never.
        Not with a prepared ``Data`` (it carries its weights).
    n_local_trials : int, optional
        Candidates drawn for each centroid after the first; the one that lowers the potential most is
        kept. Default ``2 + int(log K)``, scikit-learn's choice.

    Returns
    -------
    tensor of shape (n_clusters, n_features)
        Distinct rows of ``X``, in the data's dtype and on its device (``Data.to_data`` of the
        picked centred rows when the data were centred: ``X``'s rows to rounding).

    Raises
    ------
    ValueError
        For bad input, naming the value; when ``X`` has fewer than ``n_clusters`` distinct rows of
        positive weight.

    Notes
    -----
    The first centroid is a row drawn with probability ∝ ``w_n``; each next one is the best of
    ``n_local_trials`` rows drawn with probability ∝ ``w_n min_k ‖x_n − μ_k‖²``, "best" meaning the
    smallest potential ``Σ_n w_n min_k ‖x_n − μ_k‖²`` after adding it (Arthur & Vassilvitskii,
    "k-means++: the advantages of careful seeding", SODA 2007; the greedy variant is scikit-learn's
    ``_kmeans_plusplus``). Distances are computed a chunk of rows at a time.
    """
    data = prepare_data(X, sample_weight)
    n_clusters = check_n_clusters(n_clusters, data.rows, weight=data.weight)
    if n_local_trials is None:
        n_local_trials = 2 + int(math.log(n_clusters))
    n_local_trials = check_positive_int("n_local_trials", n_local_trials)
    generator = make_generator(seed, data.device)
    with serial_if_small(data.n_samples * n_local_trials * n_clusters * (data.n_features + 1)):
        return kmeans_plusplus_core(data, n_clusters, n_local_trials, generator)


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
    data: Data,
    n_clusters: int,
    n_local_trials: int,
    generator: torch.Generator,
    comm: Comm = LOCAL,
) -> torch.Tensor:
    """Greedy k-means++ on validated inputs; see :func:`kmeans_plusplus`.

    Parameters
    ----------
    data : Data
        This process's rows (prepared over every process of ``comm``).
    n_clusters : int
    n_local_trials : int
    generator : torch.Generator
        On the data's device (the same seed in every process).
    comm : Comm, default LOCAL
        Where the other rows are: rows are drawn from all of them.

    Returns
    -------
    tensor of shape (n_clusters, n_features)
        In the data's units.
    """
    X, weight = data.rows, data.weights_or_ones()
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
    return data.to_data(centres)
