"""The k-means objective (inertia), the σ → 0 limit of the scaled log-likelihood."""

from __future__ import annotations

import torch

from .kernels import nearest_centroid
from .lloyd import labelled_sq_distances
from .validation import as_data, check_means, check_sample_weight

__all__ = ["kmeans_objective"]


def kmeans_objective(X, means, labels=None, sample_weight=None) -> float:
    """The inertia ``J(z, μ) = Σ_n w_n ‖x_n − μ_{z_n}‖²``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    means : array-like of shape (n_clusters, n_features)
    labels : array-like of int of shape (n_samples,), optional
        Assignments z; the nearest centroid of each row when not given, which gives
        ``Σ_n min_k ‖x_n − μ_k‖²``.
    sample_weight : array-like of shape (n_samples,), optional

    Returns
    -------
    float

    Notes
    -----
    ``−2σ² log p(X, z | μ, σ, π) = J(z, μ) + N·D·σ² log(2πσ²) − 2σ² Σ_n log π_{z_n} → J(z, μ)`` and
    ``−2σ² log p(X | μ, σ, π) → Σ_n min_k ‖x_n − μ_k‖²`` as σ → 0 (Bishop, PRML §9.3.2; PRML's eq. 9.43
    leaves out the σ² factor). J does not depend on σ, so k-means cannot identify it; given (z, μ)
    the maximum-likelihood σ² is ``J / (N·D)``.
    """
    X = as_data(X)
    means = check_means(means, X.shape[1], like=X)
    weight = check_sample_weight(sample_weight, X)
    if labels is None:
        sq_dist = nearest_centroid(X, means)[1]
    else:
        labels = torch.as_tensor(labels, device=X.device)
        if labels.shape != (X.shape[0],) or labels.dtype.is_floating_point:
            raise ValueError(
                f"labels of shape {tuple(labels.shape)} should be integers of shape ({X.shape[0]},)"
            )
        if labels.min() < 0 or labels.max() >= means.shape[0]:
            raise ValueError(
                f"labels should lie in [0, {means.shape[0] - 1}]; got {labels.min()}..{labels.max()}"
            )
        sq_dist = labelled_sq_distances(X, means, labels)
    if weight is not None:
        sq_dist = sq_dist * weight
    return sq_dist.sum().item()
