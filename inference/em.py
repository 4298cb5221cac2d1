"""EM for the spherical Gaussian mixture with one shared σ: soft k-means when σ is fixed."""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import torch

from ._comm import LOCAL, Comm
from .data import Data, prepare_data
from .kernels import SufficientStats, compiled_e_step, nearest_centroid, serial_if_small, sufficient_stats
from .validation import (
    check_means,
    check_n_clusters,
    check_positive_int,
    check_real,
    check_sigma,
    check_weights,
)

__all__ = [
    "EMResult",
    "convergence_warning",
    "check_weights_mode",
    "em",
    "em_fit",
    "em_options",
    "initial_log_weights",
    "warn_unconverged",
    "em_iterations",
    "m_step",
]

WEIGHT_MODES = ("learn", "equal")


class EMResult(NamedTuple):
    """Where EM stopped.

    Attributes
    ----------
    means : tensor of shape (n_clusters, n_features)
    weights : tensor of shape (n_clusters,)
    sigma : float
        The fixed σ, or the learned one.
    log_likelihood : float
        ``Σ_n w_n log p(x_n | means, σ, weights)`` at the returned parameters.
    n_iter : int
        M steps taken.
    converged : bool
        Whether the log-likelihood per unit of sample weight rose by at most ``tol`` in the last step.
    history : tensor of shape (n_iter + 1,), float64
        The log-likelihood before the first M step and after each one (never decreasing).
    """

    means: torch.Tensor
    weights: torch.Tensor
    sigma: float
    log_likelihood: float
    n_iter: int
    converged: bool
    history: torch.Tensor


def check_weights_mode(weights) -> str:
    """``weights`` as one of ``"learn"`` and ``"equal"``."""
    if not isinstance(weights, str) or weights not in WEIGHT_MODES:
        raise ValueError(f"weights={weights!r} should be 'learn' or 'equal'")
    return weights


def em(
    X,
    init,
    *,
    sigma: float | None = None,
    weights: str = "learn",
    max_iter: int = 100,
    tol: float = 1e-6,
    sample_weight=None,
    init_weights=None,
) -> EMResult:
    """Maximum likelihood for the shared-σ spherical Gaussian mixture by EM.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features), or Data
        The rows, or rows prepared by :func:`~kmeans_limit.inference.data.prepare_data`.
    init : tensor of shape (n_clusters, n_features)
        Initial means, in the data's units.
    sigma : float > 0, optional
        Fixes σ (soft k-means at temperature T = 2σ²); ``None`` learns it, starting from
        ``σ² = J / (N·D)`` of the nearest-centroid assignment of ``init``.
    weights : {"learn", "equal"}, default "learn"
        Learn the mixing weights, or hold them at 1/K.
    max_iter : int, default 100
    tol : float >= 0, default 1e-6
        Stop when the log-likelihood per unit of sample weight rises by at most this.
    sample_weight : tensor of shape (n_samples,), optional
        Not with a prepared ``Data`` (it carries its weights).
    init_weights : tensor of shape (n_clusters,), optional
        Initial mixing weights (default 1/K); ignored with ``weights="equal"``.

    Returns
    -------
    EMResult

    Warns
    -----
    sklearn.exceptions.ConvergenceWarning
        When ``max_iter`` steps end before the tolerance is met.

    Notes
    -----
    E step: ``γ_nk ∝ π_k exp(−‖x_n − μ_k‖² / 2σ²)``. M step with ``N_k = Σ_n w_n γ_nk``:
    ``μ_k = Σ_n w_n γ_nk x_n / N_k``, ``π_k = N_k / Σ_n w_n``, and
    ``σ² = Σ_nk w_n γ_nk ‖x_n − μ_k‖² / (D Σ_n w_n)`` (Dempster, Laird & Rubin 1977; Bishop, PRML
    §9.2.2). Each step cannot lower the log-likelihood. With σ fixed this is soft k-means, whose
    σ → 0 limit is Lloyd's algorithm (PRML §9.3.2); a component whose weight reaches 0 keeps its mean.
    """
    data = prepare_data(X, sample_weight)
    means = check_means(init, data.n_features, name="init")
    n_clusters = check_n_clusters(means.shape[0], data.rows, distinct=False)
    sigma, options = em_options(sigma, weights, max_iter, tol)
    log_weights = initial_log_weights(init_weights, weights, n_clusters, data.rows)
    return warn_unconverged(em_fit(data, means, log_weights, sigma, **options), stacklevel=3)


def em_options(sigma, weights, max_iter, tol) -> tuple[float | None, dict]:
    """:func:`em`'s σ and options, checked; the options as keyword arguments of :func:`em_fit`."""
    sigma = check_sigma(sigma, allow_zero=False, allow_none=True)
    learn_weights = check_weights_mode(weights) == "learn"
    max_iter = check_positive_int("max_iter", max_iter)
    return sigma, dict(learn_weights=learn_weights, max_iter=max_iter, tol=check_real("tol", tol, low=0.0))


def warn_unconverged(result: EMResult, stacklevel: int = 2) -> EMResult:
    """``result``, after a ConvergenceWarning if EM ran out of iterations."""
    if not result.converged:
        warnings.warn(
            f"EM stopped at max_iter={result.n_iter} before the log-likelihood settled within tol; "
            "raise max_iter or tol",
            convergence_warning(),
            stacklevel=stacklevel,
        )
    return result


def em_fit(
    data: Data,
    means: torch.Tensor,
    log_weights: torch.Tensor,
    sigma: float | None,
    *,
    learn_weights: bool,
    max_iter: int,
    tol: float,
    comm: Comm = LOCAL,
) -> EMResult:
    """:func:`em` on validated inputs (``sigma=None`` learns σ), without the warning.

    ``data`` holds this process's rows (prepared over every process of ``comm``); ``means`` are in
    the data's units. EM runs on ``data.rows`` (centred when :func:`prepare_data` decided so, which
    keeps ``Q_k − ‖S_k‖²/N_k``, behind σ², accurate far from the origin) and the means come back in
    the data's units.
    """
    X, weight, means = data.rows, data.weight, data.to_rows(means)
    learn_sigma = sigma is None
    if learn_sigma:
        sigma = _initial_sigma(X, means, weight, data.variance, comm)
    options = dict(learn_weights=learn_weights, learn_sigma=learn_sigma, max_iter=max_iter, tol=tol)
    with serial_if_small(X.shape[0] * means.shape[0] * (X.shape[1] + 1)):
        result = em_iterations(X, means, log_weights, sigma, weight=weight, comm=comm, **options)[0]
    return result._replace(means=data.to_data(result.means))


def initial_log_weights(init_weights, mode, n_clusters, X) -> torch.Tensor:
    """Log mixing weights to start from: ``init_weights``, or 1/K (always 1/K with mode ``"equal"``)."""
    if mode == "equal" or init_weights is None:
        return X.new_full((n_clusters,), -math.log(n_clusters))
    return check_weights(init_weights, n_clusters, like=X).log()


def _initial_sigma(X, means, weight, variance: float, comm: Comm) -> float:
    """σ from the nearest-centroid assignment, ``sqrt(J / (N·D))``, kept off 0 (``variance``: the data's)."""
    sq_dist = nearest_centroid(X, means)[1]
    total = comm.total(X.shape[0] if weight is None else weight.sum().item())
    inertia = comm.total(sq_dist.sum().item() if weight is None else (sq_dist @ weight).item())
    return math.sqrt(max(inertia / (total * X.shape[1]), 1e-6 * variance, torch.finfo(X.dtype).tiny))


def m_step(
    stats: SufficientStats,
    means: torch.Tensor,
    *,
    learn_weights: bool,
    learn_sigma: bool,
    sigma: float,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """New ``(means, log_weights, sigma)`` from the E step's statistics.

    A component with ``N_k = 0`` keeps its mean. With ``learn_weights=False`` the weights are 1/K.
    """
    # Statistics combined by subtraction can round a count to -1e-16: never let it reach the log.
    counts = stats.counts.clamp_min(0.0)
    total = counts.sum()
    filled = counts > 0
    safe = torch.where(filled, counts, 1.0)
    new_means = torch.where(filled[:, None], stats.sums / safe[:, None], means)
    if learn_weights:
        log_weights = torch.log(counts / total)
    else:
        log_weights = counts.new_full(counts.shape, -math.log(counts.shape[0]))
    if learn_sigma:
        within = (stats.sums_sq - (stats.sums * stats.sums).sum(-1) / safe).clamp_min(0.0).sum()
        variance = within.item() / (total.item() * means.shape[1])
        sigma = math.sqrt(max(variance, torch.finfo(means.dtype).tiny))
    return new_means, log_weights, sigma


def em_iterations(
    X: torch.Tensor,
    means: torch.Tensor,
    log_weights: torch.Tensor,
    sigma: float,
    *,
    weight: torch.Tensor | None,
    learn_weights: bool,
    learn_sigma: bool,
    max_iter: int,
    tol: float,
    min_log_weight: float = -math.inf,
    comm: Comm = LOCAL,
    row_terms: torch.Tensor | None = None,
    gathered=None,
) -> tuple[EMResult, SufficientStats]:
    """EM iterations on ``Data.rows`` (means in their frame); also the E-step statistics at the returned parameters.

    ``tol`` is per unit of sample weight. Returns an :class:`EMResult` without a warning: the caller
    decides what an unconverged run means.

    ``min_log_weight`` floors the learned log-weights (annealing keeps every born component alive).
    ``comm`` sums the statistics over the rows of every process. ``row_terms`` goes to every E step
    (:func:`~.kernels.sufficient_stats`): it ends up holding the last one's, at the returned parameters.
    ``gathered``: :func:`._em_loop.gather_rows` of ``X`` and ``weight``, for the compiled loop where it
    runs (a caller that runs EM on the same rows again gathers them once).
    """
    total = comm.total(X.shape[0] if weight is None else weight.sum().item())
    if not learn_sigma and compiled_e_step(X, means, log_weights, weight):
        from ._em_loop import compiled_em, takes_compiled_em  # numba's kernels: loaded when first needed

        if takes_compiled_em(X, means, log_weights, sigma, weight, comm, X.shape[0]):
            options = dict(learn_weights=learn_weights, max_iter=max_iter, min_log_weight=min_log_weight)
            fit = compiled_em(
                X,
                means,
                log_weights,
                sigma,
                sample_weight=weight,
                tol=tol * total,
                row_terms=row_terms,
                gathered=gathered,
                **options,
            )
            history = torch.tensor(fit.history, dtype=torch.float64)
            converged = fit.converged
            result = EMResult(
                fit.means, fit.log_weights.exp(), sigma, fit.history[-1], fit.n_iter, converged, history
            )
            stats = fit.stats
            return result, SufficientStats(
                *stats[:3], None, stats.log_likelihood.item(), stats.entropy.item()
            )
    options = dict(sample_weight=weight, comm=comm, row_terms=row_terms)
    stats = sufficient_stats(X, means, log_weights, sigma, **options)
    history, converged = [stats.log_likelihood], False
    for _ in range(max_iter):
        means, log_weights, sigma = m_step(
            stats, means, learn_weights=learn_weights, learn_sigma=learn_sigma, sigma=sigma
        )
        log_weights = log_weights.clamp_min(min_log_weight)
        stats = sufficient_stats(X, means, log_weights, sigma, **options)
        history.append(stats.log_likelihood)
        if history[-1] == history[-2] or abs(history[-1] - history[-2]) <= tol * total:  # −inf at σ → 0
            converged = True
            break
    n_iter, history = len(history) - 1, torch.tensor(history, dtype=torch.float64)
    result = EMResult(means, log_weights.exp(), sigma, history[-1].item(), n_iter, converged, history)
    return result, stats


def convergence_warning() -> type[Warning]:
    """scikit-learn's ConvergenceWarning, imported only when one is raised (scikit-learn takes 1-2 s to import)."""
    from sklearn.exceptions import ConvergenceWarning

    return ConvergenceWarning
