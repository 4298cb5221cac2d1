"""The tempered E step on the CPU compiled with numba: responsibilities, entropy and density in one pass.

Private to :mod:`kmeans_limit.inference.kernels` (its :func:`~.kernels.sufficient_stats` and
annealing's critical σ, in ``_levels``, call it). Made of array operations, the E step of a chunk
of rows reads and writes the (rows × K) block about fifteen times (a product, a row maximum, a
subtraction, a scaling, a clamp, an exponential, a threshold, a row sum, a division, a logarithm,
the entropy's product and row sum, ...): at N = 1e5, K = 256 that was two thirds of an annealing
run (and ~35 array calls an E step on the small sets). Here, in one compiled call for all the
rows, a chunk's scores come from one BLAS call, laid out (K × rows) so that every reduction over
the components is an elementwise operation on a row of SIMD lanes, then one compiled loop turns them
into responsibilities, the rows' log-densities and entropies, and a second BLAS call gives the
weighted sums. The exponential is a polynomial that LLVM vectorises (:func:`exp_nonpositive`;
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

LOG2_E = 1.4426950408889634
#: ln 2 in two parts (Cody & Waite), the first with trailing zero bits: ``n · LN2_HIGH`` is exact.
LN2_HIGH = 6.93147180369123816490e-01
LN2_LOW = 1.90821492927058770002e-10
#: 1/k! for k = 13 down to 2: Taylor's polynomial of ``exp`` on ``|r| ≤ ln 2 / 2``, whose first
#: term left out, ``r¹⁴/14!``, is below 2e-19.
INVERSE_FACTORIALS = tuple(1.0 / math.factorial(k) for k in range(13, 1, -1))
#: The same in float32: ``ln 2`` split after 9 bits, Taylor's polynomial to degree 7 (``r⁸/8!`` is
#: below 6e-9, a tenth of float32's half-ulp).
LN2_HIGH_32 = np.float32(0.693359375)
LN2_LOW_32 = np.float32(-2.12194440e-4)
LOG2_E_32 = np.float32(LOG2_E)
INVERSE_FACTORIALS_32 = tuple(np.float32(1.0 / math.factorial(k)) for k in range(7, 1, -1))
HALF_32, ONE_32 = np.float32(0.5), np.float32(1.0)


@intrinsic
def _float_from_bits(typingctx, bits):  # pragma: no cover
    """The float whose IEEE-754 bits are ``bits``: float64 from int64, float32 from int32 (LLVM's
    ``bitcast``)."""
    if bits == numba.types.int64:
        result, llvm_type = numba.types.float64, ir.DoubleType()
    elif bits == numba.types.int32:
        result, llvm_type = numba.types.float32, ir.FloatType()
    else:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llvm_type)

    return result(bits), codegen


def exp_nonpositive(x):  # pragma: no cover
    """``exp(x)`` for ``x ≤ 0`` down to the smallest normal result, within about one ulp of its dtype,
    in code that LLVM vectorises (compiled code only: numba's ``math.exp`` is a scalar call).

    ``x = n ln 2 + r`` with ``n`` the nearest integer to ``x / ln 2`` and ``|r| ≤ ln 2 / 2`` (the
    reduction in two fused multiply-adds, exact up to the last bit of ``r``); ``exp(r)`` by its Taylor
    polynomial in Horner's form (degree 13 for float64, 7 for float32); ``2ⁿ`` built from its bits
    (``n + 1023``, or ``n + 127``, in the exponent field). float64: ``x`` in ``[-708, 0]``; float32:
    ``[-87, 0]``. Outside the range the result is wrong (callers clamp first).
    """
    raise NotImplementedError("exp_nonpositive is compiled-code only")


@overload(exp_nonpositive, inline="always")
def _exp_nonpositive(x):  # pragma: no cover
    if x == numba.types.float64:

        def exp64(x):
            n = np.floor(fused_multiply_add(x, LOG2_E, 0.5))
            r = fused_multiply_add(-n, LN2_HIGH, x)
            r = fused_multiply_add(-n, LN2_LOW, r)
            p = INVERSE_FACTORIALS[0]
            for c in INVERSE_FACTORIALS[1:]:
                p = fused_multiply_add(p, r, c)
            p = fused_multiply_add(p, r, 1.0)
            p = fused_multiply_add(p, r, 1.0)
            return p * _float_from_bits((np.int64(n) + 1023) << 52)

        return exp64
    if x == numba.types.float32:

        def exp32(x):
            n = np.floor(fused_multiply_add(x, LOG2_E_32, HALF_32))
            r = fused_multiply_add(-n, LN2_HIGH_32, x)
            r = fused_multiply_add(-n, LN2_LOW_32, r)
            p = INVERSE_FACTORIALS_32[0]
            for c in INVERSE_FACTORIALS_32[1:]:
                p = fused_multiply_add(p, r, c)
            p = fused_multiply_add(p, r, ONE_32)
            p = fused_multiply_add(p, r, ONE_32)
            # numba widens int32 arithmetic to int64: the exponent field is narrowed back to 32 bits.
            return p * _float_from_bits(np.int32((np.int64(n) + 127) << 23))

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
    n_clusters = means.shape[0]
    n = x.shape[0]
    beta = 0.5 * two_beta
    scores = np.dot(means, x.T)
    for k in range(n_clusters):
        for j in range(n):
            scores[k, j] += bias[k]
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
        scores = np.dot(means, x[:n].T)
        for c in range(means.shape[0]):
            for j in range(n):
                scores[c, j] += bias[c]
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
