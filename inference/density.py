"""Closed-form log densities of the marginal program, for many parameter values at once.

The fast paths behind the posterior samplers: the log prior of the global sites, the pointwise
log-likelihood with ``z`` summed out (chunked over rows), and the potential energy that NUTS moves on.
Each is held against the densities Pyro traces from :func:`kmeans_limit.models.spherical_gmm_marginal`.
"""

from __future__ import annotations

import math

import torch

from ..models import Priors
from .kernels import CHUNK_ENTRIES, batched_log_responsibilities, chunk_rows

_SQRT_2PI = math.sqrt(2.0 * math.pi)

__all__ = [
    "MarginalPotential",
    "log_prior",
    "pointwise_log_likelihood",
]


def log_prior(
    weights: torch.Tensor, means: torch.Tensor, sigma: torch.Tensor | None, priors: Priors
) -> torch.Tensor:
    """``log p(weights) + log p(means) [+ log p(sigma)]`` under the program's priors, in closed form.

    Parameters
    ----------
    weights : tensor of shape (n_batch, n_clusters)
    means : tensor of shape (n_batch, n_clusters, n_features)
    sigma : tensor of shape (n_batch,), or None
        ``None`` when σ is fixed (a deterministic site, which adds no density).
    priors : Priors

    Returns
    -------
    tensor of shape (n_batch,)

    Notes
    -----
    The ``sigma`` site holds σ while the prior is σ² ~ InverseGamma(a0, b0), so its density in σ carries
    the Jacobian ``|dσ²/dσ| = 2σ``: ``log p(σ) = log InvGamma(σ² | a0, b0) + log 2σ``.
    """
    n_clusters, n_features = means.shape[-2:]
    alpha, tau0 = priors.alpha, priors.tau0
    total = math.lgamma(n_clusters * alpha) - n_clusters * math.lgamma(alpha)
    total = total + torch.special.xlogy(alpha - 1.0, weights).sum(-1)  # 0·log 0 = 0 at alpha = 1
    scaled = (means - priors.m0) / tau0
    total = (
        total - 0.5 * (scaled * scaled).sum((-1, -2)) - n_clusters * n_features * math.log(tau0 * _SQRT_2PI)
    )
    if sigma is not None:
        total = total + _log_sigma_prior(sigma, sigma.log(), priors)
    return total


def _log_sigma_prior(sigma, log_sigma, priors: Priors):
    """``log InvGamma(σ² | a0, b0) + log 2σ`` by arithmetic alone (tensors or floats)."""
    a0, b0 = priors.a0, priors.b0
    constant = a0 * math.log(b0) - math.lgamma(a0) + math.log(2.0)
    return constant - (2.0 * a0 + 1.0) * log_sigma - b0 / (sigma * sigma)


def pointwise_log_likelihood(
    X: torch.Tensor,
    weights: torch.Tensor,
    means: torch.Tensor,
    sigma: torch.Tensor,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """``log p(x_n | weights, means, σ) = log Σ_k π_k Normal(x_n | μ_k, σ² I_D)`` for every draw and row.

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features)
    weights : tensor of shape (n_batch, n_clusters)
    means : tensor of shape (n_batch, n_clusters, n_features)
    sigma : tensor of shape (n_batch,)
    chunk_size : int, optional
        Rows per chunk; by default about ``CHUNK_ENTRIES`` batch × row × cluster entries at once.

    Returns
    -------
    tensor of shape (n_batch, n_samples)
    """
    n_batch, n_clusters = weights.shape
    if chunk_size is None:
        chunk_size = max(1, CHUNK_ENTRIES // (n_batch * n_clusters))
    log_weights = weights.log()
    pieces = [
        batched_log_responsibilities(X[rows], means, log_weights, sigma)[1]
        for rows in chunk_rows(X.shape[0], n_clusters, chunk_size)
    ]
    return torch.cat(pieces, dim=-1)


def _e_step(X: torch.Tensor, weights: torch.Tensor, means: torch.Tensor, sigma: float):
    """One chunked pass at a single parameter value: ``Σ_n log p(x_n)``, ``N_k`` and ``S_k``.

    The per-row constant ``−‖x_n‖²/(2σ²)`` is added once at the end, from ``Σ_n ‖x_n‖²``.
    """
    precision = 1.0 / (sigma * sigma)
    bias = weights.log() - 0.5 * precision * (means * means).sum(-1)
    scaled = means * precision
    counts, sums = X.new_zeros(means.shape[0]), torch.zeros_like(means)
    log_lik = X.new_zeros(())
    for rows in chunk_rows(X.shape[0], means.shape[0]):
        x = X[rows]
        logits = torch.addmm(bias, x, scaled.T)
        top = logits.amax(-1, keepdim=True)
        unnormalized = (logits - top).exp_()
        total = unnormalized.sum(-1, keepdim=True)
        log_lik += (total.log() + top).sum()
        gamma = unnormalized.div_(total)
        counts += gamma.sum(0)
        sums += gamma.T @ x
    n_points, n_features = X.shape
    log_norm = 0.5 * n_points * n_features * math.log(2 * math.pi / precision)
    return log_lik - 0.5 * precision * (X * X).sum() - log_norm, counts, sums


def _stick_breaking(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """torch's ``StickBreakingTransform``: weights (K,), the stick fractions z (K−1,), log|det J|."""
    n_sticks = u.shape[-1]
    x = u - torch.arange(n_sticks, 0, -1, dtype=u.dtype, device=u.device).log()
    z = torch.sigmoid(x)
    weights = torch.cat([z, z.new_ones(1)]) * torch.cat([z.new_ones(1), (1 - z).cumprod(-1)])
    log_det = (torch.nn.functional.logsigmoid(x) - x + weights[:-1].log()).sum()
    return weights, z, log_det


def _stick_breaking_grad(grad_weights: torch.Tensor, weights: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``∂/∂u_i [Σ_j g_j w_j + log|det J|] = (1 − z_i) g_i w_i − z_i Σ_{j>i} g_j w_j + 1 − z_i (K − i)``."""
    gw = grad_weights * weights
    tail = gw.flip(-1).cumsum(-1).flip(-1)[1:]  # Σ_{j>i} g_j w_j
    n_clusters = weights.shape[-1]
    remaining = torch.arange(n_clusters, 1, -1, dtype=z.dtype, device=z.device)  # K − i
    return (1 - z) * gw[:-1] - z * tail + 1 - z * remaining


class _Potential(torch.autograd.Function):
    """``U(u)`` with its gradient computed in closed form in the forward pass."""

    @staticmethod
    def forward(ctx, X, priors, fixed_sigma, u_weights, means, u_sigma):
        weights, z, log_det = _stick_breaking(u_weights)
        sigma = fixed_sigma if u_sigma is None else math.exp(u_sigma.item())
        log_lik, counts, sums = _e_step(X, weights, means, sigma)
        var = sigma * sigma
        # Σ_n Σ_k γ_nk ‖x_n − μ_k‖² = Σ_n ‖x_n‖² − 2 Σ_k μ_k·S_k + Σ_k N_k ‖μ_k‖²  (Σ_k γ_nk = 1)
        residual = (X * X).sum() - 2.0 * (means * sums).sum() + (counts * (means * means).sum(-1)).sum()
        d_weights = (counts + priors.alpha - 1.0) / weights
        d_means = (sums - counts[:, None] * means) / var - (means - priors.m0) / priors.tau0**2
        d_sigma = residual / (var * sigma) - X.shape[0] * X.shape[1] / sigma
        value = log_lik + log_prior(weights[None], means[None], None, priors)[0] + log_det
        grads = [-_stick_breaking_grad(d_weights, weights, z), -d_means]
        if u_sigma is not None:
            value = value + _log_sigma_prior(sigma, u_sigma, priors) + u_sigma
            d_sigma = d_sigma + (2.0 * priors.b0 / var - 2.0 * priors.a0 - 1.0) / sigma  # the σ prior
            grads.append(-(d_sigma * sigma + 1.0))
        ctx.save_for_backward(*grads)
        return -value

    @staticmethod
    def backward(ctx, grad):
        grads = [grad * g for g in ctx.saved_tensors]
        return None, None, None, *grads, *([None] * (3 - len(grads)))


class MarginalPotential:
    """The potential energy NUTS moves on: ``U(u) = −log p(X, θ(u)) − log|det ∂θ/∂u|``.

    ``θ(u)`` maps Pyro's unconstrained coordinates to the sites of
    :func:`~kmeans_limit.models.spherical_gmm_marginal`: ``weights`` by torch's stick-breaking
    transform, ``means`` unchanged, ``sigma = exp(u)``. It is the same function as the potential Pyro
    derives by tracing the program (``pyro.infer.mcmc.util.initialize_model``; a test holds value and
    gradient to it), written in closed form: value and gradient come from one chunked E step
    (Fisher's identity: ``∂/∂π_k = N_k/π_k``, ``∂/∂μ_k = (S_k − N_k μ_k)/σ²``,
    ``∂/∂σ = Σ_nk γ_nk ‖x_n − μ_k‖²/σ³ − N·D/σ``) and a few operations on K-vectors, so autograd
    records one node instead of a traced model run.

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features)
    priors : Priors
    transforms : dict of str to Transform
        Constrained → unconstrained maps, as ``initialize_model`` returns them; checked to be the
        parametrization above.
    sigma : float, optional
        A fixed σ (no ``sigma`` coordinate); ``None`` learns it.

    Attributes
    ----------
    n_calls : int
        Evaluations so far (NUTS makes one per leapfrog step, which gives its tree depth).
    """

    def __init__(self, X: torch.Tensor, priors: Priors, transforms: dict, sigma: float | None = None):
        self.X = X
        self.priors = priors
        self.sigma = sigma
        self.n_calls = 0
        _check_parametrization(transforms, X.dtype)

    def __call__(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """``U(u)`` for a dict of unconstrained values (``weights``, ``means`` and maybe ``sigma``)."""
        self.n_calls += 1
        u_sigma = params.get("sigma") if self.sigma is None else None
        return _Potential.apply(self.X, self.priors, self.sigma, params["weights"], params["means"], u_sigma)


def _check_parametrization(transforms: dict, dtype: torch.dtype) -> None:
    """Raise if Pyro's unconstrained coordinates are not stick-breaking / identity / log."""
    u = torch.linspace(-1.0, 1.0, 3, dtype=dtype)
    expected = {"weights": _stick_breaking(u[:2])[0], "means": u, "sigma": u[0].exp()}
    probes = {"weights": u[:2], "means": u, "sigma": u[0]}
    for name, transform in transforms.items():
        if not torch.allclose(transform.inv(probes[name]), expected[name]):
            raise NotImplementedError(f"unexpected unconstrained parametrization of {name!r}: {transform}")
