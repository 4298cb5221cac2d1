"""Ancestral sampling from the generative program: from the prior and from given parameters."""

from __future__ import annotations

from typing import NamedTuple

import pyro
import torch
from pyro.infer import Predictive

from ..models import Priors, prior_mean, spherical_gmm
from .validation import check_means, check_positive_int, check_seed, check_sigma, check_weights, pyro_seed

__all__ = ["GeneratedData", "PriorDraws", "sample_from", "sample_prior"]


class PriorDraws(NamedTuple):
    """Whole data sets drawn from the program, with the latent variables that made them.

    Attributes
    ----------
    x : tensor of shape (num_datasets, n_samples, n_features)
    z : long tensor of shape (num_datasets, n_samples)
    means : tensor of shape (num_datasets, n_clusters, n_features)
    weights : tensor of shape (num_datasets, n_clusters)
    sigma : tensor of shape (num_datasets,)
    """

    x: torch.Tensor
    z: torch.Tensor
    means: torch.Tensor
    weights: torch.Tensor
    sigma: torch.Tensor


class GeneratedData(NamedTuple):
    """New data from given parameters.

    Attributes
    ----------
    x : tensor of shape (n_samples, n_features)
    z : long tensor of shape (n_samples,)
        The component each row came from.
    """

    x: torch.Tensor
    z: torch.Tensor


def sample_prior(
    n_samples: int,
    *,
    n_clusters: int,
    n_features: int,
    sigma: float | None = None,
    priors: Priors | None = None,
    num_datasets: int = 1,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> PriorDraws:
    """Draw whole data sets from :func:`kmeans_limit.models.spherical_gmm`, latent variables included.

    Parameters
    ----------
    n_samples, n_clusters, n_features : int
        N, K and D.
    sigma : float >= 0, optional
        Fixed σ (0 gives the k-means limit: every x is a centroid); ``None`` draws σ from its prior.
    priors : Priors, optional
        ``Priors()`` by default; ``m0`` one value or one per feature (n_features of them).
    num_datasets : int, default 1
        Independent data sets, drawn at once (``Predictive`` vectorized over a leading dimension).
    seed : int in [0, 2**32 - 1], default 0
        The draws depend on it alone; the caller's global RNG state is left as it was.
    dtype : torch.dtype, default torch.float64

    Returns
    -------
    PriorDraws
    """
    n_samples = check_positive_int("n_samples", n_samples)
    n_clusters = check_positive_int("n_clusters", n_clusters)
    n_features = check_positive_int("n_features", n_features)
    num_datasets = check_positive_int("num_datasets", num_datasets)
    sigma = check_sigma(sigma, allow_none=True)
    priors = Priors() if priors is None else priors
    if not isinstance(priors, Priors):
        raise ValueError(f"priors should be a kmeans_limit.Priors, got {type(priors).__name__}")
    prior_mean(priors, n_features, torch.zeros((), dtype=dtype))  # a per-feature m0 of another length raises
    seed = check_seed(seed)
    predictive = Predictive(
        spherical_gmm,
        num_samples=num_datasets,
        parallel=True,
        return_sites=("weights", "means", "sigma", "z", "x"),
    )
    with pyro_seed(seed):
        draws = predictive(
            n_clusters=n_clusters,
            n_features=n_features,
            n_samples=n_samples,
            sigma=sigma,
            priors=priors,
            dtype=dtype,
        )
    return PriorDraws(
        x=draws["x"],
        z=draws["z"],
        means=draws["means"],
        weights=draws["weights"].reshape(num_datasets, n_clusters),
        sigma=draws["sigma"].to(dtype).expand(num_datasets, 1).reshape(num_datasets),
    )


def sample_from(means, n_samples: int, *, weights=None, sigma: float, seed: int = 0) -> GeneratedData:
    """Generate new data from fitted parameters, through the generative program.

    This answers "how would k-means generate data?": take its centroids, choose a σ (for instance the
    σ̂ = sqrt(J/(N·D)) of the fit) and run the program forward with those values.

    Parameters
    ----------
    means : array-like of shape (n_clusters, n_features)
    n_samples : int
    weights : array-like of shape (n_clusters,), optional
        Mixing weights on the simplex; equal weights when not given.
    sigma : float >= 0
        0 returns the centroids themselves (``x_n = means[z_n]``).
    seed : int in [0, 2**32 - 1], default 0
        The caller's global RNG state is left as it was.

    Returns
    -------
    GeneratedData
    """
    means = check_means(means)
    n_clusters, n_features = means.shape
    n_samples = check_positive_int("n_samples", n_samples)
    sigma = check_sigma(sigma)
    if weights is None:
        weights = torch.full((n_clusters,), 1.0 / n_clusters, dtype=means.dtype, device=means.device)
    weights = check_weights(weights, n_clusters, like=means)
    conditioned = pyro.condition(spherical_gmm, data={"means": means, "weights": weights})
    with pyro_seed(check_seed(seed), means.device), pyro.poutine.trace() as tracer:
        conditioned(
            n_clusters=n_clusters,
            n_features=n_features,
            n_samples=n_samples,
            sigma=sigma,
            dtype=means.dtype,
            device=means.device,
        )
    nodes = tracer.trace.nodes
    return GeneratedData(x=nodes["x"]["value"], z=nodes["z"]["value"])
