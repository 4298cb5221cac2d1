"""DP-means (Kulis & Jordan 2012): the σ → 0 limit of the Dirichlet-process mixture, J + λK minimised."""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import torch
from sklearn.exceptions import ConvergenceWarning

from ._grouping import rows_by_label
from ._split import propose_split, removal_costs
from .data import Data, prepare_data
from .kernels import nearest_centroid, serial_if_small
from .lloyd import labelled_sq_distances
from .validation import check_means, check_positive_int, check_real, check_seed

__all__ = [
    "DPMeansResult",
    "check_penalty",
    "dp_means",
    "duplicate_mass",
    "dp_means_core",
    "dp_objective",
    "merge_costs",
    "split_gains",
]

#: Relative slack below which a move is not worth making (rounding of J, summed in float64).
MOVE_TOL = 1e-10


class DPMeansResult(NamedTuple):
    """A DP-means fixed point.

    Attributes
    ----------
    means : tensor of shape (n_clusters, n_features)
        In the data's units; every cluster holds positive weight.
    labels : long tensor of shape (n_samples,)
        Nearest centroid of each row.
    n_clusters : int
        K, chosen by the penalty.
    inertia : float
        ``J = Σ_n w_n ‖x_n − μ_{z_n}‖²``.
    objective : float
        ``J + λK``.
    history : tensor of shape (n_steps,), float64
        ``J + λK`` after every step (assignment, cluster opening, mean update, merge or removal):
        non-increasing.
    n_iter : int
        Passes over the data (assignment and mean update).
    converged : bool
        Whether a pass changed nothing before ``max_iter`` ran out.
    """

    means: torch.Tensor
    labels: torch.Tensor
    n_clusters: int
    inertia: float
    objective: float
    history: torch.Tensor
    n_iter: int
    converged: bool


def check_penalty(penalty) -> float:
    """λ as a positive finite float, or a ValueError naming it."""
    return check_real("penalty", penalty, low=0.0, low_open=True)


def dp_objective(
    X: torch.Tensor, weight: torch.Tensor, means: torch.Tensor, labels: torch.Tensor, penalty: float
):
    """``(J, J + λK)`` in float64 on the rows' frame, J from the differences."""
    inertia = (labelled_sq_distances(X, means, labels).double() * weight.double()).sum().item()
    return inertia, inertia + penalty * means.shape[0]


def merge_costs(means: torch.Tensor, masses: torch.Tensor) -> torch.Tensor:
    """Rise in J from merging clusters a and b into one at their weighted mean: ``m_a m_b/(m_a + m_b) ‖μ_a − μ_b‖²``.

    Parameters
    ----------
    means : tensor of shape (K, n_features)
        Cluster means (each the weighted mean of its rows).
    masses : tensor of shape (K,)
        Their weights.

    Returns
    -------
    tensor of shape (K, K), ``inf`` on the diagonal
    """
    sq = torch.cdist(means.double(), means.double()).square()
    m = masses.double()
    cost = m[:, None] * m[None, :] / (m[:, None] + m[None, :]) * sq
    return cost.fill_diagonal_(math.inf)


def dp_means(
    X,
    penalty: float,
    *,
    init=None,
    max_iter: int = 300,
    seed: int = 0,
    sample_weight=None,
    splits: bool = True,
) -> DPMeansResult:
    """DP-means: hard clustering with K chosen by the price λ of a cluster, minimising ``J + λK``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features), or Data
    penalty : float > 0
        λ, in squared data units: a row farther than ``sqrt(λ / w_n)`` from every centroid opens a
        cluster.
    init : array-like of shape (n_init, n_features), optional
        Starting centroids in the data's units (an annealing or k-means result); default one
        centroid at the weighted data mean.
    max_iter : int, default 300
        Passes (assignment, openings, mean update) at most before the moves.
    seed : int, default 0
        Checked and kept for a uniform API; the algorithm is deterministic (the costliest row opens
        each new cluster, and ties go to the first index).
    sample_weight : array-like of shape (n_samples,), optional
    splits : bool, default True
        Also try splitting a cluster in two at the fixed point (``False``: Kulis & Jordan's moves
        and the merges and deletions only).

    Returns
    -------
    DPMeansResult

    Warns
    -----
    sklearn.exceptions.ConvergenceWarning
        When ``max_iter`` passes end with the labels still changing.

    Notes
    -----
    Kulis & Jordan ("Revisiting k-means: new algorithms via Bayesian nonparametrics", ICML 2012)
    visit the rows one at a time. This batch form assigns every row to its nearest centroid, then,
    while some row has ``W_n min_k ‖x_n − μ_k‖² > λ`` (``W_n`` the weight of all the rows equal to
    x_n, so that weights act as repeated rows), opens a cluster at the costliest such row (it
    lowers J by more than λ, and the rows nearer the new centroid move to it), then moves every
    centroid to its rows' weighted mean and drops the clusters left without weight. Every step lowers
    ``J + λK`` or leaves it, so the passes reach a fixed point. There, three further moves are tried
    (none is in Kulis & Jordan's algorithm): merging two clusters (J rises by
    ``m_a m_b/(m_a + m_b) ‖μ_a − μ_b‖²``, λK falls by λ), deleting one (its rows going to their
    next-nearest centroids) and splitting one in two along its principal axis, polished by 2-means
    (J falls by the split's gain, λK rises by λ); the best that lowers the objective is made, and
    the passes resume. The result is a fixed point of all of them: no single row's reassignment
    (centroids held), opening, merge, deletion or such split lowers ``J + λK``. Without the splits,
    a start at the data mean stays at one cluster whenever every row is within ``sqrt(λ)`` of the
    mean, however much J a split would save (s1 standardized at λ = 20: K = 1 where J + λK is
    minimal near K = 15).
    """
    penalty = check_penalty(penalty)
    max_iter = check_positive_int("max_iter", max_iter)
    check_seed(seed)
    data = prepare_data(X, sample_weight)
    start = None if init is None else data.to_rows(check_means(init, data.n_features, name="init"))
    with serial_if_small(data.n_samples * (data.n_features + 1) * 8):
        return dp_means_core(data, penalty, start, max_iter=max_iter, splits=bool(splits))


def _weighted_mean(X: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return ((weight.double() @ X.double()) / weight.double().sum()).to(X.dtype)[None]


def duplicate_mass(X: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """For each row, the total weight of the rows equal to it (itself included), shape (n_samples,)."""
    _, inverse = torch.unique(X, dim=0, return_inverse=True)
    total = torch.zeros(int(inverse.max()) + 1, dtype=weight.dtype, device=weight.device)
    return total.index_add_(0, inverse, weight)[inverse]


def _open_clusters(X, mass, means, labels, min_sq, penalty):
    """Open a cluster at the costliest row while one costs more than λ; labels and distances follow.

    ``mass`` is :func:`duplicate_mass`: a centroid opened at a row takes every copy of it, so a row
    of weight 2 and two rows of weight 1 at the same place open a cluster alike.
    """
    cost = mass * min_sq
    while means.shape[0] < X.shape[0]:
        i = int(cost.argmax())
        if not cost[i] > penalty * (1.0 + MOVE_TOL):
            break
        centre = X[i]
        d_new = (X - centre).square().sum(-1)
        closer = d_new < min_sq
        labels = torch.where(closer, means.shape[0], labels)
        min_sq = torch.where(closer, d_new, min_sq)
        means = torch.cat([means, centre[None]])
        cost = mass * min_sq
    return means, labels


def _update_means(X, weight, means, labels):
    """Weighted means of the clusters; clusters without weight are dropped (labels renumbered)."""
    n_clusters = means.shape[0]
    mass = torch.bincount(labels, weights=weight.double(), minlength=n_clusters)
    sums = torch.zeros(n_clusters, X.shape[1], dtype=torch.float64, device=X.device)
    sums.index_add_(0, labels, X.double() * weight.double()[:, None])
    keep = mass > 0
    new = (sums[keep] / mass[keep, None]).to(X.dtype)
    renumber = torch.cumsum(keep.long(), 0) - 1
    return new, renumber[labels]


def split_gains(X: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, n_clusters: int) -> list:
    """For each cluster, its best two-way split (principal axis, polished by 2-means): SplitProposals."""
    return [propose_split(X, weight[rows], index=rows) for rows in rows_by_label(labels, n_clusters)]


def _best_move(X, weight, means, labels, penalty, splits: bool):
    """The merge, deletion or split that lowers J + λK most (the centroids after it), or None."""
    n_clusters = means.shape[0]
    mass = torch.bincount(labels, weights=weight.double(), minlength=n_clusters)
    moves = []  # (change in J + λK, kind, index)
    if n_clusters > 1:
        merges = merge_costs(means, mass)
        removals = removal_costs(X, weight, means, labels).double()  # an upper bound on the rise in J
        a, b = divmod(int(merges.argmin()), n_clusters)
        j = int(removals.argmin())
        moves += [
            (merges[a, b].item() - penalty, "merge", (a, b)),
            (removals[j].item() - penalty, "delete", j),
        ]
    proposals = split_gains(X, weight, labels, n_clusters) if splits else []
    if proposals:
        k = max(range(n_clusters), key=lambda i: proposals[i].gain)
        moves.append((penalty - proposals[k].gain, "split", k))
    if not moves:
        return None
    change, kind, where = min(moves, key=lambda move: move[0])
    if change >= -penalty * MOVE_TOL:
        return None
    keep = torch.ones(n_clusters, dtype=torch.bool)
    means = means.clone()
    if kind == "merge":
        a, b = where
        means[a] = ((mass[a] * means[a].double() + mass[b] * means[b].double()) / (mass[a] + mass[b])).to(
            means.dtype
        )
        keep[b] = False
    elif kind == "delete":
        keep[where] = False
    else:
        means[where] = proposals[where].left.to(means.dtype)
        return torch.cat([means, proposals[where].right.to(means.dtype)[None]])
    return means[keep]


def dp_means_core(
    data: Data, penalty: float, start: torch.Tensor | None, *, max_iter: int, splits: bool = True
) -> DPMeansResult:
    """:func:`dp_means` on validated inputs (``start`` in the rows' frame)."""
    X, weight = data.rows, data.weights_or_ones()
    means = _weighted_mean(X, weight) if start is None else start
    mass = duplicate_mass(X, weight)
    history, n_iter, converged, labels = [], 0, False, None
    while True:
        for _ in range(max_iter):
            n_iter += 1
            new_labels, min_sq = nearest_centroid(X, means)
            history.append(dp_objective(X, weight, means, new_labels, penalty)[1])
            means, new_labels = _open_clusters(X, mass, means, new_labels, min_sq, penalty)
            history.append(dp_objective(X, weight, means, new_labels, penalty)[1])
            opened = means.shape[0]
            means, new_labels = _update_means(X, weight, means, new_labels)
            history.append(dp_objective(X, weight, means, new_labels, penalty)[1])
            if labels is not None and means.shape[0] == opened and torch.equal(labels, new_labels):
                converged = True
                break
            labels = new_labels
        else:
            converged = False
        labels = new_labels
        if not converged:
            break
        moved = _best_move(X, weight, means, labels, penalty, splits)
        if moved is None:
            break
        means, labels = moved, None
    if not converged:
        warnings.warn(
            f"DP-means stopped at max_iter={max_iter} passes with labels still changing; raise max_iter",
            ConvergenceWarning,
            stacklevel=3,
        )
    labels = nearest_centroid(X, means)[0]
    inertia, objective = dp_objective(X, weight, means, labels, penalty)
    history = torch.tensor(history, dtype=torch.float64)
    return DPMeansResult(
        data.to_data(means), labels, means.shape[0], inertia, objective, history, n_iter, converged
    )
