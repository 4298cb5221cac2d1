"""Posterior draws as ``arviz.InferenceData``, with the pointwise log-likelihood of x (z summed out).

``az.from_pyro`` is not used: for a model with enumerated ``z`` it evaluates the log-likelihood given a
resampled z, which is not the predictive density LOO needs. Here ``log p(x_n | θ)`` sums z out.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pyro
import torch
from pyro.infer import Predictive

from ..models import Priors, prior_mean, spherical_gmm
from . import arviz_compat
from .data import Data, prepare_data
from .density import log_prior, pointwise_log_likelihood, total_log_likelihood
from .validation import pyro_seed

__all__ = ["PosteriorDraws", "package_versions", "posterior_tensors", "prior_attrs", "to_inference_data"]

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
        "arviz_version": arviz_compat.version(),
    }


def prior_attrs(priors: Priors, n_features: int, source: str) -> dict:
    """The priors of a fit as netCDF-safe attributes: where they came from and their values.

    Parameters
    ----------
    priors : Priors
        In the data's units.
    n_features : int
    source : {"data-scaled", "given"}
        ``"data-scaled"``: chosen from the data by :func:`~kmeans_limit.models.data_scaled_priors`;
        ``"given"``: the caller's.

    Returns
    -------
    dict
        ``priors`` (the source), ``prior_alpha``, ``prior_tau0``, ``prior_a0``, ``prior_b0`` (floats)
        and ``prior_m0`` (a float64 array of n_features values, one a feature even when the caller
        gave one for all).
    """
    m0 = prior_mean(priors, n_features, torch.zeros((), dtype=torch.float64)).numpy()
    return {
        "priors": str(source),
        "prior_alpha": float(priors.alpha),
        "prior_m0": np.asarray(m0, dtype=np.float64),
        "prior_tau0": float(priors.tau0),
        "prior_a0": float(priors.a0),
        "prior_b0": float(priors.b0),
    }


def _predictive_draws(draws: PosteriorDraws, data: Data, sigma: float | None, priors, seed: int):
    """Ancestral draws of x from ``spherical_gmm`` at every posterior draw: (chains, draws, N, D).

    ``draws`` and ``priors`` are in the rows' frame; the replicated x come back in the data's units.
    """
    n_chains, n_draws, n_clusters, n_features = draws.means.shape
    samples = {  # weights get a singleton dimension for the data plate, which Predictive cannot infer
        "weights": draws.weights.reshape(-1, 1, n_clusters),
        "means": draws.means.reshape(-1, n_clusters, n_features),
    }
    if sigma is None:
        samples["sigma"] = draws.sigma.reshape(-1)
    predictive = Predictive(spherical_gmm, posterior_samples=samples, return_sites=("x",), parallel=True)
    with pyro_seed(seed, data.device):
        x = predictive(
            n_clusters=n_clusters,
            n_features=n_features,
            n_samples=data.n_samples,
            sigma=sigma,
            priors=priors,
            dtype=data.dtype,
            device=data.device,
        )["x"]
    return data.to_data(x.reshape(n_chains, n_draws, data.n_samples, n_features))


def _as_rows_frame(draws: PosteriorDraws, data) -> tuple[Data, PosteriorDraws, torch.Tensor, torch.Tensor]:
    """The data as a Data, the draws in its rows' frame, their means in float64 there and in data units.

    A :class:`Data` comes with draws in the frame of its rows (what the samplers return). Anything
    else is the data themselves, with draws in their units: it is prepared here, and the means are
    moved to the rows' frame in float64.
    """
    if isinstance(data, Data):
        return data, draws, draws.means.double(), data.to_data(draws.means)
    data = prepare_data(data)
    means_rows = draws.means.double() - data.offset.double()
    in_rows = draws._replace(means=means_rows.to(draws.means.dtype))
    return data, in_rows, means_rows, draws.means


def to_inference_data(
    draws: PosteriorDraws,
    data,
    *,
    sigma: float | None,
    priors: Priors,
    attrs: dict,
    observed=None,
    posterior_predictive: bool = False,
    seed: int = 0,
    log_likelihood: bool = True,
) -> object:
    """Build the posterior of a fit (``InferenceData`` on arviz 0.23, ``DataTree`` on 1.x).

    Parameters
    ----------
    draws : PosteriorDraws
        In the frame of ``data.rows`` when ``data`` is a :class:`~kmeans_limit.inference.data.Data`
        (what the samplers return when run on those rows), in ``data``'s units otherwise.
    data : Data, or tensor of shape (n_samples, n_features)
        The data the draws were made on.
    sigma : float, optional
        The fixed σ, or ``None`` when σ was learned.
    priors : Priors
        In the data's units (they are moved with the rows for ``lp``).
    attrs : dict
        Attributes of the fit (method, seed, priors, ...); package versions and
        ``relabelled="none"`` are added.
    observed : tensor of shape (n_samples, n_features), optional
        The caller's data, stored as ``observed_data``; by default ``data`` itself, or for a Data its
        rows moved back to the data's units.
    posterior_predictive : bool, default False
        Also draw x at every posterior draw (ancestral sampling from the program), in data units.
    seed : int, default 0
        For the posterior predictive draws.
    log_likelihood : bool, default True
        Store the pointwise log-likelihood (chain × draw × observation numbers: for LOO and WAIC).
        Without it ``lp`` is still exact, summed a chunk of rows at a time.

    Returns
    -------
    arviz.InferenceData (arviz 0.23) or xarray.DataTree (arviz 1.x)
        ``posterior``: weights (chain, draw, cluster), means (chain, draw, cluster, feature) in the
        data's units, sigma (chain, draw); ``sample_stats``: lp = log p(X, θ) with z summed out, plus
        the sampler's own; ``log_likelihood``: x (chain, draw, observation), unless
        ``log_likelihood=False``; ``observed_data``: x (observation, feature);
        ``posterior_predictive``: x (chain, draw, observation, feature) on request.

    Notes
    -----
    The log-likelihood and ``lp`` are computed in float64 whatever the sampler ran in, on the
    centred rows with the draws' means in the same frame (and ``m0`` moved with them): the density
    does not change under the shift, and ‖x‖²/2σ² − x·μ/σ² + ‖μ‖²/2σ² does not cancel there as it
    would in data units far from the origin (at an offset of 1e7 in float64 it would lose about 5
    nats a point at σ = 0.1).
    """
    if observed is None:
        observed = data.to_data(data.rows) if isinstance(data, Data) else data
    data, draws, means64, means_data = _as_rows_frame(draws, data)
    n_chains, n_draws, n_clusters, n_features = draws.means.shape
    weights = draws.weights.reshape(-1, n_clusters).double()
    means = means64.reshape(-1, n_clusters, n_features)
    sigma_flat = draws.sigma.reshape(-1).double()
    rows = data.rows.double()
    if log_likelihood:
        log_lik = pointwise_log_likelihood(rows, weights, means, sigma_flat)
        total = log_lik.sum(-1)
    else:
        total = total_log_likelihood(rows, weights, means, sigma_flat)
    shifted = priors.shifted(data.offset)
    lp = total + log_prior(weights, means, sigma_flat if sigma is None else None, shifted)
    numpy = lambda t: t.detach().cpu().numpy()  # noqa: E731
    groups = {
        "posterior": {
            "weights": numpy(draws.weights),
            "means": numpy(means_data),
            "sigma": numpy(draws.sigma),
        },
        "sample_stats": {"lp": numpy(lp.reshape(n_chains, n_draws)), **draws.sample_stats},
        "observed_data": {"x": numpy(torch.as_tensor(observed))},
    }
    if log_likelihood:
        groups["log_likelihood"] = {"x": numpy(log_lik.reshape(n_chains, n_draws, -1))}
    if posterior_predictive:
        groups["posterior_predictive"] = {"x": numpy(_predictive_draws(draws, data, sigma, shifted, seed))}
    all_attrs = {**attrs, **draws.attrs, **package_versions(), "relabelled": "none"}
    all_attrs["sigma"] = "learned" if sigma is None else sigma
    coords = {"cluster": np.arange(n_clusters), "feature": np.arange(n_features)}
    coords["observation"] = np.arange(data.n_samples)
    return arviz_compat.from_dict(groups, coords=coords, dims=DIMS, attrs=all_attrs)


def posterior_tensors(idata) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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
