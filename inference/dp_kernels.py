"""Closed forms of the truncated Dirichlet-process mixture (:func:`kmeans_limit.models.dp_gmm`).

The sticks integrate out of the program in closed form (a generalized Dirichlet), and so do the means
of the components no row is assigned to. These give the collapsed ("Chinese-restaurant") weights of
one assignment given the others, whose σ → 0 limit with α(σ) is DP-means' rule.
"""

from __future__ import annotations

import math

import torch

__all__ = ["collapsed_assignment_logits", "dp_means_scores", "stick_log_marginal"]


def stick_log_marginal(counts: torch.Tensor, log_alpha) -> torch.Tensor:
    """``log p(z)`` with the sticks integrated out: ``Σ_{k<K} log[α B(1 + N_k, α + N_{>k})]``.

    Parameters
    ----------
    counts : tensor of shape (..., K)
        ``N_k = #{n : z_n = k}`` (any non-negative reals, e.g. summed sample weights).
    log_alpha : float or tensor broadcasting with ``counts[..., 0]``
        ``log α``: an α too small for the dtype (α(σ) at small σ) is handled exactly.

    Returns
    -------
    tensor of shape (...)

    Notes
    -----
    ``v_k ~ Beta(1, α)`` (k < K, ``v_K = 1``) and ``π_k = v_k Π_{j<k}(1 − v_j)`` give
    ``Π_n π_{z_n} = Π_{k<K} v_k^{N_k} (1 − v_k)^{N_{>k}}``, whose Beta integrals are the terms above
    (Ishwaran & James 2001; ``B(1, α) = 1/α``). Where ``N_{>k} = 0`` the term is written
    ``lgamma(1 + α) + lgamma(1 + N_k) − lgamma(1 + α + N_k)`` (``log α + lgamma(α) = lgamma(1 + α)``),
    so that it stays finite as α → 0.
    """
    counts = torch.as_tensor(counts)
    log_alpha = torch.as_tensor(log_alpha, dtype=counts.dtype, device=counts.device)[..., None]
    alpha = log_alpha.exp()
    after = (counts.flip(-1).cumsum(-1).flip(-1) - counts)[..., :-1].clamp_min(0.0)  # N_{>k}
    head = counts[..., :-1]
    tail = torch.lgamma(1 + head) - torch.lgamma(1 + alpha + head + after)
    inner = log_alpha + torch.lgamma(alpha + after.clamp_min(1e-300))
    last = torch.lgamma(1 + alpha).expand_as(inner)
    return (tail + torch.where(after > 0, inner, last)).sum(-1)


def collapsed_assignment_logits(
    x: torch.Tensor,
    counts: torch.Tensor,
    means: torch.Tensor,
    sigma: float,
    log_alpha,
    m0: torch.Tensor,
    tau0: float,
) -> torch.Tensor:
    """``log p(z_n = k | z_{−n}, means of the occupied components, σ, x)`` up to a constant in k.

    The sticks are integrated out, and so is the mean of every component no other row is assigned
    to (it is then a "new" cluster: ``x_n ~ N(m0, (σ² + τ0²) I)``).

    Parameters
    ----------
    x : tensor of shape (n_features,)
        The row x_n.
    counts : tensor of shape (K,)
        Counts of the other rows' assignments ``z_{−n}``.
    means : tensor of shape (K, n_features)
        The components' means (those of empty components are not used).
    sigma : float > 0
    log_alpha : float
        ``log α`` (see :func:`~kmeans_limit.models.log_dp_concentration`).
    m0 : tensor of shape (n_features,)
    tau0 : float > 0

    Returns
    -------
    tensor of shape (K,)
        ``log p(z_n = k | z_{−n}) + log p(x_n | z_n = k, …)``: exact, so their logsumexp is
        ``log p(x_n | z_{−n}, …)``.
    """
    n_clusters, n_features = means.shape
    with_n = counts + torch.eye(n_clusters, dtype=counts.dtype, device=counts.device)
    prior = stick_log_marginal(with_n, log_alpha) - stick_log_marginal(
        counts, log_alpha
    )  # log p(z_n = k | z_{−n})
    occupied = -0.5 * (x - means).square().sum(-1) / sigma**2 - 0.5 * n_features * math.log(
        2 * math.pi * sigma**2
    )
    spread = sigma**2 + tau0**2
    new = -0.5 * (x - m0).square().sum() / spread - 0.5 * n_features * math.log(2 * math.pi * spread)
    return prior + torch.where(counts > 0, occupied, new)


def dp_means_scores(
    x: torch.Tensor, means: torch.Tensor, occupied: torch.Tensor, penalty: float
) -> torch.Tensor:
    """DP-means' costs of the choices for x_n: ``‖x_n − μ_c‖²`` for occupied c, λ for the empty ones.

    Parameters
    ----------
    x : tensor of shape (n_features,)
    means : tensor of shape (K, n_features)
    occupied : bool tensor of shape (K,)
    penalty : float

    Returns
    -------
    tensor of shape (K,)
        The limit of ``−2σ² log p(z_n = k | …)`` (plus a constant) for occupied k and, over the empty
        components together, λ.
    """
    return torch.where(occupied, (x - means).square().sum(-1), torch.full_like(means[:, 0], penalty))
