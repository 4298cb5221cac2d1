"""EM at a fixed σ to its fixed point, accelerated by SQUAREM: the equilibrium of one annealing level."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from .em import m_step
from .kernels import SufficientStats, sufficient_stats

__all__ = ["FixedSigmaFit", "fixed_sigma_em"]


class FixedSigmaFit(NamedTuple):
    """Where EM at fixed σ stopped.

    Attributes
    ----------
    means : tensor of shape (n_clusters, n_features)
    log_weights : tensor of shape (n_clusters,)
    stats : SufficientStats
        The E step at the returned parameters (its log-likelihood and entropy describe them).
    n_iter : int
        M steps taken (plain and extrapolated).
    converged : bool
        Whether the last plain EM step moved no centroid by more than ``tol``.
    """

    means: torch.Tensor
    log_weights: torch.Tensor
    stats: SufficientStats
    n_iter: int
    converged: bool


def fixed_sigma_em(
    X: torch.Tensor,
    means: torch.Tensor,
    log_weights: torch.Tensor,
    sigma: float,
    *,
    weight: torch.Tensor | None,
    learn_weights: bool,
    tol: float,
    max_iter: int,
    min_log_weight: float,
    stop: Callable[[torch.Tensor], bool] | None = None,
) -> FixedSigmaFit:
    """EM at fixed σ > 0 on validated rows until one EM step moves no centroid by more than ``tol``.

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features)
    means : tensor of shape (n_clusters, n_features)
    log_weights : tensor of shape (n_clusters,)
    sigma : float > 0
    weight : tensor of shape (n_samples,) or None
    learn_weights : bool
        Learn the mixing weights, or hold them at 1/K.
    tol : float > 0
        In the data's units: the largest distance a centroid may move in the last plain EM step.
    max_iter : int
        M steps at most.
    min_log_weight : float
        Floor of the learned log-weights (keeps every component alive).
    stop : callable, optional
        Called with the means after each cycle; True ends EM early (unconverged).

    Returns
    -------
    FixedSigmaFit

    Notes
    -----
    SQUAREM (Varadhan & Roland, Scand. J. Statist. 35(2), 2008; scheme S3): from θ0, two EM steps
    give ``r = θ1 − θ0`` and ``v = θ2 − 2θ1 + θ0``; the point ``θ0 − 2αr + α²v`` with
    ``α = −‖r‖/‖v‖`` (at most −1) is stabilized by one EM step and kept when its log-likelihood is
    at least θ0's, else α backtracks halfway towards −1 (α = −1 is θ2, plain EM). Just below a phase
    transition plain EM converges at a rate close to 1 (critical slowing down: thousands of steps);
    SQUAREM cuts them to tens. Log-weights are extrapolated and renormalized.
    """

    def e_step(theta) -> SufficientStats:
        return sufficient_stats(X, theta[0], theta[1], sigma, sample_weight=weight)

    def em_step(stats, theta):
        new_means, new_log_weights, _ = m_step(
            stats, theta[0], learn_weights=learn_weights, learn_sigma=False, sigma=sigma
        )
        new = (new_means, new_log_weights.clamp_min(min_log_weight))
        return new, e_step(new)

    theta = (means, log_weights)
    stats, n_iter = e_step(theta), 0
    while n_iter < max_iter:
        one, stats_one = em_step(stats, theta)
        n_iter += 1
        if _shift(one, theta) <= tol:
            return FixedSigmaFit(*one, stats_one, n_iter, True)
        two, stats_two = em_step(stats_one, one)
        n_iter += 1
        if _shift(two, one) <= tol:
            return FixedSigmaFit(*two, stats_two, n_iter, True)
        alpha = _step_length(theta, one, two)
        while alpha < -1.0 and n_iter < max_iter:  # backtrack towards α = −1 (plain EM)
            jump = _extrapolate(theta, one, two, alpha, learn_weights, min_log_weight)
            jumped, stats_jumped = em_step(e_step(jump), jump)
            n_iter += 1
            if stats_jumped.log_likelihood >= stats.log_likelihood:
                two, stats_two = jumped, stats_jumped
                break
            alpha = 0.5 * (alpha - 1.0)
        theta, stats = two, stats_two
        if stop is not None and stop(theta[0]):
            break
    return FixedSigmaFit(*theta, stats, n_iter, False)


def _extrapolate(theta, one, two, alpha: float, learn_weights: bool, min_log_weight: float):
    """SQUAREM's point ``θ0 − 2αr + α²v``, its log-weights renormalized (kept as θ0's when not learned)."""
    means, log_weights = (
        a - 2.0 * alpha * (b - a) + alpha * alpha * (c - 2.0 * b + a)
        for a, b, c in zip(theta, one, two, strict=True)
    )
    if not learn_weights:
        return means, theta[1]
    return means, (log_weights - torch.logsumexp(log_weights, 0)).clamp_min(min_log_weight)


def _step_length(theta, one, two) -> float:
    """SQUAREM's ``α = −‖r‖/‖v‖``, at most −1 (−1 when ``v`` vanishes: no extrapolation)."""
    r = math.sqrt(sum((b - a).square().sum().item() for a, b in zip(theta, one, strict=True)))
    v = math.sqrt(
        sum((c - 2.0 * b + a).square().sum().item() for a, b, c in zip(theta, one, two, strict=True))
    )
    return min(-r / v, -1.0) if v > 0 and math.isfinite(r / v) else -1.0


def _shift(new, old) -> float:
    """The largest distance a centroid moved between two ``(means, log_weights)``."""
    return (new[0] - old[0]).norm(dim=1).max().item()
