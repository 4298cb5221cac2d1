"""Mixture responsibilities for a batch of parameter values at once (chains or posterior draws).

Used by the Gibbs sampler, the relabelling, the posterior summaries and the densities: one batched
product per chunk of rows instead of a loop over the draws.
"""

from __future__ import annotations

import math

import torch

from .kernels import row_sq_norms

__all__ = ["batched_log_responsibilities", "batched_mixture_logits"]


def batched_mixture_logits(
    X: torch.Tensor, means: torch.Tensor, log_weights: torch.Tensor, sigma: torch.Tensor
) -> torch.Tensor:
    """``log π_k + μ_k·x_n/σ² − ‖μ_k‖²/(2σ²)`` for a batch of parameter values (chains or draws).

    The log-responsibilities up to a constant in k: ``−‖x_n‖²/(2σ²)`` and the normal constant are left
    out, so one batched product does the work. Clusters come before rows: reductions over a short
    last axis are several times slower on CPU than over a middle one.

    Parameters
    ----------
    X : tensor of shape (n_rows, n_features)
        A chunk of rows.
    means : tensor of shape (n_batch, n_clusters, n_features)
    log_weights : tensor of shape (n_batch, n_clusters)
    sigma : tensor of shape (n_batch,), every entry > 0

    Returns
    -------
    tensor of shape (n_batch, n_clusters, n_rows)
    """
    precision = 1.0 / (sigma * sigma)
    bias = log_weights - 0.5 * precision[:, None] * (means * means).sum(-1)
    scaled_means = means * precision[:, None, None]
    return torch.baddbmm(bias[:, :, None], scaled_means, X.T.expand(means.shape[0], *X.T.shape))


def batched_log_responsibilities(
    X: torch.Tensor, means: torch.Tensor, log_weights: torch.Tensor, sigma: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`log_responsibilities` for a batch of parameter values (chains or posterior draws) at once.

    Parameters
    ----------
    X : tensor of shape (n_rows, n_features)
        A chunk of rows.
    means : tensor of shape (n_batch, n_clusters, n_features)
    log_weights : tensor of shape (n_batch, n_clusters)
    sigma : tensor of shape (n_batch,)
        Every entry > 0 (no hard limit here: these are densities).

    Returns
    -------
    log_gamma : tensor of shape (n_batch, n_clusters, n_rows)
        Clusters before rows, as in :func:`batched_mixture_logits`.
    log_density : tensor of shape (n_batch, n_rows)
        ``log Σ_k π_k Normal(x_n | μ_k, σ² I_D)`` for each batch entry.
    """
    logits = batched_mixture_logits(X, means, log_weights, sigma)
    lse = torch.logsumexp(logits, 1, keepdim=True)
    var = (sigma * sigma)[:, None]
    log_norm = 0.5 * X.shape[-1] * torch.log(2.0 * math.pi * var)
    log_density = lse.squeeze(1) - row_sq_norms(X) / (2.0 * var) - log_norm
    return logits - lse, log_density
