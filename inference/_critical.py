"""The critical σ of one cluster at an annealing level, its rows found and weighed in one compiled call.

Private to :mod:`kmeans_limit.inference._levels` (``Annealer.critical_sigma``). A cluster's critical
σ is ``sqrt(λ_max)`` of its responsibility-weighted covariance. The array path took a dozen tensor
operations over all N rows to find the rows that may hold some of the cluster (its test, then the
responsibilities from the level's per-row terms, the weights, the mean, the scatter): on the 2-D
SIPU sets that was a fifth of an annealing run. Here one pass over the rows finds them and their
weights, a second their mean, a third their scatter (a chunk of rows at a time by one BLAS product),
all in float64; only the eigenvalue of the small matrix that comes back is left to LAPACK. A wide
cell (from ``_lanczos.IMPLICIT_FEATURES`` features) is first given to Lanczos as its centred rows,
the covariance not formed (:func:`cell_top`): on the 256-feature blobs a critical σ took 7 ms
by ``?syrk`` and Lanczos on the matrix, 3 ms so.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from . import _lanczos
from ._fused import _compiled
from ._syrk import add_gram
from .kernels import in_background, negligible_logit

__all__ = [
    "CellTop",
    "cell_scatter",
    "cell_top",
    "centred_cell",
    "gram_of_rows",
    "hard_cell_matrix",
    "hard_top_eigenvalue",
    "nearby_rows",
    "soft_cell_matrix",
    "soft_cell_rows",
    "soft_critical_sigma",
    "top_eigenvalue",
]

#: Rows whose weighted, centred copies are multiplied together by one BLAS call.
CHUNK_ROWS = 256


@_compiled(inline="always")
def _near(X, i, mean, labels, min_sq, log_weights, k, beta, log_threshold):  # pragma: no cover
    """Whether row i may hold ``γ_nk ≥ exp(log_threshold)``: ``log π_k − β ‖x − μ_k‖² ≥ log π_{z_n}
    − β d2_{n z_n} + log_threshold`` for its nearest centroid ``z_n`` (float64)."""
    sq = 0.0
    for t in range(X.shape[1]):
        gap = np.float64(X[i, t]) - mean[t]
        sq += gap * gap
    return log_weights[k] - beta * sq >= log_weights[labels[i]] - beta * min_sq[i] + log_threshold


@_compiled()
def _count_near(X, labels, min_sq, log_weights, mean, k, beta, log_threshold):  # pragma: no cover
    """How many rows :func:`_near` keeps."""
    count = 0
    for i in range(X.shape[0]):
        if _near(X, i, mean, labels, min_sq, log_weights, k, beta, log_threshold):
            count += 1
    return count


@_compiled()
def _nearby(X, labels, min_sq, log_weights, mean, k, beta, log_threshold, index):  # pragma: no cover
    """The rows :func:`_near` keeps, into ``index``; returns how many."""
    count = 0
    for i in range(X.shape[0]):
        if _near(X, i, mean, labels, min_sq, log_weights, k, beta, log_threshold):
            index[count] = i
            count += 1
    return count


@_compiled()
def _soft_weights(X, weight, labels, min_sq, log_weights, mean, k, beta, log_threshold, terms, bias,
                  two_beta, floor_logit, floor_value, index, u):  # pragma: no cover  # fmt: skip
    """The rows :func:`_near` keeps into ``index`` and their ``w_n γ_nk`` into ``u`` (float64);
    returns how many. ``γ_nk = exp(2β (t_nk − top_n) − lse_n)`` from the level's terms
    (``t_nk = x·μ_k + bias``), 0 where the clamped logit's exponential is at or below
    ``floor_value``, as the E step has it.
    """
    count = 0
    for i in range(X.shape[0]):
        if not _near(X, i, mean, labels, min_sq, log_weights, k, beta, log_threshold):
            continue
        dot = 0.0
        for t in range(X.shape[1]):
            dot += np.float64(X[i, t]) * mean[t]
        logit = max((dot + bias - terms[0, i]) * two_beta, floor_logit)
        gamma = math.exp(logit - terms[1, i]) if math.exp(logit) > floor_value else 0.0
        if count < index.shape[0]:  # past the end: only counted (the caller then calls again)
            index[count] = i
            u[count] = (1.0 if weight is None else weight[i]) * gamma
        count += 1
    return count


@_compiled()
def _keep_above(index, u, count, cutoff):  # pragma: no cover
    """Move the first ``count`` entries with ``u > cutoff`` to the front of ``index`` and ``u``, in
    order; returns how many."""
    kept = 0
    for i in range(count):
        if u[i] > cutoff:
            index[kept] = index[i]
            u[kept] = u[i]
            kept += 1
    return kept


def nearby_rows(
    X: torch.Tensor,
    labels: torch.Tensor,
    min_sq: torch.Tensor,
    means: torch.Tensor,
    log_weights: torch.Tensor,
    k: int,
    sigma: float,
    threshold: float,
) -> torch.Tensor:
    """The rows where centroid k may hold responsibility at least ``threshold`` at σ (a superset,
    found from each row's nearest centroid ``labels`` at squared distance ``min_sq``), in order:
    ``Annealer.active_rows`` in one compiled pass (the test in float64)."""
    index = np.empty(X.shape[0], dtype=np.int64)
    count = _nearby(
        X.contiguous().numpy(),
        labels.numpy(),
        min_sq.numpy(),
        log_weights.double().numpy(),
        means[k].double().numpy(),
        k,
        1.0 / (2.0 * sigma**2),
        math.log(threshold),
        index,
    )
    # A copy of the rows kept frees the rest, unless they are most of it (no second array then).
    return torch.from_numpy(index[:count] if 2 * count >= index.shape[0] else index[:count].copy())


@_compiled(inline="always")
def _weighted_mean(X, index, u):  # pragma: no cover
    """``(Σ u, Σ u x / Σ u)`` of the rows ``X[index]`` (all of ``X`` for None), in float64; the mean
    is 0 where the rows weigh nothing."""
    n_features = X.shape[1]
    total = 0.0
    mean = np.zeros(n_features)
    for j in range(u.shape[0]):
        row = j if index is None else index[j]
        total += u[j]
        for t in range(n_features):
            mean[t] += u[j] * X[row, t]
    if total > 0.0:
        mean /= total
    return total, mean


@_compiled(inline="always")
def _centre_rows(X, index, u, total, mean, start, stop, z):  # pragma: no cover
    """``z[j − start] = sqrt(u_j / Σ u) (x_j − m)`` for the rows ``start ≤ j < stop``."""
    for j in range(start, stop):
        row = j if index is None else index[j]
        scale = math.sqrt(u[j] / total)
        for t in range(X.shape[1]):
            z[j - start, t] = scale * (X[row, t] - mean[t])


@_compiled()
def cell_scatter(X, index, u, chunk):  # pragma: no cover
    """The weighted covariance of the rows ``X[index]`` (all of ``X`` for None) in float64.

    With ``m = Σ u x / Σ u`` (two passes, no cancellation) and ``Z`` the rows ``sqrt(u / Σ u) (x − m)``:
    the ``D × D`` covariance ``ZᵀZ`` (a chunk of rows of ``Z`` at a time by one BLAS product:
    :func:`._syrk.add_gram`, a symmetric rank-k update from 64 features on), or,
    for fewer rows than features, the ``n × n`` Gram matrix ``ZZᵀ`` (the same nonzero eigenvalues;
    ``Zᵀw`` is the eigenvector of ``ZᵀZ`` for the eigenvector ``w`` of ``ZZᵀ``).

    Returns
    -------
    matrix : float64 array, (D, D) or (n, n); (0, 0) when the rows weigh nothing
    z : float64 array of shape (n, D) for the Gram matrix, else (0, D)
    total : float
        ``Σ u``.
    mean : float64 array of shape (n_features,)
    """
    n_rows = u.shape[0]
    n_features = X.shape[1]
    total, mean = _weighted_mean(X, index, u)
    if total <= 0.0:
        return np.zeros((0, 0)), np.zeros((0, n_features)), total, mean
    if n_rows < n_features:
        z = np.empty((n_rows, n_features))
        _centre_rows(X, index, u, total, mean, 0, n_rows, z)
        gram = np.zeros((n_rows, n_rows))
        add_gram(z, gram, True)
        return gram, z, total, mean
    matrix = np.zeros((n_features, n_features))
    z = np.empty((min(chunk, n_rows), n_features))
    for start in range(0, n_rows, chunk):
        stop = min(start + chunk, n_rows)
        _centre_rows(X, index, u, total, mean, start, stop, z)
        add_gram(z[: stop - start], matrix, False)
    return matrix, np.zeros((0, n_features)), total, mean


@_compiled()
def centred_cell(X, index, u):  # pragma: no cover
    """``(Z, Σ u, m)`` of :func:`cell_scatter`: every weighted, centred row ``sqrt(u / Σ u) (x − m)``
    (float64, of shape (n, D); (0, D) when the rows weigh nothing)."""
    total, mean = _weighted_mean(X, index, u)
    if total <= 0.0:
        return np.zeros((0, X.shape[1])), total, mean
    z = np.empty((u.shape[0], X.shape[1]))
    _centre_rows(X, index, u, total, mean, 0, u.shape[0], z)
    return z, total, mean


@_compiled()
def gram_of_rows(z):  # pragma: no cover
    """``zᵀz`` of float64 rows ``z``, of shape (D, D)."""
    matrix = np.zeros((z.shape[1], z.shape[1]))
    add_gram(z, matrix, False)
    return matrix


class CellTop(NamedTuple):
    """The top of a cell's weighted covariance (:func:`cell_top`).

    Attributes
    ----------
    value : float
        ``λ_max`` (at least 0).
    vector : float64 array of shape (n_features,), or None
        A unit eigenvector for it, where it was asked for and ``value > 0``.
    total : float
        ``Σ u``.
    mean : float64 array of shape (n_features,)
    """

    value: float
    vector: np.ndarray | None
    total: float
    mean: np.ndarray


def cell_top(x: np.ndarray, index: np.ndarray | None, u: np.ndarray, *, vector: bool) -> CellTop:
    """``λ_max`` (and, with ``vector``, its eigenvector) of the weighted covariance of the rows
    ``x[index]`` (all of ``x`` for None) of weights ``u`` (float64, of shape (n_rows,)).

    Wide cells (:func:`._lanczos.implicit_steps`) first try Lanczos on their centred rows, the
    covariance never formed (:func:`._lanczos.lanczos_top_rows`); the others, or where that does not
    settle within its budget, the covariance or Gram matrix of :func:`cell_scatter` and its top
    eigenpair (Lanczos from ``LANCZOS_SIZE`` on, else LAPACK).
    """
    from ._split import _top_eigenpair

    n_features = x.shape[1]
    budget = _lanczos.implicit_steps(u.shape[0], n_features)
    if budget:
        z, total, mean = centred_cell(x, index, u)
        if total <= 0.0:
            return CellTop(0.0, None, total, mean)
        value, axis, converged = _lanczos.lanczos_top_rows(z, budget, _lanczos.RESIDUAL)
        if not converged:
            matrix = gram_of_rows(z)
            del z
            if not vector:
                return CellTop(top_eigenvalue(matrix), None, total, mean)
            value, tensor = _top_eigenpair(torch.from_numpy(matrix))
            axis = tensor.numpy()
        value = max(float(value), 0.0)
        return CellTop(value, axis if vector and value > 0 else None, total, mean)
    matrix, z, total, mean = cell_scatter(x, index, u, CHUNK_ROWS)
    if matrix.shape[0] == 0:
        return CellTop(0.0, None, total, mean)
    if not vector:
        return CellTop(top_eigenvalue(matrix), None, total, mean)
    value, tensor = _top_eigenpair(torch.from_numpy(matrix))
    axis = tensor.numpy()
    if z.shape[0] > 0:  # the Gram matrix's eigenvector w: the covariance's is Zᵀw
        axis = z.T @ axis
        norm = float(np.linalg.norm(axis))
        value, axis = (value, axis / norm) if norm > 0 else (0.0, axis)
    value = max(float(value), 0.0)
    return CellTop(value, axis if value > 0 else None, total, mean)


def hard_cell_matrix(X: torch.Tensor, u: torch.Tensor, rows: torch.Tensor) -> np.ndarray:
    """The small symmetric matrix whose top eigenvalue is ``λ_max`` of the rows ``X[rows]`` weighed by
    ``u`` (of shape (n_rows,)): the covariance, or the Gram matrix (see :func:`cell_scatter`); float64,
    (0, 0) when they weigh nothing."""
    index = rows.numpy()
    if index.shape[0] == 0:
        return np.zeros((0, 0))
    return cell_scatter(X.contiguous().numpy(), index, u.numpy().astype(np.float64), CHUNK_ROWS)[0]


def hard_top_eigenvalue(X: torch.Tensor, u: torch.Tensor, rows: torch.Tensor) -> float:
    """``λ_max`` of :func:`hard_cell_matrix` of these arguments, by :func:`cell_top`."""
    if rows.shape[0] == 0:
        return 0.0
    return cell_top(X.contiguous().numpy(), rows.numpy(), u.numpy().astype(np.float64), vector=False).value


def soft_cell_rows(
    X: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    min_sq: torch.Tensor,
    means: torch.Tensor,
    log_weights: torch.Tensor,
    k: int,
    sigma: float,
    log_threshold: float,
    terms: torch.Tensor,
    floor: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows of soft cluster ``k`` and their weights ``w_n γ_nk``, for :func:`cell_scatter` or :func:`cell_top`.

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features), on the CPU
    weight : tensor of shape (n_samples,)
    labels, min_sq : tensors of shape (n_samples,)
        Each row's nearest centroid and squared distance to it.
    means : tensor of shape (n_clusters, n_features)
    log_weights : tensor of shape (n_clusters,)
    k : int
    sigma : float > 0
        The level's σ (``β = 1 / 2σ²``).
    log_threshold : float
        The rows kept may hold ``γ_nk`` at least ``exp(log_threshold)`` (a superset, found from the
        nearest centroid: see ``Annealer.active_rows``).
    terms : tensor of shape (2, n_samples)
        The level's closing E step's top score and lse of each row.
    floor : (logit, value)
        :func:`~.kernels.negligible_logit` of the data's dtype.

    Returns
    -------
    x : array of shape (n_samples, n_features)
        ``X``'s data.
    index : int64 array of shape (n_rows,)
    u : float64 array of shape (n_rows,)
        Rows holding less than ``eps · Σ u / n`` each (less than rounding between them) are left out.
    """
    x = X.contiguous().numpy()
    mean = means[k].double().numpy()
    bias = float(mean @ mean) * -0.5 + log_weights[k].item() * sigma**2
    near = (x, labels.numpy(), min_sq.numpy(), log_weights.double().numpy(), mean, k, 1.0 / (2.0 * sigma**2))
    # The rows are counted first, so that the two arrays are the cell's size, not the data's.
    size = _count_near(*near, log_threshold)
    weights = (x, weight.numpy(), *near[1:], log_threshold, terms.numpy(), bias, 1.0 / sigma**2, *floor)
    index, u = np.empty(size, dtype=np.int64), np.empty(size)
    count = _soft_weights(*weights, index, u)
    if count > size:  # the two passes disagreed on a row (they should not): room for every row
        index, u = np.empty(x.shape[0], dtype=np.int64), np.empty(x.shape[0])
        count = _soft_weights(*weights, index, u)
    cutoff = torch.finfo(X.dtype).eps * u[:count].sum() / max(count, 1)
    kept = _keep_above(index, u, count, cutoff)  # in place: no copies of row-sized arrays
    return x, index[:kept], u[:kept]


def soft_cell_matrix(*args) -> np.ndarray:
    """As :func:`hard_cell_matrix` for soft cluster ``k`` (the arguments of :func:`soft_cell_rows`):
    its rows weighed by ``w_n γ_nk``; (0, 0) when none are kept."""
    x, index, u = soft_cell_rows(*args)
    if index.shape[0] == 0:
        return np.zeros((0, 0))
    return cell_scatter(x, index, u, CHUNK_ROWS)[0]


def top_eigenvalue(matrix: np.ndarray) -> float:
    """The largest eigenvalue of a symmetric float64 matrix (at least 0; 0 for an empty one).

    Lanczos iterations from order ``_lanczos.LANCZOS_SIZE`` on (:func:`._lanczos.lanczos_top`); else,
    or where they do not settle, LAPACK's ``?syevr`` for that one value (no vectors), or NumPy's
    ``eigvalsh`` below 9 × 9, where SciPy's wrapper costs more than the routine.
    """
    size = matrix.shape[0]
    if size == 0:
        return 0.0
    if size <= 8:
        return max(float(np.linalg.eigvalsh(matrix)[-1]), 0.0)
    if size >= _lanczos.LANCZOS_SIZE:
        top = _lanczos.lanczos_top(np.ascontiguousarray(matrix), _lanczos.MAX_STEPS, _lanczos.RESIDUAL)
        value, _vector, converged = top
        if converged:
            return max(float(value), 0.0)
    from scipy.linalg import lapack

    (syevr,) = lapack.get_lapack_funcs(("syevr",), (matrix,))
    values, _vectors, _found, _support, info = syevr(matrix, compute_v=0, range="I", il=size, iu=size)
    if info != 0:  # no convergence: the full decomposition, which reports its own failure
        return max(float(np.linalg.eigvalsh(matrix)[-1]), 0.0)
    return max(float(values[0]), 0.0)


def soft_critical_sigma(
    X, weight, labels, min_sq, means, log_weights, k, sigma, log_threshold, terms, *, later
):
    """``sqrt(λ_max)`` of :func:`soft_cell_matrix` of these arguments (the floor: the dtype's), by
    :func:`cell_top` of its rows.

    ``later``: a Future of the same number, measured on the background thread
    (:func:`~.kernels.in_background`) from copies of the level's tensors, which the caller's next
    level writes over; a float otherwise.
    """
    level = (labels, min_sq, means, log_weights, k, sigma, log_threshold, terms, negligible_logit(X.dtype))
    if not later:
        return _soft_sigma(X, weight, level)
    copies = tuple(v.clone() if isinstance(v, torch.Tensor) else v for v in level)
    return in_background(lambda: _soft_sigma(X, weight, copies))


def _soft_sigma(X, weight, level) -> float:
    x, index, u = soft_cell_rows(X, weight, *level)
    return math.sqrt(cell_top(x, index, u, vector=False).value) if index.shape[0] else 0.0
