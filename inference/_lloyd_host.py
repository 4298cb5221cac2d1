"""Lloyd's iterations on the CPU of one process, held in NumPy arrays between the compiled steps.

Private to :mod:`kmeans_limit.inference.lloyd` (:func:`~.lloyd.lloyd_rows` takes it for CPU
tensors and the single-process ``Comm``). Each iteration is the compiled step of :mod:`._fused`
(labels, sums and counts in one pass), then the M step: the same arithmetic as the tensor loop
(empty centroids moved onto the farthest rows in scikit-learn's order, ``μ_k = S_k / N_k`` in the
data's dtype), on arrays. On the small problems annealing's split-merge moves run (digits: 132
iterations of 1797 × 10 × 64 a run) the tensor loop's two dozen operations an iteration cost as
much as the step itself.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _fused

__all__ = ["HostLloyd", "host_lloyd"]


class HostLloyd(NamedTuple):
    """Where the iterations stopped: the centroids after the last M step, the labels of the last
    assignment, and whether they repeated the ones before (then they are the final centroids' own)."""

    means: np.ndarray
    labels: np.ndarray
    n_iter: int
    converged: bool
    strict: bool


def _relocate_empty(x, weight, old_means, labels, sums, counts) -> None:
    """:func:`~.lloyd._relocate_empty` on arrays (in place on ``sums`` and ``counts``)."""
    empty = np.flatnonzero(counts == 0)
    if empty.size == 0:
        return
    distances = _fused.labelled_sq_distances(x, old_means, labels)
    distances = np.where(weight > 0, distances, -1.0).astype(distances.dtype)
    if distances.max() <= 0:  # more centroids than distinct rows: nothing to move
        return
    count = empty.size
    far = np.argpartition(distances, -count)[: -count - 1 : -1]  # scikit-learn's order
    for new, row in zip(empty.tolist(), far.tolist(), strict=True):
        w = weight[row]
        if w <= 0:  # fewer rows of positive weight than empty centroids
            break
        old = labels[row]
        sums[old] -= x[row] * w
        sums[new] = x[row] * w
        counts[new] = w
        counts[old] -= w


def _update(x, weight, labels, old_means, sums, counts) -> np.ndarray:
    """:func:`~.lloyd._update` on arrays: empty clusters relocated, then the weighted means."""
    _relocate_empty(x, weight, old_means, labels, sums, counts)
    filled = counts > 0
    means = sums / np.where(filled, counts, counts.dtype.type(1.0))[:, None]
    if not filled.all():  # relocation impossible: park the centroid on the heaviest cluster
        means[~filled] = means[counts.argmax()].copy()
    return means


def host_lloyd(
    x: np.ndarray,
    means: np.ndarray,
    weight: np.ndarray,
    *,
    unweighted: bool,
    max_iter: int,
    tol: float,
    n_threads: int,
) -> HostLloyd:
    """The loop of :func:`~.lloyd.lloyd_rows` on C-contiguous arrays of one dtype.

    Parameters
    ----------
    x : array of shape (n_samples, n_features)
    means : array of shape (n_clusters, n_features)
    weight : array of shape (n_samples,)
        Ones when ``unweighted`` (the step then adds the rows unweighted, as the tensor loop).
    max_iter : int
    tol : float
        Stop when ``Σ_k ‖μ_k^new − μ_k^old‖²`` (summed in float64) is at most ``tol``.
    n_threads : int
        The compiled step's threads.
    """
    step_weight = None if unweighted else weight
    labels_old, spare, n_iter = None, None, 0
    while n_iter < max_iter:
        n_iter += 1
        # Two label arrays for the whole loop: this assignment's and the one before (no new array
        # an iteration, which on large data glibc would keep cached after it is freed).
        labels = spare if spare is not None else np.empty(x.shape[0], dtype=np.int64)
        sums, counts = _fused.assign_and_sum(x, means, step_weight, labels, n_threads)
        means, old = _update(x, weight, labels, means, sums, counts), means
        if labels_old is not None and np.array_equal(labels, labels_old):
            return HostLloyd(means, labels, n_iter, True, True)
        shift = np.square(means - old, dtype=np.float64).sum()
        if shift <= tol:
            return HostLloyd(means, labels, n_iter, True, False)
        spare, labels_old = labels_old, labels
    return HostLloyd(means, labels_old, n_iter, False, False)
