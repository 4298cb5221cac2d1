"""The CPU step of Lloyd's algorithm compiled with numba: nearest centroid and M-step sums in one pass.

Private to :mod:`kmeans_limit.inference.lloyd`. scikit-learn's Lloyd loop is compiled (Cython): for a
cache-sized chunk of rows it takes the products ``x·μ`` from BLAS, then one compiled loop finds each
row's nearest centroid and adds the row to that centroid's sum. Made of separate array operations
(a product, a row-wise ``argmin``, a scatter-add) the same step reads every (rows × K) block several
times and measured 1.2-1.8× slower. Here the same fused loop is compiled by numba, on every thread:
the rows are cut into one contiguous block per thread, each block accumulates its own sums (the GIL
is released), and the blocks' sums are added in block order, so a result does not depend on timing.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from .kernels import threadpools

__all__ = ["assign", "assign_and_sum", "labelled_sq_distances"]

#: Up to this many features the distances are computed in the loop itself (:func:`_nearest_lanes`):
#: a BLAS call on a (rows × D) chunk with so few columns costs more than it saves.
DIRECT_FEATURES = 4
#: A block of rows holds at least this many row × cluster × feature products, so that a thread is
#: only started for work that outweighs handing it over (about a millisecond of it).
MIN_BLOCK_WORK = 1 << 21
#: A chunk's rows and their products with the centroids, (rows × (D + K)) numbers, take about this
#: many bytes: they stay in the L2 cache between the BLAS call and the loop that reads them again
#: (at least 256 rows: BLAS is slower on fewer, as scikit-learn's chunks of 256 rows).
CHUNK_BYTES = 1 << 19
#: From this many clusters the nearest centroid is sought along four chains (see ``_first_min``);
#: below, one chain was as fast.
CHAIN_CLUSTERS = 128
#: Rows in a block of :func:`_nearest_lanes` (the step up to ``DIRECT_FEATURES`` features): their
#: scores, best scores and labels stay in L1 while the block meets each centroid in turn, the rows in
#: SIMD lanes. Measured here (N = 1e5, one thread, against the row-at-a-time loop it replaced):
#: D = 2, K = 1024 float32 24 ms against 74 ms, K = 64 1.8 ms against 7.9 ms; float64 58 ms against
#: 101 ms. (At D = 16 float32 it was still 10-15% faster than the BLAS path, but its sums are not the
#: BLAS products that the bounded steps of :mod:`._bounded` reproduce there.)
LANE_ROWS = 256


def _compiled(**options):
    """``numba.njit(nogil=True, cache=True, **options)``, without the on-disk cache where numba finds
    nowhere to write it (a read-only install and home): then each process compiles anew, in ~1 s."""

    def decorate(function):
        try:
            return numba.njit(nogil=True, cache=True, **options)(function)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return numba.njit(nogil=True, **options)(function)

    return decorate


@_compiled(inline="always")
def _first_min(scores):  # pragma: no cover
    """The first index of the smallest score.

    From ``CHAIN_CLUSTERS`` scores on, four chains each keep the first smallest of every fourth
    score and the chains' winners are compared (the smaller index on equal scores), then the
    scores past the last multiple of four: the same index as the one-chain loop, which waits on
    each comparison before the next and measured 25-30% of a step's time at K = 256-1024.
    """
    n_scores = scores.shape[0]
    if n_scores < CHAIN_CLUSTERS:
        best, low = 0, scores[0]
        for k in range(1, n_scores):
            if scores[k] < low:
                best, low = k, scores[k]
        return best
    full = n_scores - n_scores % 4
    l0, l1, l2, l3 = scores[0], scores[1], scores[2], scores[3]
    b0, b1, b2, b3 = 0, 1, 2, 3
    for k in range(4, full, 4):
        if scores[k] < l0:
            l0, b0 = scores[k], k
        if scores[k + 1] < l1:
            l1, b1 = scores[k + 1], k + 1
        if scores[k + 2] < l2:
            l2, b2 = scores[k + 2], k + 2
        if scores[k + 3] < l3:
            l3, b3 = scores[k + 3], k + 3
    best, low = b0, l0
    if l1 < low or (l1 == low and b1 < best):
        best, low = b1, l1
    if l2 < low or (l2 == low and b2 < best):
        best, low = b2, l2
    if l3 < low or (l3 == low and b3 < best):
        best, low = b3, l3
    for k in range(full, n_scores):
        if scores[k] < low:
            best, low = k, scores[k]
    return best


@_compiled(inline="always")
def _take(scores, i, x, weight, labels, sums, counts):  # pragma: no cover
    """Row i's label, the first index of the smallest score; then the row joins its centroid's sum.

    ``sums`` None: labels only. ``weight`` None: weight 1. numba compiles each case apart (a
    branch on ``is None`` of an argument is pruned), so neither costs a test per row.
    """
    best = _first_min(scores)
    labels[i] = best
    if sums is not None:
        if weight is None:
            counts[best] += 1.0
            for t in range(x.shape[1]):
                sums[best, t] += x[i, t]
        else:
            counts[best] += weight[i]
            for t in range(x.shape[1]):
                sums[best, t] += weight[i] * x[i, t]


@_compiled()
def _nearest_lanes(x, means_t, bias, weight, labels, sums, counts):  # pragma: no cover
    """A block of rows at a time against each centroid in turn: the rows are the SIMD lanes.

    The scores ``‖μ_k‖² − 2 x·μ_k`` are ``bias`` + ``x @ means_t`` summed feature by feature (as
    the bounded steps of :mod:`._bounded` sum them), and a row's label moves only on a strictly
    smaller score, centroids in increasing order: the first index on ties. Rows join their
    centroids' sums in row order.
    """
    n_rows, n_features = x.shape
    n_clusters = means_t.shape[1]
    block = np.empty((n_features, LANE_ROWS), dtype=x.dtype)
    scores = np.empty(LANE_ROWS, dtype=x.dtype)
    low = np.empty(LANE_ROWS, dtype=x.dtype)
    best = np.empty(LANE_ROWS, dtype=np.int32)
    for start in range(0, n_rows, LANE_ROWS):
        stop = min(start + LANE_ROWS, n_rows)
        for j in range(LANE_ROWS):
            row = start + j if start + j < stop else start  # a short last block repeats a row
            for t in range(n_features):
                block[t, j] = x[row, t]
            low[j] = np.inf
            best[j] = 0
        for k in range(n_clusters):
            b = bias[k]
            for j in range(LANE_ROWS):
                scores[j] = b
            for t in range(n_features):
                c = means_t[t, k]
                for j in range(LANE_ROWS):
                    scores[j] += block[t, j] * c
            for j in range(LANE_ROWS):
                better = scores[j] < low[j]
                low[j] = scores[j] if better else low[j]
                best[j] = k if better else best[j]
        for j in range(stop - start):
            i, label = start + j, best[j]
            labels[i] = label
            if sums is not None:
                if weight is None:
                    counts[label] += 1.0
                    for t in range(n_features):
                        sums[label, t] += x[i, t]
                else:
                    counts[label] += weight[i]
                    for t in range(n_features):
                        sums[label, t] += weight[i] * x[i, t]


@_compiled()
def _nearest_blas(x, means_t, bias, weight, labels, sums, counts, chunk):  # pragma: no cover
    """Rows against every centroid, the products ``x·μ_k`` of a chunk of rows from one BLAS call."""
    n_rows, n_clusters = x.shape[0], means_t.shape[1]
    for start in range(0, n_rows, chunk):
        stop = min(start + chunk, n_rows)
        scores = np.dot(x[start:stop], means_t)
        for r in range(stop - start):
            for k in range(n_clusters):
                scores[r, k] += bias[k]
            _take(scores[r], start + r, x, weight, labels, sums, counts)


@_compiled()
def _labelled_sq_distances(x, means, labels, out):  # pragma: no cover
    for i in range(x.shape[0]):
        k, total = labels[i], 0.0
        for t in range(x.shape[1]):
            difference = x[i, t] - means[k, t]
            total += difference * difference
        out[i] = total


def _pool(n_threads: int) -> ThreadPoolExecutor:
    """This process's pool of ``n_threads`` threads (a forked child makes its own: threads don't fork)."""
    return _pool_of_process(n_threads, os.getpid())


@functools.cache
def _pool_of_process(n_threads: int, pid: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="kmeans-limit-lloyd")


def _blocks(n_rows: int, n_threads: int, row_work: int) -> list[slice]:
    """Contiguous blocks of rows, one a thread, each with at least ``MIN_BLOCK_WORK`` products."""
    n_blocks = max(1, min(n_threads, n_rows * row_work // MIN_BLOCK_WORK))
    edges = [n_rows * b // n_blocks for b in range(n_blocks + 1)]
    return [slice(edges[b], edges[b + 1]) for b in range(n_blocks)]


def chunk_rows(n_features: int, n_clusters: int, itemsize: int) -> int:
    """Rows per BLAS call: ``CHUNK_BYTES`` of rows and products, and at least 256 rows."""
    return max(256, CHUNK_BYTES // ((n_features + n_clusters) * itemsize))


def _run(x, means, weight, labels, with_sums, n_threads):
    """Labels into ``labels``; the per-cluster ``(sums, counts)`` of the blocks added up (zeros
    without ``with_sums``)."""
    n_clusters, n_features = means.shape
    means_t = np.ascontiguousarray(-2.0 * means.T)
    bias = np.einsum("kd,kd->k", means, means)
    chunk = chunk_rows(n_features, n_clusters, x.itemsize)
    blocks = _blocks(x.shape[0], n_threads, n_clusters * n_features)
    sums = np.zeros((len(blocks), n_clusters, n_features), dtype=x.dtype)
    counts = np.zeros((len(blocks), n_clusters), dtype=x.dtype)

    def block(b: int) -> None:
        rows = blocks[b]
        part = (
            x[rows],
            means_t,
            bias,
            None if weight is None else weight[rows],
            labels[rows],
            sums[b] if with_sums else None,
            counts[b],
        )
        if n_features <= DIRECT_FEATURES:
            _nearest_lanes(*part)
        else:
            _nearest_blas(*part, chunk)

    with threadpools().limit(limits=1, user_api="blas"):  # BLAS on one thread inside each block
        if len(blocks) == 1:
            block(0)
        else:
            list(_pool(len(blocks)).map(block, range(len(blocks))))  # list(): re-raise a block's error
    return sums.sum(0), counts.sum(0)


def assign(x: np.ndarray, means: np.ndarray, labels: np.ndarray, n_threads: int = 1) -> None:
    """Nearest-centroid labels (first index on ties) of the rows of ``x``, written into ``labels``.

    Parameters
    ----------
    x : C-contiguous float32 or float64 ndarray of shape (n_rows, n_features)
    means : ndarray of shape (n_clusters, n_features), of ``x``'s dtype
    labels : int64 ndarray of shape (n_rows,)
    n_threads : int, default 1
        Threads, each on a contiguous block of rows.
    """
    _run(x, means, None, labels, False, n_threads)


def assign_and_sum(
    x: np.ndarray, means: np.ndarray, weight: np.ndarray | None, labels: np.ndarray, n_threads: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`assign`, and in the same pass the weighted sums and counts of the rows of each label.

    Parameters
    ----------
    weight : ndarray of shape (n_rows,), or None for weight 1 everywhere

    Returns
    -------
    sums : ndarray of shape (n_clusters, n_features)
        ``Σ_{n: z_n = k} w_n x_n``.
    counts : ndarray of shape (n_clusters,)
        ``Σ_{n: z_n = k} w_n``.
    """
    return _run(x, means, weight, labels, True, n_threads)


def labelled_sq_distances(x: np.ndarray, means: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``‖x_n − μ_{z_n}‖²`` from the differences, in one pass (summed in float64).

    Parameters
    ----------
    x : C-contiguous ndarray of shape (n_rows, n_features)
    means : ndarray of shape (n_clusters, n_features), of ``x``'s dtype
    labels : int64 ndarray of shape (n_rows,)

    Returns
    -------
    ndarray of shape (n_rows,), of ``x``'s dtype
    """
    out = np.empty(x.shape[0], dtype=x.dtype)
    _labelled_sq_distances(x, means, labels, out)
    return out
