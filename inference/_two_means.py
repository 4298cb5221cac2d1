"""2-means on the rows of one cell and whole split proposals, compiled with numba (the CPU path of
``_split.propose_split`` and ``_split._two_means``).

Private to :mod:`kmeans_limit.inference._split`. Annealing proposes a split for every cell it may
split next, and split-merge for every cell each round: on the benchmark's small sets (thousands of
rows, K = 15-50) that is ~50 runs of 2-means per annealing run, each some ten iterations of half a
dozen array operations on a few hundred rows, where the calls cost more than the arithmetic (0.5 ms
a run on s1, a third of the annealing). Compiled, an iteration is two passes over the rows; a
whole proposal (:func:`compiled_proposal`) is one or two compiled calls.
"""

from __future__ import annotations

import numpy as np
import torch

from ._fused import _compiled
from ._split import TWO_MEANS_ITER, SplitProposal

__all__ = ["compiled_proposal", "labelled_proposal", "split_along", "split_cell", "two_means"]


@_compiled()
def two_means(y, u, sums, total, side, max_iter):  # pragma: no cover
    """2-means from the partition ``side`` of the rows ``y``, of weights ``u``; ``side`` is updated.

    Parameters
    ----------
    y : array of shape (n_rows, n_features)
    u : array of shape (n_rows,)
    sums : float64 array of shape (n_features,)
        ``Σ_n u_n y_n``.
    total : float
        ``Σ_n u_n`` (> 0).
    side : bool array of shape (n_rows,)
        True on the first side.
    max_iter : int

    Returns
    -------
    left, right : float64 arrays of shape (n_features,)
        The weighted means of the two sides of the last partition measured.
    mass_left : float
        0 or ``total`` when a side came out empty (no split then).

    Notes
    -----
    Each iteration takes the two sides' weighted means ``l``, ``r`` (the second by difference from
    ``sums``) and moves every row to the side of the nearer: first where
    ``y·(l − r) > (‖l‖² − ‖r‖²)/2``. It stops when no row moves, the sums in float64.
    """
    n_rows, n_features = y.shape
    left = np.zeros(n_features)
    right = np.zeros(n_features)
    mass_left = 0.0
    for _ in range(max_iter):
        mass_left = 0.0
        left[:] = 0.0
        for i in range(n_rows):
            if side[i]:
                mass_left += u[i]
                for t in range(n_features):
                    left[t] += u[i] * y[i, t]
        mass_right = total - mass_left
        if mass_left <= 0.0 or mass_right <= 0.0:
            return left, right, mass_left
        threshold = 0.0
        for t in range(n_features):
            right[t] = (sums[t] - left[t]) / mass_right
            left[t] = left[t] / mass_left
            threshold += 0.5 * (left[t] * left[t] - right[t] * right[t])
        moved = False
        for i in range(n_rows):
            projection = 0.0
            for t in range(n_features):
                projection += y[i, t] * (left[t] - right[t])
            nearer_left = projection > threshold
            if nearer_left != side[i]:
                side[i] = nearer_left
                moved = True
        if not moved:
            break
    return left, right, mass_left


@_compiled()
def split_cell(y, u, max_iter):  # pragma: no cover
    """A whole split proposal of the rows ``y`` (weights ``u``, summing to more than 0), in float64.

    The weighted mean and covariance ``C = Σ u (y − m)(y − m)ᵀ / Σ u`` (two passes), the top
    eigenpair of ``C`` (LAPACK through ``np.linalg.eigh``; the eigenvector's largest entry made
    positive), the two sides of the mean along that axis, polished by :func:`two_means`.

    Returns
    -------
    lam : float
        ``λ_max(C)`` (at least 0).
    left, right : float64 arrays of shape (n_features,)
    mass_left : float
        As :func:`two_means`; ``total`` itself (no split) when ``λ = 0``.
    total : float
        ``Σ u``.
    mean : float64 array of shape (n_features,)
    """
    n_rows, n_features = y.shape
    total = 0.0
    sums = np.zeros(n_features)
    for i in range(n_rows):
        total += u[i]
        for t in range(n_features):
            sums[t] += u[i] * y[i, t]
    mean = sums / total
    cov = np.zeros((n_features, n_features))
    for i in range(n_rows):
        for a in range(n_features):
            za = u[i] * (y[i, a] - mean[a])
            for b in range(a + 1):
                cov[a, b] += za * (y[i, b] - mean[b])
    for a in range(n_features):
        for b in range(a + 1):
            cov[a, b] /= total
            cov[b, a] = cov[a, b]
    values, vectors = np.linalg.eigh(cov)
    lam = max(values[-1], 0.0)
    if lam <= 0.0:
        return 0.0, mean, mean, total, total, mean
    left, right, mass_left = split_along(y, u, sums, total, mean, vectors[:, -1].copy(), max_iter)
    return lam, left, right, mass_left, total, mean


@_compiled()
def split_along(y, u, sums, total, mean, axis, max_iter):  # pragma: no cover
    """The sides of the rows ``y`` on either side of ``mean`` along ``axis`` (its sign fixed first:
    largest entry positive), polished by :func:`two_means`; returns ``(left, right, mass_left)``."""
    n_rows, n_features = y.shape
    largest = 0
    for t in range(1, n_features):
        if abs(axis[t]) > abs(axis[largest]):
            largest = t
    if axis[largest] < 0:
        axis = -axis
    cut = 0.0
    for t in range(n_features):
        cut += mean[t] * axis[t]
    side = np.empty(n_rows, dtype=np.bool_)
    for i in range(n_rows):
        projection = 0.0
        for t in range(n_features):
            projection += y[i, t] * axis[t]
        side[i] = projection > cut
    return two_means(y, u, sums, total, side, max_iter)


#: A cell of at most this many features, held whole on the CPU, is split by one compiled call
#: (:func:`split_cell`): at few features the dozen array calls of a proposal cost more
#: than its arithmetic (0.3 ms a proposal on s1, 55 proposals a run). A wider one takes two
#: compiled calls with the top eigenpair between them (:func:`._critical.cell_top`: Lanczos
#: iterations, else LAPACK's ``?syevr``).
COMPILED_FEATURES = 8


@_compiled()
def _label_rows(labels, k):  # pragma: no cover
    """The rows labelled ``k``, in order (what ``nonzero(labels == k)`` gives)."""
    count = 0
    for i in range(labels.shape[0]):
        if labels[i] == k:
            count += 1
    index = np.empty(count, dtype=np.int64)
    count = 0
    for i in range(labels.shape[0]):
        if labels[i] == k:
            index[count] = i
            count += 1
    return index


@_compiled()
def _split_rows(X, weight, index, max_iter):  # pragma: no cover
    """:func:`split_cell` of the rows ``X[index]`` of weights ``weight[index]``, gathered here."""
    n_features = X.shape[1]
    y = np.empty((index.shape[0], n_features), dtype=X.dtype)
    u = np.empty(index.shape[0], dtype=weight.dtype)
    total = 0.0
    for i in range(index.shape[0]):
        u[i] = weight[index[i]]
        total += u[i]
        for t in range(n_features):
            y[i, t] = X[index[i], t]
    if index.shape[0] < 2 or total <= 0.0:
        mean = np.zeros(n_features)
        return False, 0.0, mean, mean, 0.0, 0.0, mean
    lam, left, right, mass_left, total, mean = split_cell(y, u, max_iter)
    return True, lam, left, right, mass_left, total, mean


def labelled_proposal(
    X: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, k: int
) -> tuple[torch.Tensor, SplitProposal] | None:
    """The rows labelled ``k`` and :func:`~._split.propose_split` of them, by two compiled calls.

    The same numbers as ``propose_split(X, weight[rows], index=rows)`` (the same compiled
    :func:`split_cell` on the same gathered rows) without its tensor operations, which on the rows
    of one cell of a small problem cost ten times the arithmetic (a cell of 150 of 7500 rows in two
    dimensions: ``split_cell`` 8 µs, the whole ``propose_split`` with its ``nonzero`` 90-100 µs, this
    path 45-55 µs); annealing a3 (K = 50) makes 167 of them.

    Returns
    -------
    (rows, proposal), or None
        None where this path does not take the cell (more than ``COMPILED_FEATURES`` features, a cell
        too large to copy, or one of fewer than two rows or no weight): the caller then takes
        ``propose_split``, as before.
    """
    from ._split import COPY_ENTRIES

    n_features = X.shape[1]
    if n_features > COMPILED_FEATURES:
        return None
    index = _label_rows(labels.numpy(), k)
    rows = torch.from_numpy(index)
    if index.shape[0] * n_features > COPY_ENTRIES:
        return None
    taken, lam, left, right, mass_a, total, mean = _split_rows(
        X.contiguous().numpy(), weight.numpy(), index, TWO_MEANS_ITER
    )
    if not taken:
        return None
    return rows, _proposal(lam, left, right, mass_a, total, mean, X.dtype)


def _proposal(lam, left, right, mass_a, total, mean, dtype) -> SplitProposal:
    """The proposal of one compiled split, its vectors in ``dtype``."""
    mass_b = total - mass_a
    mean_t = torch.from_numpy(mean).to(dtype)
    if mass_a <= 0 or mass_b <= 0:
        return SplitProposal(lam, mean_t, mean_t, total, 0.0, 0.0)
    # Parallel-axis theorem: J(parent) − J(children) = Σ_side mass ‖child − mean‖².
    gain = mass_a * float(((left - mean) ** 2).sum()) + mass_b * float(((right - mean) ** 2).sum())
    return SplitProposal(
        lam, torch.from_numpy(left).to(dtype), torch.from_numpy(right).to(dtype), mass_a, mass_b, gain
    )


def compiled_proposal(y: torch.Tensor, u: torch.Tensor) -> SplitProposal:
    """:func:`~._split.propose_split` of the rows ``y`` (all in this process, on the CPU) by compiled calls:
    the mean and the covariance's top eigenpair in float64 (:func:`._critical.cell_top`), the sides
    along it polished by 2-means."""
    dtype = y.dtype
    total = u.sum().item()
    if y.shape[0] < 2 or total <= 0:
        mean = (u @ y) / total if total > 0 else y.new_zeros(y.shape[1])
        return SplitProposal(0.0, mean, mean, total, 0.0, 0.0)
    rows = y.contiguous().numpy()
    if y.shape[1] <= COMPILED_FEATURES:
        lam, left, right, mass_a, total, mean = split_cell(rows, u.numpy(), TWO_MEANS_ITER)
    else:
        from ._critical import cell_top

        lam, axis, total, mean = cell_top(rows, None, u.double().numpy(), vector=True)
        if lam <= 0:
            mean_t = torch.from_numpy(mean).to(dtype)
            return SplitProposal(0.0, mean_t, mean_t, total, 0.0, 0.0)
        left, right, mass_a = split_along(rows, u.numpy(), mean * total, total, mean, axis, TWO_MEANS_ITER)
    return _proposal(lam, left, right, mass_a, total, mean, dtype)
