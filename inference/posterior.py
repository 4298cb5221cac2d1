"""The full posterior of the spherical mixture: one front for Gibbs, NUTS, SVI and MAP."""

from __future__ import annotations

import functools
import inspect

import arviz as az

from ..models import Priors
from .gibbs import gibbs_posterior
from .idata import to_inference_data
from .kernels import serial_if_small
from .pyro_samplers import run_nuts, run_svi
from .relabel import relabel as relabel_draws
from .validation import as_data, check_n_clusters, check_positive_int, check_seed, check_sigma

__all__ = ["METHODS", "check_priors", "fit_posterior"]

_RUNNERS = {
    "gibbs": gibbs_posterior,
    "nuts": run_nuts,
    "svi": functools.partial(run_svi, method="svi"),
    "map": functools.partial(run_svi, method="map"),
}
METHODS = tuple(_RUNNERS)
_COMMON = {"sigma", "priors", "num_samples", "num_warmup", "num_chains", "seed", "progress", "method"}


def check_priors(priors) -> Priors:
    """``Priors()`` for ``None``; a ValueError for anything but a ``Priors``."""
    if priors is None:
        return Priors()
    if not isinstance(priors, Priors):
        raise ValueError(f"priors should be a kmeans_limit.Priors, got {type(priors).__name__}")
    return priors


def _check_options(method: str, options: dict) -> None:
    """Method-specific options must be keyword parameters of that method's runner."""
    runner = _RUNNERS[method]
    runner = runner.func if isinstance(runner, functools.partial) else runner
    allowed = {
        name
        for name, p in inspect.signature(runner).parameters.items()
        if p.kind is p.KEYWORD_ONLY and name not in _COMMON
    }
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for method={method!r}; it takes {sorted(allowed)}")


def fit_posterior(
    X,
    n_clusters: int,
    *,
    method: str = "gibbs",
    sigma: float | None = None,
    priors: Priors | None = None,
    num_samples: int = 1000,
    num_warmup: int = 500,
    num_chains: int = 4,
    seed: int = 0,
    progress: bool = True,
    relabel: bool = True,
    posterior_predictive: bool = False,
    log_likelihood: bool = True,
    **options,
) -> az.InferenceData:
    """Draw from the posterior of the spherical Gaussian mixture and return it as InferenceData.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Finite, 2-D, with at least ``n_clusters`` distinct rows. float32 and float64 tensors keep
        their dtype and device; anything else becomes float64.
    n_clusters : int
        K >= 1.
    method : {"gibbs", "nuts", "svi", "map"}, default "gibbs"
        ``"gibbs"``: blocked Gibbs from the conjugate conditionals, chains vectorized
        (:mod:`~kmeans_limit.inference.gibbs`; options ``init``, ``chunk_size``). ``"nuts"``: Pyro's NUTS
        on the marginal program, chains one after another (options ``potential``, ``jit_compile``,
        ``target_accept_prob``, ``max_tree_depth``, ``full_mass``). ``"svi"``: ``AutoMultivariateNormal``
        and ``"map"``: ``AutoDelta`` (options ``num_steps``, ``learning_rate``, ``learning_rate_decay``
        and ``batch_size``; ``num_warmup`` unused); MAP repeats its point in every draw.
        ``batch_size`` (an integer in [1, N]) makes each optimisation step observe that many random
        rows, their log-likelihood scaled by N / batch_size (``pyro.plate`` subsampling): SVI at a
        cost per step independent of N, for data too large for NUTS
        (:func:`~kmeans_limit.inference.pyro_samplers.run_svi`).
    sigma : float > 0, optional
        Fixes σ: the posterior at that σ, a tempered view whose limit σ → 0 is k-means. ``None``
        learns σ under the prior σ² ~ InverseGamma(a0, b0).
    priors : Priors, optional
    num_samples, num_warmup, num_chains : int
        Kept draws and discarded warm-up iterations per chain (>= 1, >= 0, >= 1).
    seed : int, default 0
        The draws depend on it alone; the caller's global RNG state is left as it was.
    progress : bool, default True
        Progress bars. (Small problems run on one thread, see
        :func:`~kmeans_limit.inference.kernels.serial_if_small`; the caller's setting is restored.)
    relabel : bool, default True
        Undo label switching by pivoting to the MAP draw (:func:`~kmeans_limit.inference.relabel`).
    posterior_predictive : bool, default False
        Also draw replicated data at every draw, by ancestral sampling from the program.
    log_likelihood : bool, default True
        Store the pointwise log-likelihood group (for LOO and WAIC): chains × draws × N numbers,
        16 GB at N = 1,000,000 and 2000 draws. ``False`` leaves it out (``lp`` stays exact), for
        large N, e.g. with mini-batch SVI.
    **options
        Method-specific options, above.

    Returns
    -------
    arviz.InferenceData
        ``posterior``: weights (chain, draw, cluster), means (chain, draw, cluster, feature), sigma
        (chain, draw); ``sample_stats``: lp = log p(X, weights, means, σ) with z summed out (the σ
        density included when σ is learned), and for NUTS diverging, step_size, n_steps, tree_depth;
        ``log_likelihood``: x (chain, draw, observation), ``log p(x_n | θ)`` with z summed out
        (unless ``log_likelihood=False``);
        ``observed_data``: x; ``posterior_predictive``: x on request. Every group's attrs hold
        method, seed, sigma ("learned" or its value), relabelled and the package versions.

    Raises
    ------
    ValueError
        For bad input, naming the value.
    FloatingPointError
        When a sampler produces NaN or inf, naming the step.

    Notes
    -----
    All four methods target (or approximate) the posterior of the same program,
    :func:`~kmeans_limit.models.spherical_gmm`: Gibbs through its conjugate conditionals (Diebolt &
    Robert, JRSS B 56(2), 1994), NUTS (Hoffman & Gelman, JMLR 15, 2014) and SVI through the marginal
    twin with z summed out. With σ fixed, ``P(z_n = k | θ) ∝ π_k exp(−‖x_n − μ_k‖²/2σ²)`` and
    ``means_k | z`` has variance ``(1/τ0² + N_k/σ²)⁻¹``: as σ → 0 the posterior concentrates on a
    fixed point of Lloyd's algorithm (see :func:`~kmeans_limit.inference.tempered_path`). The
    posterior is symmetric under relabelling the components, hence ``relabel`` (Stephens, JRSS B
    62(4), 2000) and the permutation-invariant diagnostics of
    :func:`~kmeans_limit.inference.invariant_summary`.
    """
    X = as_data(X)
    n_clusters = check_n_clusters(n_clusters, X)
    if method not in METHODS:
        raise ValueError(f"method={method!r} should be one of {METHODS}")
    sigma = check_sigma(sigma, allow_zero=False, allow_none=True)
    priors = check_priors(priors)
    counts = {
        "num_samples": check_positive_int("num_samples", num_samples),
        "num_warmup": check_positive_int("num_warmup", num_warmup, minimum=0),
        "num_chains": check_positive_int("num_chains", num_chains),
    }
    seed = check_seed(seed)
    _check_options(method, options)
    common = {"sigma": sigma, "priors": priors, "seed": seed, "progress": progress}
    attrs = {"method": method, "seed": seed, "n_clusters": n_clusters, **counts}
    chains_at_once = counts["num_chains"] if method == "gibbs" else 1
    with serial_if_small(chains_at_once * X.shape[0] * n_clusters * (X.shape[1] + 1)):
        draws = _RUNNERS[method](X, n_clusters, **common, **counts, **options)
        idata = to_inference_data(
            draws,
            X,
            sigma=sigma,
            priors=priors,
            attrs=attrs,
            posterior_predictive=posterior_predictive,
            seed=seed,
            log_likelihood=bool(log_likelihood),
        )
        return relabel_draws(idata) if relabel else idata
