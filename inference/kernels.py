"""Chunked kernels shared by Lloyd, EM, annealing and the Gibbs sampler.

Every kernel walks the rows of ``X`` in chunks, so memory stays O(chunk · K): no N × K matrix is
ever made for all N at once. They run in the data's dtype (float32 or float64) on the data's device.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import torch
from threadpoolctl import ThreadpoolController

from ._comm import LOCAL, Comm

__all__ = [
    "SufficientStats",
    "centred_copy",
    "chunk_entries",
    "chunk_rows",
    "compiled_e_step",
    "cpu_threads",
    "hard_labels",
    "hard_temperature",
    "idle_threads",
    "in_background",
    "log_responsibilities",
    "nearest_centroid",
    "row_sq_norms",
    "serial_if_small",
    "squared_distances",
    "sufficient_stats",
]

#: About this many N×K entries are held at once on the CPU (8 MB in float64: cache-friendly).
CHUNK_ENTRIES = 1 << 20
#: ... and on a GPU (32 MB in float32), where each chunk costs kernel launches and fewer, larger
#: chunks keep the device busy.
GPU_CHUNK_ENTRIES = 1 << 23
#: Problems with fewer row·cluster·feature products than this run on one thread (serial_if_small).
SERIAL_WORK = 1 << 26


@functools.cache
def threadpools() -> ThreadpoolController:
    """The process's native thread pools (torch's OpenMP and MKL, NumPy's BLAS), found once."""
    return ThreadpoolController()


def serial_if_small(work: int) -> contextlib.AbstractContextManager:
    """A context running the native thread pools on one thread while a small problem is solved.

    On small tensors the threads of torch's OpenMP and MKL only wait on each other, and when the
    other cores are busy they wait long: on a loaded 2-core machine EM on 300 rows ran 20x slower
    with two threads, and annealing 100,000 rows into 100 clusters 8x slower (163 s against 20 s).
    scikit-learn runs its k-means loop with BLAS on one thread for the same reason. ``work`` is
    about rows × clusters × features; from ``SERIAL_WORK`` on, the pools are left as they are.

    The compiled Lloyd step runs on threads of its own, outside these pools, and still gets the
    count the caller had set (:func:`cpu_threads`).
    """
    return contextlib.nullcontext() if work >= SERIAL_WORK else _serial()


_CALLER_THREADS: contextvars.ContextVar[int | None] = contextvars.ContextVar("threads", default=None)


@contextlib.contextmanager
def _serial() -> Iterator[None]:
    token = _CALLER_THREADS.set(cpu_threads())
    try:
        with threadpools().limit(limits=1):
            yield
    finally:
        _CALLER_THREADS.reset(token)


def one_blas_thread() -> contextlib.AbstractContextManager:
    """A context running BLAS on one thread (inside the blocks of rows a compiled kernel shares among
    its own threads): threadpoolctl's limit, which costs ~0.1 ms a call, or nothing within
    :func:`serial_if_small`, which has limited every pool to one thread already."""
    if _CALLER_THREADS.get() is not None:
        return contextlib.nullcontext()
    return threadpools().limit(limits=1, user_api="blas")


def idle_threads() -> int:
    """Threads the caller gave torch that a small problem leaves idle: inside
    :func:`serial_if_small` (every pool on one thread) all but one of them, else none."""
    saved = _CALLER_THREADS.get()
    return 0 if saved is None else max(saved - 1, 0)


def in_background(function, *args) -> Future:
    """``function(*args)`` on this process's one background thread (a forked child makes its own),
    in a copy of the caller's context (so inside :func:`serial_if_small` it is too).

    For small problems on more than one thread (:func:`idle_threads`): annealing's critical σ,
    whose compiled passes release the GIL while the level's EM (one compiled call) runs here.
    """
    return _background(os.getpid()).submit(contextvars.copy_context().run, function, *args)


@functools.cache
def _background(pid: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="kmeans-limit-background")


def cpu_threads() -> int:
    """The number of CPU threads the caller gave torch (its count before any ``serial_if_small``)."""
    saved = _CALLER_THREADS.get()
    return torch.get_num_threads() if saved is None else saved


def chunk_entries(device: torch.device | None = None) -> int:
    """How many row × cluster entries a chunk holds on ``device`` (the CPU's when None)."""
    return CHUNK_ENTRIES if device is None or device.type == "cpu" else GPU_CHUNK_ENTRIES


def chunk_rows(
    n_samples: int, n_clusters: int, chunk_size: int | None = None, device: torch.device | None = None
) -> Iterator[slice]:
    """Slices of rows ``[start, stop)`` covering ``range(n_samples)``.

    The default chunk holds about ``chunk_entries(device)`` distances (at least 1 row and at most all
    of them).
    """
    if chunk_size is None:
        chunk_size = max(1, chunk_entries(device) // max(1, n_clusters))
    for start in range(0, n_samples, chunk_size):
        yield slice(start, min(start + chunk_size, n_samples))


def centred_copy(X: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """``X − offset``, a new tensor of ``X``'s shape, dtype and device.

    On CPU NumPy allocates it: NumPy asks the kernel for huge pages for large arrays and torch's
    allocator does not (unless ``THP_MEM_ALLOC_ENABLE=1`` is set before torch starts), so the page
    faults of a fresh (N, D) tensor cost 3-5x more through torch (40 ms against 12 ms for 51 MB), as
    much as several Lloyd iterations on small D.
    """
    if X.device.type != "cpu":
        return X - offset
    return torch.from_numpy(np.subtract(X.numpy(), offset.numpy()))


def row_sq_norms(X: torch.Tensor, centre: torch.Tensor | None = None) -> torch.Tensor:
    """``‖x_n‖²`` (or ``‖x_n − c‖²``) of each row, of shape (n_rows,), a chunk of rows at a time.

    A matrix-vector product: on CPU, ``(X * X).sum(-1)`` over a short last axis is ~10x slower.
    The squares of a chunk only are held at once, never a copy of ``X``.
    """
    out, ones = X.new_empty(X.shape[0]), X.new_ones(X.shape[-1])
    for rows in chunk_rows(X.shape[0], X.shape[-1], device=X.device):
        x = X[rows] if centre is None else X[rows] - centre
        torch.mv(x.square_() if centre is not None else x * x, ones, out=out[rows])
    return out


def squared_distances(
    X: torch.Tensor, means: torch.Tensor, means_sq: torch.Tensor | None = None
) -> torch.Tensor:
    """Squared Euclidean distances ``‖x_n − μ_k‖²`` of a chunk of rows.

    Parameters
    ----------
    X : tensor of shape (n_rows, n_features)
    means : tensor of shape (n_clusters, n_features)
    means_sq : tensor of shape (n_clusters,), optional
        ``‖μ_k‖²``, when the caller has it already.

    Returns
    -------
    tensor of shape (n_rows, n_clusters), clamped at 0 (the expansion ‖x‖² − 2x·μ + ‖μ‖² can round below).
    """
    if means_sq is None:
        means_sq = (means * means).sum(-1)
    x_sq = row_sq_norms(X)[:, None]
    # One fused (N, K) product then in-place updates: broadcasting x_sq first is ~10x slower on CPU.
    return torch.addmm(means_sq, X, means.T, alpha=-2.0).add_(x_sq).clamp_min_(0.0)


def hard_temperature(sigma: float, dtype: torch.dtype) -> bool:
    """Whether σ is 0 or so small that ``2β = 1/σ²`` overflows ``dtype``: the k-means limit itself.

    The logits are the scores times ``2β`` (:func:`_tempered`), so that product, not β, must stay
    finite: with β in ``[max/2, max)`` it does not, and ``0 · inf`` would make the responsibilities
    NaN. A σ whose square underflows to 0 is the limit too.
    """
    if sigma == 0:
        return True
    sigma_sq = sigma * sigma
    return sigma_sq == 0.0 or 1.0 / sigma_sq >= torch.finfo(dtype).max


def log_responsibilities(
    X: torch.Tensor, means: torch.Tensor, log_weights: torch.Tensor, sigma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tempered log-responsibilities and log-densities of a chunk of rows.

    ``log γ_nk = log π_k − ‖x_n − μ_k‖²/(2σ²) − log Σ_j π_j exp(−‖x_n − μ_j‖²/(2σ²))`` and
    ``log p(x_n) = log Σ_k π_k Normal(x_n | μ_k, σ² I_D)``.

    Parameters
    ----------
    X : tensor of shape (n_rows, n_features)
    means : tensor of shape (n_clusters, n_features)
    log_weights : tensor of shape (n_clusters,)
        May hold ``-inf`` for components of weight 0.
    sigma : float >= 0
        At σ = 0 (or a σ whose 1/σ² overflows the dtype) the responsibilities are their σ → 0
        limit: one-hot at the nearest centroid among the components of positive weight (first index
        on ties), and the log-densities are ``-inf`` off the centroids.

    Returns
    -------
    log_gamma : tensor of shape (n_rows, n_clusters)
    log_density : tensor of shape (n_rows,)
    """
    if hard_temperature(sigma, X.dtype):
        labels = hard_labels(X, means, log_weights)
        log_gamma = X.new_full((X.shape[0], means.shape[0]), -math.inf).scatter_(-1, labels[:, None], 0.0)
        return log_gamma, X.new_full((X.shape[0],), -math.inf)
    tempered = _tempered(X, means, log_weights, sigma)
    return tempered.logits.sub_(tempered.lse), tempered.log_density


def hard_labels(X: torch.Tensor, means: torch.Tensor, log_weights: torch.Tensor) -> torch.Tensor:
    """The σ → 0 limit of the responsibilities: the nearest centroid among components of positive weight.

    ``γ_nk ∝ π_k exp(−d2_nk / 2σ²)``: as σ → 0 the nearest component wins whatever its (positive)
    weight, and a component of weight 0 gets nothing at any σ. First index on ties.

    Parameters
    ----------
    X : tensor of shape (n_rows, n_features)
    means : tensor of shape (n_clusters, n_features)
    log_weights : tensor of shape (n_clusters,)
        ``-inf`` marks a component of weight 0 (at least one entry finite).

    Returns
    -------
    long tensor of shape (n_rows,)
    """
    d2 = squared_distances(X, means)
    absent = torch.isneginf(log_weights)
    if absent.any():
        d2.masked_fill_(absent, math.inf)
    return d2.argmin(-1)


class _Tempered(NamedTuple):
    gamma: torch.Tensor  # (n_rows, n_clusters) responsibilities
    logits: torch.Tensor  # (n_rows, n_clusters) log π_k − β d2_nk, shifted so that each row's maximum is 0
    lse: torch.Tensor  # (n_rows, 1) logsumexp of the logits (>= 0)
    log_density: torch.Tensor  # (n_rows,) log p(x_n)


class NegligibleLogit(NamedTuple):
    """Where :func:`_tempered` sets a responsibility to 0: ``exp(logit) ≤ value``, with ``logit = log(value)``."""

    logit: float
    value: float


@functools.cache
def negligible_logit(dtype: torch.dtype) -> NegligibleLogit:
    """The logit (shifted so that each row's largest is 0) below which a responsibility counts as 0.

    ``exp(logit) ≤ tiny/eps`` of ``dtype`` (about 1e-31 in float32, 1e-292 in float64): a row's
    unnormalised responsibilities sum to at least 1, so such a term is below the rounding of every
    sum it enters, by a factor ``tiny``. Computing it exactly costs much: ``exp`` of an argument far
    below its range (f32 < −87, f64 < −708) takes a slow path, and its subnormal results make every
    later product with them (the BLAS call of the M-step sums) 10-100x slower (both measured here, on
    a 20000 × 16 chunk at low σ: 33 ms and 46 ms against 0.5 ms). So the logits are clamped at this
    floor before ``exp``, and what comes out at (or within rounding above) the floor is set to 0.
    """
    info = torch.finfo(dtype)
    logit = math.log(info.tiny / info.eps)
    # exp of a rounded logit errs by about |logit| ulps: the value is above every result it can give.
    return NegligibleLogit(logit, math.exp(logit) * (1.0 + 8.0 * abs(logit) * info.eps))


def _tempered(
    X: torch.Tensor,
    means: torch.Tensor,
    log_weights: torch.Tensor,
    sigma: float,
    x_sq: torch.Tensor | None = None,
) -> _Tempered:
    """Responsibilities at σ > 0 with one product, one maximum and one exponential a row-cluster entry.

    With ``t_nk = x_n·μ_k − ‖μ_k‖²/2 + σ² log π_k`` (the bias of one fused product),
    ``log π_k − β d2_nk = 2β t_nk − β‖x_n‖²``, so the logits shifted by their row maximum are
    ``2β (t_nk − max_j t_nj)``: no distance matrix, no second maximum, instead of the ~20 passes of
    the textbook expression. Unnormalised responsibilities ``exp(logit) ≤ tiny/eps`` of the dtype
    are 0 (:func:`negligible_logit`).
    """
    beta = 1.0 / (2.0 * sigma * sigma)
    bias = (means * means).sum(-1).mul_(-0.5).add_(log_weights * (sigma * sigma))
    t = torch.addmm(bias, X, means.T)
    t_max = t.amax(-1, keepdim=True)
    logits = t.sub_(t_max).mul_(2.0 * beta)
    floor = negligible_logit(X.dtype)
    gamma = torch.nn.functional.threshold_(logits.clamp_min(floor.logit).exp_(), floor.value, 0.0)
    ones = X.new_ones(means.shape[0])
    total = torch.mv(gamma, ones)[:, None]  # a row sum: faster than .sum(-1) over a short axis on CPU
    gamma.div_(total)
    lse = total.log_()
    x_sq = row_sq_norms(X) if x_sq is None else x_sq
    # −β (‖x‖² − 2 t_max) = max_k (log π_k − β d2_nk) (the expansion may round below its true value ≥ 0).
    nearest = (x_sq[:, None] - 2.0 * t_max).clamp_min_(0.0)
    log_norm = 0.5 * X.shape[-1] * math.log(2.0 * math.pi * sigma * sigma)
    log_density = (lse - beta * nearest).squeeze(-1) - log_norm
    return _Tempered(gamma, logits, lse, log_density)


def _row_entropy(tempered: _Tempered) -> torch.Tensor:
    """``H_n = −Σ_k γ_nk log γ_nk = lse_n − Σ_k γ_nk logit_nk``, of shape (n_rows,).

    A logit of −inf (π_k = 0, or an underflow at tiny σ) has γ_nk = 0 and adds 0.
    """
    weighted = torch.mv(tempered.gamma * tempered.logits, tempered.gamma.new_ones(tempered.gamma.shape[1]))
    if weighted.isnan().any():  # 0 · (−inf): only then the slower, careful pass
        weighted = (tempered.gamma * tempered.logits).nan_to_num_(0.0, neginf=0.0).sum(-1)
    return tempered.lse.squeeze(-1) - weighted


def nearest_centroid(
    X: torch.Tensor, means: torch.Tensor, chunk_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest-centroid labels and squared distances, chunked.

    Returns
    -------
    labels : long tensor of shape (n_samples,)
    min_sq_dist : tensor of shape (n_samples,)
    """
    labels = torch.empty(X.shape[0], dtype=torch.long, device=X.device)
    min_sq = torch.empty(X.shape[0], dtype=X.dtype, device=X.device)
    means_sq = (means * means).sum(-1)
    for rows in chunk_rows(X.shape[0], means.shape[0], chunk_size, X.device):
        d2 = squared_distances(X[rows], means, means_sq)
        min_sq[rows], labels[rows] = d2.min(-1)
    return labels, min_sq


class SufficientStats(NamedTuple):
    """Responsibility-weighted statistics of the data, per component.

    Attributes
    ----------
    counts : tensor of shape (n_clusters,)
        ``N_k = Σ_n w_n γ_nk``.
    sums : tensor of shape (n_clusters, n_features)
        ``S_k = Σ_n w_n γ_nk x_n``.
    sums_sq : tensor of shape (n_clusters,)
        ``Q_k = Σ_n w_n γ_nk ‖x_n‖²``.
    scatter : tensor of shape (n_clusters, n_features, n_features) or None
        ``Σ_n w_n γ_nk x_n x_nᵀ`` when asked for (for the splitting criterion of annealing).
    log_likelihood : float
        ``Σ_n w_n log p(x_n)`` (``-inf`` at σ = 0, where there is no density).
    entropy : float
        ``Σ_n w_n H(γ_n·)``, the responsibility entropy in nats (0 at σ = 0).
    """

    counts: torch.Tensor
    sums: torch.Tensor
    sums_sq: torch.Tensor
    scatter: torch.Tensor | None
    log_likelihood: float
    entropy: float


def compiled_e_step(X, means, log_weights, sample_weight=None) -> bool:
    """Whether :mod:`._estep`'s compiled E step takes these tensors: on the CPU, float32 or float64,
    none of them needing a gradient."""
    tensors = [X, means, log_weights] + ([] if sample_weight is None else [sample_weight])
    return (
        X.device.type == "cpu"
        and X.dtype in (torch.float32, torch.float64)
        and all(t.device.type == "cpu" and t.dtype == X.dtype and not t.requires_grad for t in tensors)
    )


def sufficient_stats(
    X: torch.Tensor,
    means: torch.Tensor,
    log_weights: torch.Tensor,
    sigma: float,
    *,
    sample_weight: torch.Tensor | None = None,
    scatter: bool = False,
    chunk_size: int | None = None,
    comm: Comm = LOCAL,
    rows: torch.Tensor | None = None,
    row_terms: torch.Tensor | None = None,
) -> SufficientStats:
    """The E step: responsibility-weighted sufficient statistics at σ, accumulated over row chunks.

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features)
    means : tensor of shape (n_clusters, n_features)
    log_weights : tensor of shape (n_clusters,)
    sigma : float >= 0
        0 gives hard (nearest-centroid) assignments: the statistics of Lloyd's algorithm.
    sample_weight : tensor of shape (n_samples,), optional
    scatter : bool, default False
        Also accumulate the per-component second-moment matrices.
    chunk_size : int, optional
        Rows per chunk.
    comm : Comm, default LOCAL
        Where the other rows are: the statistics are summed over its processes.
    rows : long tensor of shape (n_rows,), optional
        Only these rows of ``X`` (and of ``sample_weight``), gathered a chunk at a time.
    row_terms : tensor of shape (2, n_samples), of ``X``'s dtype, optional
        Where :func:`compiled_e_step` holds (and σ is soft): row n's ``max_k t_nk`` and
        ``log Σ_k exp(2β (t_nk − max_j t_nj))`` are written into its column n (the rows visited
        only), so that one component's responsibilities ``γ_nk = exp(2β (t_nk − max_j t_nj) − lse_n)``
        can be had later from ``t_nk`` alone. Left as it is on other paths.

    Returns
    -------
    SufficientStats
    """
    hard = hard_temperature(sigma, X.dtype)
    if not (hard or scatter) and compiled_e_step(X, means, log_weights, sample_weight):
        from ._estep import tempered_stats  # numba's compiled kernels: loaded when first needed

        floor = negligible_logit(X.dtype)
        options = dict(sample_weight=sample_weight, rows=rows, chunk_size=chunk_size, row_terms=row_terms)
        fast = tempered_stats(X, means, log_weights, sigma, floor, **options)
        comm.sum_(*fast)
        return SufficientStats(*fast[:3], None, fast.log_likelihood.item(), fast.entropy.item())
    n_clusters, n_features = means.shape
    counts = X.new_zeros(n_clusters)
    sums = X.new_zeros(n_clusters, n_features)
    sums_sq = X.new_zeros(n_clusters)
    second = X.new_zeros(n_clusters, n_features, n_features) if scatter else None
    if chunk_size is None:  # (rows, K) responsibilities, (rows, D) weighted rows, (rows, K, D) scatter
        width = n_clusters * n_features if scatter else max(n_clusters, n_features)
        chunk_size = max(1, chunk_entries(X.device) // width)
    log_likelihood, entropy = X.new_zeros(()), X.new_zeros(())
    n_rows = X.shape[0] if rows is None else rows.shape[0]
    for chunk in chunk_rows(n_rows, n_clusters, chunk_size):
        chunk = chunk if rows is None else rows[chunk]
        x = X[chunk]
        x_sq = row_sq_norms(x)
        if hard:
            gamma = log_responsibilities(x, means, log_weights, sigma)[0].exp_()
            log_density, row_entropy = x.new_full((x.shape[0],), -math.inf), x.new_zeros(x.shape[0])
        else:
            tempered = _tempered(x, means, log_weights, sigma, x_sq)
            gamma, log_density = tempered.gamma, tempered.log_density
            row_entropy = _row_entropy(tempered)
        if sample_weight is not None:  # weight the (rows, D) side, not the (rows, K) one
            w = sample_weight[chunk]
            x, x_sq = x * w[:, None], x_sq * w
            counts += w @ gamma
            log_density = torch.where(w > 0, log_density * w, 0.0)
            row_entropy = row_entropy * w
        else:
            counts += gamma.sum(0)
        sums += (x.T @ gamma).T  # 3x faster than gamma.T @ x on CPU
        sums_sq += x_sq @ gamma
        if second is not None:  # x already carries the weights
            second += torch.einsum("nk,ni,nj->kij", gamma, x, X[chunk])
        log_likelihood += log_density.sum()
        entropy += row_entropy.sum()
    comm.sum_(counts, sums, sums_sq, log_likelihood, entropy, *([] if second is None else [second]))
    return SufficientStats(counts, sums, sums_sq, second, log_likelihood.item(), entropy.item())
