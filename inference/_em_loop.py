"""EM at a fixed soft σ, every E and M step of a run in one compiled call (small CPU problems).

Private to :mod:`kmeans_limit.inference` (:func:`~.em.em_iterations` and annealing's local EM, in
``_levels``, call it). On the small data sets annealing meets, an E step of the compiled kernel
(:func:`._estep.tempered_stats`) takes 20-300 µs of arithmetic, but its Python wrapper, the M step's
dozen tensor operations and the bookkeeping between them took as long again: here the loop of
:func:`~.em.em_iterations` (E, then M and E until the log-likelihood settles) runs whole in one
compiled call, its E step the same compiled function on the same chunks, its M step
:func:`~.em.m_step`'s arithmetic in the data's dtype (the statistics rounded to it first, as the
tensors of the array path are). Problems large enough for more than one block of rows
(:func:`._fused._blocks`) stay on the array path, whose E step runs on the caller's threads, and
so do those whose gathered rows would exceed ``PREPARED_BYTES``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from ._comm import Comm
from ._estep import TemperedStats, _chunk_e, _chunk_rows, _gather, _in_dtype
from ._fused import _blocks, _compiled
from .kernels import compiled_e_step, cpu_threads, hard_temperature, negligible_logit

__all__ = ["CompiledEM", "GatheredRows", "compiled_em", "gather_rows", "takes_compiled_em"]


class CompiledEM(NamedTuple):
    """Where the compiled EM loop stopped.

    Attributes
    ----------
    means : tensor of shape (n_clusters, n_features)
    log_weights : tensor of shape (n_clusters,)
        After the last M step (floored at ``min_log_weight``).
    n_iter : int
        M steps made.
    converged : bool
        Whether two consecutive log-likelihoods came within ``tol``.
    history : list of float
        ``Σ w log p(x)`` of each E step (``outside``'s included), in order.
    stats : TemperedStats
        The last E step's statistics (``outside``'s added), in the data's dtype.
    """

    means: torch.Tensor
    log_weights: torch.Tensor
    n_iter: int
    converged: bool
    history: list
    stats: TemperedStats


def takes_compiled_em(X, means, log_weights, sigma: float, sample_weight, comm: Comm, n_rows: int) -> bool:
    """Whether :func:`compiled_em` takes this problem: the compiled E step's tensors
    (:func:`~.kernels.compiled_e_step`), a soft σ, every row in this process, one block of rows
    (a problem the E step would not share among threads), and copies of its ``n_rows`` rows within
    ``PREPARED_BYTES``."""
    n_clusters, n_features = means.shape
    return (
        type(comm) is Comm
        and not hard_temperature(sigma, X.dtype)
        and compiled_e_step(X, means, log_weights, sample_weight)
        and len(_blocks(n_rows, cpu_threads(), n_clusters * n_features)) == 1
        and n_rows * (2 * n_features + 4) * X.element_size() <= PREPARED_BYTES
    )


@_compiled(error_model="numpy")  # x / 0 as torch has it, not an exception
def _m_step(out, outside, means, log_weights, learn_weights, min_log_weight):  # pragma: no cover
    """The statistics of the E step (``out``, float64, plus ``outside`` in the data's dtype) and
    :func:`~.em.m_step` of them in place on ``means`` and ``log_weights``; returns the statistics
    (K, D + 2) in the data's dtype: sums, Σγ‖x‖², counts."""
    n_clusters, n_features = means.shape
    stats = np.empty((n_clusters, n_features + 2), dtype=means.dtype)
    for k in range(n_clusters):
        for t in range(n_features + 2):
            stats[k, t] = out[k, t]  # rounded to the data's dtype, as the tensors of the array path
            if outside is not None:
                stats[k, t] += outside[k, t]
    zero = np.zeros(1, dtype=means.dtype)[0]
    total = zero
    for k in range(n_clusters):
        total += max(stats[k, n_features + 1], zero)
    for k in range(n_clusters):
        count = max(stats[k, n_features + 1], zero)
        if count > 0:
            for t in range(n_features):
                means[k, t] = stats[k, t] / count
        if learn_weights:
            log_weights[k] = max(math.log(count / total), min_log_weight)
        else:
            log_weights[k] = max(-math.log(n_clusters) + zero, min_log_weight)
    return stats


#: The rows an EM run visits are gathered once, with their weighted copies ``[w x, w ‖x‖², w]``
#: (the gather was 35-40% of an E step at D = 64-256: 1024 × 16 × 256, 0.41 of 1.0 ms): problems
#: whose copies would take more than this many bytes stay on the array path, whose E step gathers
#: a chunk of rows at a time (and whose overhead is small beside their E steps).
PREPARED_BYTES = 1 << 24


class GatheredRows(NamedTuple):
    """The rows an EM run visits, gathered once with what its E steps read (:func:`gather_rows`).

    Attributes
    ----------
    x : array of shape (n_rows, n_features), the data's dtype
        The rows ``X[rows]``.
    weighted : array of shape (n_rows, n_features + 2)
        ``[w x, w ‖x‖², w]``.
    x_sq : float64 array of shape (n_rows,)
        ``‖x‖²``.
    w : array of shape (n_rows,)
        The rows' weights (1 without ``sample_weight``).
    ids : int64 array of shape (n_rows,)
        Their row numbers in ``X``.
    """

    x: np.ndarray
    weighted: np.ndarray
    x_sq: np.ndarray
    w: np.ndarray
    ids: np.ndarray


def gather_rows(
    X: torch.Tensor, sample_weight: torch.Tensor | None, rows: torch.Tensor | None = None
) -> GatheredRows:
    """The rows ``X[rows]`` (all for None) and their weights as :func:`compiled_em` reads them; a caller
    that runs EM on the same rows again (annealing's levels) gathers them once and passes them on."""
    return GatheredRows(
        *_prepare(
            X.contiguous().numpy(),
            None if rows is None else rows.numpy(),
            None if sample_weight is None else sample_weight.numpy(),
        )
    )


@_compiled()
def _prepare(X, rows, weight):  # pragma: no cover
    """The rows ``X[rows]`` (all for None), ``[w x, w ‖x‖², w]``, ``‖x‖²``, ``w`` and their row numbers."""
    n_rows = X.shape[0] if rows is None else rows.shape[0]
    x = np.empty((n_rows, X.shape[1]), dtype=X.dtype)
    weighted = np.empty((n_rows, X.shape[1] + 2), dtype=X.dtype)
    x_sq = _gather(X, rows, weight, 0, n_rows, x, weighted)
    w = weighted[:, X.shape[1] + 1].copy()
    ids = np.arange(n_rows) if rows is None else rows.copy()
    return x, weighted, x_sq, w, ids


@_compiled(error_model="numpy")
def _em_loop(
    x, weighted, x_sq, w, ids, means, log_weights, sigma_sq, two_beta, log_norm, floor_logit, floor_value, chunk,
    outside, outside_ll, outside_entropy, learn_weights, min_log_weight, max_iter, tol, final_e, terms, history,
):  # pragma: no cover  # fmt: skip
    """E, then (M, E) until two log-likelihoods come within ``tol`` (see :func:`compiled_em`), on the
    rows :func:`_prepare` gathered; returns ``(n_iter, n_e_steps, converged, stats, log_likelihood,
    entropy)`` of the last E step."""
    n_clusters, n_features = means.shape
    bias = np.empty(n_clusters, dtype=means.dtype)
    size = min(chunk, x.shape[0])
    top = np.empty(size, dtype=x.dtype)
    lse = np.empty(size, dtype=x.dtype)
    row_entropy = np.empty(size, dtype=x.dtype)
    stats = np.zeros((n_clusters, n_features + 2), dtype=means.dtype)
    new_means = means.copy()
    new_log_weights = log_weights.copy()
    log_likelihood = entropy = previous = 0.0
    n_iter = n_e_steps = 0
    converged = False
    for step in range(max_iter + 1):
        if step == max_iter and not final_e:
            break
        means[:] = new_means
        log_weights[:] = new_log_weights
        for k in range(n_clusters):
            square = means[k, 0] - means[k, 0]
            for t in range(n_features):
                square += means[k, t] * means[k, t]
            bias[k] = square * -0.5 + log_weights[k] * sigma_sq
        out = np.zeros((n_clusters, n_features + 2))
        density = spread = 0.0
        for start in range(0, x.shape[0], chunk):  # the E step, a chunk of the gathered rows at a time
            stop = min(start + chunk, x.shape[0])
            part = _chunk_e(
                x[start:stop], weighted[start:stop], x_sq[start:stop], w[start:stop], ids[start:stop], means,
                bias, two_beta, log_norm, floor_logit, floor_value, top, lse, row_entropy, out, terms,
            )  # fmt: skip
            density += part[0]
            spread += part[1]
        log_likelihood, entropy = outside_ll + density, outside_entropy + spread
        history[n_e_steps] = log_likelihood
        n_e_steps += 1
        stats = _m_step(out, outside, new_means, new_log_weights, learn_weights, min_log_weight)
        if step > 0 and (log_likelihood == previous or abs(log_likelihood - previous) <= tol):
            converged = True
            break
        if step == max_iter:
            break
        previous = log_likelihood
        n_iter += 1
    if not converged and step == max_iter and not final_e:  # the last M step has no E step after it
        means[:] = new_means
        log_weights[:] = new_log_weights
    return n_iter, n_e_steps, converged, stats, log_likelihood, entropy


def compiled_em(
    X: torch.Tensor,
    means: torch.Tensor,
    log_weights: torch.Tensor,
    sigma: float,
    *,
    sample_weight: torch.Tensor | None,
    learn_weights: bool,
    max_iter: int,
    tol: float,
    min_log_weight: float,
    rows: torch.Tensor | None = None,
    outside: TemperedStats | None = None,
    final_e: bool = True,
    row_terms: torch.Tensor | None = None,
    gathered: GatheredRows | None = None,
) -> CompiledEM:
    """EM at the fixed σ in one compiled call, where :func:`takes_compiled_em` holds.

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features)
    means : tensor of shape (n_clusters, n_features)
    log_weights : tensor of shape (n_clusters,)
    sigma : float > 0
    sample_weight : tensor of shape (n_samples,), optional
    learn_weights : bool
        M steps learn the weights, or hold them at 1/K.
    max_iter : int >= 0
        M steps at most.
    tol : float >= 0
        Stop when an E step's ``Σ w log p(x)`` is within ``tol`` of the one before (absolute).
    min_log_weight : float
        Floor of the learned log-weights.
    rows : long tensor of shape (n_rows,), optional
        The E steps visit only these rows ...
    outside : TemperedStats, optional
        ... and add these statistics of the others (of shape (K, ...) like the E step's).
    final_e : bool, default True
        ``True``: :func:`~.em.em_iterations`' loop, which ends on an E step (at most ``max_iter + 1``,
        so ``stats`` belong to the returned parameters). ``False``: at most ``max_iter`` E steps,
        each followed by an M step unless it converged (annealing's local EM, whose level then
        ends with a full E step of its own).
    row_terms : tensor of shape (2, n_samples), optional
        Each E step writes the visited rows' top score and lse there (:func:`~.kernels.sufficient_stats`).
    gathered : GatheredRows, optional
        :func:`gather_rows` of ``X``, ``sample_weight`` and ``rows``, made earlier (gathered here
        otherwise); read, never written.

    Returns
    -------
    CompiledEM

    Notes
    -----
    The M step is :func:`~.em.m_step`'s: ``N_k = max(Σγ w, 0)``, ``μ_k = S_k / N_k`` (kept where
    ``N_k = 0``), ``log π_k = max(log(N_k / Σ_j N_j), min_log_weight)`` (or ``−log K``).
    """
    n_clusters, n_features = means.shape
    dtype = X.numpy().dtype
    history = np.empty(max_iter + 1)
    side = np.zeros((n_clusters, n_features + 2), dtype=dtype)
    if outside is not None:  # [sums, Σγ‖x‖², counts], as the E step's out
        side[:] = torch.cat([outside.sums, outside.sums_sq[:, None], outside.counts[:, None]], 1).numpy()
    floor = negligible_logit(X.dtype)
    means_out = means.contiguous().numpy().copy()
    log_weights_out = log_weights.contiguous().numpy().copy()
    if gathered is None:
        gathered = gather_rows(X, sample_weight, rows)
    n_iter, n_e_steps, converged, stats, log_likelihood, entropy = _em_loop(
        *gathered,
        means_out,
        log_weights_out,
        *_in_dtype(X, sigma * sigma, 1.0 / (sigma * sigma)),
        0.5 * n_features * math.log(2.0 * math.pi * sigma * sigma),
        *_in_dtype(X, *floor),
        _chunk_rows(n_clusters, n_features, X.element_size()),
        side,
        0.0 if outside is None else float(outside.log_likelihood),
        0.0 if outside is None else float(outside.entropy),
        bool(learn_weights),
        *_in_dtype(X, min_log_weight),
        int(max_iter),
        float(tol),
        bool(final_e),
        None if row_terms is None else row_terms.numpy(),
        history,
    )
    stats = torch.from_numpy(stats)
    as_tensor = lambda value: torch.tensor(value, dtype=torch.float64)  # noqa: E731
    return CompiledEM(
        torch.from_numpy(means_out),
        torch.from_numpy(log_weights_out),
        int(n_iter),
        bool(converged),
        history[:n_e_steps].tolist(),
        TemperedStats(
            stats[:, n_features + 1].clone(),
            stats[:, :n_features].clone(),
            stats[:, n_features].clone(),
            as_tensor(log_likelihood),
            as_tensor(entropy),
        ),
    )
