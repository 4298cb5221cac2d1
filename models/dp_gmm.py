"""The Dirichlet-process mixture of spherical Gaussians with shared σ, truncated, as a Pyro program.

Truncated stick-breaking (Ishwaran & James, JASA 96(453), 2001) turns the DP into a finite program
with ``max_clusters`` components, so that Pyro's own enumeration, NUTS and SVI run on it. Tying the
concentration to σ as ``α(σ) = (1 + τ0²/σ²)^(D/2) · exp(−λ/(2σ²))`` makes its σ → 0 limit DP-means
(Kulis & Jordan, ICML 2012), as the spherical mixture's limit is k-means.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.ops.indexing import Vindex

from .priors import Priors, prior_mean
from .spherical_gmm import _check_sigma, _shape_of_data

__all__ = [
    "DP_SITE_NAMES",
    "dp_concentration",
    "log_dp_concentration",
    "dp_gmm",
    "dp_gmm_marginal",
    "stick_weights",
]

DP_SITE_NAMES = ("v", "weights", "means", "sigma", "z", "x")


def log_dp_concentration(sigma, penalty: float, tau0: float, n_features: int) -> torch.Tensor:
    """``log α(σ) = (D/2) log(1 + τ0²/σ²) − λ/(2σ²)`` (float64 for a float ``sigma``).

    Parameters
    ----------
    sigma : float > 0 or tensor of shape (...)
    penalty : float > 0
        λ, in squared data units: DP-means' price of a cluster.
    tau0 : float > 0
        The prior standard deviation of the means (ρ = τ0² of Kulis & Jordan).
    n_features : int
        D.

    Returns
    -------
    tensor of shape (...) (0-d for a float)
    """
    sigma2 = sigma**2 if torch.is_tensor(sigma) else torch.tensor(float(sigma) ** 2, dtype=torch.float64)
    return 0.5 * n_features * torch.log1p(tau0**2 / sigma2) - penalty / (2.0 * sigma2)


def dp_concentration(sigma, penalty: float, tau0: float, n_features: int) -> torch.Tensor:
    """``α(σ) = (1 + τ0²/σ²)^(D/2) · exp(−λ/(2σ²))``, as :func:`log_dp_concentration` exponentiated.

    It is clamped below at the dtype's smallest normal number (it underflows to 0 for
    ``λ/(2σ²) ≳ 708`` in float64, which ``Beta(1, α)`` does not accept), so the program's sticks at such
    σ are those of that tiny α; the package's closed forms take ``log α`` and are not clamped.
    """
    log_alpha = log_dp_concentration(sigma, penalty, tau0, n_features)
    return log_alpha.exp().clamp_min(torch.finfo(log_alpha.dtype).tiny)


def stick_weights(v: torch.Tensor) -> torch.Tensor:
    """The weights of the sticks ``v`` (shape (..., K − 1)), the last stick being 1: shape (..., K).

    ``π_k = v_k Π_{j<k} (1 − v_j)``, ``π_K = Π_{j<K} (1 − v_j)``.
    """
    ones = v.new_ones(v.shape[:-1] + (1,))
    rest = torch.cat([ones, torch.cumprod(1.0 - v, -1)], -1)
    return torch.cat([v, ones], -1) * rest


def _check_max_clusters(max_clusters) -> int:
    if isinstance(max_clusters, bool) or not isinstance(max_clusters, int) or max_clusters < 1:
        raise ValueError(f"max_clusters={max_clusters!r} should be an integer >= 1")
    return max_clusters


def _check_concentration_prior(concentration_prior, concentration, penalty):
    """``(shape, rate)`` of the Gamma prior on α as floats, or None."""
    if concentration_prior is None:
        return None
    if concentration is not None or penalty is not None:
        raise ValueError("concentration_prior gives α a prior: not with concentration or penalty")
    try:
        shape, rate = (float(v) for v in concentration_prior)
    except (TypeError, ValueError):
        raise ValueError(f"concentration_prior={concentration_prior!r} should be (shape, rate) > 0") from None
    if not all(math.isfinite(v) and v > 0 for v in (shape, rate)):
        raise ValueError(f"concentration_prior={concentration_prior!r} should be (shape, rate) > 0")
    return shape, rate


def _check_concentration(concentration, penalty, sigma, priors):
    if concentration is not None and penalty is not None:
        raise ValueError(
            f"concentration={concentration!r} and penalty={penalty!r}: give one (penalty ties α to σ)"
        )
    for name, value in (("concentration", concentration), ("penalty", penalty)):
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ValueError(f"{name}={value!r} should be None or a positive finite number")
    if penalty is not None and sigma == 0:
        raise ValueError(
            f"penalty={penalty!r} with sigma=0: α(0) = 0 puts every point in one cluster; "
            "give a fixed concentration to sample the limit"
        )
    return float(priors.alpha if concentration is None and penalty is None else concentration or 0.0)


def _global_sites(
    max_clusters, n_features, sigma, priors, concentration, penalty, alpha_prior, dtype, device
):
    """Sample ``v`` (K − 1,), ``weights`` (K,), ``means`` (K, D), ``sigma`` and ``alpha`` (scalars)."""
    as_tensor = lambda v: torch.as_tensor(v, dtype=dtype, device=device)  # noqa: E731
    if sigma is None:
        sigma2 = dist.InverseGamma(as_tensor(priors.a0), as_tensor(priors.b0))
        sigma_t = pyro.sample(
            "sigma", dist.TransformedDistribution(sigma2, [dist.transforms.PowerTransform(0.5)])
        )
    else:
        sigma_t = pyro.deterministic("sigma", as_tensor(sigma))
    if alpha_prior is not None:
        alpha = pyro.sample("alpha", dist.Gamma(as_tensor(alpha_prior[0]), as_tensor(alpha_prior[1])))
    elif penalty is None:
        alpha = as_tensor(concentration)
    else:
        alpha = dp_concentration(sigma_t, penalty, priors.tau0, n_features).to(dtype)
    if max_clusters > 1:
        with pyro.plate("sticks", max_clusters - 1):
            v = pyro.sample("v", dist.Beta(torch.ones_like(alpha), alpha))
    else:
        v = pyro.deterministic("v", as_tensor(0.0).new_zeros(0))
    weights = pyro.deterministic("weights", stick_weights(v))
    m0 = prior_mean(priors, n_features, as_tensor(0.0))
    with pyro.plate("components", max_clusters):
        means = pyro.sample("means", dist.Normal(m0, as_tensor(priors.tau0)).to_event(1))
    return weights, means, sigma_t


def dp_gmm(
    X: torch.Tensor | None = None,
    *,
    max_clusters: int,
    n_features: int | None = None,
    n_samples: int | None = None,
    sigma: float | None = None,
    priors: Priors | None = None,
    concentration: float | None = None,
    penalty: float | None = None,
    concentration_prior: tuple[float, float] | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The truncated Dirichlet-process mixture of spherical Gaussians, assignments ``z`` explicit.

    ::

        sigma   = fixed value ≥ 0,  or  sigma² ~ InverseGamma(a0, b0)
        α       = concentration,  or  α(σ) = (1 + τ0²/σ²)^(D/2) exp(−λ/(2σ²))   (penalty λ)
        v_k     ~ Beta(1, α)                         k = 1..K − 1,  v_K = 1
        weights = π_k = v_k Π_{j<k} (1 − v_j)        (deterministic)
        means_k ~ Normal(m0, τ0² I_D)                k = 1..K
        z_n     ~ Categorical(weights)               n = 1..N   (enumerable)
        x_n     ~ Normal(means_{z_n}, sigma² I_D)

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features), optional
        Observed data; when absent, ``x`` is drawn and ``n_samples``, ``n_features`` are needed.
    max_clusters : int
        The truncation K (components of the finite program).
    n_features, n_samples : int, optional
    sigma : float >= 0, optional
        Fixed σ, ``None`` for the InverseGamma prior on σ², or 0 (ancestral sampling only).
    priors : Priors, optional
        ``m0`` (one value or one per feature), ``tau0``, ``a0``, ``b0``; ``alpha`` is the concentration
        when neither ``concentration`` nor ``penalty`` is given.
    concentration : float > 0, optional
        A fixed α.
    penalty : float > 0, optional
        λ (squared data units): α = α(σ) as above; not with ``sigma=0``.
    concentration_prior : (float, float), optional
        ``(shape, rate)``: α ~ Gamma(shape, rate), a site ``alpha`` (Escobar & West 1995).
    dtype, device : optional
        Of the drawn tensors when ``X`` is not given.

    Returns
    -------
    x : tensor of shape (n_samples, n_features)

    Notes
    -----
    Sites: ``v`` (the K − 1 random sticks), ``weights``, ``means``, ``sigma``, ``z``, ``x``. With the
    base measure N(m0, τ0² I) and α(σ), the Gibbs weight of x_n joining an existing cluster c is
    ``∝ n_c (2πσ²)^(−D/2) exp(−‖x_n − μ_c‖²/(2σ²))`` and of opening a new one
    ``∝ (2πσ²)^(−D/2) exp(−λ/(2σ²) − ‖x_n − m0‖²/(2(τ0² + σ²)))``: as σ → 0 the rule becomes "the
    nearest centroid, or a new cluster when every squared distance exceeds λ", DP-means.
    """
    max_clusters = _check_max_clusters(max_clusters)
    n, d, dtype, device = _shape_of_data(X, max_clusters, n_features, n_samples, dtype, device)
    sigma = _check_sigma(sigma)
    if sigma == 0 and X is not None:
        raise ValueError(
            "sigma=0 is the hard limit and has no density: it can generate data but not observe X"
        )
    priors = Priors() if priors is None else priors
    alpha_prior = _check_concentration_prior(concentration_prior, concentration, penalty)
    concentration = _check_concentration(concentration, penalty, sigma, priors)
    weights, means, sigma_t = _global_sites(
        max_clusters, d, sigma, priors, concentration, penalty, alpha_prior, dtype, device
    )
    with pyro.plate("data", n):
        z = pyro.sample("z", dist.Categorical(weights), infer={"enumerate": "parallel"})
        loc = Vindex(means.unsqueeze(-3))[..., z, :]
        if sigma == 0:
            return pyro.sample("x", dist.Delta(loc, event_dim=1))
        return pyro.sample("x", dist.Normal(loc, sigma_t.unsqueeze(-1)).to_event(1), obs=X)


def dp_gmm_marginal(
    X: torch.Tensor | None = None,
    *,
    max_clusters: int,
    n_features: int | None = None,
    n_samples: int | None = None,
    sigma: float | None = None,
    priors: Priors | None = None,
    concentration: float | None = None,
    penalty: float | None = None,
    concentration_prior: tuple[float, float] | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """:func:`dp_gmm` with ``z`` summed out: ``x_n ~ Σ_k π_k Normal(means_k, σ² I_D)``.

    For NUTS and SVI. The parameters and sites are those of :func:`dp_gmm` less ``z``; ``sigma=0`` is
    not allowed (the limit has no density to sum).

    Returns
    -------
    x : tensor of shape (n_samples, n_features)
    """
    max_clusters = _check_max_clusters(max_clusters)
    n, d, dtype, device = _shape_of_data(X, max_clusters, n_features, n_samples, dtype, device)
    sigma = _check_sigma(sigma)
    if sigma == 0:
        raise ValueError("sigma=0 has no mixture density; use dp_gmm for the hard limit")
    priors = Priors() if priors is None else priors
    alpha_prior = _check_concentration_prior(concentration_prior, concentration, penalty)
    concentration = _check_concentration(concentration, penalty, sigma, priors)
    weights, means, sigma_t = _global_sites(
        max_clusters, d, sigma, priors, concentration, penalty, alpha_prior, dtype, device
    )
    components = dist.Normal(means.unsqueeze(-3), sigma_t.unsqueeze(-1).unsqueeze(-1)).to_event(1)
    mixture = dist.MixtureSameFamily(dist.Categorical(weights), components)
    with pyro.plate("data", n):
        return pyro.sample("x", mixture, obs=X)
