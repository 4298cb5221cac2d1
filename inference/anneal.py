"""Deterministic annealing of the shared σ down to the k-means limit (Rose, Gurewitz & Fox 1990)."""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, NamedTuple

import torch

from ._comm import LOCAL, Comm
from ._levels import Annealer
from ._split import CellProposal, split_merge
from .data import Data, prepare_data
from .em import check_weights_mode, convergence_warning
from .kernels import serial_if_small
from .lloyd import LloydResult, lloyd_rows
from .validation import check_n_clusters, check_positive_int, check_real, make_generator

if TYPE_CHECKING:
    from .anneal_penalty import PenalizedAnnealResult

__all__ = [
    "LEVELS_COOLING",
    "AnnealPath",
    "AnnealResult",
    "anneal",
    "anneal_core",
    "anneal_options",
    "check_path",
    "with_dense_path",
]

#: Lloyd iterations allowed at σ = 0 (a warning says when they run out).
LLOYD_MAX_ITER = 1000


class AnnealPath(NamedTuple):
    """The annealing path, one entry per σ level (L levels, all at σ > 0).

    Attributes
    ----------
    sigma : tensor of shape (L,), float64
        Decreasing.
    means : tensor of shape (L, n_clusters, n_features)
        Equilibrium centroids at each level. A component not yet born repeats its parent.
    weights : tensor of shape (L, n_clusters)
        Mixing weights (0 for components not yet born).
    log_likelihood : tensor of shape (L,), float64
        ``Σ_n w_n log p(x_n)`` at the level's equilibrium.
    entropy : tensor of shape (L,), float64
        Mean responsibility entropy, nats per unit of sample weight.
    n_distinct : long tensor of shape (L,)
        Born centroids that sit apart (more than 1% of σ from every other).
    """

    sigma: torch.Tensor
    means: torch.Tensor
    weights: torch.Tensor
    log_likelihood: torch.Tensor
    entropy: torch.Tensor
    n_distinct: torch.Tensor


class AnnealResult(NamedTuple):
    """The annealed hard k-means solution.

    Attributes
    ----------
    means : tensor of shape (n_clusters, n_features)
        A fixed point of Lloyd's algorithm.
    labels : long tensor of shape (n_samples,)
        Nearest centroid of each row.
    weights : tensor of shape (n_clusters,)
        Fraction of the sample weight nearest each centroid.
    inertia : float
        ``J = Σ_n w_n ‖x_n − μ_{z_n}‖²``.
    sigma_star : float
        ``sqrt(J / (D Σ_n w_n))``: the maximum-likelihood σ given the hard fit.
    path : AnnealPath
    split_sigmas : tensor of shape (n_clusters - 1,), float64
        The σ at which each split was made, in order: non-increasing, at most ``cooling · σ_c`` of
        the first transition (unless ``sigma_start`` is lower), and 0 for the splits made in the hard
        limit. A soft split at σ is the first path level at that σ.
        With ``anneal(path="dense")``: the dense path's, the grid level at which each child was born.
    critical_sigmas : tensor of shape (n_clusters - 1,), float64
        The critical σ of each split, in order: ``sqrt(λ_max)`` of the split cluster's
        responsibility-weighted covariance at the path level it was split from (its Voronoi cell's
        covariance for splits in the hard limit). Below it the cluster is unstable; annealing splits
        one cluster at a time, so the split σ may be far below, and a later cluster's critical σ may
        even exceed the first split's σ. The first is ``σ_c = sqrt(λ_max(Cov X))``.
        With ``anneal(path="dense")``: the dense path's, at least the split σ of the same split.
    n_iter : int
        EM iterations over all levels plus Lloyd iterations.
    """

    means: torch.Tensor
    labels: torch.Tensor
    weights: torch.Tensor
    inertia: float
    sigma_star: float
    path: AnnealPath
    split_sigmas: torch.Tensor
    critical_sigmas: torch.Tensor
    n_iter: int


def anneal(
    X,
    n_clusters: int | None = None,
    *,
    penalty: float | None = None,
    sigma_start: float | None = None,
    sigma_end: float | None = None,
    cooling: float | None = None,
    weights: str = "learn",
    seed: int = 0,
    sample_weight=None,
    max_iter: int = 10,
    tol: float = 1e-3,
    n_trials: int = 8,
    path: str = "levels",
) -> AnnealResult | PenalizedAnnealResult:
    """Hard k-means by deterministic annealing of σ, one split at a time, down to σ = 0.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features), or Data
        The rows, or rows prepared by :func:`~kmeans_limit.inference.data.prepare_data` (which
        decides whether they are centred; the results are in the data's units either way).
    n_clusters : int, optional
        K, at most the number of distinct rows of ``X`` of positive weight. Exactly one of
        ``n_clusters`` and ``penalty`` is given.
    penalty : float > 0, optional
        λ, the price of a cluster (squared data units): K is chosen, not given, as the K that
        minimises ``J(K) + λK`` along the annealing path, polished by DP-means; see
        :func:`~kmeans_limit.inference.anneal_penalty.anneal_penalized` (the other keywords go to it).
    sigma_start : float > 0, optional
        The first level; default ``σ_c / cooling`` with ``σ_c = sqrt(λ_max(Cov X))``, just above the
        first phase transition (all centroids at the data mean there).
    sigma_end : float > 0, optional
        Splits that would need a σ below it are made at σ = 0, and after the last split σ keeps
        falling level by level down to it. Default: splits go to σ = 0 once the responsibilities
        are hard (mean entropy under 1e-3 nats), and at most two levels follow the last split.
    cooling : float in (0, 1), optional
        ``path="levels"`` (default 0.9): a split is made (and equilibrated) at
        ``σ = cooling · sqrt(λ_max)`` of the split cluster's (Voronoi cell's) covariance, just below
        its transition, or at the current σ if that is lower (``split_sigmas`` records it); after
        the last split σ falls by ``cooling⁴`` a level. The number of levels is set by the splits
        (one level each, and one or two after the last), not by ``cooling``: a ``cooling`` closer
        to 1 splits closer to each transition, which can leave fewer levels above ``sigma_end``.
        ``path="dense"`` (default 0.97): the ratio of consecutive levels of the dense path's
        geometric σ grid; closer to 1 gives more levels, never fewer. The σ = 0 result then
        comes from the levels schedule at its default cooling.
    weights : {"learn", "equal"}, default "learn"
        EM learns the mixing weights (mass-constrained annealing, Rose 1998) or holds them at 1/m
        for the m centroids born so far.
    seed : int, default 0
        Draws the jitter (1e-3 of the cluster's spread) that moves the two children of a split off
        the split axis; the rest is deterministic.
    sample_weight : tensor of shape (n_samples,), optional
        Not with a prepared ``Data`` (it carries its weights).
    max_iter : int, default 10
        EM iterations per level at most (Lloyd's algorithm at σ = 0 runs to its fixed point, up to
        ``LLOYD_MAX_ITER`` iterations).
    tol : float >= 0, default 1e-3
        EM at a level stops when the free energy ``−2σ² log p(X)`` per unit weight moves by less than
        ``tol`` times the mean feature variance.
    n_trials : int >= 0, default 8
        Split-merge moves tried per round at σ = 0 (0 turns the refinement off).
    path : {"levels", "dense"}, default "levels"
        What ``result.path`` records. ``"levels"``: the fast schedule's own levels (a handful, one
        per split). ``"dense"``: the equilibrium path on a fine geometric σ grid from above the
        first transition to about σ*/20, each cluster splitting where its critical σ puts it
        (:func:`~kmeans_limit.inference.dense_path.dense_path`; slower, for pictures and
        teaching). With ``"dense"``, ``path``, ``split_sigmas`` and ``critical_sigmas`` are the
        dense path's (split σ values are then levels of its grid, critical σ values at least
        them), while ``means``, ``labels``, ``weights`` and ``inertia`` are still those of the
        levels schedule polished by split-merge moves (a Lloyd fixed point; the dense path's own
        end, with no such moves, can be a worse local optimum), their components put in the
        order of the dense path's (matched to its σ = 0 centroids) so that colours agree;
        ``n_iter`` counts both.

    Returns
    -------
    AnnealResult or PenalizedAnnealResult
        An ``AnnealResult`` for ``n_clusters``; with ``penalty``, a ``PenalizedAnnealResult`` (a
        DP-means fixed point with ``n_clusters``, ``inertia``, ``objective = J + λK``, the curve J(K)
        and its lower convex hull; no annealing path or split σ).

    Raises
    ------
    ValueError
        Both or neither of ``n_clusters`` and ``penalty``. For bad input, naming the value; when ``X`` has fewer than ``n_clusters`` distinct rows of
        positive weight.

    Warns
    -----
    sklearn.exceptions.ConvergenceWarning
        When Lloyd's algorithm at σ = 0 runs out of iterations before its labels repeat.

    Notes
    -----
    The temperature is ``T = 2σ²`` (Rose, Gurewitz & Fox, Phys. Rev. Lett. 65(8), 1990; Rose,
    Proc. IEEE 86(11), 1998). Above ``σ_c² = λ_max(Cov X)`` (1/N covariance, weighted by
    ``sample_weight``) the only equilibrium puts every centroid at the data mean; a cluster whose
    covariance has top eigenvalue ``λ`` splits when ``σ² < λ``.

    Naive annealing (cool geometrically, let every critical cluster split at once, EM to convergence
    at each σ) spends the budget of K centroids on whatever turns critical first and is slow. Here
    each level splits ONE cluster: of all the clusters (their rows being those nearest their
    centroid), the one whose split in two (started on either side of its mean along its principal
    axis and polished by 2-means on its rows: Boley 1998, Fränti & Kaukoranta 1998) lowers the
    σ → 0 free energy, the inertia, the most. σ jumps straight to ``cooling · sqrt(λ)`` of that
    cluster (if lower than the current σ), the two children replace its centroid, and EM at fixed σ
    re-equilibrates. Its E step visits only the rows where the split centroid could hold
    responsibility above 1e-4, the others keeping theirs (a partial E step, which never lowers the
    free energy: Neal & Hinton 1998); one full E step at the end records the level exactly. Once
    the responsibilities are hard (or σ is below ``sigma_end``) the remaining splits are made at
    σ = 0. After the last split σ falls fast for a level or two, then Lloyd's algorithm runs at
    σ = 0 to a fixed point, followed by split-merge moves: delete the centroid whose rows cost least
    to reassign, split the cluster that gains most, run Lloyd again, keep the move if the inertia
    falls by more than 0.01% (Kaukoranta, Fränti & Nevalainen 1998), until none of the
    ``n_trials`` most promising moves helps. The result is a Lloyd fixed point: one more Lloyd step
    changes nothing.
    """
    if (n_clusters is None) == (penalty is None):
        raise ValueError(
            f"n_clusters={n_clusters!r} and penalty={penalty!r}: give exactly one of n_clusters (K given) "
            "and penalty (λ > 0, K chosen)"
        )
    if penalty is not None:
        from .anneal_penalty import anneal_penalized  # it imports this module

        options = dict(sigma_start=sigma_start, sigma_end=sigma_end, cooling=cooling, weights=weights)
        options.update(max_iter=max_iter, tol=tol, seed=seed, sample_weight=sample_weight, n_trials=n_trials)
        return anneal_penalized(X, penalty, **options)
    data = prepare_data(X, sample_weight)
    n_clusters = check_n_clusters(n_clusters, data.rows, weight=data.weight)
    path = check_path(path)
    levels_cooling = cooling if path == "levels" and cooling is not None else LEVELS_COOLING
    options = anneal_options(sigma_start, sigma_end, levels_cooling, weights, max_iter, tol, n_trials)
    with serial_if_small(data.n_samples * n_clusters * (data.n_features + 1)):
        result = anneal_core(data, n_clusters, make_generator(seed, data.device), **options)
    if path == "levels":
        return result
    from .dense_path import DENSE_COOLING, dense_path

    dense = dense_path(
        data,
        n_clusters,
        cooling=DENSE_COOLING if cooling is None else cooling,
        sigma_start=sigma_start,
        sigma_end=sigma_end,
        weights=weights,
    )
    return with_dense_path(result, dense)


#: The default ``cooling`` of the levels schedule.
LEVELS_COOLING = 0.9
PATHS = ("levels", "dense")


def check_path(path) -> str:
    """``path`` checked: ``"levels"`` or ``"dense"``."""
    if not isinstance(path, str) or path not in PATHS:
        raise ValueError(
            f"path={path!r} should be 'levels' (the fast schedule) or 'dense' (the equilibrium path)"
        )
    return path


def with_dense_path(result: AnnealResult, dense) -> AnnealResult:
    """``result`` with the dense path's levels, split and critical σ, its components reordered to
    match the dense path's σ = 0 centroids (the same colours in every picture)."""
    from scipy.optimize import linear_sum_assignment

    cost = torch.cdist(result.means.double(), dense.final_means.double().to(result.means.device))
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    order = torch.empty(len(rows), dtype=torch.long)
    order[torch.as_tensor(cols)] = torch.as_tensor(rows)  # new slot cols[i] holds old component rows[i]
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order))
    order, inverse = order.to(result.means.device), inverse.to(result.labels.device)
    return result._replace(
        means=result.means[order],
        weights=result.weights[order],
        labels=inverse[result.labels],
        path=AnnealPath(*dense[:6]),
        split_sigmas=dense.split_sigma,
        critical_sigmas=dense.critical_sigma,
        n_iter=result.n_iter + int(dense.n_iter.sum()) + dense.lloyd_n_iter,
    )


def anneal_options(sigma_start, sigma_end, cooling, weights, max_iter, tol, n_trials) -> dict:
    """:func:`anneal`'s options, checked, as the keyword arguments of :func:`anneal_core`."""
    return dict(
        sigma_start=_optional_positive("sigma_start", sigma_start),
        sigma_end=_optional_positive("sigma_end", sigma_end),
        cooling=check_real("cooling", cooling, low=0.0, high=1.0, low_open=True, high_open=True),
        learn_weights=check_weights_mode(weights) == "learn",
        max_iter=check_positive_int("max_iter", max_iter),
        tol=check_real("tol", tol, low=0.0),
        n_trials=check_positive_int("n_trials", n_trials, minimum=0),
    )


def _optional_positive(name: str, value) -> float | None:
    return None if value is None else check_real(name, value, low=0.0, low_open=True)


def anneal_core(
    data: Data,
    n_clusters: int,
    generator: torch.Generator,
    *,
    sigma_start: float | None,
    sigma_end: float | None,
    cooling: float,
    learn_weights: bool,
    max_iter: int,
    tol: float,
    n_trials: int,
    comm: Comm = LOCAL,
) -> AnnealResult:
    """:func:`anneal` on validated inputs.

    ``data`` holds this process's rows (prepared over every process of ``comm``, which sums over
    them). Annealing runs in the rows' frame; the centroids come back in the data's units.
    """
    weight = data.weights_or_ones()
    state = Annealer(
        data.rows,
        weight,
        generator,
        cooling=cooling,
        learn_weights=learn_weights,
        max_iter=max_iter,
        tol=tol,
        sigma_end=sigma_end,
        comm=comm,
    )
    sigma_c = math.sqrt(state.proposals[0].critical_sigma2)
    state.sigma = sigma_start if sigma_start is not None else max(sigma_c / cooling, state.sigma_floor)
    state.equilibrate()
    while state.n_born < n_clusters:
        state.step()
    state.cool()
    # The soft levels are over: their row terms, gathered rows, labels and distances are not needed
    # at σ = 0 (Lloyd's algorithm makes its own), nor, once split-merge has matched them, the rows
    # the proposals were made from (2e6 rows: about 8 + 4 + 8 bytes a row, freed before the end).
    state.row_terms = state.gathered = state.labels = state.min_sq = None
    known = [CellProposal(rows, p) for rows, p in zip(state.proposal_rows, state.proposals, strict=True)]
    state.proposal_rows = None
    finish = dict(max_iter=LLOYD_MAX_ITER, n_trials=n_trials, comm=comm)
    result = _finish(data, weight, state.means, known=known, **finish)
    state.n_iter += result[1]
    return _result(result[0], data, state)


def _finish(data: Data, weight, means, *, max_iter, n_trials, comm, known=None) -> tuple[LloydResult, int]:
    """σ = 0: Lloyd's algorithm to a fixed point, then split-merge moves (in the rows' frame), reusing
    the ``known`` proposals of clusters whose rows Lloyd's algorithm left as they were (the list is
    emptied: see :func:`._split.split_merge`)."""
    X = data.rows
    result = lloyd_rows(X, means, weight, max_iter=max_iter, tol=0.0, comm=comm)
    if not result.converged:
        warnings.warn(
            f"Lloyd's algorithm at sigma=0 stopped at max_iter={max_iter} before its labels repeated; "
            "the result is not a fixed point: raise max_iter",
            convergence_warning(),
            stacklevel=3,
        )
        return result, result.n_iter
    if n_trials == 0 or means.shape[0] < 2:
        return result, result.n_iter
    refined, n_iter = split_merge(
        X,
        weight,
        result,
        n_trials=n_trials,
        max_iter=max_iter,
        variance=data.variance,
        comm=comm,
        known=known,
    )
    return refined, result.n_iter + n_iter


def _path(state: Annealer, data: Data) -> AnnealPath:
    """Stack the levels (centroids in the data's units); a component not yet born repeats its parent."""
    n_clusters, n_levels = state.n_born, len(state.levels)
    means = data.rows.new_zeros(n_levels, n_clusters, data.n_features)
    weights = data.rows.new_zeros(n_levels, n_clusters)
    for level, (_, level_means, level_weights, *_rest) in enumerate(state.levels):
        born = level_means.shape[0]
        means[level, :born] = data.to_data(level_means)
        weights[level, :born] = level_weights
    for slot in range(1, n_clusters):  # slots are numbered in order of birth, parents first
        unborn = slice(0, min(state.births[slot], n_levels))
        means[unborn, slot] = means[unborn, state.parents[slot]]
    column = lambda i: torch.tensor([level[i] for level in state.levels], dtype=torch.float64)  # noqa: E731
    return AnnealPath(column(0), means, weights, column(3), column(4), column(5).long())


def _result(lloyd: LloydResult, data: Data, state: Annealer) -> AnnealResult:
    weight, n_features = state.weight, state.X.shape[1]
    counts = state.comm.sum_(torch.bincount(lloyd.labels, weights=weight, minlength=lloyd.means.shape[0]))[0]
    sigma_star = math.sqrt(lloyd.inertia / (state.total * n_features))
    return AnnealResult(
        data.to_data(lloyd.means),
        lloyd.labels,
        counts / state.total,
        lloyd.inertia,
        sigma_star,
        _path(state, data),
        torch.tensor(state.split_sigmas, dtype=torch.float64),
        torch.tensor(state.critical_sigmas(), dtype=torch.float64),
        state.n_iter,
    )
