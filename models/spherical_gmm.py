"""The spherical Gaussian mixture with one shared σ, as a Pyro program.

This program is the package's specification. Every fast path elsewhere (closed-form E and M steps,
Gibbs conditionals, pointwise log-likelihoods, Lloyd's algorithm) computes something that these few
lines already define, and the tests hold each of them against the densities traced here.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.ops.indexing import Vindex

from .priors import Priors, prior_mean

__all__ = ["SITE_NAMES", "spherical_gmm", "spherical_gmm_marginal"]

SITE_NAMES = ("weights", "means", "sigma", "z", "x")


def _check_sigma(sigma) -> float | None:
    if sigma is None:
        return None
    if isinstance(sigma, torch.Tensor):
        if sigma.numel() != 1:
            raise ValueError(f"sigma of shape {tuple(sigma.shape)} should be a single number")
        sigma = sigma.item()
    try:
        sigma = float(sigma)
    except (TypeError, ValueError):
        raise ValueError(f"sigma={sigma!r} should be None or a finite number >= 0") from None
    if not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma={sigma!r} should be None or a finite number >= 0")
    return sigma


def _shape_of_data(X, n_clusters, n_features, n_samples, dtype, device):
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, int) or n_clusters < 1:
        raise ValueError(f"n_clusters={n_clusters!r} should be an integer >= 1")
    if X is None:
        for name, value in (("n_features", n_features), ("n_samples", n_samples)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} should be an integer >= 1 when X is not given")
        dtype = torch.get_default_dtype() if dtype is None else dtype
        return n_samples, n_features, dtype, torch.device("cpu" if device is None else device)
    if not isinstance(X, torch.Tensor) or X.dim() != 2:
        raise ValueError("X should be a 2-D tensor of shape (n_samples, n_features)")
    if n_features is not None and n_features != X.shape[1]:
        raise ValueError(f"n_features={n_features} does not match X with {X.shape[1]} columns")
    if n_samples is not None and n_samples != X.shape[0]:
        raise ValueError(f"n_samples={n_samples} does not match X with {X.shape[0]} rows")
    return X.shape[0], X.shape[1], X.dtype, X.device


def _global_sites(n_clusters, n_features, sigma, priors, dtype, device):
    """Sample ``weights`` (K,), ``means`` (K, D) and ``sigma`` (scalar) from their priors."""
    as_tensor = lambda v: torch.as_tensor(v, dtype=dtype, device=device)  # noqa: E731
    weights = pyro.sample("weights", dist.Dirichlet(as_tensor(priors.alpha).expand([n_clusters])))
    m0 = prior_mean(priors, n_features, as_tensor(0.0))  # (D,): one value, or one per feature
    with pyro.plate("components", n_clusters):
        means = pyro.sample("means", dist.Normal(m0, as_tensor(priors.tau0)).to_event(1))
    if sigma is None:
        sigma2 = dist.InverseGamma(as_tensor(priors.a0), as_tensor(priors.b0))
        sigma_t = pyro.sample(
            "sigma", dist.TransformedDistribution(sigma2, [dist.transforms.PowerTransform(0.5)])
        )
    else:
        sigma_t = pyro.deterministic("sigma", as_tensor(sigma))
    return weights, means, sigma_t


def spherical_gmm(
    X: torch.Tensor | None = None,
    *,
    n_clusters: int,
    n_features: int | None = None,
    n_samples: int | None = None,
    sigma: float | None = None,
    priors: Priors | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The spherical Gaussian mixture with shared σ, assignments ``z`` explicit.

    ::

        weights ~ Dirichlet(α·1_K)
        means_k ~ Normal(m0, τ0² I_D)                 k = 1..K
        sigma   = fixed value ≥ 0,  or  sigma² ~ InverseGamma(a0, b0)
        z_n     ~ Categorical(weights)                n = 1..N   (enumerable)
        x_n     ~ Normal(means_{z_n}, sigma² I_D)

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features), optional
        Observed data; when absent, ``x`` is drawn (ancestral sampling) and ``n_samples`` and
        ``n_features`` must be given.
    n_clusters : int
        Number of components K.
    n_features, n_samples : int, optional
        D and N, needed when ``X`` is not given.
    sigma : float >= 0, optional
        Fixes σ (a ``pyro.deterministic`` site). ``sigma=0`` is the k-means limit: ``x_n = means[z_n]``
        exactly; it has no density, so it cannot be conditioned on data. ``None`` puts the conjugate
        prior σ² ~ InverseGamma(a0, b0) on it (the site ``sigma`` holds σ, not σ²).
    priors : Priors, optional
        Hyper-parameters; ``Priors()`` by default.
    dtype, device : optional
        Of the drawn tensors when ``X`` is not given (torch's default dtype, CPU); otherwise ``X``'s.

    Returns
    -------
    x : tensor of shape (n_samples, n_features)
        The observed or drawn data.

    Notes
    -----
    Site names are ``weights``, ``means``, ``sigma``, ``z`` and ``x``. ``z`` is marked for parallel
    enumeration, so ``TraceEnum_ELBO`` and ``NUTS`` from Pyro run on the program unchanged (with
    ``max_plate_nesting=1``). As σ → 0 the responsibilities become one-hot at the nearest centroid and
    ``-2σ² log p(X, z | means, σ, weights)`` tends to the k-means inertia (Bishop, PRML §9.3.2).
    """
    n, d, dtype, device = _shape_of_data(X, n_clusters, n_features, n_samples, dtype, device)
    sigma = _check_sigma(sigma)
    if sigma == 0 and X is not None:
        raise ValueError(
            "sigma=0 is the hard limit and has no density: it can generate data but not observe X"
        )
    priors = Priors() if priors is None else priors
    weights, means, sigma_t = _global_sites(n_clusters, d, sigma, priors, dtype, device)
    with pyro.plate("data", n):
        z = pyro.sample("z", dist.Categorical(weights), infer={"enumerate": "parallel"})
        loc = Vindex(means.unsqueeze(-3))[..., z, :]
        if sigma == 0:
            return pyro.sample("x", dist.Delta(loc, event_dim=1))
        scale = sigma_t.unsqueeze(-1)
        return pyro.sample("x", dist.Normal(loc, scale).to_event(1), obs=X)


def spherical_gmm_marginal(
    X: torch.Tensor | None = None,
    *,
    n_clusters: int,
    n_features: int | None = None,
    n_samples: int | None = None,
    sigma: float | None = None,
    priors: Priors | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    subsample_size: int | None = None,
) -> torch.Tensor:
    """The same program with ``z`` summed out: ``x_n ~ Σ_k weights_k Normal(means_k, σ² I_D)``.

    For NUTS and SVI, which need continuous latent variables only. Parameters and sites are those of
    :func:`spherical_gmm` less ``z``; ``sigma=0`` is not allowed (the limit has no density to sum).

    Parameters
    ----------
    subsample_size : int, optional
        Observe a random subset of this many rows of ``X`` (``pyro.plate``'s ``subsample_size``), their
        log-likelihood scaled by ``n_samples / subsample_size``: an unbiased estimate of the whole
        log-likelihood, for mini-batch SVI. ``None`` observes every row.

    Returns
    -------
    x : tensor of shape (n_samples, n_features), or (subsample_size, n_features)
    """
    n, d, dtype, device = _shape_of_data(X, n_clusters, n_features, n_samples, dtype, device)
    sigma = _check_sigma(sigma)
    if sigma == 0:
        raise ValueError("sigma=0 has no mixture density; use spherical_gmm for the hard limit")
    if subsample_size is not None and (
        isinstance(subsample_size, bool)
        or not isinstance(subsample_size, int)
        or not 1 <= subsample_size <= n
    ):
        raise ValueError(f"subsample_size={subsample_size!r} should be None or an integer in [1, {n}]")
    priors = Priors() if priors is None else priors
    weights, means, sigma_t = _global_sites(n_clusters, d, sigma, priors, dtype, device)
    scale = sigma_t.unsqueeze(-1).unsqueeze(-1)
    components = dist.Normal(means.unsqueeze(-3), scale).to_event(1)
    mixture = dist.MixtureSameFamily(dist.Categorical(weights), components)
    with pyro.plate("data", n, subsample_size=subsample_size, device=device) as rows:
        observed = X if X is None or subsample_size is None else X[rows]
        return pyro.sample("x", mixture, obs=observed)
