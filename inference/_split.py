"""Splitting one cluster in two along its principal axis, and split-merge moves at σ = 0.

Private helpers of :mod:`kmeans_limit.inference.anneal`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ._comm import LOCAL, Comm
from ._grouping import rows_by_label
from ._heap import release_freed
from .kernels import chunk_rows
from .lloyd import LloydResult, lloyd_rows

__all__ = [
    "CellProposal",
    "SplitProposal",
    "covariance_top_eigenvalue",
    "propose_split",
    "removal_costs",
    "split_merge",
]

#: 2-means iterations inside one cell; they stop earlier when the two sides stop changing.
TWO_MEANS_ITER = 30
#: Lloyd's relative tolerance (scikit-learn's default) for screening a split-merge move.
SCREEN_TOL = 1e-4
#: A move is kept when it lowers the inertia by more than this fraction.
MIN_GAIN = 1e-4
#: A cell of at most this many entries (rows × features) is copied out of X to be split.
COPY_ENTRIES = 1 << 22
#: Moves estimated to raise the inertia by more than this fraction are not tried.
SLACK = 0.05


class SplitProposal(NamedTuple):
    """The best two-way split found for one cluster.

    Attributes
    ----------
    critical_sigma2 : float
        ``λ_max`` of the cluster's covariance: below ``σ² = λ_max`` a duplicated centroid separates
        (the cluster's phase transition; Rose 1998).
    left, right : tensor of shape (n_features,)
        The two children (means of the two sides of a 2-means split started on the principal axis).
    left_mass, right_mass : float
        The sample weight on each side.
    gain : float
        The drop in inertia from replacing the cluster's centroid with the two children: the
        free-energy drop of the split at σ → 0. 0 when the cluster cannot split.
    """

    critical_sigma2: float
    left: torch.Tensor
    right: torch.Tensor
    left_mass: float
    right_mass: float
    gain: float


class _Cell:
    """The rows ``X[index]`` of one cluster (all of ``X`` without an index), read a chunk at a time.

    A small cell is copied out of ``X`` once; a large one (more than ``COPY_ENTRIES`` entries) is
    gathered a chunk of rows at a time, so no copy of a big share of ``X`` is ever held.
    """

    def __init__(self, X: torch.Tensor, index: torch.Tensor | None = None):
        if index is not None and index.numel() * X.shape[1] <= COPY_ENTRIES:
            X, index = X[index], None
        self.X, self.index = X, index
        self.n_rows = X.shape[0] if index is None else index.shape[0]

    def _chunks(self):
        for rows in chunk_rows(self.n_rows, self.X.shape[1]):
            yield rows, (self.X[rows] if self.index is None else self.X[self.index[rows]])

    def weighted_sum(self, u: torch.Tensor) -> torch.Tensor:
        """``Σ_n u_n y_n``, of shape (n_features,)."""
        total = self.X.new_zeros(self.X.shape[1])
        for rows, y in self._chunks():
            total += u[rows] @ y
        return total

    def project(self, v: torch.Tensor) -> torch.Tensor:
        """``y_n · v`` of each row, of shape (n_rows,)."""
        out = self.X.new_empty(self.n_rows)
        for rows, y in self._chunks():
            torch.mv(y, v, out=out[rows])
        return out

    def centred(self, mean: torch.Tensor) -> torch.Tensor:
        """``y_n − m`` of every row, a new tensor of shape (n_rows, n_features)."""
        return (self.X if self.index is None else self.X[self.index]) - mean

    def scatter(self, u: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """``Σ_n u_n (y_n − m)(y_n − m)ᵀ``, of shape (n_features, n_features).

        On the CPU each chunk of rows takes one symmetric rank-k update (BLAS ``?syrk`` of the rows
        ``sqrt(u_n) (y_n − m)``: half the products of a general one).
        """
        total = self.X.new_zeros(self.X.shape[1], self.X.shape[1])
        for rows, y in self._chunks():
            if y.device.type == "cpu":
                total += _gram((y - mean) * u[rows].clamp_min(0.0).sqrt()[:, None], transpose=True)
            else:
                z = y - mean
                total += (z * u[rows, None]).T @ z
        return total


def _gram(Z: torch.Tensor, transpose: bool = False) -> torch.Tensor:
    """``ZZᵀ`` (or ``ZᵀZ``) of a C-ordered CPU matrix, by one BLAS ``?syrk``, made symmetric."""
    from scipy.linalg import blas

    Z = Z.contiguous().numpy()
    syrk = blas.get_blas_funcs("syrk", (Z,))
    # A C-ordered Z is the Fortran-ordered Zᵀ: trans=0 gives ZᵀZ of it, trans=1 gives ZZᵀ.
    upper = torch.from_numpy(syrk(1.0, Z.T, trans=0 if transpose else 1))
    return upper.triu() + upper.triu(1).T


def _principal_axis(cell: _Cell, u, mean, total: float, comm: Comm) -> tuple[float, torch.Tensor]:
    """Top eigenpair of the cell's weighted covariance ``C = Σ u (y − m)(y − m)ᵀ / Σ u``.

    The eigenvector's sign is fixed (its largest entry positive), so that the same covariance up to
    rounding gives the same sides.

    A cell of fewer rows than features (all of them in this process) takes the pair from its
    ``n × n`` Gram matrix instead: with ``Z`` the rows ``sqrt(u/Σu) (y − m)``, ``C = ZᵀZ`` and
    ``ZZᵀ`` share their nonzero eigenvalues, and ``ZᵀZ (Zᵀw) = λ Zᵀw`` for ``ZZᵀ w = λ w``. At
    D = 256 that is ``n²D`` flops and an ``n × n`` eigenproblem, against ``nD²`` and a
    ``D × D`` one.
    """
    if cell.n_rows < cell.X.shape[1] and type(comm) is Comm:  # every row is here
        Z = cell.centred(mean) * (u / total).clamp_min(0.0).sqrt()[:, None]
        lam, vector = _top_eigenpair(_gram(Z) if Z.device.type == "cpu" else Z @ Z.T)
        axis = Z.T @ vector
        norm = axis.norm()
        if lam <= 0 or norm == 0:
            return 0.0, axis
        axis = axis / norm
    else:
        cov = comm.sum_(cell.scatter(u, mean))[0] / total
        lam, axis = _top_eigenpair(cov)
    if axis[axis.abs().argmax()] < 0:
        axis = -axis
    return max(lam, 0.0), axis


def _top_eigenpair(matrix: torch.Tensor) -> tuple[float, torch.Tensor]:
    """The largest eigenvalue of a symmetric matrix and a unit eigenvector of it.

    On the CPU only that pair is computed: by Lanczos iterations in float64 from order
    ``_lanczos.LANCZOS_SIZE`` on (:func:`._lanczos.lanczos_top`), else, or where they do not settle,
    by LAPACK's ``?syevr`` called directly (SciPy's ``eigh`` around it costs more than the routine
    itself below 30 × 30; at 256 × 256 the routine takes a third of the time of the full decomposition).
    """
    if matrix.device.type != "cpu" or matrix.shape[0] == 0:
        values, vectors = torch.linalg.eigh(matrix)
        return values[-1].item(), vectors[:, -1]
    from scipy.linalg import lapack

    from ._lanczos import LANCZOS_SIZE, MAX_STEPS, RESIDUAL, lanczos_top

    a = matrix.numpy()
    size = a.shape[0]
    if size >= LANCZOS_SIZE:
        value, vector, converged = lanczos_top(np.ascontiguousarray(a, dtype=np.float64), MAX_STEPS, RESIDUAL)
        if converged:
            return float(value), torch.from_numpy(vector).to(matrix.dtype)
    (syevr,) = lapack.get_lapack_funcs(("syevr",), (a,))
    values, vectors, _found, _support, info = syevr(a, compute_v=1, range="I", il=size, iu=size)
    if info != 0:  # no convergence: the full decomposition, which reports its own failure
        values, vectors = torch.linalg.eigh(matrix)
        return values[-1].item(), vectors[:, -1]
    return float(values[0]), torch.from_numpy(vectors[:, 0].copy())


def _two_means(cell: _Cell, u, sums, total, side, comm: Comm):
    """2-means from an initial partition ``side`` (bool): the two weighted means and masses.

    A cell held whole in this process's CPU memory goes to the compiled loop of
    :mod:`._two_means` (the same iterations, the sums in float64).
    """
    if cell.index is None and cell.X.device.type == "cpu" and type(comm) is Comm:
        from ._two_means import two_means

        y = cell.X.numpy()
        left, right, mass_a = two_means(
            y, u.numpy(), sums.double().numpy(), float(total), side.numpy().copy(), TWO_MEANS_ITER
        )
        mass_b = total - mass_a
        if mass_a <= 0 or mass_b <= 0:
            return None
        return (
            torch.from_numpy(left).to(cell.X.dtype),
            torch.from_numpy(right).to(cell.X.dtype),
            mass_a,
            mass_b,
        )
    for _ in range(TWO_MEANS_ITER):
        ua = u * side
        sums_a = comm.sum_(cell.weighted_sum(ua))[0]
        mass_a = comm.total(ua.sum().item())
        mass_b = total - mass_a
        if mass_a <= 0 or mass_b <= 0:
            return None
        left = sums_a / mass_a
        right = (sums - sums_a) / mass_b
        # Nearer to left than right: y·(l − r) > (‖l‖² − ‖r‖²) / 2.
        new_side = cell.project(left - right) > 0.5 * (left @ left - right @ right)
        if not comm.any(not torch.equal(new_side, side)):
            break
        side = new_side
    return left, right, mass_a, mass_b


def propose_split(
    X: torch.Tensor, u: torch.Tensor, comm: Comm = LOCAL, index: torch.Tensor | None = None
) -> SplitProposal:
    """Split the cluster of rows ``X`` (or ``X[index]``), of weights ``u``, in two.

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features)
    u : tensor of shape (n_rows,)
        The weights of the cluster's rows.
    comm : Comm, default LOCAL
        Where the cluster's other rows are.
    index : long tensor of shape (n_rows,), optional
        The cluster's rows of ``X`` (default: all of them).

    Returns
    -------
    SplitProposal
        The sides start as the halves on either side of the weighted mean along the principal axis
        (Boley's principal direction divisive partitioning) and are polished by 2-means.
    """
    cell = _Cell(X, index)
    if cell.index is None and X.device.type == "cpu" and type(comm) is Comm:
        from ._two_means import compiled_proposal  # numba's kernels: loaded when first needed

        return compiled_proposal(cell.X, u)
    total = comm.total(u.sum().item())
    sums = comm.sum_(cell.weighted_sum(u))[0]
    mean = sums / total if total > 0 else X.new_zeros(X.shape[1])
    if comm.total(cell.n_rows) < 2 or total <= 0:
        return SplitProposal(0.0, mean, mean, total, 0.0, 0.0)
    lam, axis = _principal_axis(cell, u, mean, total, comm)
    found = _two_means(cell, u, sums, total, cell.project(axis) > mean @ axis, comm) if lam > 0 else None
    if found is None:
        return SplitProposal(lam, mean, mean, total, 0.0, 0.0)
    left, right, mass_a, mass_b = found
    # Parallel-axis theorem: J(parent) − J(children) = Σ_side mass ‖child − mean‖².
    gain = mass_a * (left - mean).square().sum().item() + mass_b * (right - mean).square().sum().item()
    return SplitProposal(lam, left, right, mass_a, mass_b, gain)


def covariance_top_eigenvalue(
    X: torch.Tensor, u: torch.Tensor, comm: Comm = LOCAL, index: torch.Tensor | None = None
) -> float:
    """``λ_max`` of the weighted covariance ``Σ_n u_n (x_n − m)(x_n − m)ᵀ / Σ_n u_n`` of rows ``X[index]``.

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features)
    u : tensor of shape (n_rows,)
        The rows' weights (e.g. sample weight times responsibility), summing to more than 0 over
        every process; 0 is returned otherwise.
    comm : Comm, default LOCAL
    index : long tensor of shape (n_rows,), optional
        The rows of ``X`` (default: all of them).

    Returns
    -------
    float
        ``m = Σ u x / Σ u`` is taken first (two passes, no cancellation).
    """
    cell = _Cell(X, index)
    total = comm.total(u.sum().item())
    if total <= 0:
        return 0.0
    mean = comm.sum_(cell.weighted_sum(u))[0] / total
    return _principal_axis(cell, u, mean, total, comm)[0]


def removal_costs(X, weight, means, labels, comm: Comm = LOCAL) -> torch.Tensor:
    """Rise in inertia from deleting each centroid alone: ``Σ_{n: z_n = k} w_n (d2_second − d2_first)``.

    Returns
    -------
    tensor of shape (n_clusters,)
    """
    costs = X.new_zeros(means.shape[0])
    means_sq = (means * means).sum(-1)
    for rows in chunk_rows(X.shape[0], means.shape[0]):
        d2 = torch.addmm(means_sq, X[rows], means.T, alpha=-2.0)
        two = d2.topk(2, dim=1, largest=False).values
        costs.index_add_(0, labels[rows], (two[:, 1] - two[:, 0]) * weight[rows])
    return comm.sum_(costs)[0]


class CellProposal(NamedTuple):
    """A split proposal and the rows of ``X`` it was made from (None: not known)."""

    rows: torch.Tensor | None
    proposal: SplitProposal


def _same_rows(known: list[CellProposal] | None, k: int, rows: torch.Tensor) -> bool:
    made_from = None if known is None or k >= len(known) else known[k].rows
    return made_from is not None and made_from.shape == rows.shape and torch.equal(made_from, rows)


def _cell_proposals(X, weight, labels, n_clusters, comm: Comm, known=None) -> list[CellProposal]:
    """Each cluster's proposal (rows in increasing order); one made from the very same rows in every
    process (``known[k]``) is taken as it is: the same call would give the same numbers.

    Every cell's rows are views into this call's one grouping of the rows (a reused proposal takes
    the new, equal, view), so that no earlier round's grouping stays held."""
    cells = rows_by_label(labels, n_clusters)
    same = [_same_rows(known, k, rows) for k, rows in enumerate(cells)]
    changed = comm.sum_(X.new_tensor([0.0 if s else 1.0 for s in same]))[0].tolist()  # one reduction
    return [
        CellProposal(
            rows, known[k].proposal if not changed[k] else propose_split(X, weight[rows], comm, index=rows)
        )
        for k, rows in enumerate(cells)
    ]


def _candidate_pairs(proposals, costs, n_trials, inertia) -> list[tuple[int, int]]:
    """(split i, delete j) pairs, best estimated net drop ``gain_i − cost_j`` first.

    Pairs estimated to raise the inertia by more than ``SLACK · inertia`` are left out: the estimate
    ignores how Lloyd's algorithm then moves the neighbours, but not by that much.
    """
    gains = costs.new_tensor([p.gain for p in proposals])
    score = gains[:, None] - costs[None, :]
    score.fill_diagonal_(-torch.inf)
    score[gains <= 0] = -torch.inf
    score = score.flatten()
    order = score.argsort(descending=True)[:n_trials]
    n_clusters = costs.shape[0]
    return [divmod(o, n_clusters) for o in order.tolist() if score[o] > -SLACK * inertia]


def split_merge(
    X: torch.Tensor,
    weight: torch.Tensor,
    result: LloydResult,
    *,
    n_trials: int,
    max_iter: int,
    variance: float,
    comm: Comm = LOCAL,
    known: list[CellProposal] | None = None,
) -> tuple[LloydResult, int]:
    """Split-merge moves at σ = 0 until none of the ``n_trials`` most promising ones lowers the inertia.

    ``X`` is ``Data.rows`` (``result`` in their frame) and ``variance`` is ``Data.variance``, which
    scales the screening tolerance. ``known[k]``: a proposal for cluster k made earlier (annealing's),
    reused where the cluster has the same rows (the list is emptied once matched, so that the rows
    it holds are freed); each round reuses the last round's likewise.

    A move deletes centroid j (its rows go to their next-nearest centroids) and splits cluster i in
    two (:func:`propose_split`), then runs Lloyd's algorithm to a fixed point; it is kept when the
    inertia drops. Moves are tried in the order of the estimated drop ``gain_i − cost_j``
    (Kaukoranta, Fränti & Nevalainen, "Iterative split-and-merge algorithm for vector quantization
    codebook generation", Optical Engineering 37(10), 1998).

    Returns
    -------
    result : LloydResult
        A Lloyd fixed point no worse than the input.
    n_iter : int
        Lloyd iterations spent.
    """
    n_iter = 0
    while True:
        cells = _cell_proposals(X, weight, result.labels, result.means.shape[0], comm, known)
        if known is not None:
            known.clear()  # matched: its rows are freed now, not when the caller returns
        known = cells
        proposals = [cell.proposal for cell in known]
        costs = removal_costs(X, weight, result.means, result.labels, comm)
        for i, j in _candidate_pairs(proposals, costs, n_trials, result.inertia):
            means = result.means.clone()
            means[i], means[j] = proposals[i].left, proposals[i].right
            # Screen with scikit-learn's loose stopping rule; polish to a fixed point only a winner.
            screen = SCREEN_TOL * variance
            trial = lloyd_rows(X, means, weight, max_iter=max_iter, tol=screen, comm=comm)
            release_freed(X)  # on large data: the trial's freed arrays back to the system
            n_iter += trial.n_iter
            if trial.inertia < result.inertia * (1.0 - MIN_GAIN):
                trial = lloyd_rows(X, trial.means, weight, max_iter=max_iter, tol=0.0, comm=comm)
                n_iter += trial.n_iter
                if trial.converged:
                    result = trial
                    break
        else:
            return result, n_iter
