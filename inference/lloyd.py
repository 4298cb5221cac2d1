"""Lloyd's algorithm: the σ = 0 limit of EM, step for step as scikit-learn's ``KMeans(algorithm="lloyd")``."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from . import _fused
from ._comm import LOCAL, Comm
from .data import Data, prepare_data
from .kernels import chunk_rows, cpu_threads, serial_if_small
from .validation import check_means, check_n_clusters, check_positive_int, check_real

__all__ = [
    "LloydResult",
    "assign_labels",
    "labelled_sq_distances",
    "lloyd",
    "lloyd_core",
    "lloyd_options",
    "lloyd_rows",
]


class LloydResult(NamedTuple):
    """What Lloyd's algorithm found.

    Attributes
    ----------
    means : tensor of shape (n_clusters, n_features)
    labels : long tensor of shape (n_samples,)
        The nearest centroid of each row (first index on ties).
    inertia : float
        ``Σ_n w_n ‖x_n − μ_{z_n}‖²``.
    n_iter : int
        Iterations run (assignment plus update), as scikit-learn's ``n_iter_``.
    converged : bool
        Whether the labels stopped changing or the total squared centre shift fell to the tolerance
        before ``max_iter``.
    """

    means: torch.Tensor
    labels: torch.Tensor
    inertia: float
    n_iter: int
    converged: bool


def lloyd(
    X, init, *, max_iter: int = 300, tol: float = 1e-4, sample_weight=None, algorithm: str = "auto"
) -> LloydResult:
    """Lloyd's algorithm (hard k-means) from given centroids.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features), or Data
        The rows, or rows prepared by :func:`~kmeans_limit.inference.data.prepare_data`.
    init : tensor of shape (n_clusters, n_features)
        Initial centroids, in the data's units. More centroids than distinct rows are allowed (the
        surplus ones end on top of others).
    max_iter : int, default 300
    tol : float >= 0, default 1e-4
        Relative tolerance: stop when ``Σ_k ‖μ_k^new − μ_k^old‖² <= tol · mean_j Var(X_j)``
        (scikit-learn's rule, with the unweighted variance ``Data.variance``; ``tol=0`` stops only
        when the labels repeat).
    sample_weight : tensor of shape (n_samples,), optional
        Not with a prepared ``Data`` (it carries its weights).
    algorithm : {"auto", "lloyd", "hamerly", "elkan"}, default "auto"
        ``"lloyd"`` computes every distance; ``"hamerly"`` and ``"elkan"`` (CPU only) skip those
        that triangle-inequality bounds rule out and reach the same labels, centroids and
        ``n_iter`` (:mod:`~kmeans_limit.inference.bounded`); ``"auto"`` picks one by the shape
        (:func:`~kmeans_limit.inference.bounded.choose_algorithm`).

    Returns
    -------
    LloydResult

    Notes
    -----
    Each iteration assigns every row to its nearest centroid and moves each centroid to the weighted
    mean of its rows: EM for the spherical mixture at σ = 0, where the responsibilities are one-hot
    (Bishop, PRML §9.3.2). A centroid left with no rows is moved onto the rows of positive weight
    farthest from their centroids, as scikit-learn's ``_relocate_empty_clusters_dense`` (which also
    takes rows of weight 0, and then puts the centroid at the origin); when no row is left to take,
    it is parked on the heaviest centroid. The rows are centred or not as
    :func:`~kmeans_limit.inference.data.prepare_data` decides (scikit-learn always centres; the
    results agree to rounding), and when the loop ends on the tolerance rather than on repeated
    labels the labels are recomputed from the final centroids. From the same initial centroids this
    returns scikit-learn's centroids, labels, inertia and ``n_iter_`` (Lloyd, "Least squares
    quantization in PCM", IEEE Trans. Inf. Theory 28(2), 1982).
    """
    data = prepare_data(X, sample_weight)
    means = check_means(init, data.n_features, name="init")
    check_n_clusters(means.shape[0], data.rows, distinct=False)
    options = lloyd_options(max_iter, tol)
    from .bounded import bounded_core, choose_algorithm  # bounded builds on this module

    n_samples, n_features = data.rows.shape
    chosen = choose_algorithm(algorithm, n_samples, n_features, means.shape[0], data.rows.device)
    with serial_if_small(data.n_samples * means.shape[0] * (data.n_features + 1)):
        if chosen == "lloyd":
            return lloyd_core(data, means, **options)
        return bounded_core(data, means, algorithm=chosen, **options)


def lloyd_options(max_iter, tol) -> dict:
    """:func:`lloyd`'s options, checked, as keyword arguments of :func:`lloyd_core`."""
    return dict(max_iter=check_positive_int("max_iter", max_iter), tol=check_real("tol", tol, low=0.0))


def _argmin_rows(X: torch.Tensor, means: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``argmin_k (‖μ_k‖² − 2 x_n·μ_k)`` for the rows of ``X``, a chunk of rows at a time.

    On CPU the compiled loop of :mod:`._fused` does it, with BLAS on one thread in each of the
    caller's threads (as in scikit-learn's k-means loop). Elsewhere (GPU) torch.
    """
    n_rows, n_clusters = X.shape[0], means.shape[0]
    if X.device.type != "cpu":
        labels = torch.empty(n_rows, dtype=torch.long, device=X.device) if out is None else out
        means_t = (-2.0 * means).T.contiguous()
        means_sq = (means * means).sum(-1)
        for rows in chunk_rows(n_rows, n_clusters, device=X.device):
            torch.argmin(torch.addmm(means_sq, X[rows], means_t), 1, out=labels[rows])
        return labels
    labels = _host_labels(n_rows) if out is None else out
    _fused.assign(_host(X), _host(means), labels.numpy(), cpu_threads())
    return labels


def _host(tensor: torch.Tensor) -> np.ndarray:
    """A C-contiguous NumPy view of a CPU tensor (a copy only if it is not contiguous)."""
    return np.ascontiguousarray(tensor.numpy())


def _same_labels(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two label tensors are equal; on CPU by NumPy, outside torch's thread pool.

    A torch operation on N labels starts torch's OpenMP threads, which then spin for a while and
    take the cores from the compiled step's threads that run next.
    """
    if a.device.type == "cpu":
        return bool(np.array_equal(a.numpy(), b.numpy()))
    return torch.equal(a, b)


def _host_labels(n_rows: int) -> torch.Tensor:
    """An uninitialised long tensor of shape (n_rows,) on CPU, allocated by NumPy (see ``centred_copy``)."""
    return torch.from_numpy(np.empty(n_rows, dtype=np.int64))


def assign_labels(X: torch.Tensor, means: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Nearest-centroid labels (first index on ties), from ``‖μ_k‖² − 2 x·μ_k``.

    ``‖x‖²`` does not change the argmin, so it is never computed. ``out``: a contiguous long
    tensor of shape (n_samples,) on ``X``'s device to write them into (else a new one).

    Returns
    -------
    long tensor of shape (n_samples,)
    """
    return _argmin_rows(X, means, out)


def labelled_sq_distances(
    X: torch.Tensor, means: torch.Tensor, labels: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """``‖x_n − μ_{z_n}‖²`` computed from the differences, of shape (n_samples,).

    One compiled pass on CPU (:mod:`._fused`); a chunk of rows at a time elsewhere. ``out``: a
    contiguous tensor of shape (n_samples,) and ``X``'s dtype and device to write them into.
    """
    if X.device.type == "cpu":
        host_out = None if out is None else out.numpy()
        distances = _fused.labelled_sq_distances(_host(X), _host(means), _host(labels), host_out)
        return torch.from_numpy(distances) if out is None else out
    out = X.new_empty(X.shape[0]) if out is None else out
    ones = X.new_ones(X.shape[1])
    for rows in chunk_rows(X.shape[0], X.shape[1], device=X.device):
        torch.mv((X[rows] - means[labels[rows]]).square_(), ones, out=out[rows])
    return out


def _relocate_empty(X, weight, old_means, labels, sums, counts, comm: Comm = LOCAL) -> None:
    """Move empty centroids onto the rows farthest from their centroids (in place on sums, counts).

    ``sums`` and ``counts`` are over all of ``comm``'s rows; the farthest rows are too. Rows of
    weight 0 are never taken: a centroid moved onto one would still hold no weight.
    """
    empty = torch.nonzero(counts == 0).flatten()
    if empty.numel() == 0:
        return
    distances = labelled_sq_distances(X, old_means, labels)
    distances = torch.where(weight > 0, distances, -1.0)  # below every row of positive weight
    if comm.maximum(distances.max().item()) <= 0:  # more centroids than distinct rows: nothing to move
        return
    # The same farthest rows, in the same order, as scikit-learn picks them.
    rows, row_weights, row_labels = comm.farthest(distances, empty.numel(), X, weight, labels)
    for new, x, w, old in zip(empty.tolist(), rows, row_weights, row_labels.tolist(), strict=True):
        if w <= 0:  # fewer rows of positive weight than empty centroids
            break
        sums[old] -= x * w
        sums[new] = x * w
        counts[new] = w
        counts[old] -= w


def _assign_sums(X, weight, means, unweighted):
    """The E step and the M-step sums in one sweep: ``(labels, sums, counts)``.

    The rows are weighted as they are added (no weighted copy of ``X``); not at all when ``unweighted``.
    """
    n_clusters, n_features = means.shape
    if X.device.type == "cpu":
        labels = _host_labels(X.shape[0])
        w = None if unweighted else _host(weight)
        sums, counts = _fused.assign_and_sum(_host(X), _host(means), w, labels.numpy(), cpu_threads())
        return labels, torch.from_numpy(sums), torch.from_numpy(counts)
    labels = _argmin_rows(X, means)
    index = labels[:, None].expand(-1, n_features)
    sums = X.new_zeros(n_clusters, n_features)
    for rows in chunk_rows(X.shape[0], n_features, device=X.device):
        sums.scatter_add_(0, index[rows], X[rows] if unweighted else X[rows] * weight[rows, None])
    return labels, sums, torch.bincount(labels, weights=weight, minlength=n_clusters)


def _update(X, weight, labels, old_means, sums, counts, comm: Comm = LOCAL) -> torch.Tensor:
    """The M step at σ = 0: weighted means of the rows of each label; empty clusters relocated."""
    _relocate_empty(X, weight, old_means, labels, sums, counts, comm)
    filled = counts > 0
    means = sums / torch.where(filled, counts, 1.0)[:, None]
    if not filled.all():  # relocation impossible: park the centroid on the heaviest cluster
        means[~filled] = means[counts.argmax()].clone()  # a copy: the row is read and written at once
    return means


def lloyd_core(
    data: Data, means: torch.Tensor, *, max_iter: int, tol: float, comm: Comm = LOCAL
) -> LloydResult:
    """Lloyd's algorithm on validated inputs; see :func:`lloyd`.

    Parameters
    ----------
    data : Data
        The rows (prepared over every process of ``comm``).
    means : tensor of shape (n_clusters, n_features)
        Initial centroids, in the data's units (moved to the rows' frame here).
    max_iter : int
    tol : float
        Relative tolerance (scaled here by ``data.variance``, the unweighted mean feature variance).
    comm : Comm, default LOCAL
        Where the other rows are (every sum over rows goes through it).

    Returns
    -------
    LloydResult
        Centroids in the data's units.
    """
    result = lloyd_rows(
        data.rows, data.to_rows(means), data.weight, max_iter=max_iter, tol=tol * data.variance, comm=comm
    )
    return result._replace(means=data.to_data(result.means))


def lloyd_rows(
    X: torch.Tensor,
    means: torch.Tensor,
    weight: torch.Tensor | None,
    *,
    max_iter: int,
    tol: float,
    comm: Comm = LOCAL,
) -> LloydResult:
    """Lloyd's algorithm in the rows' own frame (``Data.rows``; centroids and results in that frame).

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features)
        ``Data.rows``.
    means : tensor of shape (n_clusters, n_features)
    weight : tensor of shape (n_samples,) or None
    max_iter : int
    tol : float
        Absolute: stop when ``Σ_k ‖μ_k^new − μ_k^old‖² <= tol``.
    comm : Comm, default LOCAL

    Returns
    -------
    LloydResult
    """
    unweighted = weight is None
    if unweighted:
        weight = torch.ones(X.shape[0], dtype=X.dtype, device=X.device)
    if X.device.type == "cpu" and type(comm) is Comm and means.dtype == weight.dtype == X.dtype:
        from ._lloyd_host import host_lloyd  # the same loop on arrays, between the compiled steps

        options = dict(unweighted=unweighted, max_iter=max_iter, tol=tol, n_threads=cpu_threads())
        host = host_lloyd(_host(X), _host(means).copy(), _host(weight), **options)
        means, labels = torch.from_numpy(host.means), torch.from_numpy(host.labels)
        if not host.strict:  # the final centroids' labels, over the last assignment's (no new array)
            _fused.assign(_host(X), host.means, host.labels, cpu_threads())
        inertia = (labelled_sq_distances(X, means, labels) @ weight).item()
        return LloydResult(means, labels, inertia, host.n_iter, host.converged)
    labels_old, strict, converged, n_iter = None, False, False, 0
    while n_iter < max_iter:
        n_iter += 1
        labels, sums, counts = _assign_sums(X, weight, means, unweighted)
        comm.sum_(sums, counts)
        means, old = _update(X, weight, labels, means, sums, counts, comm), means
        if labels_old is not None and not comm.any(not _same_labels(labels, labels_old)):
            strict = converged = True
            break
        if (means - old).square_().sum().item() <= tol:
            converged = True
            break
        labels_old = labels
    if not strict:  # the labels of the final centroids, as scikit-learn's last E step
        labels = _argmin_rows(X, means)
    inertia = comm.total((labelled_sq_distances(X, means, labels) @ weight).item())
    return LloydResult(means, labels, inertia, n_iter, converged)
