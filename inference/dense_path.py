"""The annealing path at equilibrium on a fine σ grid: for drawing and teaching the k-means limit.

:func:`~kmeans_limit.inference.anneal.anneal` jumps from split to split, which is right for speed
and wrong for a picture: its path has a handful of levels. :func:`dense_path` records the
equilibrium of the fixed-σ mixture at every level of a geometric σ grid, from above the first
phase transition down to well below σ*, and lets each cluster split where the physics puts it: at
the first level below that cluster's critical σ.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .data import prepare_data
from .em import check_weights_mode
from .kernels import SufficientStats, nearest_centroid, serial_if_small, sufficient_stats
from .lloyd import lloyd
from .squarem import fixed_sigma_em
from .validation import check_n_clusters, check_positive_int, check_real

__all__ = ["DENSE_COOLING", "DensePath", "dense_path"]

#: The default ratio of consecutive levels.
DENSE_COOLING = 0.97
#: The default first level, as a multiple of σ_c = √λ_max(Cov X): a few levels show the one centroid.
START_FACTOR = 1.2
#: The default last level, as a fraction of σ* = √(J/(N·D)) of the hard fit at that level.
END_FRACTION = 1.0 / 20.0
#: Below this multiple of the data's spread the path stops, born or not (the limit itself).
SIGMA_FLOOR = 1e-6
#: Two children that come back within this fraction of σ of each other had no instability: undone.
COLLAPSED = 1e-3
#: Lloyd's iterations at σ = 0 at most.
LLOYD_MAX_ITER = 1000


class DensePath(NamedTuple):
    """The annealing path at equilibrium, level by level (L levels, all at σ > 0), and its σ = 0 end.

    The first six fields are those of :class:`~kmeans_limit.inference.anneal.AnnealPath`, with the
    same meaning, so code that draws an ``AnnealPath`` draws this one.

    Attributes
    ----------
    sigma : tensor of shape (L,), float64
        The grid, decreasing geometrically: ``sigma_start · cooling**l``.
    means : tensor of shape (L, n_clusters, n_features)
        Equilibrium centroids (data units). A component not yet born repeats its parent.
    weights : tensor of shape (L, n_clusters)
        Mixing weights; 0 for components not yet born.
    log_likelihood : tensor of shape (L,), float64
        ``Σ_n w_n log p(x_n)`` at each level.
    entropy : tensor of shape (L,), float64
        Mean responsibility entropy, nats per unit of sample weight.
    n_distinct : long tensor of shape (L,)
        Born centroids more than 1% of σ from every other.
    free_energy : tensor of shape (L,), float64
        ``−2σ² log p(X) / N`` (N the total sample weight), which tends to ``mean_inertia``.
    n_iter : long tensor of shape (L,)
        EM iterations spent at each level.
    converged : bool tensor of shape (L,)
        Whether EM met the tolerance at each level within ``max_iter``.
    parents : long tensor of shape (n_clusters,)
        The component each one split from (-1 for the first).
    births : long tensor of shape (n_clusters,)
        The level at which each component was born (0 for the first).
    split_sigma : tensor of shape (n_clusters - 1,), float64
        The σ of the level at which components 1, 2, ... were born (in order of birth).
    critical_sigma : tensor of shape (n_clusters - 1,), float64
        ``√λ_max`` of the parent's responsibility-weighted covariance at its equilibrium at that
        level, just before the split: the critical σ of the parent (``>= split_sigma``).
    final_means : tensor of shape (n_clusters, n_features)
        The σ = 0 end: Lloyd's fixed point reached from the last level's centroids.
    labels : long tensor of shape (n_samples,)
        Nearest centroid of each row at the end.
    final_weights : tensor of shape (n_clusters,)
        Fraction of the sample weight nearest each final centroid.
    inertia : float
        ``J = Σ_n w_n ‖x_n − μ_{z_n}‖²`` at the end.
    mean_inertia : float
        ``J / N``: the σ → 0 limit of ``free_energy``.
    sigma_star : float
        ``√(J / (N·D))``.
    lloyd_n_iter : int
        Lloyd iterations at σ = 0.
    """

    sigma: torch.Tensor
    means: torch.Tensor
    weights: torch.Tensor
    log_likelihood: torch.Tensor
    entropy: torch.Tensor
    n_distinct: torch.Tensor
    free_energy: torch.Tensor
    n_iter: torch.Tensor
    converged: torch.Tensor
    parents: torch.Tensor
    births: torch.Tensor
    split_sigma: torch.Tensor
    critical_sigma: torch.Tensor
    final_means: torch.Tensor
    labels: torch.Tensor
    final_weights: torch.Tensor
    inertia: float
    mean_inertia: float
    sigma_star: float
    lloyd_n_iter: int


class _Level(NamedTuple):
    sigma: float
    means: torch.Tensor  # (m, D), rows' frame
    weights: torch.Tensor  # (m,)
    log_likelihood: float
    entropy: float
    n_iter: int
    converged: bool


def dense_path(
    X,
    n_clusters: int,
    *,
    sample_weight=None,
    cooling: float = DENSE_COOLING,
    sigma_start: float | None = None,
    sigma_end: float | None = None,
    weights: str = "learn",
    tol: float = 1e-7,
    max_iter: int = 2000,
) -> DensePath:
    """The annealing path at equilibrium on a geometric σ grid, with each split where it happens.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features), or Data
    n_clusters : int
        K, at most the number of distinct rows.
    sample_weight : array-like of shape (n_samples,), optional
    cooling : float in (0, 1), default 0.97
        The ratio of consecutive levels; closer to 1 gives more levels (never fewer).
    sigma_start : float > 0, optional
        The first level; default ``1.2 σ_c`` with ``σ_c = √λ_max(Cov X)`` (weighted, 1/N).
    sigma_end : float > 0, optional
        The path goes on until σ is at most this (and K components are born). Default: until σ is
        at most ``σ*/20``, ``σ* = √(J/(N·D))`` of the nearest-centroid assignment at that level.
    weights : {"learn", "equal"}, default "learn"
        Learn the mixing weights at each σ (mass-constrained annealing, Rose 1998), or hold them at
        1/m for the m components born so far.
    tol : float > 0, default 1e-7
        EM at a level stops when no centroid moves by more than ``tol`` times the data's spread
        (``√`` of the mean feature variance) in one step.
    max_iter : int, default 2000
        EM iterations per level at most (the levels just below a transition converge slowly:
        critical slowing down). ``converged`` says where they ran out.

    Returns
    -------
    DensePath

    Raises
    ------
    ValueError
        For bad values (naming them); when the grid reaches ``1e-6`` of the data's spread before
        K components are born (clusters of near-duplicate rows: use ``anneal``).

    Notes
    -----
    At temperature ``T = 2σ²`` the equilibrium of the fixed-σ mixture is the EM fixed point
    (Rose, Gurewitz & Fox 1990; Rose 1998). Above ``σ_c² = λ_max(Cov X)`` it puts every centroid at
    the data mean. A cluster whose responsibility-weighted covariance
    ``C_k = Σ_n w_n γ_nk (x_n − μ_k)(x_n − μ_k)ᵀ / N_k`` has top eigenvalue ``λ_k`` is unstable
    below ``σ² = λ_k``: at each level, after EM from the level before, every cluster with
    ``σ² < λ_k`` (most unstable first, while fewer than K are born) is duplicated, the two copies
    put at ``μ_k ± δ u_k`` along its principal axis ``u_k`` (``δ = √(λ_k − σ²)``, at least 1% of
    ``√λ_k``) with half its weight each, and EM runs again; a pair that falls back together is
    undone. Each level is recorded at its EM fixed point. At the end Lloyd's algorithm runs to its
    fixed point from the last level's centroids (σ = 0), so the path ends where hard k-means has
    nothing left to change. Unlike ``anneal``, no split-merge moves follow: this is the path itself,
    whose end may be a worse local optimum than ``anneal``'s.

    ``free_energy`` tends to ``J/N``: for each row, with ``d_n = min_k ‖x_n − μ_k‖²`` and ``k*`` the
    nearest centroid, ``π_{k*} φ(d_n) ≤ p(x_n) ≤ φ(d_n)`` where ``φ(d) = (2πσ²)^(−D/2) exp(−d/2σ²)``,
    so ``0 ≤ F(σ) − J(μ_σ)/N − D σ² log(2πσ²) ≤ −2σ² Σ_n w_n log π_{k*(n)} / N``: the gap to the
    inertia of the level's centroids is ``O(σ² log σ²)``.
    """
    data = prepare_data(X, sample_weight)
    n_clusters = check_n_clusters(n_clusters, data.rows)
    cooling = check_real("cooling", cooling, low=0.0, high=1.0, low_open=True, high_open=True)
    sigma_start = _optional_positive("sigma_start", sigma_start)
    sigma_end = _optional_positive("sigma_end", sigma_end)
    learn_weights = check_weights_mode(weights) == "learn"
    tol = check_real("tol", tol, low=0.0, low_open=True)
    max_iter = check_positive_int("max_iter", max_iter)
    rows, n_features = data.rows, data.n_features
    with serial_if_small(rows.shape[0] * n_clusters * (n_features + 1) * n_features):
        walker = _Walker(data, n_clusters, learn_weights, tol, max_iter)
        sigma = sigma_start if sigma_start is not None else max(START_FACTOR * walker.sigma_c, walker.floor)
        if sigma_end is not None and sigma_end > sigma:
            raise ValueError(f"sigma_end={sigma_end!r} should be below the first level sigma_start={sigma!r}")
        while True:
            walker.level(sigma)
            if walker.done(sigma, sigma_end):
                break
            sigma *= cooling
        return walker.finish()


def _optional_positive(name: str, value) -> float | None:
    return None if value is None else check_real(name, value, low=0.0, low_open=True)


class _Walker:
    """The state of a dense path under construction: born centroids (rows' frame) and the levels."""

    def __init__(self, data, n_clusters, learn_weights, tol, max_iter):
        self.data, self.n_clusters, self.learn_weights, self.max_iter = (
            data,
            n_clusters,
            learn_weights,
            max_iter,
        )
        rows = data.rows
        self.weight = data.weight
        w = data.weights_or_ones()
        self.total = w.sum().item()
        self.spread = math.sqrt(data.variance) if data.variance > 0 else 1.0
        self.tol = tol * self.spread
        self.floor = SIGMA_FLOOR * self.spread
        self.min_log_weight = math.log(torch.finfo(rows.dtype).tiny)
        mean = (w @ rows) / self.total
        centred = rows - mean
        cov = (centred * w[:, None]).T @ centred / self.total
        self.sigma_c = math.sqrt(max(torch.linalg.eigvalsh(cov.double())[-1].item(), 0.0))
        self.means, self.log_weights = mean[None].clone(), rows.new_zeros(1)
        self.parents, self.births, self.split_sigma, self.critical = [-1], [0], [], []
        self.levels: list[_Level] = []

    def stats(self, sigma: float, scatter: bool = False) -> SufficientStats:
        """The E step at σ at the current centroids."""
        return sufficient_stats(
            self.data.rows, self.means, self.log_weights, sigma, sample_weight=self.weight, scatter=scatter
        )

    def equilibrate(self, sigma: float, watch: bool = False) -> tuple[SufficientStats, int, bool]:
        """EM at fixed σ from the current centroids to its fixed point (:func:`fixed_sigma_em`).

        With ``watch``, EM stops early when two centroids come within ``COLLAPSED · σ`` of each
        other: a split that had no instability to grow from, to be undone.
        """
        stop = (lambda means: _closest_pair(means) < COLLAPSED * sigma) if watch else None
        fit = fixed_sigma_em(
            self.data.rows,
            self.means,
            self.log_weights,
            sigma,
            weight=self.weight,
            learn_weights=self.learn_weights,
            tol=self.tol,
            max_iter=self.max_iter,
            min_log_weight=self.min_log_weight,
            stop=stop,
        )
        self.means, self.log_weights = fit.means, fit.log_weights
        return fit.stats, fit.n_iter, fit.converged

    def unstable(self, sigma: float) -> list[tuple[float, int, torch.Tensor]]:
        """``(λ_k, k, u_k)`` of the clusters with ``σ² < λ_k``, most unstable first."""
        stats = self.stats(sigma, scatter=True)
        counts = stats.counts.clamp_min(0.0)
        found = []
        for k in range(self.means.shape[0]):
            if counts[k] <= 0:
                continue
            centre = stats.sums[k] / counts[k]
            cov = stats.scatter[k] / counts[k] - torch.outer(centre, centre)
            values, vectors = torch.linalg.eigh(cov.double())
            if sigma * sigma < values[-1].item():
                found.append((values[-1].item(), k, vectors[:, -1].to(self.means.dtype)))
        return sorted(found, key=lambda item: -item[0])

    def split(self, k: int, lam: float, axis: torch.Tensor, sigma: float) -> None:
        """Duplicate centroid k, the copies at ``μ_k ± δ u_k`` with half its weight each."""
        delta = max(math.sqrt(max(lam - sigma * sigma, 0.0)), 0.01 * math.sqrt(lam))
        child = self.means[k] - delta * axis
        self.means = torch.cat([self.means, child[None]])
        self.means[k] = self.means[k] + delta * axis
        half = self.log_weights[k] - math.log(2.0)
        self.log_weights = torch.cat([self.log_weights, half[None]])
        self.log_weights[k] = half
        if not self.learn_weights:
            self.log_weights = self.log_weights.new_full(
                self.log_weights.shape, -math.log(self.means.shape[0])
            )

    def level(self, sigma: float) -> None:
        """Equilibrate at σ, split what is unstable there, and record the level."""
        stats, n_iter, converged = self.equilibrate(sigma)
        refused: set[int] = set()
        while self.means.shape[0] < self.n_clusters:
            candidates = [c for c in self.unstable(sigma) if c[1] not in refused]
            if not candidates:
                break
            saved = (self.means, self.log_weights, stats, converged)
            chosen = candidates[: self.n_clusters - self.means.shape[0]]
            for lam, k, axis in chosen:
                self.split(k, lam, axis, sigma)
            stats, more, converged = self.equilibrate(sigma, watch=True)
            n_iter += more
            if _closest_pair(self.means) < COLLAPSED * sigma:  # no instability after all: undo
                self.means, self.log_weights, stats, converged = saved
                refused.update(k for _, k, _ in chosen)
                continue
            for lam, k, _ in chosen:
                self.parents.append(k)
                self.births.append(len(self.levels))
                self.split_sigma.append(sigma)
                self.critical.append(math.sqrt(lam))
        self.levels.append(
            _Level(
                sigma,
                self.means.clone(),
                self.log_weights.exp(),
                stats.log_likelihood,
                stats.entropy / self.total,
                n_iter,
                converged,
            )
        )

    def done(self, sigma: float, sigma_end: float | None) -> bool:
        """Whether the path may stop after the level at σ."""
        born = self.means.shape[0] == self.n_clusters
        if sigma <= self.floor:
            if not born:
                raise ValueError(
                    f"the dense path reached sigma={sigma:.3g} (1e-6 of the data's spread) with only "
                    f"{self.means.shape[0]} of n_clusters={self.n_clusters} clusters born: the data hold "
                    "clusters of near-duplicate rows; use anneal() for them"
                )
            return True
        if not born:
            return False
        if sigma_end is not None:
            return sigma <= sigma_end
        inertia = (nearest_centroid(self.data.rows, self.means)[1] @ self.data.weights_or_ones()).item()
        return sigma <= END_FRACTION * math.sqrt(inertia / (self.total * self.data.n_features))

    def finish(self) -> DensePath:
        """Lloyd's algorithm at σ = 0 from the last level, and the record."""
        data, w = self.data, self.data.weights_or_ones()
        end = lloyd(data.rows, self.means, max_iter=LLOYD_MAX_ITER, tol=0.0, sample_weight=self.weight)
        final_weights = torch.bincount(end.labels, weights=w, minlength=self.n_clusters) / self.total
        sigma = torch.tensor([level.sigma for level in self.levels], dtype=torch.float64)
        log_likelihood = torch.tensor([level.log_likelihood for level in self.levels], dtype=torch.float64)
        means, weights = self._stacked()
        n_features = data.n_features
        return DensePath(
            sigma=sigma,
            means=means,
            weights=weights,
            log_likelihood=log_likelihood,
            entropy=torch.tensor([level.entropy for level in self.levels], dtype=torch.float64),
            n_distinct=torch.tensor(
                [_n_distinct(lv.means, lv.sigma) for lv in self.levels], dtype=torch.long
            ),
            free_energy=-2.0 * sigma.square() * log_likelihood / self.total,
            n_iter=torch.tensor([level.n_iter for level in self.levels], dtype=torch.long),
            converged=torch.tensor([level.converged for level in self.levels], dtype=torch.bool),
            parents=torch.tensor(self.parents, dtype=torch.long),
            births=torch.tensor(self.births, dtype=torch.long),
            split_sigma=torch.tensor(self.split_sigma, dtype=torch.float64),
            critical_sigma=torch.tensor(self.critical, dtype=torch.float64),
            final_means=data.to_data(end.means),
            labels=end.labels,
            final_weights=final_weights.to(data.dtype),
            inertia=end.inertia,
            mean_inertia=end.inertia / self.total,
            sigma_star=math.sqrt(end.inertia / (self.total * n_features)),
            lloyd_n_iter=end.n_iter,
        )

    def _stacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Means (data units) and weights of every level; an unborn component repeats its parent."""
        n_levels, rows = len(self.levels), self.data.rows
        means = rows.new_zeros(n_levels, self.n_clusters, self.data.n_features)
        weights = rows.new_zeros(n_levels, self.n_clusters)
        for index, level in enumerate(self.levels):
            born = level.means.shape[0]
            means[index, :born] = self.data.to_data(level.means)
            weights[index, :born] = level.weights
        for slot in range(1, self.n_clusters):  # slots are numbered in order of birth, parents first
            unborn = slice(0, self.births[slot])
            means[unborn, slot] = means[unborn, self.parents[slot]]
        return means, weights


def _n_distinct(means: torch.Tensor, sigma: float) -> int:
    """Centroids more than 1% of σ from every earlier one."""
    gaps = torch.cdist(means, means).fill_diagonal_(math.inf)
    return means.shape[0] - int((gaps <= 0.01 * sigma).triu().any(0).sum())


def _closest_pair(means: torch.Tensor) -> float:
    """The smallest distance between two centroids (inf for one)."""
    return torch.pdist(means).min().item() if means.shape[0] > 1 else math.inf
