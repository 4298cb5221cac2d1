"""The tempered E step on the CPU compiled with numba: responsibilities, entropy and density in one pass.

Private to :mod:`kmeans_limit.inference.kernels` (its :func:`~.kernels.sufficient_stats` and
annealing's critical σ, in ``_levels``, call it). Made of array operations, the E step of a chunk
of rows reads and writes the (rows × K) block about fifteen times (a product, a row maximum, a
subtraction, a scaling, a clamp, an exponential, a threshold, a row sum, a division, a logarithm,
the entropy's product and row sum, ...): at N = 1e5, K = 256 that was two thirds of an annealing
run (and ~35 array calls an E step on the small sets). Here, in one compiled call for all the
rows, a chunk's scores come from one BLAS call (a compiled loop up to four features:
:func:`chunk_scores`), laid out (K × rows) so that every reduction over the components is an
elementwise operation on a row of SIMD lanes, then one compiled loop turns them into
responsibilities, the rows' log-densities and entropies, and a second BLAS call gives the weighted
sums. The exponential is a polynomial that LLVM vectorises (:func:`exp_nonpositive`;
numba's ``math.exp`` is a scalar call), in the data's dtype: float32 runs twice the lanes.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np
import torch
from llvmlite import ir
from numba.extending import intrinsic, overload

from ._fused import _blocks, _compiled, _pool, fused_multiply_add, prefer_wide_vectors
from .kernels import cpu_threads, one_blas_thread

__all__ = ["TemperedStats", "exp_nonpositive", "tempered_block", "tempered_column", "tempered_stats"]

#: A chunk's (K × rows) scores and (rows × (D + 2)) weighted rows take about this many bytes: they
#: stay in the L2 cache between the BLAS calls and the loop.
CHUNK_BYTES = 1 << 19
#: ... and hold at least this many rows (a SIMD loop over fewer rows is mostly its ends).
MIN_CHUNK_ROWS = 64
#: Up to this many features a chunk's scores come from a compiled loop, not BLAS (:func:`chunk_scores`).
DIRECT_FEATURES = 4

LOG2_E = 1.4426950408889634
#: ln 2 in two parts (Cody & Waite), the first with trailing zero bits: ``n · LN2_HIGH`` is exact.
LN2_HIGH = 6.93147180369123816490e-01
LN2_LOW = 1.90821492927058770002e-10
#: ``1.5 · 2⁵²``: ``x log₂e + SHIFT`` rounds ``x log₂e`` to the nearest integer ``n``, which then
#: sits in the low bits of the sum's significand (``2⁵¹ + n``), for ``|n| < 2⁵¹``.
SHIFT = 6755399441055744.0
#: 1/k! for k = 2 to 13: Taylor's polynomial of ``exp`` on ``|r| ≤ ln 2 / 2``, whose first term
#: left out, ``r¹⁴/14!``, is below 2e-19.
INVERSE_FACTORIALS = tuple(1.0 / math.factorial(k) for k in range(2, 14))
#: The same in float32: ``ln 2`` split after 9 bits, Taylor's polynomial to degree 7 (``r⁸/8!`` is
#: below 6e-9, a tenth of float32's half-ulp); ``1.5 · 2²³``.
LN2_HIGH_32 = np.float32(0.693359375)
LN2_LOW_32 = np.float32(-2.12194440e-4)
LOG2_E_32 = np.float32(LOG2_E)
SHIFT_32 = np.float32(12582912.0)
INVERSE_FACTORIALS_32 = tuple(np.float32(1.0 / math.factorial(k)) for k in range(2, 8))
ONE_32 = np.float32(1.0)


@intrinsic
def _power_of_two(typingctx, shifted):  # pragma: no cover
    """``2ⁿ`` from ``shifted = n + SHIFT`` (float64) or ``n + SHIFT_32`` (float32), for ``n`` in the
    dtype's normal exponents: the low bits of its significand, plus the exponent bias, shifted into
    the exponent field, all in SIMD-friendly integer operations (a float-to-integer conversion has
    no 256-bit form for float64 before AVX-512, and LLVM would then convert lane by lane)."""
    if shifted == numba.types.float64:
        width, bias, mantissa, llvm_type = 64, 1023, 52, ir.DoubleType()
    elif shifted == numba.types.float32:
        width, bias, mantissa, llvm_type = 32, 127, 23, ir.FloatType()
    else:
        return None

    def codegen(context, builder, signature, args):
        integer = ir.IntType(width)
        bits = builder.add(builder.bitcast(args[0], integer), ir.Constant(integer, bias))
        return builder.bitcast(builder.shl(bits, ir.Constant(integer, mantissa)), llvm_type)

    return shifted(shifted), codegen


def exp_nonpositive(x):  # pragma: no cover
    """``exp(x)`` for ``x ≤ 0`` down to the smallest normal result, within about one ulp of its dtype,
    in code that LLVM vectorises (compiled code only: numba's ``math.exp`` is a scalar call).

    ``x = n ln 2 + r`` with ``n`` the nearest integer to ``x / ln 2`` (rounded by adding ``SHIFT``)
    and ``|r| ≤ ln 2 / 2`` (the reduction in two fused multiply-adds, exact up to the last bit of
    ``r``); ``exp(r) = 1 + r (1 + r q(r))`` with Taylor's ``q`` (degree 11 for float64, 5 for
    float32) by Estrin's scheme, in powers ``r², r⁴, r⁸`` (a chain of 4 multiply-adds, not Horner's
    12, which bound the loop by their latency); ``2ⁿ`` built from its bits
    (:func:`_power_of_two`). float64: ``x`` in ``[-708, 0]``; float32: ``[-87, 0]``. Outside the
    range the result is wrong (callers clamp first).
    """
    raise NotImplementedError("exp_nonpositive is compiled-code only")


@overload(exp_nonpositive, inline="always")
def _exp_nonpositive(x):  # pragma: no cover
    fma = fused_multiply_add
    if x == numba.types.float64:
        c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13 = INVERSE_FACTORIALS

        def exp64(x):
            shifted = fma(x, LOG2_E, SHIFT)
            n = shifted - SHIFT
            r = fma(-n, LN2_HIGH, x)
            r = fma(-n, LN2_LOW, r)
            r2 = r * r
            r4 = r2 * r2
            low = fma(fma(c5, r, c4), r2, fma(c3, r, c2))
            middle = fma(fma(c9, r, c8), r2, fma(c7, r, c6))
            high = fma(fma(c13, r, c12), r2, fma(c11, r, c10))
            q = fma(high, r4 * r4, fma(middle, r4, low))
            return fma(fma(q, r, 1.0), r, 1.0) * _power_of_two(shifted)

        return exp64
    if x == numba.types.float32:
        c2, c3, c4, c5, c6, c7 = INVERSE_FACTORIALS_32

        def exp32(x):
            shifted = fma(x, LOG2_E_32, SHIFT_32)
            n = shifted - SHIFT_32
            r = fma(-n, LN2_HIGH_32, x)
            r = fma(-n, LN2_LOW_32, r)
            r2 = r * r
            q = fma(fma(c7, r, c6), r2 * r2, fma(fma(c5, r, c4), r2, fma(c3, r, c2)))
            return fma(fma(q, r, ONE_32), r, ONE_32) * _power_of_two(shifted)

        return exp32
    return None


@_compiled()
def tempered_block(scores, two_beta, floor_logit, floor_value, top, lse, entropy):  # pragma: no cover
    """Turn one chunk's scores into responsibilities, in place, with each row's max, lse and entropy.

    Parameters
    ----------
    scores : array of shape (n_clusters, n_rows)
        ``t_kn = x_n·μ_k − ‖μ_k‖²/2 + σ² log π_k`` in; ``γ_kn`` out (0 where below the floor).
    two_beta : float of the scores' dtype
        ``1/σ²``.
    floor_logit, floor_value : floats of the scores' dtype
        :func:`~.kernels.negligible_logit` of the data's dtype.
    top, lse, entropy : arrays of shape (n_rows,), of the scores' dtype
        Out: ``max_k t_kn``, ``log Σ_k exp(logit_kn)`` (≥ 0) and ``−Σ_k γ_kn log γ_kn``.

    Notes
    -----
    ``logit_kn = 2β (t_kn − max_j t_jn)``, clamped at ``floor_logit`` before ``exp`` and the result
    set to 0 at or below ``floor_value``; the entropy is ``lse_n − Σ_k γ_kn logit_kn``, which a
    component of logit ``-inf`` (weight 0) leaves out (its γ is 0 and its clamped logit finite).
    Everything is computed in the scores' dtype (float32 runs twice the SIMD lanes of float64).
    """
    prefer_wide_vectors()
    n_clusters, n_rows = scores.shape
    zero = floor_value - floor_value
    total = np.zeros(n_rows, dtype=scores.dtype)
    dot = np.zeros(n_rows, dtype=scores.dtype)
    for j in range(n_rows):
        top[j] = scores[0, j]
    for k in range(1, n_clusters):
        for j in range(n_rows):
            top[j] = max(top[j], scores[k, j])
    for k in range(n_clusters):
        for j in range(n_rows):
            logit = max(two_beta * (scores[k, j] - top[j]), floor_logit)
            value = exp_nonpositive(logit)
            value = value if value > floor_value else zero
            scores[k, j] = value
            total[j] += value
            dot[j] = fused_multiply_add(value, logit, dot[j])
    for j in range(n_rows):
        lse[j] = math.log(total[j])
        entropy[j] = lse[j] - dot[j] / total[j]
        total[j] = (floor_value / floor_value) / total[j]
    for k in range(n_clusters):
        for j in range(n_rows):
            scores[k, j] = scores[k, j] * total[j]


@_compiled()
def chunk_scores(means, x, bias):  # pragma: no cover
    """The scores ``t_kn = μ_k·x_n + bias_k`` of a chunk of rows ``x`` (n × D), of shape (K, n).

    One BLAS product, then the bias; up to ``DIRECT_FEATURES`` features a loop over the rows
    transposed, a multiply-add a feature in the order ``μ_k0 x_n0 + μ_k1 x_n1 + ...``, then the
    bias (one multiply-add with it for one feature): a BLAS product whose inner dimension is that
    small is mostly its packing (OpenBLAS on an AMD EPYC, 1600 rows, D = 2: 4.7-6.3 ns a score from
    K = 31 on, the loop 0.7).
    """
    n_clusters, n_features = means.shape
    n = x.shape[0]
    if n_features > DIRECT_FEATURES or n_features == 0:
        scores = np.dot(means, x.T)
        for k in range(n_clusters):
            for j in range(n):
                scores[k, j] += bias[k]
        return scores
    rows = np.empty((n_features, n), dtype=x.dtype)
    for j in range(n):
        for t in range(n_features):
            rows[t, j] = x[j, t]
    scores = np.empty((n_clusters, n), dtype=x.dtype)
    last = n_features - 1
    for k in range(n_clusters):
        first, offset = means[k, 0], bias[k]
        if last == 0:
            for j in range(n):
                scores[k, j] = fused_multiply_add(first, rows[0, j], offset)
            continue
        for j in range(n):
            scores[k, j] = first * rows[0, j]
        for t in range(1, last):
            factor = means[k, t]
            for j in range(n):
                scores[k, j] = fused_multiply_add(factor, rows[t, j], scores[k, j])
        factor = means[k, last]
        for j in range(n):
            scores[k, j] = fused_multiply_add(factor, rows[last, j], scores[k, j]) + offset
    return scores


class TemperedStats(NamedTuple):
    """The E step's statistics of some rows (the fields of :class:`~.kernels.SufficientStats` less
    ``scatter``), in the data's dtype; ``log_likelihood`` and ``entropy`` are 0-d float64 tensors."""

    counts: torch.Tensor
    sums: torch.Tensor
    sums_sq: torch.Tensor
    log_likelihood: torch.Tensor
    entropy: torch.Tensor


def _chunk_rows(n_clusters: int, n_features: int, itemsize: int) -> int:
    return max(MIN_CHUNK_ROWS, CHUNK_BYTES // ((n_clusters + n_features + 2) * itemsize))


def _in_dtype(X: torch.Tensor, *values: float) -> tuple:
    """``values`` as NumPy scalars of ``X``'s dtype: the compiled loop then runs in that dtype."""
    scalar = X.numpy().dtype.type
    return tuple(scalar(value) for value in values)


def _bias(means: torch.Tensor, log_weights: torch.Tensor, sigma: float) -> torch.Tensor:
    return (means * means).sum(-1).mul_(-0.5).add_(log_weights * (sigma * sigma))


@_compiled()
def _gather(X, rows, weight, start, stop, x, weighted):  # pragma: no cover
    """Rows start..stop (of ``rows``, or of ``X`` without) into ``x``; ``[w x, w ‖x‖², w]`` into
    ``weighted``; returns the rows' ``‖x‖²`` (float64)."""
    n_features = X.shape[1]
    x_sq = np.empty(stop - start)
    for i in range(stop - start):
        row = start + i if rows is None else rows[start + i]
        w = 1.0 if weight is None else weight[row]
        total = 0.0
        for t in range(n_features):
            value = X[row, t]
            x[i, t] = value
            weighted[i, t] = w * value
            total += value * value
        x_sq[i] = total
        weighted[i, n_features] = w * total
        weighted[i, n_features + 1] = w
    return x_sq


@_compiled()
def _chunk_e(x, weighted, x_sq, w, ids, means, bias, two_beta, log_norm, floor_logit, floor_value, top, lse,
             row_entropy, out, terms):  # pragma: no cover  # fmt: skip
    """The E step of one chunk of rows ``x`` (n × D): ``out`` (K, D + 2) gets ``Σ γ [w x, w ‖x‖², w]``
    from ``weighted`` (n × (D + 2)); returns ``(Σ w log p(x), Σ w H(γ))``, ``x_sq`` holding ``‖x‖²``
    and ``w`` the rows' weights (None: 1). ``terms`` (2, ·), or None: each row's top score and lse
    written at its row number ``ids``."""
    n = x.shape[0]
    beta = 0.5 * two_beta
    scores = chunk_scores(means, x, bias)
    tempered_block(scores, two_beta, floor_logit, floor_value, top[:n], lse[:n], row_entropy[:n])
    out += np.dot(scores, weighted)
    if terms is not None:
        for j in range(n):
            terms[0, ids[j]], terms[1, ids[j]] = top[j], lse[j]
    log_likelihood = entropy = 0.0
    for j in range(n):
        weight = 1.0 if w is None else w[j]
        if weight > 0:
            # −β (‖x‖² − 2 t_max) = max_k (log π_k − β d2_nk) (the expansion may round below 0).
            density = lse[j] - beta * max(x_sq[j] - 2.0 * top[j], 0.0) - log_norm
            log_likelihood += weight * density
            entropy += weight * row_entropy[j]
    return log_likelihood, entropy


@_compiled()
def _stats(
    X, rows, weight, means, bias, two_beta, log_norm, floor_logit, floor_value, chunk, out, terms
):  # pragma: no cover
    """The E step of rows (all of ``X``, or ``X[rows]``): ``out`` (K, D + 2) gets ``Σ γ [w x, w ‖x‖², w]``;
    returns ``(Σ w log p(x), Σ w H(γ))``. ``terms`` (2, n_samples), or None: each row's top score and
    lse written at its row number. The rows are gathered a chunk at a time (see :func:`_chunk_e`)."""
    n_features = means.shape[1]
    n_rows = X.shape[0] if rows is None else rows.shape[0]
    size = min(chunk, n_rows)
    x = np.empty((size, n_features), dtype=X.dtype)
    weighted = np.empty((size, n_features + 2), dtype=X.dtype)
    w = np.empty(size, dtype=X.dtype)
    top = np.empty(size, dtype=X.dtype)
    lse = np.empty(size, dtype=X.dtype)
    row_entropy = np.empty(size, dtype=X.dtype)
    log_likelihood = entropy = 0.0
    for start in range(0, n_rows, chunk):
        stop = min(start + chunk, n_rows)
        n = stop - start
        x_sq = _gather(X, rows, weight, start, stop, x, weighted)
        ids = np.arange(start, stop) if rows is None else rows[start:stop]
        for j in range(n):
            w[j] = weighted[j, n_features + 1]
        density, spread = _chunk_e(
            x[:n], weighted[:n], x_sq, w[:n], ids, means, bias, two_beta, log_norm, floor_logit,
            floor_value, top, lse, row_entropy, out, terms,
        )  # fmt: skip
        log_likelihood += density
        entropy += spread
    return log_likelihood, entropy


def tempered_stats(
    X: torch.Tensor,
    means: torch.Tensor,
    log_weights: torch.Tensor,
    sigma: float,
    floor: tuple[float, float],
    *,
    sample_weight: torch.Tensor | None = None,
    rows: torch.Tensor | None = None,
    chunk_size: int | None = None,
    row_terms: torch.Tensor | None = None,
) -> TemperedStats:
    """The statistics of :func:`~.kernels.sufficient_stats` at σ > 0 (no scatter) over CPU rows.

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features), on the CPU
    means : tensor of shape (n_clusters, n_features)
    log_weights : tensor of shape (n_clusters,)
    sigma : float > 0
        With ``1/σ²`` finite in the dtype (not :func:`~.kernels.hard_temperature`).
    floor : (logit, value)
        :func:`~.kernels.negligible_logit` of ``X``'s dtype.
    sample_weight : tensor of shape (n_samples,), optional
    rows : long tensor of shape (n_rows,), optional
        Only these rows (gathered a chunk at a time).
    chunk_size : int, optional
        Rows per chunk (default: about ``CHUNK_BYTES`` of scores and weighted rows).
    row_terms : tensor of shape (2, n_samples), of ``X``'s dtype, optional
        Each visited row's top score and lse (see :func:`~.kernels.sufficient_stats`).

    Returns
    -------
    TemperedStats
        Counts, sums and ``Σ w γ ‖x‖²`` from one BLAS product of the responsibilities with the
        weighted rows ``[w x, w ‖x‖², w]`` per chunk, added up in float64 and returned in the data's
        dtype; the log-likelihood and entropy summed in float64. Large problems run on the caller's
        torch threads (:func:`~.kernels.cpu_threads`), one contiguous block of rows each with BLAS on
        one thread inside, the blocks' sums added in block order (the same numbers at any timing).
    """
    n_clusters, n_features = means.shape
    log_norm = 0.5 * n_features * math.log(2.0 * math.pi * sigma * sigma)
    chunk = chunk_size or _chunk_rows(n_clusters, n_features, X.element_size())
    x, index = X.contiguous().numpy(), None if rows is None else rows.numpy()
    weight = None if sample_weight is None else sample_weight.numpy()
    terms = None if row_terms is None else row_terms.numpy()
    arguments = (
        means.contiguous().numpy(),
        _bias(means, log_weights, sigma).numpy(),
        *_in_dtype(X, 1.0 / (sigma * sigma)),
        log_norm,
        *_in_dtype(X, *floor),
        chunk,
    )
    n_rows = x.shape[0] if index is None else index.shape[0]
    blocks = _blocks(n_rows, cpu_threads(), n_clusters * n_features)
    outs = np.zeros((len(blocks), n_clusters, n_features + 2))

    def block(b: int) -> tuple[float, float]:
        part = blocks[b]
        if index is None:
            own_terms = None if terms is None else terms[:, part]
            return _stats(
                x[part], None, None if weight is None else weight[part], *arguments, outs[b], own_terms
            )
        return _stats(x, index[part], weight, *arguments, outs[b], terms)

    if len(blocks) == 1:
        sums = [block(0)]
    else:
        with one_blas_thread():  # BLAS on one thread inside each block
            sums = list(_pool(len(blocks)).map(block, range(len(blocks))))
    log_likelihood = math.fsum(value for value, _ in sums)
    entropy = math.fsum(value for _, value in sums)
    out = outs.sum(0)  # in block order: the same numbers at any timing
    stats = torch.from_numpy(out).to(X.dtype)
    as_tensor = lambda value: torch.tensor(value, dtype=torch.float64)  # noqa: E731
    return TemperedStats(
        stats[:, n_features + 1].clone(),
        stats[:, :n_features].clone(),
        stats[:, n_features].clone(),
        as_tensor(log_likelihood),
        as_tensor(entropy),
    )


@_compiled()
def _column(X, rows, means, bias, two_beta, floor_logit, floor_value, k, chunk, out):  # pragma: no cover
    n_features = X.shape[1]
    size = min(chunk, rows.shape[0])
    x = np.empty((size, n_features), dtype=X.dtype)
    weighted = np.empty((size, n_features + 2), dtype=X.dtype)
    top = np.empty(size, dtype=X.dtype)
    lse = np.empty(size, dtype=X.dtype)
    row_entropy = np.empty(size, dtype=X.dtype)
    for start in range(0, rows.shape[0], chunk):
        stop = min(start + chunk, rows.shape[0])
        n = stop - start
        _gather(X, rows, None, start, stop, x, weighted)
        scores = chunk_scores(means, x[:n], bias)
        tempered_block(scores, two_beta, floor_logit, floor_value, top[:n], lse[:n], row_entropy[:n])
        out[start:stop] = scores[k]


def tempered_column(
    X: torch.Tensor,
    rows: torch.Tensor,
    means: torch.Tensor,
    log_weights: torch.Tensor,
    sigma: float,
    k: int,
    floor,
) -> torch.Tensor:
    """``γ_nk`` of component ``k`` for the rows ``X[rows]`` (CPU, σ > 0), of shape (n_rows,)."""
    n_clusters, n_features = means.shape
    out = np.empty(rows.shape[0], dtype=X.numpy().dtype)
    _column(
        X.contiguous().numpy(),
        rows.numpy(),
        means.contiguous().numpy(),
        _bias(means, log_weights, sigma).numpy(),
        *_in_dtype(X, 1.0 / (sigma * sigma), *floor),
        k,
        _chunk_rows(n_clusters, n_features, X.element_size()),
        out,
    )
    return torch.from_numpy(out)
