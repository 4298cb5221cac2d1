"""Closed-form log densities of the marginal program, for many parameter values at once.

The fast paths behind the posterior samplers: the log prior of the global sites, the pointwise
log-likelihood with ``z`` summed out (chunked over rows), and the check of Pyro's unconstrained
coordinates that the NUTS potential (:mod:`~kmeans_limit.inference.pyro_samplers`) relies on.
Each is held against the densities Pyro traces from :func:`kmeans_limit.models.spherical_gmm_marginal`.
"""

from __future__ import annotations

import math

import torch

from ..models import Priors, prior_mean
from .batched import batched_log_responsibilities
from .kernels import chunk_entries, chunk_rows

_SQRT_2PI = math.sqrt(2.0 * math.pi)

__all__ = [
    "log_prior",
    "pointwise_log_likelihood",
    "total_log_likelihood",
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
        In the frame of ``means`` (its ``m0``, one value or one per feature, where the means are).

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
    scaled = (means - prior_mean(priors, n_features, means)) / tau0
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
        Rows in the frame of ``means``. The density does not change when both move by one offset;
        far from the origin pass the centred ``data.rows`` of
        :func:`~kmeans_limit.inference.data.prepare_data` and ``data.to_rows(means)``, where
        ``‖x‖² − 2x·μ + ‖μ‖²`` does not cancel (``to_inference_data`` does, in float64).
    weights : tensor of shape (n_batch, n_clusters)
    means : tensor of shape (n_batch, n_clusters, n_features)
    sigma : tensor of shape (n_batch,)
    chunk_size : int, optional
        Rows per chunk; by default about ``chunk_entries(X.device)`` batch × row × cluster entries at once.

    Returns
    -------
    tensor of shape (n_batch, n_samples)
    """
    return torch.cat(list(_chunk_log_densities(X, weights, means, sigma, chunk_size)), dim=-1)


def total_log_likelihood(
    X: torch.Tensor, weights: torch.Tensor, means: torch.Tensor, sigma: torch.Tensor
) -> torch.Tensor:
    """``Σ_n log p(x_n | weights, means, σ)`` for every draw, without the (n_batch, n_samples) matrix.

    The sum over rows of :func:`pointwise_log_likelihood`, a chunk of rows at a time: memory
    O(n_batch · chunk) however many rows there are.

    Returns
    -------
    tensor of shape (n_batch,)
    """
    total = X.new_zeros(weights.shape[0])
    for piece in _chunk_log_densities(X, weights, means, sigma):
        total += piece.sum(-1)
    return total


def _chunk_log_densities(X, weights, means, sigma, chunk_size: int | None = None):
    """The (n_batch, rows) pointwise log-likelihoods of one chunk of rows after another.

    By default a chunk holds about ``chunk_entries(X.device)`` batch × row × cluster entries.
    """
    n_batch, n_clusters = weights.shape
    if chunk_size is None:
        chunk_size = max(1, chunk_entries(X.device) // (n_batch * n_clusters))
    log_weights = weights.log()
    for rows in chunk_rows(X.shape[0], n_clusters, chunk_size):
        yield batched_log_responsibilities(X[rows], means, log_weights, sigma)[1]


def _stick_breaking(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """torch's ``StickBreakingTransform``: weights (K,), the stick fractions z (K−1,), log|det J|."""
    n_sticks = u.shape[-1]
    x = u - torch.arange(n_sticks, 0, -1, dtype=u.dtype, device=u.device).log()
    z = torch.sigmoid(x)
    weights = torch.cat([z, z.new_ones(1)]) * torch.cat([z.new_ones(1), (1 - z).cumprod(-1)])
    log_det = (torch.nn.functional.logsigmoid(x) - x + weights[:-1].log()).sum()
    return weights, z, log_det


def _check_parametrization(transforms: dict, dtype: torch.dtype) -> None:
    """Raise if Pyro's unconstrained coordinates are not stick-breaking / identity / log."""
    u = torch.linspace(-1.0, 1.0, 3, dtype=dtype)
    expected = {"weights": _stick_breaking(u[:2])[0], "means": u, "sigma": u[0].exp()}
    probes = {"weights": u[:2], "means": u, "sigma": u[0]}
    for name, transform in transforms.items():
        if not torch.allclose(transform.inv(probes[name]), expected[name]):
            raise NotImplementedError(f"unexpected unconstrained parametrization of {name!r}: {transform}")
