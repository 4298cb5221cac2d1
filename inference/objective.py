"""The k-means objective (inertia), the σ → 0 limit of the scaled log-likelihood."""

from __future__ import annotations

import torch

from .data import prepare_data
from .kernels import nearest_centroid
from .lloyd import labelled_sq_distances
from .validation import check_means

__all__ = ["kmeans_objective"]


def kmeans_objective(X, means, labels=None, sample_weight=None) -> float:
    """The inertia ``J(z, μ) = Σ_n w_n ‖x_n − μ_{z_n}‖²``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features), or Data
        The rows, or rows prepared by :func:`~kmeans_limit.inference.data.prepare_data` (the
        distances are computed on its rows, centred when it decided so: accurate far from the origin).
    means : array-like of shape (n_clusters, n_features)
        In the data's units.
    labels : array-like of int of shape (n_samples,), optional
        Assignments z; the nearest centroid of each row when not given, which gives
        ``Σ_n min_k ‖x_n − μ_k‖²``.
    sample_weight : array-like of shape (n_samples,), optional
        Not with a prepared ``Data`` (it carries its weights).

    Returns
    -------
    float

    Notes
    -----
    The centroids are moved to the rows' frame (``Data.to_rows``) and each ``‖x_n − μ_{z_n}‖²`` is
    computed from the differences (the nearest centroid chosen from ``‖μ_k‖² − 2x_n·μ_k``), then
    summed in float64.

    ``−2σ² log p(X, z | μ, σ, π) = J(z, μ) + N·D·σ² log(2πσ²) − 2σ² Σ_n log π_{z_n} → J(z, μ)`` and
    ``−2σ² log p(X | μ, σ, π) → Σ_n min_k ‖x_n − μ_k‖²`` as σ → 0 (Bishop, PRML §9.3.2; PRML's eq. 9.43
    leaves out the σ² factor). J does not depend on σ, so k-means cannot identify it; given (z, μ)
    the maximum-likelihood σ² is ``J / (N·D)``.
    """
    data = prepare_data(X, sample_weight)
    X, weight = data.rows, data.weight
    means = data.to_rows(check_means(means, X.shape[1]))
    if labels is None:
        labels = nearest_centroid(X, means)[0]
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
    # From the differences, summed in float64: accurate even where J is tiny against the spread.
    sq_dist = labelled_sq_distances(X, means, labels).double()
    if weight is not None:
        sq_dist = sq_dist * weight.double()
    return sq_dist.sum().item()
