"""ECR relabelling (equivalence classes representatives; Papastamoulis & Iliopoulos 2010).

Each draw's labels are permuted so that its allocation vector agrees with a pivot allocation on as
many rows as possible: for draw m the permutation maximises ``#{n : τ_m(z_mn) = z*_n}``, a linear
assignment problem on the K × K table of agreements. ``ecr_iterative`` (R package label.switching's
``ecr.iterative.1``) needs no pivot: it replaces the pivot by the row-wise mode of the relabelled
allocations and repeats until the permutations stop changing.

P. Papastamoulis and G. Iliopoulos, "An artificial allocations based solution to the label switching
problem in Bayesian analysis of mixtures of distributions", J. Comput. Graph. Stat. 19(2), 2010;
P. Papastamoulis, "label.switching: an R package for dealing with the label switching problem in
MCMC outputs", J. Stat. Softw. 69, 2016.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from .batched import batched_log_responsibilities
from .kernels import CHUNK_ENTRIES, chunk_rows

__all__ = ["draw_allocations", "ecr", "ecr_iterative", "ecr_permutations", "relabel_allocations"]


def _check_allocations(allocations, n_clusters: int) -> np.ndarray:
    z = np.asarray(allocations)
    if z.ndim != 2 or not np.issubdtype(z.dtype, np.integer):
        raise ValueError(
            f"allocations of shape {z.shape} and dtype {z.dtype} should be integers (n_draws, n_samples)"
        )
    if z.size and (z.min() < 0 or z.max() >= n_clusters):
        raise ValueError(f"allocations should be labels in 0..{n_clusters - 1}, got {z.min()}..{z.max()}")
    return z.astype(np.int64)


def ecr(allocations, pivot, n_clusters: int) -> np.ndarray:
    """ECR with a given pivot: each draw's permutation maximising its agreement with ``pivot``.

    Parameters
    ----------
    allocations : int array of shape (n_draws, n_samples)
        ``z[m, n]``: the component of row n in draw m, in 0..K−1.
    pivot : int array of shape (n_samples,)
    n_clusters : int

    Returns
    -------
    int64 ndarray of shape (n_draws, n_clusters)
        ``perm[m, k]``: the component of draw m that gets label k (as the other relabelling methods).
    """
    z = _check_allocations(allocations, n_clusters)
    pivot = _check_allocations(np.asarray(pivot)[None], n_clusters)[0]
    if pivot.shape[0] != z.shape[1]:
        raise ValueError(f"pivot has {pivot.shape[0]} rows but the allocations {z.shape[1]}")
    # agree[m, j, k] = #{n : z[m, n] = j and pivot[n] = k}
    agree = np.zeros((z.shape[0], n_clusters, n_clusters), np.int64)
    np.add.at(agree, (np.arange(z.shape[0])[:, None], z, pivot[None, :]), 1)
    perms = np.empty((z.shape[0], n_clusters), np.int64)
    for m, table in enumerate(agree):
        components, labels = linear_sum_assignment(table, maximize=True)
        perms[m, labels] = components
    return perms


def relabel_allocations(allocations, perms) -> np.ndarray:
    """The allocations under the new labels: row n of draw m gets the label k with ``perm[m, k] = z[m, n]``."""
    z, perms = np.asarray(allocations), np.asarray(perms)
    inverse = np.argsort(perms, axis=1)  # inverse[m, j]: the label component j gets
    return np.take_along_axis(inverse, z, axis=1)


def _mode(z: np.ndarray, n_clusters: int) -> np.ndarray:
    """Per row, the most frequent label over draws (the smallest label on ties)."""
    counts = np.zeros((z.shape[1], n_clusters), np.int64)
    np.add.at(counts, (np.broadcast_to(np.arange(z.shape[1]), z.shape), z), 1)
    return counts.argmax(1)


def ecr_iterative(allocations, n_clusters: int, *, init=None, max_iter: int = 100) -> tuple[np.ndarray, int]:
    """ECR without a pivot (label.switching's ``ecr.iterative.1``).

    Parameters
    ----------
    allocations : int array of shape (n_draws, n_samples)
    n_clusters : int
    init : int array of shape (n_draws, n_clusters), optional
        Starting permutations (the identity by default); the first pivot is the mode of the
        allocations relabelled by them.
    max_iter : int, default 100

    Returns
    -------
    perms : int64 ndarray of shape (n_draws, n_clusters)
    n_iter : int
        Iterations until the permutations stopped changing (``max_iter`` if they never did).

    Notes
    -----
    Alternates ``pivot = mode over draws of the relabelled allocations`` and ECR to that pivot. Each
    step cannot lower the total agreement ``Σ_m #{n : τ_m(z_mn) = pivot_n}`` (the mode maximises it
    for fixed permutations, ECR for a fixed pivot), so the iteration stops.
    """
    z = _check_allocations(allocations, n_clusters)
    perms = np.tile(np.arange(n_clusters), (z.shape[0], 1)) if init is None else np.asarray(init, np.int64)
    for n_iter in range(1, max_iter + 1):
        new = ecr(z, _mode(relabel_allocations(z, perms), n_clusters), n_clusters)
        if np.array_equal(new, perms):
            return perms, n_iter
        perms = new
    return perms, max_iter


def draw_allocations(
    X: torch.Tensor, weights: torch.Tensor, means: torch.Tensor, sigma: torch.Tensor
) -> np.ndarray:
    """Each draw's most probable component of every row, ``argmax_k π_k N(x_n | μ_k, σ²)``: (n_draws, n_samples).

    The posterior draws hold no z; ECR then works on these allocations (the draws' own labels).
    """
    n_draws, n_clusters = weights.shape
    out = np.empty((n_draws, X.shape[0]), np.int64)
    for rows in chunk_rows(X.shape[0], 1, max(1, CHUNK_ENTRIES // (n_draws * n_clusters))):
        log_gamma = batched_log_responsibilities(X[rows], means, weights.log(), sigma)[0]  # (M, K, n)
        out[:, rows] = log_gamma.argmax(1).cpu().numpy()
    return out


def ecr_permutations(
    X: torch.Tensor,
    weights: torch.Tensor,
    means: torch.Tensor,
    sigma: torch.Tensor,
    *,
    init: torch.Tensor | None = None,
    max_iter: int = 100,
) -> tuple[torch.Tensor, int]:
    """Iterative ECR on posterior draws, for :func:`~kmeans_limit.inference.relabel` (``method="ecr"``).

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features)
    weights : tensor of shape (n_draws, n_clusters)
    means : tensor of shape (n_draws, n_clusters, n_features)
    sigma : tensor of shape (n_draws,)
    init : long tensor of shape (n_draws, n_clusters), optional
        Starting permutations (``relabel`` passes the pivot method's).
    max_iter : int, default 100

    Returns
    -------
    perms : long tensor of shape (n_draws, n_clusters)
        ``perm[m, k]``: the component of draw m that gets label k.
    n_iter : int
    """
    z = draw_allocations(X, weights, means, sigma)
    start = None if init is None else init.cpu().numpy()
    perms, n_iter = ecr_iterative(z, weights.shape[1], init=start, max_iter=max_iter)
    return torch.as_tensor(perms, device=weights.device), n_iter
