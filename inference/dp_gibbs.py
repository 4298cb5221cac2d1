"""Blocked Gibbs for the truncated Dirichlet-process mixture (Ishwaran & James 2001), chains vectorised.

One sweep draws, for every chain at once (chains a leading batch dimension), from the conditionals of
:func:`kmeans_limit.models.dp_gmm`::

    z       | weights, means, σ   ~ Categorical(γ_n·)                        (as the finite mixture's Gibbs)
    v_k     | z, α                ~ Beta(1 + N_k, α + N_{>k})                 k = 1..K − 1
    means_k | z, σ                ~ Normal(m_k, s_k² I),  1/s_k² = 1/τ0² + N_k/σ²,  m_k = s_k² (m0/τ0² + S_k/σ²)
    σ²      | z, means            ~ InverseGamma(a0 + N·D/2, b0 + Σ_n ‖x_n − μ_{z_n}‖²/2)   (σ learned)
    α       | v                   ~ Gamma(a + K − 1, b − Σ_{k<K} log(1 − v_k))            (α ~ Gamma(a, b))

Each is tested against the joint density Pyro traces from the program.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ..models import Priors, stick_weights
from .gibbs import AssignmentStats, GibbsState, assignment_logits, sigma2_conditional
from .kernels import chunk_entries, chunk_rows, row_sq_norms

__all__ = [
    "DPGibbsState",
    "alpha_conditional",
    "dp_gibbs_sweep",
    "dp_means_conditional",
    "sample_labels",
    "sticks_conditional",
]


class DPGibbsState(NamedTuple):
    """The global variables of every chain.

    Attributes
    ----------
    v : tensor of shape (n_chains, max_clusters - 1)
        The sticks (the last, v_K = 1, is not stored).
    means : tensor of shape (n_chains, max_clusters, n_features)
    sigma : tensor of shape (n_chains,)
    alpha : tensor of shape (n_chains,)
        The concentration.
    """

    v: torch.Tensor
    means: torch.Tensor
    sigma: torch.Tensor
    alpha: torch.Tensor

    @property
    def weights(self) -> torch.Tensor:
        """``π = stick_weights(v)``, shape (n_chains, max_clusters)."""
        return stick_weights(self.v)


def sample_labels(
    X: torch.Tensor, state: DPGibbsState, generator: torch.Generator, chunk_size: int | None = None
) -> tuple[torch.Tensor, AssignmentStats]:
    """Draw ``z_n | weights, means, σ`` for every row and chain.

    The finite mixture's logits (:func:`~kmeans_limit.inference.gibbs.assignment_logits`) with the
    stick weights, and inverse-CDF sampling as in :func:`~kmeans_limit.inference.gibbs.sample_assignments`.

    Returns
    -------
    z : long tensor of shape (n_chains, n_samples)
    stats : AssignmentStats
    """
    n_chains, n_clusters, n_features = state.means.shape
    finite = GibbsState(state.weights, state.means, state.sigma)
    if chunk_size is None:
        chunk_size = max(1, chunk_entries(X.device) // (n_chains * n_clusters))
    z = torch.empty(n_chains, X.shape[0], dtype=torch.long, device=X.device)
    stats = AssignmentStats(
        X.new_zeros(n_chains, n_clusters),
        X.new_zeros(n_chains, n_clusters, n_features),
        X.new_zeros(n_chains, n_clusters),
    )
    for rows in chunk_rows(X.shape[0], n_clusters, chunk_size):
        x = X[rows]
        logits = assignment_logits(x, finite)
        cdf = (logits - logits.amax(1, keepdim=True)).exp_().cumsum_(1)
        uniform = torch.rand(n_chains, 1, x.shape[0], generator=generator, dtype=X.dtype, device=X.device)
        labels = (cdf <= uniform * cdf[:, -1:]).sum(1).clamp_max_(n_clusters - 1)
        z[:, rows] = labels
        indicator = torch.zeros_like(logits).scatter_(1, labels[:, None], 1.0)
        stats.counts.add_(indicator.sum(-1))
        stats.sums.add_(indicator @ x)
        stats.sums_sq.add_(indicator @ row_sq_norms(x))
    return z, stats


def sticks_conditional(counts: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``v_k | z, α ~ Beta(1 + N_k, α + N_{>k})`` for k < K: both of shape (n_chains, K − 1)."""
    after = counts.flip(-1).cumsum(-1).flip(-1) - counts
    return 1.0 + counts[:, :-1], alpha[:, None] + after[:, :-1].clamp_min(0.0)


def dp_means_conditional(
    stats: AssignmentStats, sigma: torch.Tensor, m0: torch.Tensor, tau0: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``means_k | z, σ ~ Normal(loc_k, scale_k² I)`` with a per-feature m0 (shape (n_features,)).

    Returns
    -------
    loc : tensor of shape (n_chains, K, n_features)
    scale : tensor of shape (n_chains, K)
    """
    prior_precision = 1.0 / tau0**2
    inv_var = (1.0 / (sigma * sigma))[:, None]
    precision = prior_precision + stats.counts * inv_var
    loc = (m0 * prior_precision + stats.sums * inv_var[..., None]) / precision[..., None]
    return loc, precision.rsqrt()


def alpha_conditional(v: torch.Tensor, prior: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """``α | v ~ Gamma(a + K − 1, b − Σ_k log(1 − v_k))`` (shape, rate), each of shape (n_chains,).

    Escobar & West (1995); Ishwaran & James (2001, §5.2).
    """
    log_rest = torch.log1p(-v.clamp_max(1.0 - torch.finfo(v.dtype).eps)).sum(-1)
    shape = torch.full_like(log_rest, prior[0] + v.shape[-1])
    return shape, prior[1] - log_rest


def _beta(a: torch.Tensor, b: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Beta(a, b) draws as G_a / (G_a + G_b), from the explicit generator."""
    ga = torch._standard_gamma(a, generator=generator)
    gb = torch._standard_gamma(b, generator=generator)
    total = ga + gb
    return torch.where(total > 0, ga / total.clamp_min(torch.finfo(a.dtype).tiny), (a >= b).to(a.dtype))


def dp_gibbs_sweep(
    X: torch.Tensor,
    state: DPGibbsState,
    generator: torch.Generator,
    priors: Priors,
    m0: torch.Tensor,
    *,
    learn_sigma: bool,
    alpha_prior: tuple[float, float] | None,
    chunk_size: int | None = None,
) -> tuple[DPGibbsState, torch.Tensor]:
    """One blocked sweep: z, then the sticks, the means, σ (learned) and α (with a prior).

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features)
        The rows (``Data.rows``), ``m0`` in their frame.
    state : DPGibbsState
    generator : torch.Generator
    priors : Priors
        ``tau0``, ``a0``, ``b0`` are used (``m0`` comes as a tensor).
    m0 : tensor of shape (n_features,)
    learn_sigma : bool
    alpha_prior : (shape, rate), optional
        None keeps ``state.alpha``.
    chunk_size : int, optional

    Returns
    -------
    state : DPGibbsState
    z : long tensor of shape (n_chains, n_samples)
        The assignments drawn in this sweep.
    """
    z, stats = sample_labels(X, state, generator, chunk_size)
    a, b = sticks_conditional(stats.counts, state.alpha)
    v = _beta(a, b, generator)
    loc, scale = dp_means_conditional(stats, state.sigma, m0, priors.tau0)
    noise = torch.randn(loc.shape, generator=generator, dtype=loc.dtype, device=loc.device)
    means = loc + scale[..., None] * noise
    sigma = state.sigma
    if learn_sigma:
        concentration, rate = sigma2_conditional(stats, means, priors)
        sigma = (rate / torch._standard_gamma(concentration, generator=generator)).sqrt()
    alpha = state.alpha
    if alpha_prior is not None:
        shape, rate = alpha_conditional(v, alpha_prior)
        alpha = torch._standard_gamma(shape, generator=generator) / rate
        alpha = alpha.clamp_min(torch.finfo(alpha.dtype).tiny)
    return DPGibbsState(v, means, sigma, alpha), z


def initial_dp_state(
    X: torch.Tensor,
    max_clusters: int,
    n_chains: int,
    sigma: float | None,
    alpha: float,
    generator: torch.Generator,
) -> DPGibbsState:
    """Starts: means at random rows, sticks of equal weights, σ the data's spread over √2 (or fixed).

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features)
    max_clusters, n_chains : int
    sigma : float, optional
    alpha : float
        The starting (or fixed) concentration.
    generator : torch.Generator

    Returns
    -------
    DPGibbsState
    """
    rows = torch.randint(X.shape[0], (n_chains, max_clusters), generator=generator, device=X.device)
    means = X[rows]
    k = torch.arange(max_clusters - 1, dtype=X.dtype, device=X.device)
    v = (1.0 / (max_clusters - k)).expand(n_chains, -1).clone()  # π_k = 1/K for every k
    if sigma is None:
        spread = X.var(0, correction=0).mean().clamp_min(torch.finfo(X.dtype).tiny)
        sigma_t = X.new_full((n_chains,), math.sqrt(float(spread) / 2.0))
    else:
        sigma_t = X.new_full((n_chains,), sigma)
    return DPGibbsState(v, means, sigma_t, X.new_full((n_chains,), alpha))
