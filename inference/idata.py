"""Posterior draws as ``arviz.InferenceData``, with the pointwise log-likelihood of x (z summed out).

``az.from_pyro`` is not used: for a model with enumerated ``z`` it evaluates the log-likelihood given a
resampled z, which is not the predictive density LOO needs. Here ``log p(x_n | θ)`` sums z out.
"""

from __future__ import annotations

from typing import NamedTuple

import arviz as az
import numpy as np
import pyro
import torch
from pyro.infer import Predictive

from ..models import Priors, spherical_gmm
from .density import log_prior, pointwise_log_likelihood, total_log_likelihood
from .validation import pyro_seed

__all__ = ["PosteriorDraws", "package_versions", "posterior_tensors", "to_inference_data"]

POSTERIOR = ("weights", "means", "sigma")
#: Dimension names; the log-likelihood of x keeps only the first ("observation").
DIMS = {"weights": ["cluster"], "means": ["cluster", "feature"], "x": ["observation", "feature"]}


class PosteriorDraws(NamedTuple):
    """What a sampler returns, before it becomes an ``InferenceData``.

    Attributes
    ----------
    weights : tensor of shape (n_chains, n_draws, n_clusters)
    means : tensor of shape (n_chains, n_draws, n_clusters, n_features)
    sigma : tensor of shape (n_chains, n_draws)
    sample_stats : dict of str to ndarray of shape (n_chains, n_draws)
        Sampler diagnostics (``diverging``, ``step_size``, ``tree_depth``, ``n_steps`` for NUTS).
    attrs : dict of str to str, int or float
        Method-specific attributes (for instance the guide of SVI).
    """

    weights: torch.Tensor
    means: torch.Tensor
    sigma: torch.Tensor
    sample_stats: dict
    attrs: dict


def package_versions() -> dict[str, str]:
    """Versions of kmeans-limit, torch, pyro and arviz, for the attributes of every result."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        own = version("kmeans-limit")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        own = "unknown"
    return {  # plain str: torch's version is a str subclass that netCDF writers refuse
        "kmeans_limit_version": str(own),
        "torch_version": str(torch.__version__),
        "pyro_version": str(pyro.__version__),
        "arviz_version": str(az.__version__),
    }


def _predictive_draws(draws: PosteriorDraws, X: torch.Tensor, sigma: float | None, priors, seed: int):
    """Ancestral draws of x from ``spherical_gmm`` at every posterior draw: (chains, draws, N, D)."""
    n_chains, n_draws, n_clusters, n_features = draws.means.shape
    samples = {  # weights get a singleton dimension for the data plate, which Predictive cannot infer
        "weights": draws.weights.reshape(-1, 1, n_clusters),
        "means": draws.means.reshape(-1, n_clusters, n_features),
    }
    if sigma is None:
        samples["sigma"] = draws.sigma.reshape(-1)
    predictive = Predictive(spherical_gmm, posterior_samples=samples, return_sites=("x",), parallel=True)
    with pyro_seed(seed, X.device):
        x = predictive(
            n_clusters=n_clusters,
            n_features=n_features,
            n_samples=X.shape[0],
            sigma=sigma,
            priors=priors,
            dtype=X.dtype,
            device=X.device,
        )["x"]
    return x.reshape(n_chains, n_draws, *X.shape)


def to_inference_data(
    draws: PosteriorDraws,
    X: torch.Tensor,
    *,
    sigma: float | None,
    priors: Priors,
    attrs: dict,
    posterior_predictive: bool = False,
    seed: int = 0,
    log_likelihood: bool = True,
) -> az.InferenceData:
    """Build the ``InferenceData`` of a posterior fit with ``az.from_dict``.

    Parameters
    ----------
    draws : PosteriorDraws
    X : tensor of shape (n_samples, n_features)
    sigma : float, optional
        The fixed σ, or ``None`` when σ was learned.
    priors : Priors
    attrs : dict
        Attributes of the fit (method, seed, ...); package versions and ``relabelled="none"`` are added.
    posterior_predictive : bool, default False
        Also draw x at every posterior draw (ancestral sampling from the program).
    seed : int, default 0
        For the posterior predictive draws.
    log_likelihood : bool, default True
        Store the pointwise log-likelihood (chain × draw × observation numbers: for LOO and WAIC).
        Without it ``lp`` is still exact, summed a chunk of rows at a time.

    Returns
    -------
    arviz.InferenceData
        ``posterior``: weights (chain, draw, cluster), means (chain, draw, cluster, feature), sigma
        (chain, draw); ``sample_stats``: lp = log p(X, θ) with z summed out, plus the sampler's own;
        ``log_likelihood``: x (chain, draw, observation), unless ``log_likelihood=False``;
        ``observed_data``: x (observation, feature);
        ``posterior_predictive``: x (chain, draw, observation, feature) on request.
    """
    n_chains, n_draws, n_clusters, n_features = draws.means.shape
    weights = draws.weights.reshape(-1, n_clusters)
    means = draws.means.reshape(-1, n_clusters, n_features)
    sigma_flat = draws.sigma.reshape(-1)
    # In float64 whatever the sampler ran in: ‖x‖²/2σ² and 2x·μ/2σ² nearly cancel, and float32 would
    # lose up to 0.05 nats a point at σ = 0.01 (LOO and lp sum those errors over N).
    weights, means, sigma_flat = weights.double(), means.double(), sigma_flat.double()
    if log_likelihood:
        log_lik = pointwise_log_likelihood(X.double(), weights, means, sigma_flat)
        total = log_lik.sum(-1)
    else:
        total = total_log_likelihood(X.double(), weights, means, sigma_flat)
    lp = total + log_prior(weights, means, sigma_flat if sigma is None else None, priors)
    numpy = lambda t: t.detach().cpu().numpy()  # noqa: E731
    groups = {
        "posterior": {
            "weights": numpy(draws.weights),
            "means": numpy(draws.means),
            "sigma": numpy(draws.sigma),
        },
        "sample_stats": {"lp": numpy(lp.reshape(n_chains, n_draws)), **draws.sample_stats},
        "observed_data": {"x": numpy(X)},
    }
    if log_likelihood:
        groups["log_likelihood"] = {"x": numpy(log_lik.reshape(n_chains, n_draws, -1))}
    if posterior_predictive:
        groups["posterior_predictive"] = {"x": numpy(_predictive_draws(draws, X, sigma, priors, seed))}
    all_attrs = {**attrs, **draws.attrs, **package_versions(), "relabelled": "none"}
    all_attrs["sigma"] = "learned" if sigma is None else sigma
    coords = {"cluster": np.arange(n_clusters), "feature": np.arange(n_features)}
    coords["observation"] = np.arange(X.shape[0])
    idata = az.from_dict(**groups, coords=coords, dims=DIMS)
    for group in idata.groups():
        idata[group].attrs.update(all_attrs)
    return idata


def posterior_tensors(idata: az.InferenceData) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The posterior draws of a fit, flattened over chains and draws, as float64 tensors.

    Returns
    -------
    weights : tensor of shape (n_chains * n_draws, n_clusters)
    means : tensor of shape (n_chains * n_draws, n_clusters, n_features)
    sigma : tensor of shape (n_chains * n_draws,)
    """
    post = idata.posterior
    weights, means, sigma = (torch.as_tensor(np.asarray(post[name].values, np.float64)) for name in POSTERIOR)
    n_clusters, n_features = means.shape[-2:]
    return weights.reshape(-1, n_clusters), means.reshape(-1, n_clusters, n_features), sigma.reshape(-1)
