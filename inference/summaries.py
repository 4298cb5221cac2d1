"""What a posterior fit says about the data: assignment probabilities, co-clustering, invariant summaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import xarray as xr

from . import arviz_compat
from .batched import batched_log_responsibilities
from .data import prepare_data
from .idata import posterior_tensors
from .kernels import CHUNK_ENTRIES, chunk_rows
from .validation import as_data, check_positive_int

__all__ = [
    "MAX_COCLUSTERING_SAMPLES",
    "assignment_probabilities",
    "coclustering_matrix",
    "invariant_dataset",
    "invariant_summary",
]

#: The largest N for which :func:`coclustering_matrix` builds its N × N matrix.
MAX_COCLUSTERING_SAMPLES = 2000


def _rows_and_draws(idata, X) -> tuple[torch.Tensor, ...]:
    """Rows and draws in one frame, in float64: ``X`` (the fit's observed data by default), prepared
    by :func:`~kmeans_limit.inference.data.prepare_data`, and the posterior draws with their means
    moved by the same offset (responsibilities do not change under the shift; the expansion of
    ‖x − μ‖² does not cancel on centred rows as it would far from the origin).

    Returns
    -------
    rows : tensor of shape (n_samples, n_features)
    weights, means, sigma : tensors of shapes (n_draws, K), (n_draws, K, D), (n_draws,)
    """
    observed = np.asarray(idata.observed_data["x"].values, np.float64)
    if X is None:
        X = torch.as_tensor(observed)
    else:
        X = as_data(X).to(torch.float64).cpu()
        if X.shape[1] != observed.shape[1]:
            raise ValueError(f"X has {X.shape[1]} features but the fit has {observed.shape[1]}")
    data = prepare_data(X)
    weights, means, sigma = posterior_tensors(idata)
    return data.rows, weights, data.to_rows(means), sigma


def _draw_chunks(n_draws: int, n_rows: int, n_clusters: int):
    """Slices of draws so that draws × rows × clusters stays near ``CHUNK_ENTRIES``."""
    return chunk_rows(n_draws, 1, max(1, CHUNK_ENTRIES // (n_rows * n_clusters)))


def assignment_probabilities(idata, X=None) -> np.ndarray:
    """``P(z_n = k | X) = mean over draws of γ_nk(θ)``, under the fit's (relabelled) labels.

    Parameters
    ----------
    idata : arviz.InferenceData or xarray.DataTree
        From :func:`~kmeans_limit.inference.fit_posterior`; relabel first for labels that mean
        the same component in every draw.
    X : array-like of shape (n_samples, n_features), optional
        Rows to assign (new data included); the observed data by default.

    Returns
    -------
    ndarray of shape (n_samples, n_clusters)
        Rows sum to 1.
    """
    X, weights, means, sigma = _rows_and_draws(idata, X)
    n_draws, n_clusters = weights.shape
    total = X.new_zeros(X.shape[0], n_clusters)
    for rows in chunk_rows(X.shape[0], 1, max(1, CHUNK_ENTRIES // (n_draws * n_clusters))):
        log_gamma = batched_log_responsibilities(X[rows], means, weights.log(), sigma)[0]
        total[rows] = log_gamma.exp().mean(0).T
    return total.numpy()


def coclustering_matrix(idata, X=None, *, max_draws: int = 1000) -> np.ndarray:
    """``P(z_n = z_m | X)``, averaged over draws: invariant under label switching.

    Parameters
    ----------
    idata : arviz.InferenceData or xarray.DataTree
    X : array-like of shape (n_samples, n_features), optional
        At most ``MAX_COCLUSTERING_SAMPLES`` rows; the observed data by default.
    max_draws : int, default 1000
        Evenly spaced draws used at most (the cost is N² · draws · K).

    Returns
    -------
    ndarray of shape (n_samples, n_samples)
        Symmetric, with values in [0, 1] and ones on the diagonal. Off the diagonal,
        ``mean over draws of Σ_k γ_nk(θ) γ_mk(θ)`` (z_n and z_m are independent given θ).
    """
    X, weights, means, sigma = _rows_and_draws(idata, X)
    if X.shape[0] > MAX_COCLUSTERING_SAMPLES:
        raise ValueError(
            f"coclustering_matrix builds an N × N matrix: n_samples={X.shape[0]} should be <= "
            f"{MAX_COCLUSTERING_SAMPLES}; pass a subset of rows as X"
        )
    max_draws = check_positive_int("max_draws", max_draws)
    keep = torch.linspace(0, weights.shape[0] - 1, min(max_draws, weights.shape[0])).round().long().unique()
    weights, means, sigma = weights[keep], means[keep], sigma[keep]
    total = X.new_zeros(X.shape[0], X.shape[0])
    for draws in _draw_chunks(weights.shape[0], X.shape[0], weights.shape[1]):
        gamma = batched_log_responsibilities(X, means[draws], weights[draws].log(), sigma[draws])[0].exp()
        stacked = gamma.permute(2, 0, 1).reshape(X.shape[0], -1)  # (N, draws · K)
        total += stacked @ stacked.T
    total = (total / weights.shape[0]).clamp_(0.0, 1.0)
    total.diagonal().fill_(1.0)  # Σ_k γ_nk² off it is P(z_n = z_m) for n ≠ m only: a row is with itself
    return total.numpy()


def invariant_dataset(idata) -> xr.Dataset:
    """The permutation-invariant quantities of a fit, for diagnostics that label switching cannot fool.

    Returns
    -------
    xarray.Dataset
        ``sigma`` (chain, draw) when σ was learned; ``weights_sorted`` (chain, draw, rank), the weights
        in decreasing order; ``lp`` (chain, draw).
    """
    weights = idata.posterior["weights"]
    ordered = -np.sort(-weights.values, axis=-1)
    data = {
        "weights_sorted": (("chain", "draw", "rank"), ordered),
        "lp": idata.sample_stats["lp"],
    }
    if idata.posterior.attrs.get("sigma") == "learned":
        data["sigma"] = idata.posterior["sigma"]
    coords = {"chain": weights["chain"].values, "draw": weights["draw"].values}
    return xr.Dataset(data, coords={**coords, "rank": np.arange(ordered.shape[-1])})


def invariant_summary(idata, **kwargs) -> pd.DataFrame:
    """``arviz.summary`` (through :func:`~kmeans_limit.inference.arviz_compat.summary`, arviz 0.23's columns on both lines) of σ (when learned), the sorted weights and lp: means, sds, ESS, R-hat.

    Parameters
    ----------
    idata : arviz.InferenceData or xarray.DataTree
    **kwargs
        Passed to ``arviz.summary`` (for instance ``hdi_prob`` or ``kind="diagnostics"``).

    Returns
    -------
    pandas.DataFrame
    """
    return arviz_compat.summary(invariant_dataset(idata), **kwargs)
