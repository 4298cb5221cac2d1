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
from numba.extending import intrinsic

from .kernels import one_blas_thread

__all__ = [
    "add_rows",
    "assign",
    "assign_and_sum",
    "direct_scores",
    "labelled_sq_distances",
    "lane_width",
    "lanes_kernel",
]

#: Up to this many features the distances are computed in the loop itself (:func:`lanes_kernel`):
#: at so few columns a BLAS product of a (rows × D) chunk runs far below its peak (measured 11-23
#: GFLOP/s at D = 16) and writes a (rows × K) block that the loop must read again.
DIRECT_FEATURES = 16
#: A block of rows holds at least this many row × cluster × feature products, so that a thread is
#: only started for work that outweighs handing it over (about a millisecond of it).
MIN_BLOCK_WORK = 1 << 21
#: A chunk's rows and their products with the centroids, (rows × (D + K)) numbers, take about this
#: many bytes: they stay in the L2 cache between the BLAS call and the loop that reads them again
#: (at least 256 rows: BLAS is slower on fewer, as scikit-learn's chunks of 256 rows).
CHUNK_BYTES = 1 << 19
#: From this many clusters the nearest centroid is found in two vectorised passes (see
#: ``_first_min``); below, one chain of comparisons was as fast.
SCAN_CLUSTERS = 16
#: Rows in a block of :func:`lanes_kernel`: their best scores and labels stay in L1 while the block
#: meets the centroids, the rows in SIMD lanes.
LANE_ROWS = 256
#: Centroids met together by a block of rows in :func:`lanes_kernel`: four independent chains of
#: multiply-adds per lane hide the latency of each (one chain measured 1.2-1.5x slower at D = 8-16).
LANE_CLUSTERS = 4


def _compiled(**options):
    """``numba.njit(nogil=True, cache=True, **options)``, without the on-disk cache where numba finds
    nowhere to write it (a read-only install and home): then each process compiles anew, in ~1 s."""

    def decorate(function):
        try:
            return numba.njit(nogil=True, cache=True, **options)(function)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return numba.njit(nogil=True, **options)(function)

    return decorate


@intrinsic
def fused_multiply_add(typingctx, a, b, c):  # pragma: no cover
    """``a · b + c`` rounded once (LLVM's ``fma``), in the type of ``c``; a compiled-code intrinsic.

    Written out, ``a * b + c`` may or may not be fused by the compiler's back end, depending on
    the code around it (it fuses a product into a following addition in the same basic block, and
    vectorised and scalar copies of one loop differ in that): two kernels meant to give the same
    score could then differ in the last bit. An explicit fused multiply-add is the same number in
    every kernel, scalar or SIMD.
    """
    if not all(isinstance(t, numba.types.Float) for t in (a, b, c)):
        return None

    def codegen(context, builder, signature, args):
        a_value, b_value, c_value = (
            context.cast(builder, value, type_, c) for value, type_ in zip(args, signature.args, strict=True)
        )
        return builder.fma(a_value, b_value, c_value)

    return c(a, b, c), codegen


#: The function attribute that lets LLVM vectorise a kernel with the widest registers the CPU has.
#: LLVM's tuning for recent x86 server CPUs (Skylake-SP to Sapphire Rapids) prefers 256-bit vectors
#: even where AVX-512 is there; with 512-bit ones :func:`lanes_kernel` measured 1.2-1.45x faster
#: here (N = 1e5, D = 8-16, K = 256-1024, float32). Where the CPU has no 512-bit registers the
#: preference is capped at those it has; the numbers computed are the same either way (each lane
#: runs the same chain of fused multiply-adds).
WIDE_VECTORS = '"prefer-vector-width"="512"'


@intrinsic
def prefer_wide_vectors(typingctx):  # pragma: no cover
    """Mark the compiled function that calls this with ``WIDE_VECTORS`` (a compile-time no-op call).

    llvmlite's ``FunctionAttributes`` (a set of the attributes it prints) accepts only LLVM's
    keyword attributes by name, so the string attribute is added to the set directly; where a
    later llvmlite's attributes are no set, nothing is added and LLVM's default width is used
    (slower, not different).
    """

    def codegen(context, builder, signature, args):
        attributes = builder.function.attributes
        if isinstance(attributes, set):  # llvmlite's AttributeSet: printed item by item
            set.add(attributes, WIDE_VECTORS)
        return context.get_dummy_value()

    return numba.types.none(), codegen


@intrinsic
def smaller(typingctx, a, b):  # pragma: no cover
    """``a if a < b else b``, the comparison and the choice marked as free of NaNs and of signed
    zeros: then LLVM vectorises a loop that takes the smallest of an array (it does not without the
    marks, which numba puts on arithmetic but not on a choice). The value is one of the two,
    unrounded; only which of ``-0.0`` and ``0.0`` comes out, and anything about NaNs, is left to the
    compiler. Compiled code only.
    """
    if not (isinstance(a, numba.types.Float) and a == b):
        return None

    def codegen(context, builder, signature, args):
        flags = ("nnan", "nsz")
        less = builder.fcmp_ordered("<", args[0], args[1], flags=flags)
        return builder.select(less, args[0], args[1], flags=flags)

    return a(a, b), codegen


@_compiled(inline="always")
def _first_min(scores):  # pragma: no cover
    """The first index of the smallest score.

    From ``SCAN_CLUSTERS`` scores on in two passes that LLVM vectorises: the smallest value
    (:func:`smaller`, taken in any order: a minimum does not round), then the smallest index holding
    it (an integer minimum). Below, one chain of comparisons, each waiting on the one before. On rows
    of random scores (one thread) the chains (one, or four from 128 scores on, as before) took
    1.7-4.2x as long in float32 and 1.2-2.8x in float64 at K = 16-1024 (K = 64, float32: 1.15 ns a
    score against 0.27; at D = 64 half as long as the step's BLAS product). The scores are
    finite (:mod:`.data` refuses rows whose squares would overflow); should the passes find no index
    (a NaN), the chain answers.
    """
    n_scores = scores.shape[0]
    if n_scores >= SCAN_CLUSTERS:
        low = scores[0]
        for k in range(n_scores):  # from 0, not 1: a whole number of vectors at K = 64
            low = smaller(scores[k], low)
        past = np.int32(n_scores)  # 32-bit indices: twice the lanes of 64-bit ones
        best = past
        for k in range(past):
            best = min(best, np.int32(k) if scores[k] == low else past)
        if best < past:
            return best
    best, low = 0, scores[0]
    for k in range(1, n_scores):
        if scores[k] < low:
            best, low = k, scores[k]
    return best


@_compiled()
def add_rows(x, start, stop, weight, labels, sums, counts):  # pragma: no cover
    """Rows start..stop join their labels' sums in row order, each weighted term one fused
    multiply-add: the same numbers whichever step (plain or bounded) labelled the rows.

    ``sums`` None: nothing to add. ``weight`` None: weight 1. numba compiles each case apart (a
    branch on ``is None`` of an argument is pruned), so neither costs a test per row.
    """
    if sums is None:
        return
    for i in range(start, stop):
        best = labels[i]
        if weight is None:
            counts[best] += 1.0
            for t in range(x.shape[1]):
                sums[best, t] += x[i, t]
        else:
            counts[best] += weight[i]
            for t in range(x.shape[1]):
                sums[best, t] = fused_multiply_add(weight[i], x[i, t], sums[best, t])


#: The feature counts :func:`lanes_kernel` is compiled for: D features take the first width at
#: least D, the others being zeros (adding ``0 · 0`` leaves a score as it is). Four variants, not
#: one per D: each takes numba 1-2 s to compile, for every dtype and with or without weights and sums.
LANE_WIDTHS = (2, 4, 8, 16)


def lane_width(n_features: int) -> int:
    """The width of :func:`lanes_kernel` that holds ``n_features`` (at most ``DIRECT_FEATURES``)."""
    return next(width for width in LANE_WIDTHS if width >= n_features)


@functools.cache
def lanes_kernel(width: int):
    """The Lloyd step up to ``DIRECT_FEATURES`` features, compiled for ``width`` of them.

    The kernel ``(x, means_t, bias, weight, labels, sums, counts)`` takes a block of
    ``LANE_ROWS`` rows at a time against ``LANE_CLUSTERS`` centroids at a time, the rows in SIMD
    lanes. ``means_t`` has ``width`` rows, those past ``x``'s features zero. Each score
    ``‖μ_k‖² − 2 x·μ_k`` is ``bias[k]`` plus the products with ``means_t[:, k]`` added feature by
    feature, each a fused multiply-add (:func:`fused_multiply_add`), as :func:`direct_scores` adds
    them (the zero features add exact zeros); a row's label moves only on a strictly smaller
    score, centroids in increasing order: the first index on ties. Rows join their centroids' sums
    in row order. ``width`` is a constant of the compiled loop, which unrolls it (a loop over a
    number only known at run time is not vectorised over rows).
    """
    n_lanes, group, n_features = LANE_ROWS, LANE_CLUSTERS, width

    @_compiled()
    def kernel(x, means_t, bias, weight, labels, sums, counts):  # pragma: no cover
        prefer_wide_vectors()
        n_rows, n_clusters = x.shape[0], means_t.shape[1]
        block = np.empty((n_features, n_lanes), dtype=x.dtype)
        low = np.empty(n_lanes, dtype=x.dtype)
        best = np.empty(n_lanes, dtype=np.int32)
        grouped = n_clusters - n_clusters % group
        block[x.shape[1] :] = 0.0
        for start in range(0, n_rows, n_lanes):
            stop = min(start + n_lanes, n_rows)
            for j in range(n_lanes):
                row = start + j if start + j < stop else start  # a short last block repeats a row
                for t in range(x.shape[1]):
                    block[t, j] = x[row, t]
                low[j] = np.inf
                best[j] = 0
            for k in range(0, grouped, group):
                for j in range(n_lanes):
                    s0, s1, s2, s3 = bias[k], bias[k + 1], bias[k + 2], bias[k + 3]
                    for t in range(n_features):
                        value = block[t, j]
                        s0 = fused_multiply_add(value, means_t[t, k], s0)
                        s1 = fused_multiply_add(value, means_t[t, k + 1], s1)
                        s2 = fused_multiply_add(value, means_t[t, k + 2], s2)
                        s3 = fused_multiply_add(value, means_t[t, k + 3], s3)
                    lowest, label = low[j], best[j]
                    if s0 < lowest:
                        lowest, label = s0, k
                    if s1 < lowest:
                        lowest, label = s1, k + 1
                    if s2 < lowest:
                        lowest, label = s2, k + 2
                    if s3 < lowest:
                        lowest, label = s3, k + 3
                    low[j], best[j] = lowest, label
            for k in range(grouped, n_clusters):
                for j in range(n_lanes):
                    score = bias[k]
                    for t in range(n_features):
                        score = fused_multiply_add(block[t, j], means_t[t, k], score)
                    if score < low[j]:
                        low[j], best[j] = score, k
            for j in range(stop - start):
                labels[start + j] = best[j]
            add_rows(x, start, stop, weight, labels, sums, counts)

    return kernel


@_compiled()
def direct_scores(x, i, means_t, bias, scores):  # pragma: no cover
    """Row i's scores into ``scores``, summed as :func:`lanes_kernel` sums them (one row at a time)."""
    for k in range(means_t.shape[1]):
        scores[k] = bias[k]
    for t in range(x.shape[1]):
        value = x[i, t]
        for k in range(means_t.shape[1]):
            scores[k] = fused_multiply_add(value, means_t[t, k], scores[k])


@_compiled()
def _nearest_blas(x, means_t, bias, weight, labels, sums, counts, chunk):  # pragma: no cover
    """Rows against every centroid, the products ``x·μ_k`` of a chunk of rows from one BLAS call."""
    prefer_wide_vectors()  # the scan of each row's scores (``_first_min``) in 512-bit vectors
    n_rows, n_clusters = x.shape[0], means_t.shape[1]
    for start in range(0, n_rows, chunk):
        stop = min(start + chunk, n_rows)
        scores = np.dot(x[start:stop], means_t)
        for r in range(stop - start):
            for k in range(n_clusters):
                scores[r, k] += bias[k]
            labels[start + r] = _first_min(scores[r])
        add_rows(x, start, stop, weight, labels, sums, counts)


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
    lanes = n_features <= DIRECT_FEATURES
    means_t = np.zeros((lane_width(n_features) if lanes else n_features, n_clusters), dtype=means.dtype)
    means_t[:n_features] = -2.0 * means.T
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
        if lanes:
            lanes_kernel(means_t.shape[0])(*part)
        else:
            _nearest_blas(*part, chunk)

    with one_blas_thread():  # BLAS on one thread inside each block
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


def labelled_sq_distances(
    x: np.ndarray, means: np.ndarray, labels: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """``‖x_n − μ_{z_n}‖²`` from the differences, in one pass (summed in float64).

    Parameters
    ----------
    x : C-contiguous ndarray of shape (n_rows, n_features)
    means : ndarray of shape (n_clusters, n_features), of ``x``'s dtype
    labels : int64 ndarray of shape (n_rows,)
    out : ndarray of shape (n_rows,), of ``x``'s dtype, optional
        Where to write them (else a new array).

    Returns
    -------
    ndarray of shape (n_rows,), of ``x``'s dtype
    """
    out = np.empty(x.shape[0], dtype=x.dtype) if out is None else out
    _labelled_sq_distances(x, means, labels, out)
    return out
