"""The levels of deterministic annealing: split one cluster, re-equilibrate by EM, record.

Private to :mod:`kmeans_limit.inference.anneal`.
"""

from __future__ import annotations

import math
from concurrent.futures import Future

import torch

from ._comm import LOCAL, Comm
from ._heap import release_freed
from ._split import SplitProposal, covariance_top_eigenvalue, propose_split
from .em import em_iterations, m_step
from .kernels import (
    SufficientStats,
    chunk_rows,
    compiled_e_step,
    hard_temperature,
    idle_threads,
    log_responsibilities,
    negligible_logit,
    row_sq_norms,
    squared_distances,
    sufficient_stats,
)
from .lloyd import assign_labels, labelled_sq_distances

__all__ = ["Annealer"]

#: After the last split, σ falls by ``cooling**TAIL`` a level, for at most ``TAIL_LEVELS`` levels
#: (unless ``sigma_end`` asks for more) before the quench to σ = 0.
TAIL = 4
TAIL_LEVELS = 2
#: A split re-equilibrates on the rows where the split centroid may hold at least this responsibility.
ACTIVE = 1e-4
#: ... unless they are more than this fraction of all rows: then EM visits every row.
LOCAL_FRACTION = 0.5
#: Mean responsibility entropy (nats per unit weight) below which the responsibilities count as
#: hard: the remaining levels are the σ = 0 limit itself.
HARD_ENTROPY = 1e-3
#: After a level, a cell's split proposal is recomputed when its row count changed by this fraction.
RESTALE = 0.02
#: The critical σ of a split is measured on the rows where the split cluster may hold a
#: responsibility of at least this much times the dtype's eps; the others add less than rounding.
NEGLIGIBLE = 1e-3
#: With an idle thread, the critical σ of a split is measured on it from this many rows × features²
#: (the soft covariance's products) on. Two threads, interleaved runs: 1024 × 256 blobs 0.62-0.69x
#: the time, 1024 × 64 blobs 0.84-1.0x, digits (1797 × 64) 0.93-1.02x; on s1 (5000 × 2, below it)
#: handing it over took 1.16x.
BACKGROUND_WORK = 1 << 22
#: ... and up to this many rows: the copies it is measured from take 32 bytes a row (8 MB here).
BACKGROUND_ROWS = 1 << 18


class Annealer:
    """The working state of one annealing run: the born centroids, their cells, the levels so far.

    ``X`` holds this process's rows; ``comm`` sums over the rows of every process.
    """

    def __init__(
        self, X, weight, generator, *, cooling, learn_weights, max_iter, tol, sigma_end, comm: Comm = LOCAL
    ):
        self.X, self.weight, self.generator, self.comm = X, weight, generator, comm
        self.cooling, self.learn_weights, self.max_iter, self.tol = cooling, learn_weights, max_iter, tol
        self.n_samples = comm.total(X.shape[0])
        self.total = comm.total(weight.sum().item())
        mean = comm.sum_(weight @ X)[0] / self.total  # about 0: X is centred unless its mean is small
        second_moment = comm.total((weight @ row_sq_norms(X)).item()) / self.total
        self.scale = max(second_moment - mean.square().sum().item(), 0.0) / X.shape[1]
        self.sigma_end = sigma_end
        # Below the floor every σ is the limit (1 when the rows all coincide: any σ is then fine).
        self.sigma_floor = 1e-4 * math.sqrt(self.scale) if self.scale > 0 else 1.0
        self.min_log_weight = math.log(torch.finfo(X.dtype).tiny)
        self.means = mean[None]
        self.log_weights = X.new_zeros(1)
        self.labels = torch.zeros(X.shape[0], dtype=torch.long, device=X.device)
        self.min_sq: torch.Tensor | None = None
        self.proposals: list[SplitProposal] = [propose_split(X, weight, comm)]
        # The rows each proposal was made from (None: all of them), for split-merge to reuse.
        self.proposal_rows: list[torch.Tensor | None] = [None]
        self.stale = [False]
        self.parents: list[int] = [-1]
        self.births: list[int] = [0]
        self.levels: list[tuple] = []
        self.split_sigmas: list[float] = []  # the σ each split was made at (0: in the hard limit)
        # sqrt(λ_max) of each split cluster's soft covariance, or its Future (see critical_sigmas).
        self.critical: list[float | Future] = []
        self.sigma, self.soft, self.n_iter = math.inf, True, 0
        self.stats: SufficientStats | None = None
        self.stats_sigma = math.nan
        # Each row's top score and lse at the last level's closing E step (the compiled CPU path
        # writes them), from which one component's responsibilities take a product per row.
        self.row_terms = X.new_empty((2, X.shape[0])) if X.device.type == "cpu" else None
        self.terms_valid = False
        # Every row with its weighted copy, gathered once for the compiled EM loop of the levels
        # that visit them all (see _all_rows); None until one does, and after the soft levels.
        self.gathered = None

    @property
    def n_born(self) -> int:
        return self.means.shape[0]

    def choose(self) -> int:
        """The cluster whose split lowers the inertia most (stale proposals refreshed lazily)."""
        while True:
            k = max(range(self.n_born), key=lambda j: self.proposals[j].gain)
            if not self.stale[k]:
                if self.proposals[k].gain <= 0:
                    raise RuntimeError("no cluster can split, though X has enough distinct rows")
                return k
            self.proposal_rows[k], self.proposals[k] = self._cell_proposal(k)
            self.stale[k] = False

    def _cell_proposal(self, k: int) -> tuple[torch.Tensor, SplitProposal]:
        """Cell k's rows (those labelled k) and its split proposal; by two compiled calls where
        :func:`._two_means.labelled_proposal` takes the cell."""
        if self.X.device.type == "cpu" and type(self.comm) is Comm:
            from ._two_means import labelled_proposal  # numba's kernels: loaded when first needed

            found = labelled_proposal(self.X, self.weight, self.labels, k)
            if found is not None:
                return found
        rows = torch.nonzero(self.labels == k).flatten()
        return rows, propose_split(self.X, self.weight[rows], self.comm, index=rows)

    def _children_weights(self, k: int, p: SplitProposal) -> torch.Tensor:
        if not self.learn_weights:
            return self.X.new_full((self.n_born + 1,), -math.log(self.n_born + 1))
        share = p.left_mass / (p.left_mass + p.right_mass)
        log_weights = torch.cat([self.log_weights, self.log_weights[k : k + 1] + math.log1p(-share)])
        log_weights[k] += math.log(share)
        return log_weights.clamp_min(self.min_log_weight)

    def split(self, k: int) -> None:
        """Replace centroid k by the two children of its proposal (the second one is appended)."""
        p = self.proposals[k]
        jitter = torch.randn(p.left.shape, generator=self.generator, dtype=p.left.dtype, device=p.left.device)
        jitter *= 1e-3 * math.sqrt(p.critical_sigma2) / max(jitter.norm().item(), 1e-300)
        self.log_weights = self._children_weights(k, p)
        self.means = torch.cat([self.means, (p.right - jitter)[None]])
        self.means[k] = p.left + jitter
        self.parents.append(k)
        self.births.append(len(self.levels))
        self.proposals.append(p)
        self.proposal_rows.append(self.proposal_rows[k])  # p was made from those rows
        self.stale[k] = True
        self.stale.append(True)

    def record(self, stats) -> None:
        """Append the current equilibrium to the path."""
        radius = 0.01 * self.sigma  # a centroid this near an earlier one sits on top of it
        if self.X.device.type == "cpu":
            from ._cells import coincident_count  # numba's kernels: loaded when first needed

            coincident = coincident_count(self.means.numpy(), radius)
        else:
            gaps = torch.cdist(self.means, self.means).fill_diagonal_(math.inf)
            coincident = int((gaps <= radius).triu().any(0).sum())
        level = (self.sigma, self.means.clone(), self.log_weights.exp(), stats.log_likelihood)
        self.levels.append(level + (stats.entropy / self.total, self.n_born - coincident))

    def equilibrate(self) -> None:
        """EM at the current σ (fixed) over all rows."""
        tol = self.tol * self.scale / (2.0 * self.sigma**2)
        result, stats = em_iterations(
            self.X,
            self.means,
            self.log_weights,
            self.sigma,
            weight=self.weight,
            learn_weights=self.learn_weights,
            learn_sigma=False,
            max_iter=self.max_iter,
            tol=tol,
            min_log_weight=self.min_log_weight,
            comm=self.comm,
            row_terms=self.row_terms,
            gathered=self._all_rows(),
        )
        self.n_iter += result.n_iter
        self.means, self.log_weights = result.means, result.weights.log()
        release_freed(self.X)
        self.settle(stats)

    def _all_rows(self):
        """Every row gathered for the compiled EM loop (:func:`._em_loop.gather_rows`), once a level's
        EM takes that loop; None while none has."""
        if self.gathered is None and compiled_e_step(self.X, self.means, self.log_weights, self.weight):
            from ._em_loop import gather_rows, takes_compiled_em

            X, means, log_weights = self.X, self.means, self.log_weights
            if takes_compiled_em(X, means, log_weights, self.sigma, self.weight, self.comm, X.shape[0]):
                self.gathered = gather_rows(X, self.weight)
        return self.gathered

    def settle(self, stats: SufficientStats) -> None:
        """Record the equilibrium whose E step (over all rows, given ``row_terms``) gave ``stats``; then
        the Voronoi cells of its centroids."""
        self.terms_valid = (
            self.row_terms is not None
            and compiled_e_step(self.X, self.means, self.log_weights, self.weight)
            and not hard_temperature(self.sigma, self.X.dtype)
        )
        self.record(stats)
        self.stats, self.stats_sigma = stats, self.sigma
        hard = stats.entropy / self.total < HARD_ENTROPY or self.sigma < self.sigma_floor
        if self.sigma_end is None and hard and self.n_born > 1:  # one centroid: entropy 0 at any σ
            self.soft = False
        counts = self._cell_sizes()
        # Written over the last level's (read above for the counts): no second row-sized array.
        self.labels = assign_labels(self.X, self.means, out=self.labels)
        self.min_sq = labelled_sq_distances(self.X, self.means, self.labels, out=self.min_sq)
        # A cell whose rows barely changed keeps its proposal (its gain is then a little stale).
        change, counts = self.comm.sum_(self._cell_sizes() - counts, counts)
        from ._cells import moved_cells

        moved = moved_cells(change.cpu().numpy(), counts.cpu().numpy(), RESTALE)
        self.stale = [old or m for old, m in zip(self.stale, moved, strict=True)]

    def _cell_sizes(self) -> torch.Tensor:
        """Rows of this process with each label, long of shape (n_born,)."""
        if self.labels.device.type == "cpu":
            from ._cells import cell_sizes

            return torch.from_numpy(cell_sizes(self.labels.numpy(), self.n_born))
        return torch.bincount(self.labels, minlength=self.n_born)

    def active_rows(self, k: int, threshold: float = ACTIVE) -> torch.Tensor:
        """Rows where centroid k may hold responsibility ≥ ``threshold``: a superset, found without an E step.

        ``max_j (log π_j − β d2_nj) ≥ log π_{z_n} − β d2_{n z_n}`` for the nearest centroid ``z_n``.
        """
        if compiled_e_step(self.X, self.means, self.log_weights, self.weight):
            from ._critical import nearby_rows

            return nearby_rows(
                self.X, self.labels, self.min_sq, self.means, self.log_weights, k, self.sigma, threshold
            )
        beta = 1.0 / (2.0 * self.sigma**2)
        own = self.log_weights[k] - beta * row_sq_norms(self.X, self.means[k])
        bound = self.log_weights[self.labels] - beta * self.min_sq
        return torch.nonzero(own >= bound + math.log(threshold)).flatten()

    def critical_sigmas(self) -> list[float]:
        """The critical σ of every split so far, in order (waiting for those still measured)."""
        return [value.result() if isinstance(value, Future) else value for value in self.critical]

    def critical_sigma(self, k: int, *, later: bool = False) -> float | Future:
        """``sqrt(λ_max)`` of cluster k's responsibility-weighted covariance at the current level.

        ``C_k = Σ_n w_n γ_nk (x_n − m_k)(x_n − m_k)ᵀ / Σ_n w_n γ_nk`` with the responsibilities ``γ``
        of the level's equilibrium (its σ, means and weights) and ``m_k`` their weighted mean: the
        cluster is unstable (a duplicated centroid separates) for ``σ² < λ_max(C_k)`` (Rose 1998). In
        the hard limit the responsibilities are one-hot and ``C_k`` is the covariance of k's cell.

        ``later``: a Future of it where the compiled pass measures it (see ``soft_critical_sigma``).
        """
        compiled = type(self.comm) is Comm and compiled_e_step(
            self.X, self.means, self.log_weights, self.weight
        )
        if not self.soft or hard_temperature(self.sigma, self.X.dtype):
            rows = torch.nonzero(self.labels == k).flatten()
            if compiled:
                from ._critical import hard_top_eigenvalue

                return math.sqrt(hard_top_eigenvalue(self.X, self.weight[rows], rows))
            return math.sqrt(covariance_top_eigenvalue(self.X, self.weight[rows], self.comm, index=rows))
        if compiled and self.terms_valid:  # one compiled pass over the rows (see ._critical)
            from ._critical import soft_critical_sigma

            threshold = math.log(NEGLIGIBLE * torch.finfo(self.X.dtype).eps)
            level = (self.labels, self.min_sq, self.means, self.log_weights, k, self.sigma, threshold)
            return soft_critical_sigma(self.X, self.weight, *level, self.row_terms, later=later)
        rows = self.active_rows(k, NEGLIGIBLE * torch.finfo(self.X.dtype).eps)
        if self.terms_valid:
            gamma = self._column_from_terms(rows, k)
        else:
            gamma = _responsibility_column(self.X, rows, self.means, self.log_weights, self.sigma, k)
        u = self.weight[rows] * gamma
        # Rows that hold less than eps of the cluster's weight between them change C_k by less than
        # rounding: leaving them out leaves about the cluster's own rows (a Gram matrix when few).
        total = self.comm.total(u.sum().item())
        keep = u > torch.finfo(u.dtype).eps * total / max(self.comm.total(rows.numel()), 1)
        rows, u = rows[keep], u[keep]
        return math.sqrt(covariance_top_eigenvalue(self.X, u, self.comm, index=rows))

    def _column_from_terms(self, rows: torch.Tensor, k: int) -> torch.Tensor:
        """``γ_nk`` of the rows from the level's closing E step: ``exp(2β (t_nk − top_n) − lse_n)``
        with ``t_nk = x_n·μ_k − ‖μ_k‖²/2 + σ² log π_k`` (0 where the E step puts it: at or below
        :func:`~.kernels.negligible_logit`), one product per row instead of K."""
        mean = self.means[k]
        bias = (mean @ mean).item() * -0.5 + self.log_weights[k].item() * self.sigma**2
        floor = negligible_logit(self.X.dtype)
        gamma = self.X.new_empty(rows.shape[0])
        for chunk in chunk_rows(rows.shape[0], self.X.shape[1], device=self.X.device):  # no copy of X
            index = rows[chunk]
            t = torch.mv(self.X[index], mean).double() + bias
            logit = (t - self.row_terms[0, index]).mul_(1.0 / self.sigma**2).clamp_min_(floor.logit)
            lse = self.row_terms[1, index]
            gamma[chunk] = torch.where(logit.exp() > floor.value, (logit - lse).exp_(), 0.0)
        return gamma

    def split_locally(self, k: int) -> None:
        """Split k and re-equilibrate by EM whose E step visits only the rows near k.

        The other rows keep their responsibilities from the last level's closing E step (a partial
        E step, which still never lowers the free energy: Neal & Hinton 1998). The level ends with a
        full E step, so the path records the exact log-likelihood.
        """
        rows = self.active_rows(k)
        if self.stats is None or self.comm.total(rows.numel()) > LOCAL_FRACTION * self.n_samples:
            self.split(k)
            return self.equilibrate()
        local = dict(sample_weight=self.weight, comm=self.comm, rows=rows)  # the rows near k only
        before = sufficient_stats(self.X, self.means, self.log_weights, self.stats_sigma, **local)
        outside = _with_new_component(_combine(self.stats, before, -1.0))
        self.split(k)
        tol = self.tol * self.scale / (2.0 * self.sigma**2) * self.total
        if self._local_em_compiled(rows, outside, tol):
            return None
        previous = None
        for _ in range(self.max_iter):
            stats = _combine(
                outside,
                sufficient_stats(self.X, self.means, self.log_weights, self.sigma, **local),
            )
            if previous is not None and abs(stats.log_likelihood - previous) <= tol:
                break
            previous = stats.log_likelihood
            self.means, log_weights, _ = m_step(
                stats, self.means, learn_weights=self.learn_weights, learn_sigma=False, sigma=self.sigma
            )
            self.log_weights = log_weights.clamp_min(self.min_log_weight)
            self.n_iter += 1
        self._close_level()

    def _close_level(self) -> None:
        release_freed(self.X)  # the local EM's arrays, before the full E step allocates its own
        everywhere = dict(sample_weight=self.weight, comm=self.comm, row_terms=self.row_terms)
        self.settle(sufficient_stats(self.X, self.means, self.log_weights, self.sigma, **everywhere))

    def _local_em_compiled(self, rows: torch.Tensor, outside: SufficientStats, tol: float) -> bool:
        """:meth:`split_locally`'s EM by one compiled call (:mod:`._em_loop`) where that takes the
        problem; whether it did."""
        if not compiled_e_step(self.X, self.means, self.log_weights, self.weight):
            return False
        from ._em_loop import compiled_em, takes_compiled_em  # numba's kernels: loaded when first needed

        if not takes_compiled_em(
            self.X, self.means, self.log_weights, self.sigma, self.weight, self.comm, rows.shape[0]
        ):
            return False
        fit = compiled_em(
            self.X,
            self.means,
            self.log_weights,
            self.sigma,
            sample_weight=self.weight,
            learn_weights=self.learn_weights,
            max_iter=self.max_iter,
            tol=tol,
            min_log_weight=self.min_log_weight,
            rows=rows,
            outside=outside,
            final_e=False,
        )
        self.means, self.log_weights = fit.means, fit.log_weights
        self.n_iter += fit.n_iter
        self._close_level()
        return True

    def split_hard(self, k: int) -> None:
        """A split at σ = 0: rows move to the new children where these are nearer."""
        self.split(k)
        children = self.means[[k, self.n_born - 1]]
        labels_new = torch.tensor([k, self.n_born - 1], device=self.X.device)
        lost = torch.zeros(self.n_born, dtype=self.X.dtype, device=self.X.device)
        for rows in chunk_rows(self.X.shape[0], 2, device=self.X.device):
            best, which = squared_distances(self.X[rows], children).min(-1)
            move = (best < self.min_sq[rows]) | (self.labels[rows] == k)
            lost[self.labels[rows][move]] = 1.0
            self.labels[rows] = torch.where(move, labels_new[which], self.labels[rows])
            self.min_sq[rows] = torch.where(move, best, self.min_sq[rows])
        lost = self.comm.sum_(lost)[0] > 0  # a cell that lost rows in any process
        self.stale = [old or bool(gone) for old, gone in zip(self.stale, lost.tolist(), strict=True)]

    def step(self) -> None:
        """One level: split the best cluster, at σ just below its critical point (or at the current σ).

        Records the critical σ of the cluster (at the level it is split from) and the σ of the split:
        ``cooling · sqrt(λ_max)`` of its cell, or the current σ if that is lower, or 0 in the hard
        limit. The split σ never rises; the critical σ may lie above it by far.
        """
        k = self.choose()
        # With threads left idle by a small problem, the (recorded) critical σ is measured beside
        # the level's EM, which does not read it; not where measuring it is cheaper than handing it over.
        n_rows, n_features = self.X.shape
        later = idle_threads() > 0 and n_rows * n_features**2 >= BACKGROUND_WORK and n_rows <= BACKGROUND_ROWS
        self.critical.append(self.critical_sigma(k, later=later))
        release_freed(self.X)
        self.sigma = min(self.sigma, self.cooling * math.sqrt(self.proposals[k].critical_sigma2))
        if self.sigma_end is not None and self.sigma < self.sigma_end:
            self.soft = False
        self.split_sigmas.append(self.sigma if self.soft else 0.0)
        if self.soft:
            self.split_locally(k)
        else:
            self.split_hard(k)
        release_freed(self.X)  # on large data: each stage's freed arrays back to the system

    def cool(self) -> None:
        """After the last split: σ times ``cooling**TAIL`` a level, down to ``sigma_end`` if given.

        Otherwise at most ``TAIL_LEVELS`` levels, fewer if the responsibilities turn hard first.
        """
        levels = 0
        while self.soft and self.n_born > 1:  # a single centroid is the mean at every σ
            self.sigma *= self.cooling**TAIL
            if self.sigma < (self.sigma_end or 0.0) or (self.sigma_end is None and levels == TAIL_LEVELS):
                return
            self.equilibrate()
            release_freed(self.X)
            levels += 1


def _responsibility_column(X, rows, means, log_weights, sigma: float, k: int) -> torch.Tensor:
    """``γ_nk`` of component ``k`` for the rows ``X[rows]`` at a soft σ, of shape (n_rows,): as
    :func:`~.kernels.log_responsibilities` gives them, on the CPU by the compiled E step."""
    if compiled_e_step(X, means, log_weights):
        from ._estep import tempered_column

        return tempered_column(X, rows, means, log_weights, sigma, k, negligible_logit(X.dtype))
    gamma = X.new_empty(rows.shape[0])
    for chunk in chunk_rows(rows.shape[0], means.shape[0], device=X.device):
        gamma[chunk] = log_responsibilities(X[rows[chunk]], means, log_weights, sigma)[0][:, k].exp()
    return gamma


def _combine(a: SufficientStats, b: SufficientStats, sign: float = 1.0) -> SufficientStats:
    """``a + sign · b``, field by field (the statistics of a union, or a difference, of rows)."""
    return SufficientStats(
        a.counts + sign * b.counts,
        a.sums + sign * b.sums,
        a.sums_sq + sign * b.sums_sq,
        None,
        a.log_likelihood + sign * b.log_likelihood,
        a.entropy + sign * b.entropy,
    )


def _with_new_component(stats: SufficientStats) -> SufficientStats:
    """The statistics with one more, empty, component (the second child of a split) at the end."""
    pad = lambda t: torch.cat([t, t.new_zeros((1,) + t.shape[1:])])  # noqa: E731
    return stats._replace(counts=pad(stats.counts), sums=pad(stats.sums), sums_sq=pad(stats.sums_sq))
