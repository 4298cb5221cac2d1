"""Label switching: permute every posterior draw's components to one common labelling.

The posterior of a mixture is symmetric under the K! relabelings of its components, so per-component
summaries of raw draws (and their R-hat) mean nothing. Two remedies:

- ``"pivot"``: match each draw's means to a reference (the draw of highest ``lp``, or given
  centroids) by the Hungarian algorithm on squared distances;
- ``"stephens"``: Stephens' (2000) KL relabelling, which chooses each draw's permutation so that its
  assignment probabilities are closest in Kullback-Leibler divergence to their average over draws,
  and iterates (started from the pivot solution).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from . import arviz_compat
from .batched import batched_log_responsibilities
from .data import prepare_data
from .ecr import ecr_permutations
from .idata import posterior_tensors
from .kernels import CHUNK_ENTRIES, chunk_rows
from .validation import check_means, check_positive_int

__all__ = [
    "CANONICAL_REFERENCE",
    "METHODS",
    "canonical_reference",
    "pivot_permutations",
    "relabel",
    "stephens_permutations",
]

METHODS = ("pivot", "stephens", "ecr")


def _assign(cost: torch.Tensor) -> torch.Tensor:
    """Per draw, the permutation minimising ``Σ_j cost[m, j, label(j)]``.

    Parameters
    ----------
    cost : tensor of shape (n_draws, n_clusters, n_clusters)
        ``cost[m, j, k]``: the cost of giving component j of draw m the label k.

    Returns
    -------
    long tensor of shape (n_draws, n_clusters)
        ``perm[m, k]``: the component of draw m that gets label k.
    """
    cost_np = cost.detach().cpu().numpy()
    perms = np.empty(cost_np.shape[:2], dtype=np.int64)
    for m, matrix in enumerate(cost_np):
        components, labels = linear_sum_assignment(matrix)
        perms[m, labels] = components
    return torch.as_tensor(perms, device=cost.device)


def pivot_permutations(means: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Permutations matching each draw's means to ``reference`` (Hungarian, squared distances).

    Parameters
    ----------
    means : tensor of shape (n_draws, n_clusters, n_features)
    reference : tensor of shape (n_clusters, n_features)

    Returns
    -------
    long tensor of shape (n_draws, n_clusters)
        ``perm[m, k]``: the component of draw m that gets label k.
    """
    diff = means[:, :, None, :] - reference[None, None, :, :]
    return _assign((diff * diff).sum(-1))


def _stephens_cost(X, weights, means, sigma, perms, chunk_size=None) -> torch.Tensor:
    """``cost[m, j, k] = −Σ_n γ_mnj log q_nk`` with ``q_nk`` the average relabelled responsibility."""
    n_draws, n_clusters = weights.shape
    if chunk_size is None:
        chunk_size = max(1, CHUNK_ENTRIES // (n_draws * n_clusters))
    cost = X.new_zeros(n_draws, n_clusters, n_clusters)
    log_weights = weights.log()
    for rows in chunk_rows(X.shape[0], n_clusters, chunk_size):
        gamma = batched_log_responsibilities(X[rows], means, log_weights, sigma)[0].exp()  # (draws, K, n)
        relabelled = gamma.gather(1, perms[:, :, None].expand(-1, -1, gamma.shape[2]))
        log_q = relabelled.mean(0).clamp_min(torch.finfo(X.dtype).tiny).log()  # (K, n)
        cost -= gamma @ log_q.T
    return cost


def stephens_permutations(
    X: torch.Tensor,
    weights: torch.Tensor,
    means: torch.Tensor,
    sigma: torch.Tensor,
    *,
    init: torch.Tensor | None = None,
    max_iter: int = 100,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, int]:
    """Stephens' (2000) KL relabelling.

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features)
        Rows in the frame of ``means`` (for accuracy, ``data.rows`` of
        :func:`~kmeans_limit.inference.data.prepare_data` with means moved by ``data.to_rows``).
    weights : tensor of shape (n_draws, n_clusters)
    means : tensor of shape (n_draws, n_clusters, n_features)
    sigma : tensor of shape (n_draws,)
    init : long tensor of shape (n_draws, n_clusters), optional
        Starting permutations (identity by default).
    max_iter : int, default 100
    chunk_size : int, optional
        Rows per chunk (memory O(n_draws · chunk · K)).

    Returns
    -------
    perms : long tensor of shape (n_draws, n_clusters)
        ``perm[m, k]``: the component of draw m that gets label k.
    n_iter : int
        Iterations until no permutation changed (``max_iter`` if that never happened).

    Notes
    -----
    Alternates ``q_nk = mean_m γ_{m,n,perm_m(k)}`` and, for each draw, the permutation minimising
    ``KL(γ_m relabelled ‖ q) = const − Σ_n Σ_k γ_{m,n,perm_m(k)} log q_nk`` (a linear assignment
    problem), until the permutations stop changing. The objective never increases. M. Stephens,
    "Dealing with label switching in mixture models", JRSS B 62(4), 2000, Algorithm 2.
    """
    perms = init
    if perms is None:
        perms = torch.arange(weights.shape[1], device=X.device).expand(weights.shape[0], -1)
    for n_iter in range(1, max_iter + 1):
        new = _assign(_stephens_cost(X, weights, means, sigma, perms, chunk_size))
        if torch.equal(new, perms):
            return perms, n_iter
        perms = new
    return perms, max_iter


def _permuted(idata, perms: torch.Tensor, method: str):
    """A copy of ``idata`` with each draw's weights and means permuted (``perm[m, k]`` → label k)."""
    new = arviz_compat.copy(idata)
    post = new.posterior
    n_chains, n_draws, n_clusters = post["weights"].shape
    index = perms.cpu().numpy().reshape(n_chains, n_draws, n_clusters)
    weights = np.take_along_axis(post["weights"].values, index, axis=-1)
    means = np.take_along_axis(post["means"].values, index[..., None], axis=-2)
    post["weights"] = post["weights"].copy(data=weights)
    post["means"] = post["means"].copy(data=means)
    arviz_compat.update_attrs(new, {"relabelled": method})
    return new


#: What ``relabel_reference`` says of the default labels of :func:`~kmeans_limit.inference.fit_posterior`.
CANONICAL_REFERENCE = "annealed hard fit, components by decreasing weight"


def canonical_reference(X, n_clusters: int, *, seed: int = 0) -> torch.Tensor:
    """The centroids every posterior fit is relabelled to by default: one order for separate runs.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features), or Data
    n_clusters : int
    seed : int, default 0
        Of the annealing (which is deterministic but for the jitter of its splits).

    Returns
    -------
    tensor of shape (n_clusters, n_features)
        The hard k-means fit of :func:`~kmeans_limit.inference.anneal` (a Lloyd fixed point), in the
        data's units, its components ordered by decreasing weight (the fraction of rows nearest
        them), ties broken by the coordinates in order.

    Notes
    -----
    Posterior comparison studies fit the same data by several methods in separate runs; each run's
    raw labels are arbitrary (the posterior is symmetric under the K! relabelings). Pivoting every
    run to this one reference (:func:`relabel`) makes component k mean the same cluster in all of
    them: the heaviest cluster of the hard fit is component 0.
    """
    from .anneal import anneal  # anneal → lloyd → ...: imported when needed

    fit = anneal(X, n_clusters, seed=seed)
    means = fit.means.detach().cpu().double()
    keys = [means[:, d].numpy() for d in reversed(range(means.shape[1]))]
    order = np.lexsort([*keys, -fit.weights.detach().cpu().double().numpy()])
    return means[torch.as_tensor(order)]


def relabel(idata, method: str = "pivot", reference=None, *, max_iter: int = 100):
    """Undo label switching: permute every draw's components to a common labelling.

    Parameters
    ----------
    idata : arviz.InferenceData or xarray.DataTree
        From :func:`~kmeans_limit.inference.fit_posterior` (posterior ``weights``, ``means``, ``sigma``;
        ``sample_stats.lp``; ``observed_data.x`` for Stephens).
    method : {"pivot", "stephens", "ecr"}, default "pivot"
        ``"ecr"``: iterative ECR on each draw's most probable allocations
        (:func:`~kmeans_limit.inference.ecr.ecr_permutations`), started from the pivot solution.
    reference : array-like of shape (n_clusters, n_features), optional
        Centroids to pivot to (for instance :func:`canonical_reference`, which
        :func:`~kmeans_limit.inference.fit_posterior` uses). By default the means of the draw of
        highest ``lp`` (the MAP draw). Stephens starts from the pivot solution.
    max_iter : int, default 100
        Iterations of Stephens' algorithm.

    Returns
    -------
    arviz.InferenceData or xarray.DataTree
        A copy with ``weights`` and ``means`` permuted; every group's ``relabelled`` attribute names
        the method. ``sigma``, ``lp`` and the log-likelihood are invariant and unchanged.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} should be one of {METHODS}")
    max_iter = check_positive_int("max_iter", max_iter)
    weights, means, sigma = posterior_tensors(idata)
    if reference is None:
        reference = means[int(np.argmax(idata.sample_stats["lp"].values.reshape(-1)))]
    else:
        reference = check_means(reference, means.shape[-1], like=means)
        if reference.shape[0] != means.shape[1]:
            raise ValueError(f"reference has {reference.shape[0]} centroids but the fit has {means.shape[1]}")
    perms = pivot_permutations(means, reference)
    if method in ("stephens", "ecr"):  # rows meet means: both moved by the data's offset first
        data = prepare_data(np.asarray(idata.observed_data["x"].values, np.float64))
        relabeller = stephens_permutations if method == "stephens" else ecr_permutations
        perms, _ = relabeller(data.rows, weights, data.to_rows(means), sigma, init=perms, max_iter=max_iter)
    return _permuted(idata, perms, method)
