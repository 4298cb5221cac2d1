"""The compiled steps of the bound-based Lloyd algorithms (Hamerly 2010, Elkan 2003), in numba.

Private to :mod:`kmeans_limit.inference.bounded`, which states the bounds and their rounding margins.
Each step is one pass over the rows, cut into the same contiguous blocks, one a thread, as
:mod:`._fused` cuts them, with each block's sums added in row order and the blocks' sums in block
order: with the same labels the sums are those of the plain step, bit for bit. A row whose bound
test fails by less than the margin is put aside; the rows put aside in a chunk get their scores
``‖μ_k‖² − 2 x·μ_k`` all at once, computed as the plain step computes them (the same loop for few
features, one BLAS product otherwise), and the first smallest is the label.

The kernels inline :func:`._fused._first_min`; numba's on-disk cache does not notice a change in
another file, so after editing :mod:`._fused` delete ``__pycache__/_bounded.*.nbi``/``.nbc``.
"""

from __future__ import annotations

import math

import numpy as np

from . import _fused
from ._fused import DIRECT_FEATURES, _blocks, _compiled, _first_min, _pool, add_rows, direct_scores
from .kernels import one_blas_thread

__all__ = ["elkan_step", "hamerly_step", "row_sq_norms"]

#: float32 rounds to nearest with relative error at most 2^-24: a float64 value times this factor
#: and then rounded to float32 is below the float64 value.
_DOWN32 = 1.0 - 2.0**-21


@_compiled(inline="always")
def _distance(x, i, means, k):  # pragma: no cover
    """``‖x_i − μ_k‖`` from the differences, summed in float64."""
    total = 0.0
    for t in range(x.shape[1]):
        difference = np.float64(x[i, t]) - np.float64(means[k, t])
        total += difference * difference
    return math.sqrt(total)


@_compiled()
def _row_sq_norms(x, out):  # pragma: no cover
    for i in range(x.shape[0]):
        total = 0.0
        for t in range(x.shape[1]):
            total += np.float64(x[i, t]) * np.float64(x[i, t])
        out[i] = total


def row_sq_norms(x: np.ndarray) -> np.ndarray:
    """``‖x_n‖²`` of each row, summed in float64 (no float64 copy of ``x``): shape (n_rows,)."""
    out = np.empty(x.shape[0], dtype=np.float64)
    _row_sq_norms(x, out)
    return out


@_compiled(inline="always")
def _min_but(scores, best):  # pragma: no cover
    """The smallest score but the one at ``best`` (+inf for one score), along four chains."""
    saved, scores[best] = scores[best], np.inf
    full = scores.shape[0] - scores.shape[0] % 4
    l0 = l1 = l2 = l3 = np.inf
    for k in range(0, full, 4):
        l0 = min(l0, scores[k])
        l1 = min(l1, scores[k + 1])
        l2 = min(l2, scores[k + 2])
        l3 = min(l3, scores[k + 3])
    low = min(min(l0, l1), min(l2, l3))
    for k in range(full, scores.shape[0]):
        low = min(low, scores[k])
    scores[best] = saved
    return low


@_compiled(inline="always")
def _separated(low, high, margin, up, down):  # pragma: no cover
    """Whether ``low² − high² > margin`` holds with the rounding of the squares on the safe side."""
    return low > 0.0 and low * low * down > high * high * up + margin


@_compiled(inline="always")
def _scores(x, i, means_t, bias, direct, scores, product, r):  # pragma: no cover
    """Row i's scores into ``scores``: the plain step's own loop (``direct``) or row r of ``product``."""
    n_clusters = means_t.shape[1]
    if direct:
        direct_scores(x, i, means_t, bias, scores)
    else:
        for k in range(n_clusters):
            scores[k] = product[r, k] + bias[k]


@_compiled(inline="always")
def _resolve(x, start, stop, pending, m, means_t, bias, direct, buffer):  # pragma: no cover
    """The products ``x·(−2μ)`` of the m rows listed in ``pending`` (one BLAS call unless ``direct``);
    when they are the whole chunk, of the chunk itself (no copy), as the plain step computes them."""
    if direct or m == 0:
        return buffer[:0]
    if m == stop - start:
        return np.dot(x[start:stop], means_t)
    for r in range(m):
        for t in range(x.shape[1]):
            buffer[r, t] = x[pending[r], t]
    return np.dot(buffer[:m], means_t)


@_compiled()
def _hamerly(
    x, xsq, means, means_t, bias, sep, delta, far, far_second, far_index, coef, radius, up, down,
    fresh, weight, labels, upper, lower, sums, counts, chunk, direct,
):  # pragma: no cover  # fmt: skip
    """One Hamerly step on a block of rows; returns how many labels changed."""
    n_rows, n_clusters = x.shape[0], means.shape[0]
    pending = np.empty(chunk, dtype=np.int64)
    buffer = np.empty((chunk, x.shape[1]), dtype=x.dtype)
    scores = np.empty(n_clusters, dtype=x.dtype)
    changes = 0
    for start in range(0, n_rows, chunk):
        stop = min(start + chunk, n_rows)
        m = 0
        for i in range(start, stop):
            if fresh:
                pending[m] = i
                m += 1
                continue
            a = labels[i]
            u = (upper[i] + delta[a]) * up
            moved = far_second if a == far_index else far
            low = lower[i] - moved
            low = low * down if low > 0.0 else 0.0
            lower[i] = low
            margin = 2.0 * coef * (math.sqrt(xsq[i]) + radius) ** 2
            if not _separated(max(low, (sep[a] - u) * down), u, margin, up, down):
                u = _distance(x, i, means, a) * up  # tightened
                if not _separated(max(low, (sep[a] - u) * down), u, margin, up, down):
                    pending[m] = i
                    m += 1
            upper[i] = u
        product = _resolve(x, start, stop, pending, m, means_t, bias, direct, buffer)
        for r in range(m):
            i = pending[r]
            _scores(x, i, means_t, bias, direct, scores, product, r)
            best = _first_min(scores)
            second = _min_but(scores, best)
            if fresh or labels[i] != best:
                changes += 1
            labels[i] = best
            upper[i] = _distance(x, i, means, best) * up
            e = coef * (math.sqrt(xsq[i]) + radius) ** 2
            value = np.float64(second) + xsq[i] - e
            lower[i] = math.sqrt(value) * down if value > 0.0 else 0.0
        add_rows(x, start, stop, weight, labels, sums, counts)
    return changes


@_compiled()
def _elkan(
    x, xsq, means, means_t, bias, centre_dist, sep, delta, coef, radius, up, down,
    fresh, weight, labels, upper, lower, sums, counts, chunk, direct,
):  # pragma: no cover  # fmt: skip
    """One Elkan step on a block of rows (``lower`` of shape (rows, K), float32); returns the changes."""
    n_rows, n_clusters = x.shape[0], means.shape[0]
    pending = np.empty(chunk, dtype=np.int64)
    buffer = np.empty((chunk, x.shape[1]), dtype=x.dtype)
    scores = np.empty(n_clusters, dtype=x.dtype)
    changes = 0
    for start in range(0, n_rows, chunk):
        stop = min(start + chunk, n_rows)
        m = 0
        for i in range(start, stop):
            if fresh:
                pending[m] = i
                m += 1
                continue
            a = first = labels[i]
            for k in range(n_clusters):
                low = np.float64(lower[i, k]) - delta[k]
                lower[i, k] = low * down * _DOWN32 if low > 0.0 else 0.0
            u = (upper[i] + delta[a]) * up
            margin = 2.0 * coef * (math.sqrt(xsq[i]) + radius) ** 2
            if _separated((sep[a] - u) * down, u, margin, up, down):
                upper[i] = u
                continue
            tight, ambiguous, u_low = False, False, 0.0
            for k in range(n_clusters):
                if k == a:
                    continue
                if _separated(
                    max(np.float64(lower[i, k]), (centre_dist[a, k] - u) * down), u, margin, up, down
                ):
                    continue
                if not tight:
                    d = _distance(x, i, means, a)
                    u, u_low, tight = d * up, d * down, True
                    if _separated(
                        max(np.float64(lower[i, k]), (centre_dist[a, k] - u) * down), u, margin, up, down
                    ):
                        continue
                d = _distance(x, i, means, k)
                lower[i, k] = d * down * _DOWN32
                if _separated(d * down, u, margin, up, down):  # k is farther: a keeps the row
                    continue
                if _separated(u_low, d * up, margin, up, down):  # k is nearer
                    a, u, u_low = k, d * up, d * down
                    continue
                ambiguous = True  # too close to call from the distances: the scores decide
                break
            upper[i] = u
            if ambiguous:
                pending[m] = i
                m += 1
            else:
                if a != first:
                    changes += 1
                labels[i] = a
        product = _resolve(x, start, stop, pending, m, means_t, bias, direct, buffer)
        for r in range(m):
            i = pending[r]
            _scores(x, i, means_t, bias, direct, scores, product, r)
            best = _first_min(scores)
            if fresh or labels[i] != best:
                changes += 1
            labels[i] = best
            upper[i] = _distance(x, i, means, best) * up
            e = coef * (math.sqrt(xsq[i]) + radius) ** 2
            for k in range(n_clusters):
                value = np.float64(scores[k]) + xsq[i] - e
                lower[i, k] = math.sqrt(value) * down * _DOWN32 if value > 0.0 else 0.0
        add_rows(x, start, stop, weight, labels, sums, counts)
    return changes


def _run(kernel, x, means, weight, labels, bounds, geometry, with_sums, fresh, n_threads):
    """``kernel`` on the blocks of :mod:`._fused` (one a thread): ``(changes, sums, counts)``.

    ``bounds`` are per-row arrays (sliced by block); ``geometry`` the per-step constants that
    precede ``fresh`` in the kernel's arguments.
    """
    n_clusters, n_features = means.shape
    means_t = np.ascontiguousarray(-2.0 * means.T)
    bias = np.einsum("kd,kd->k", means, means)
    chunk = _fused.chunk_rows(n_features, n_clusters, x.itemsize)
    blocks = _blocks(x.shape[0], n_threads, n_clusters * n_features)
    sums = np.zeros((len(blocks), n_clusters, n_features), dtype=x.dtype)
    counts = np.zeros((len(blocks), n_clusters), dtype=x.dtype)
    xsq, *per_row = bounds
    direct = n_features <= DIRECT_FEATURES

    def block(b: int) -> int:
        rows = blocks[b]
        return kernel(
            x[rows], xsq[rows], means, means_t, bias, *geometry, fresh,
            None if weight is None else weight[rows], labels[rows], *(a[rows] for a in per_row),
            sums[b] if with_sums else None, counts[b], chunk, direct,
        )  # fmt: skip

    with one_blas_thread():
        if len(blocks) == 1:
            changes = [block(0)]
        else:
            changes = list(_pool(len(blocks)).map(block, range(len(blocks))))
    return int(sum(changes)), sums.sum(0), counts.sum(0)


def hamerly_step(x, means, weight, labels, xsq, upper, lower, geometry, *, with_sums, fresh, n_threads):
    """One Hamerly step in place on ``labels``, ``upper``, ``lower``; ``(changes, sums, counts)``.

    ``geometry`` is ``(sep, delta, far, far_second, far_index, coef, radius, up, down)`` (see
    :mod:`..bounded`).
    """
    return _run(
        _hamerly, x, means, weight, labels, (xsq, upper, lower), geometry, with_sums, fresh, n_threads
    )


def elkan_step(x, means, weight, labels, xsq, upper, lower, geometry, *, with_sums, fresh, n_threads):
    """One Elkan step in place; ``lower`` of shape (n_rows, K), float32; ``geometry`` is
    ``(centre_dist, sep, delta, coef, radius, up, down)``."""
    return _run(_elkan, x, means, weight, labels, (xsq, upper, lower), geometry, with_sums, fresh, n_threads)
