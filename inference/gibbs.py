"""A blocked Gibbs sampler for the spherical mixture, from the conjugacy of the program's priors.

One sweep draws, for every chain at once (chains are a leading batch dimension)::

    z       | weights, means, σ   ~ Categorical(γ_n·)                              row by row, chunked
    weights | z                   ~ Dirichlet(α + N_k)
    means_k | z, σ                ~ Normal(m_k, v_k I),  1/v_k = 1/τ0² + N_k/σ²,  m_k = v_k (m0/τ0² + S_k/σ²)
    σ²      | z, means            ~ InverseGamma(a0 + N·D/2, b0 + Σ_n ‖x_n − μ_{z_n}‖²/2)   (σ learned only)

with ``N_k``, ``S_k`` and ``Q_k`` the count, sum and sum of squared norms of the rows assigned to k, so
that one pass over the data per sweep suffices. The randomness comes from one explicit
``torch.Generator``. Each conditional is tested against the joint density Pyro traces from
:func:`kmeans_limit.models.spherical_gmm`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from ..models import Priors, prior_mean
from .batched import batched_mixture_logits
from .idata import PosteriorDraws
from .init import kmeans_plusplus
from .kernels import chunk_entries, chunk_rows, nearest_centroid, row_sq_norms
from .validation import make_generator

__all__ = [
    "AssignmentStats",
    "assignment_logits",
    "GibbsState",
    "gibbs_posterior",
    "gibbs_sweep",
    "initial_state",
    "means_conditional",
    "run_gibbs",
    "sample_assignments",
    "sigma2_conditional",
    "weights_conditional",
]


class GibbsState(NamedTuple):
    """The global variables of every chain.

    Attributes
    ----------
    weights : tensor of shape (n_chains, n_clusters)
    means : tensor of shape (n_chains, n_clusters, n_features)
    sigma : tensor of shape (n_chains,)
    """

    weights: torch.Tensor
    means: torch.Tensor
    sigma: torch.Tensor


class AssignmentStats(NamedTuple):
    """Statistics of drawn assignments z, per chain and component.

    Attributes
    ----------
    counts : tensor of shape (n_chains, n_clusters)
        ``N_k = #{n : z_n = k}``.
    sums : tensor of shape (n_chains, n_clusters, n_features)
        ``S_k = Σ_{z_n = k} x_n``.
    sums_sq : tensor of shape (n_chains, n_clusters)
        ``Q_k = Σ_{z_n = k} ‖x_n‖²``.
    """

    counts: torch.Tensor
    sums: torch.Tensor
    sums_sq: torch.Tensor


def assignment_logits(x: torch.Tensor, state: GibbsState) -> torch.Tensor:
    """Log-probabilities of ``z_n | weights, means, σ``, up to a constant in k.

    ``log π_k + x_n·μ_k/σ² − ‖μ_k‖²/(2σ²)``: the terms ``−‖x_n‖²/(2σ²)`` and the normal constant, the
    same for every k, are left out.

    Parameters
    ----------
    x : tensor of shape (n_rows, n_features)
    state : GibbsState

    Returns
    -------
    tensor of shape (n_chains, n_clusters, n_rows)
    """
    return batched_mixture_logits(x, state.means, state.weights.log(), state.sigma)


def sample_assignments(
    X: torch.Tensor, state: GibbsState, generator: torch.Generator, chunk_size: int | None = None
) -> AssignmentStats:
    """Draw ``z_n ~ Categorical(γ_n·)`` for every row and chain, and return the statistics of the draw.

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features)
    state : GibbsState
    generator : torch.Generator
    chunk_size : int, optional
        Rows per chunk; by default about ``chunk_entries(X.device)`` chain × row × cluster entries at once.

    Returns
    -------
    AssignmentStats

    Notes
    -----
    Inverse-CDF sampling on the unnormalized probabilities ``exp(logit − max_k logit)``: ``z_n`` is the
    number of cumulative sums below ``u · total`` with ``u ~ Uniform[0, 1)``.
    """
    n_chains, n_clusters, n_features = state.means.shape
    if chunk_size is None:
        chunk_size = max(1, chunk_entries(X.device) // (n_chains * n_clusters))
    one_hot = X.new_zeros(n_chains, n_clusters, min(chunk_size, X.shape[0]))
    stats = AssignmentStats(
        X.new_zeros(n_chains, n_clusters),
        X.new_zeros(n_chains, n_clusters, n_features),
        X.new_zeros(n_chains, n_clusters),
    )
    for rows in chunk_rows(X.shape[0], n_clusters, chunk_size):
        x = X[rows]
        logits = assignment_logits(x, state)
        cdf = (logits - logits.amax(1, keepdim=True)).exp_().cumsum_(1)
        uniform = torch.rand(n_chains, 1, x.shape[0], generator=generator, dtype=X.dtype, device=X.device)
        # ``<=``: a draw u = 0 must not land on a leading component of probability 0.
        z = (cdf <= uniform * cdf[:, -1:]).sum(1, keepdim=True).clamp_max_(n_clusters - 1)
        indicator = one_hot[..., : x.shape[0]].zero_().scatter_(1, z, 1.0)
        stats.counts.add_(indicator.sum(-1))
        stats.sums.add_(indicator @ x)
        stats.sums_sq.add_(indicator @ row_sq_norms(x))
    return stats


def weights_conditional(counts: torch.Tensor, priors: Priors) -> torch.Tensor:
    """Concentration ``α + N_k`` of ``weights | z ~ Dirichlet``, shape (n_chains, n_clusters)."""
    return counts + priors.alpha


def means_conditional(
    stats: AssignmentStats, sigma: torch.Tensor, priors: Priors
) -> tuple[torch.Tensor, torch.Tensor]:
    """``means_k | z, σ ~ Normal(loc_k, scale_k² I_D)``.

    Parameters
    ----------
    stats : AssignmentStats
        Of the rows the sampler runs on.
    sigma : tensor of shape (n_chains,)
    priors : Priors
        In the rows' frame (``m0`` one value or one per feature).

    Returns
    -------
    loc : tensor of shape (n_chains, n_clusters, n_features)
    scale : tensor of shape (n_chains, n_clusters)
    """
    prior_precision = 1.0 / priors.tau0**2
    m0 = prior_mean(priors, stats.sums.shape[-1], stats.sums)  # (D,): one value, or one per feature
    inv_var = (1.0 / (sigma * sigma))[:, None]
    precision = prior_precision + stats.counts * inv_var
    loc = (m0 * prior_precision + stats.sums * inv_var[..., None]) / precision[..., None]
    return loc, precision.rsqrt()


def sigma2_conditional(
    stats: AssignmentStats, means: torch.Tensor, priors: Priors
) -> tuple[torch.Tensor, torch.Tensor]:
    """``σ² | z, means ~ InverseGamma(concentration, rate)``.

    Returns
    -------
    concentration, rate : tensors of shape (n_chains,)
        ``a0 + N·D/2`` and ``b0 + Σ_k (Q_k − 2 μ_k·S_k + N_k ‖μ_k‖²)/2``.
    """
    residual = stats.sums_sq - 2.0 * (means * stats.sums).sum(-1) + stats.counts * (means * means).sum(-1)
    n_points = stats.counts.sum(-1)
    concentration = priors.a0 + 0.5 * n_points * means.shape[-1]
    return concentration, priors.b0 + 0.5 * residual.sum(-1).clamp_min(0.0)


def gibbs_sweep(
    X: torch.Tensor,
    state: GibbsState,
    generator: torch.Generator,
    priors: Priors,
    *,
    learn_sigma: bool,
    chunk_size: int | None = None,
) -> GibbsState:
    """One blocked sweep: z, then weights, means and (with ``learn_sigma``) σ, for every chain.

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features)
    state : GibbsState
    generator : torch.Generator
    priors : Priors
    learn_sigma : bool
        False keeps ``state.sigma`` (a fixed σ: the tempered posterior at that σ).
    chunk_size : int, optional

    Returns
    -------
    GibbsState
    """
    stats = sample_assignments(X, state, generator, chunk_size)
    weights = torch._sample_dirichlet(weights_conditional(stats.counts, priors), generator=generator)
    loc, scale = means_conditional(stats, state.sigma, priors)
    noise = torch.randn(loc.shape, generator=generator, dtype=loc.dtype, device=loc.device)
    means = loc + scale[..., None] * noise
    sigma = state.sigma
    if learn_sigma:
        concentration, rate = sigma2_conditional(stats, means, priors)
        sigma = (rate / torch._standard_gamma(concentration, generator=generator)).sqrt()
    return GibbsState(weights, means, sigma)


def initial_state(
    X: torch.Tensor, n_clusters: int, n_chains: int, sigma: float | None, generator: torch.Generator
) -> GibbsState:
    """Starting points: k-means++ centroids (one seeding a chain), equal weights, σ̂ = √(J/(N·D)).

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features)
    n_clusters, n_chains : int
    sigma : float, optional
        A fixed σ; ``None`` starts from the within-cluster spread of the seeding.
    generator : torch.Generator

    Returns
    -------
    GibbsState

    Raises
    ------
    FloatingPointError
        When the starting σ overflows (data too large for the dtype).
    """
    # One k-means++ seed a chain, drawn from ``generator``: in [0, 2**32 - 1], the range of every seed.
    seeds = torch.randint(2**32, (n_chains,), generator=generator, device=generator.device).tolist()
    means = torch.stack([kmeans_plusplus(X, n_clusters, seed=seed) for seed in seeds])
    weights = X.new_full((n_chains, n_clusters), 1.0 / n_clusters)
    if sigma is not None:
        return GibbsState(weights, means, X.new_full((n_chains,), sigma))
    spread = torch.stack([nearest_centroid(X, m)[1].mean() for m in means]) / X.shape[1]
    variance = X.var(0, correction=0).mean()
    # Rows without spread (one distinct row, K = 1, priors given) start at σ = eps, not σ = 0:
    # the σ² conditional moves it to the priors' scale at the first sweep.
    floor = torch.where(variance > 0, 1e-6 * variance, torch.finfo(X.dtype).eps ** 2).clamp_min(
        torch.finfo(X.dtype).tiny
    )
    sigma0 = spread.clamp_min(floor).sqrt()
    if not torch.isfinite(sigma0).all():
        raise FloatingPointError(
            f"the starting σ is not finite: squared distances of X overflow {X.dtype}; rescale X or use float64"
        )
    return GibbsState(weights, means, sigma0)


def _check_finite(state: GibbsState, sweep: int, num_warmup: int) -> None:
    """Raise a FloatingPointError naming the variable, sweep and chain where NaN or inf appeared."""
    if all(bool(torch.isfinite(value).all()) for value in state):
        return
    for name, value in state._asdict().items():
        bad = ~torch.isfinite(value.reshape(value.shape[0], -1)).all(-1)
        if bad.any():
            phase = "warm-up" if sweep < num_warmup else "sampling"
            raise FloatingPointError(
                f"the Gibbs sampler produced a non-finite {name} at sweep {sweep} ({phase}) in chain "
                f"{bad.nonzero()[0].item()}; check the scale of X and the priors, or use float64"
            )


def run_gibbs(
    X: torch.Tensor,
    state: GibbsState,
    generator: torch.Generator,
    priors: Priors,
    *,
    num_samples: int,
    num_warmup: int,
    learn_sigma: bool,
    chunk_size: int | None = None,
    progress: bool = False,
) -> GibbsState:
    """Run ``num_warmup`` discarded sweeps and keep the next ``num_samples``, for all chains at once.

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features)
    state : GibbsState
        The starting point of every chain (see :func:`initial_state`).
    generator : torch.Generator
    priors : Priors
    num_samples, num_warmup : int
    learn_sigma : bool
    chunk_size : int, optional
    progress : bool, default False
        A tqdm bar over sweeps (all chains advance together), saying whether it is warming up or sampling.

    Returns
    -------
    GibbsState
        The kept draws: weights (n_chains, num_samples, K), means (n_chains, num_samples, K, D) and
        sigma (n_chains, num_samples).

    Raises
    ------
    FloatingPointError
        When a draw holds NaN or inf, naming the sweep and the chain.
    """
    kept = GibbsState(*(v.new_empty(v.shape[:1] + (num_samples,) + v.shape[1:]) for v in state))
    n_chains = state.sigma.shape[0]
    bar = tqdm(
        range(num_warmup + num_samples), disable=not progress, desc=f"gibbs, {n_chains} chains at once"
    )
    for sweep in bar:
        if progress and sweep in (0, num_warmup):
            bar.set_postfix_str("warm-up" if sweep < num_warmup else "sampling")
        state = gibbs_sweep(X, state, generator, priors, learn_sigma=learn_sigma, chunk_size=chunk_size)
        _check_finite(state, sweep, num_warmup)
        if sweep >= num_warmup:
            for store, value in zip(kept, state, strict=True):
                store[:, sweep - num_warmup] = value
    return kept


def _check_init(init: GibbsState, like: GibbsState) -> GibbsState:
    """A user-given start with the shapes of ``like``, in the data's dtype and device."""
    if not isinstance(init, GibbsState):
        raise ValueError(f"init should be a GibbsState, got {type(init).__name__}")
    for name, value, expected in zip(GibbsState._fields, init, like, strict=True):
        if tuple(value.shape) != tuple(expected.shape):
            raise ValueError(
                f"init.{name} of shape {tuple(value.shape)} should have shape {tuple(expected.shape)}"
            )
    return GibbsState(*(v.to(dtype=e.dtype, device=e.device) for v, e in zip(init, like, strict=True)))


def gibbs_posterior(
    X: torch.Tensor,
    n_clusters: int,
    *,
    sigma: float | None,
    priors: Priors,
    num_samples: int,
    num_warmup: int,
    num_chains: int,
    seed: int,
    progress: bool,
    init: GibbsState | None = None,
    chunk_size: int | None = None,
) -> PosteriorDraws:
    """The Gibbs sampler as a posterior method of :func:`~kmeans_limit.inference.fit_posterior`.

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features)
        The rows to sample on: ``fit_posterior`` passes ``data.rows`` of
        :func:`~kmeans_limit.inference.data.prepare_data` (centred when that buys accuracy).
    n_clusters : int
    sigma : float > 0, optional
        Fixed σ, or ``None`` to learn it.
    priors : Priors
        In the frame of ``X`` (``fit_posterior`` passes ``priors.shifted(data.offset)``).
    num_samples, num_warmup, num_chains, seed : int
    progress : bool
    init : GibbsState, optional
        Starting points of shapes (num_chains, K), (num_chains, K, D), (num_chains,) (for instance the
        last draws of a fit at a nearby σ), in the frame of ``X``; k-means++ starts by default. A
        fixed σ overrides ``init.sigma``.
    chunk_size : int, optional
        Rows per chunk of the assignment step.

    Returns
    -------
    PosteriorDraws
        In the frame of ``X``.
    """
    generator = make_generator(seed, X.device)
    start = initial_state(X, n_clusters, num_chains, sigma, generator)
    if init is not None:
        checked = _check_init(init, start)
        start = checked if sigma is None else checked._replace(sigma=start.sigma)
    kept = run_gibbs(
        X,
        start,
        generator,
        priors,
        num_samples=num_samples,
        num_warmup=num_warmup,
        learn_sigma=sigma is None,
        chunk_size=chunk_size,
        progress=progress,
    )
    return PosteriorDraws(kept.weights, kept.means, kept.sigma, {}, {})
