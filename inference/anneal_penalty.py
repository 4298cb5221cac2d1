"""Annealing with a price per cluster: K chosen by λ from the annealing path's J(K), then DP-means.

:func:`~kmeans_limit.inference.anneal` visits K = 1, 2, ... in turn, one split a level; the hard
inertia J(K) at every K it visits is the σ = 0 end of that level (Lloyd's algorithm and split-merge
moves from the level's centroids). The K that minimises ``J(K) + λK`` for a given λ lies on the lower
convex hull of the points (K, J(K)); each hull vertex is chosen by an interval of λ.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ._split import split_merge
from .anneal import anneal
from .data import Data, prepare_data
from .dp_means import DPMeansResult, check_penalty, dp_means
from .kernels import serial_if_small
from .lloyd import lloyd_rows
from .validation import check_positive_int

__all__ = [
    "PenalizedAnnealResult",
    "PenaltyCurve",
    "PenaltyHull",
    "anneal_penalized",
    "choose_k",
    "penalty_hull",
]

#: Lloyd iterations at σ = 0 for each K read off the path.
LLOYD_MAX_ITER = 1000


class PenaltyCurve(NamedTuple):
    """The hard inertia at every K the annealing path visited.

    Attributes
    ----------
    n_clusters : long tensor of shape (M,)
        1, 2, ..., K_max (increasing).
    inertia : tensor of shape (M,), float64
        J(K) of a Lloyd fixed point (refined by split-merge moves) started from the path's level of K.
    means : tuple of M tensors of shapes (K, n_features)
        Those fixed points' centroids, in the data's units.
    """

    n_clusters: torch.Tensor
    inertia: torch.Tensor
    means: tuple


class PenaltyHull(NamedTuple):
    """The lower convex hull of (K, J(K)): which K each λ chooses.

    Attributes
    ----------
    n_clusters : long tensor of shape (H,)
        The hull's vertices, increasing K.
    inertia : tensor of shape (H,), float64
    penalty_low, penalty_high : tensors of shape (H,), float64
        Vertex i minimises ``J(K) + λK`` over the curve for λ in ``[penalty_low[i], penalty_high[i]]``
        (the slopes of the hull's edges on either side; ``penalty_high[0] = inf``, and
        ``penalty_low[-1] = 0`` only when the curve ended at its last K, otherwise the last edge).
    """

    n_clusters: torch.Tensor
    inertia: torch.Tensor
    penalty_low: torch.Tensor
    penalty_high: torch.Tensor


class PenalizedAnnealResult(NamedTuple):
    """K chosen by λ along the annealing path, polished by DP-means.

    Attributes
    ----------
    means : tensor of shape (n_clusters, n_features)
        A DP-means fixed point, in the data's units.
    labels : long tensor of shape (n_samples,)
    n_clusters : int
    inertia, objective : float
        J and ``J + λK``.
    path_k : int
        The K the curve chose before the polish (``argmin J(K) + λK``).
    curve : PenaltyCurve
    hull : PenaltyHull
    dp : DPMeansResult
        The polish (started from the curve's centroids at ``path_k``).
    """

    means: torch.Tensor
    labels: torch.Tensor
    n_clusters: int
    inertia: float
    objective: float
    path_k: int
    curve: PenaltyCurve
    hull: PenaltyHull
    dp: DPMeansResult


def penalty_hull(n_clusters, inertia) -> PenaltyHull:
    """The lower convex hull of the points (K, J(K)) (Andrew's monotone chain, lower half).

    Parameters
    ----------
    n_clusters : sequence of int of shape (M,), increasing
    inertia : sequence of float of shape (M,)

    Returns
    -------
    PenaltyHull
    """
    ks = [int(k) for k in torch.as_tensor(n_clusters).tolist()]
    js = [float(j) for j in torch.as_tensor(inertia, dtype=torch.float64).tolist()]
    if len(ks) != len(js) or not ks or any(b <= a for a, b in zip(ks, ks[1:], strict=False)):
        raise ValueError("n_clusters should be increasing and as long as inertia (at least one value)")
    hull: list[int] = []
    for i in range(len(ks)):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            cross = (ks[b] - ks[a]) * (js[i] - js[a]) - (js[b] - js[a]) * (ks[i] - ks[a])
            if cross > 0:
                break
            hull.pop()
        hull.append(i)
    # keep only the decreasing part: beyond the minimum of J, no λ > 0 chooses a larger K
    while len(hull) >= 2 and js[hull[-1]] >= js[hull[-2]]:
        hull.pop()
    slopes = [(js[a] - js[b]) / (ks[b] - ks[a]) for a, b in zip(hull, hull[1:], strict=False)]
    high = [math.inf, *slopes]
    low = [*slopes, 0.0]
    as64 = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    return PenaltyHull(
        torch.tensor([ks[i] for i in hull]), as64([js[i] for i in hull]), as64(low), as64(high)
    )


def choose_k(curve: PenaltyCurve, penalty: float) -> int:
    """``argmin_K J(K) + λK`` over the curve (the smallest K on ties)."""
    objective = curve.inertia + check_penalty(penalty) * curve.n_clusters.double()
    return int(curve.n_clusters[int(objective.argmin())])


def _hard_at(data: Data, weight, means, n_trials) -> tuple[float, torch.Tensor]:
    """J and centroids (rows' frame) of the Lloyd fixed point from ``means``, refined by split-merge."""
    result = lloyd_rows(data.rows, means, weight, max_iter=LLOYD_MAX_ITER, tol=0.0)
    if n_trials and means.shape[0] > 1 and result.converged:
        result = split_merge(
            data.rows, weight, result, n_trials=n_trials, max_iter=LLOYD_MAX_ITER, variance=data.variance
        )[0]
    return result.inertia, result.means


def penalty_curve(data: Data, k_max: int, *, seed: int, n_trials: int = 8, **options) -> PenaltyCurve:
    """J(K) for K = 1..k_max from one annealing run to ``k_max`` (see the module's docstring).

    ``options`` go to :func:`~kmeans_limit.inference.anneal`. K = k_max is the run's own result;
    a smaller K starts from the last path level with K components born, or, when the path has none
    (splits made at σ = 0 leave no level), from the final centroids' first K (in order of birth).
    """
    run = anneal(data, k_max, seed=seed, n_trials=n_trials, **options)
    born = (run.path.weights > 0).sum(1)
    weight = data.weights_or_ones()
    ks, inertia, means = [], [], []
    with serial_if_small(data.n_samples * k_max * (data.n_features + 1)):  # as anneal runs its own
        for k in range(1, k_max + 1):
            if k == k_max:
                j, m = run.inertia, data.to_rows(run.means)
            else:
                levels = (born == k).nonzero()
                start = run.path.means[int(levels[-1]), :k] if levels.numel() else run.means[:k]
                j, m = _hard_at(data, weight, data.to_rows(start), n_trials)
            ks.append(k)
            inertia.append(j)
            means.append(data.to_data(m))
    return PenaltyCurve(torch.tensor(ks), torch.tensor(inertia, dtype=torch.float64), tuple(means))


def anneal_penalized(
    X,
    penalty: float,
    *,
    k_max: int | None = None,
    seed: int = 0,
    sample_weight=None,
    n_trials: int = 8,
    dp_max_iter: int = 300,
    **options,
) -> PenalizedAnnealResult:
    """Hard clustering with K chosen by λ: the annealing path's J(K), then DP-means from the best K.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features), or Data
    penalty : float > 0
        λ, the price of a cluster, in squared data units.
    k_max : int, optional
        The largest K to anneal to. By default 8, doubled (up to the number of distinct rows) while the
        best K is within two of it and ``λ · k_max`` is below the best ``J + λK`` found (a larger K
        could still win: J ≥ 0).
    seed : int, default 0
        For :func:`~kmeans_limit.inference.anneal`.
    sample_weight : array-like of shape (n_samples,), optional
    n_trials : int, default 8
        Split-merge moves per K (as in ``anneal``).
    dp_max_iter : int, default 300
        DP-means passes of the polish (``max_iter``, if given, goes to ``anneal``).
    **options
        Further keyword arguments of ``anneal`` (``cooling``, ``weights``, ``max_iter``, ``tol``,
        ``sigma_start``, ``sigma_end``).

    Returns
    -------
    PenalizedAnnealResult
    """
    penalty = check_penalty(penalty)
    data = prepare_data(X, sample_weight)
    n_distinct = torch.unique(data.rows if data.weight is None else data.rows[data.weight > 0], dim=0).shape[
        0
    ]
    grow = k_max is None
    k_max = min(8, n_distinct) if grow else min(check_positive_int("k_max", k_max), n_distinct)
    while True:
        curve = penalty_curve(data, k_max, seed=seed, n_trials=n_trials, **options)
        objective = curve.inertia + penalty * curve.n_clusters.double()
        best = int(objective.argmin())
        near_end = int(curve.n_clusters[best]) > k_max - 2 and penalty * k_max < float(objective[best])
        if not (grow and near_end) or k_max >= n_distinct:
            break
        k_max = min(2 * k_max, n_distinct)
    path_k = int(curve.n_clusters[best])
    polish = dp_means(data, penalty, init=curve.means[best], max_iter=dp_max_iter)
    return PenalizedAnnealResult(
        polish.means,
        polish.labels,
        polish.n_clusters,
        polish.inertia,
        polish.objective,
        path_k,
        curve,
        penalty_hull(curve.n_clusters, curve.inertia),
        polish,
    )
