"""The full posterior of the spherical mixture: one front for Gibbs, NUTS, SVI and MAP."""

from __future__ import annotations

import functools
import inspect
import math

from ..models import Priors, data_scaled_priors, prior_mean
from . import arviz_compat
from .data import Data, prepare_data
from .gibbs import GibbsState, gibbs_posterior
from .idata import prior_attrs, to_inference_data
from .kernels import serial_if_small
from .pyro_samplers import run_nuts, run_svi
from .relabel import CANONICAL_REFERENCE, canonical_reference
from .relabel import relabel as relabel_draws
from .validation import as_data, check_n_clusters, check_positive_int, check_seed, check_sigma

__all__ = ["METHODS", "check_priors", "choose_priors", "fit_posterior"]

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


def choose_priors(priors, data: Data, sigma: float | None = None) -> tuple[Priors, str]:
    """The priors of a fit, in the data's units, and where they came from.

    Parameters
    ----------
    priors : Priors or None
        The caller's; they mean exactly what they say, in the data's units.
    data : Data
    sigma : float, optional
        The fixed σ: the scale of the default when the rows have no spread (all the same).

    Returns
    -------
    priors : Priors
        The caller's, or when there are none the data-scaled default
        ``data_scaled_priors(data.mean, data.variance)``: ``m0`` at the column means, ``tau0 = 2 s``,
        ``a0 = 2``, ``b0 = 0.5 s²`` for the data's mean per-feature variance ``s²`` (``Priors()`` on
        standardized data), chosen once from the data.
    source : {"given", "data-scaled", "data-scaled (by sigma: the rows have no spread)"}

    Raises
    ------
    ValueError
        For priors that are not a ``Priors``, a per-feature ``m0`` of the wrong length, or no priors
        for data without spread (every row the same), which give the default no scale.
    """
    if priors is None:
        if not data.variance > 0 and sigma is not None:  # no spread to scale by: the fixed σ is the scale
            return data_scaled_priors(data.mean, sigma**2), "data-scaled (by sigma: the rows have no spread)"
        try:
            return data_scaled_priors(data.mean, data.variance), "data-scaled"
        except ValueError as error:
            raise ValueError(f"priors=None: {error}, or fix sigma") from None
    priors = check_priors(priors)
    prior_mean(priors, data.n_features, data.mean)  # a per-feature m0 of the wrong length raises
    return priors, "given"


def frame_scale(data: Data) -> float:
    """The power of 2 nearest the data's spread ``s = sqrt(data.variance)`` (1 for data without spread).

    The gradient-based methods run on the rows divided by it (see :func:`_run`): a power of 2, so that
    the division and the way back are exact in floating point.
    """
    if not data.variance > 0:
        return 1.0
    return 2.0 ** round(0.5 * math.log2(data.variance))


def _run(method: str, data: Data, n_clusters: int, common: dict, counts: dict, options: dict):
    """The method's runner on the rows, its draws in the rows' frame (shifted, not scaled).

    NUTS, SVI and MAP run on ``rows / c`` for ``c = frame_scale(data)``, with priors and a fixed σ
    divided by ``c`` (:meth:`~kmeans_limit.models.Priors.rescaled`), and their means and σ are
    multiplied back: the same posterior exactly (a change of units), while NUTS's unit initial mass
    matrix and step size, and Adam's learning rate, meet a problem of unit scale whatever the data's
    units (NUTS on data in units 250 times the spread took 15 times the potential evaluations).
    Gibbs draws from exact conditionals, which need no such help.
    """
    runner = _RUNNERS[method]
    scale = 1.0 if method == "gibbs" else frame_scale(data)
    if scale == 1.0:
        return runner(data.rows, n_clusters, **common, **counts, **options)
    sigma = None if common["sigma"] is None else common["sigma"] / scale
    scaled = {**common, "sigma": sigma, "priors": common["priors"].rescaled(scale)}
    draws = runner(data.rows / scale, n_clusters, **scaled, **counts, **options)
    return draws._replace(means=draws.means * scale, sigma=draws.sigma * scale)


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
) -> object:
    """Draw from the posterior of the spherical Gaussian mixture and return it as InferenceData or DataTree.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features), or Data
        Finite, 2-D, with at least ``n_clusters`` distinct rows. float32 and float64 tensors keep
        their dtype and device; anything else becomes float64. It is prepared once
        (:func:`~kmeans_limit.inference.data.prepare_data`: centred when its mean is large against
        its spread), every method runs on those rows, and the draws come back in X's units.
    n_clusters : int
        K >= 1.
    method : {"gibbs", "nuts", "svi", "map"}, default "gibbs"
        ``"gibbs"``: blocked Gibbs from the conjugate conditionals, chains vectorized
        (:mod:`~kmeans_limit.inference.gibbs`; options ``init``, a GibbsState in X's units, and
        ``chunk_size``). ``"nuts"``: Pyro's NUTS on the marginal program, chains one after another
        (options ``potential``, ``jit_compile``,
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
        In the data's units, meaning exactly what they say. By default the data-scaled priors
        ``data_scaled_priors(data.mean, data.variance)`` (:func:`~kmeans_limit.models.data_scaled_priors`):
        ``m0`` at the column means, ``tau0 = 2 s``, ``a0 = 2``, ``b0 = 0.5 s²`` with ``s²`` the mean
        per-feature variance of X, chosen once from the data (they are ``Priors()`` on standardized
        data, and move with the data under ``X' = a X + b``). The priors used are recorded in the
        attributes of every group.
    num_samples, num_warmup, num_chains : int
        Kept draws and discarded warm-up iterations per chain (>= 1, >= 0, >= 1).
    seed : int in [0, 2**32 - 1], default 0
        The draws depend on it alone; the caller's global RNG state is left as it was. Seeds of
        chains come from :func:`~kmeans_limit.inference.validation.derive_seeds`.
    progress : bool, default True
        Progress bars. (Small problems run on one thread, see
        :func:`~kmeans_limit.inference.kernels.serial_if_small`; the caller's setting is restored.)
    relabel : bool, default True
        Undo label switching by pivoting every draw to one canonical reference: the annealed hard fit
        of the same data, its components ordered by decreasing weight
        (:func:`~kmeans_limit.inference.relabel.canonical_reference`), so that separate runs (other
        methods, other seeds) give component k the same meaning. The attrs say so
        (``relabelled="pivot"``, ``relabel_reference``).
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
    arviz.InferenceData (arviz 0.23, Python 3.11) or xarray.DataTree (arviz 1.x, Python 3.12+)
        ``posterior``: weights (chain, draw, cluster), means (chain, draw, cluster, feature), sigma
        (chain, draw); ``sample_stats``: lp = log p(X, weights, means, σ) with z summed out (the σ
        density included when σ is learned), and for NUTS diverging, step_size, n_steps, tree_depth;
        ``log_likelihood``: x (chain, draw, observation), ``log p(x_n | θ)`` with z summed out
        (unless ``log_likelihood=False``);
        ``observed_data``: x (X as given); ``posterior_predictive``: x on request. Means, x and the
        priors are in X's units. Every group's attrs hold method, seed, sigma ("learned" or its
        value), relabelled, the package versions and the priors used: ``priors`` ("data-scaled" or
        "given"), ``prior_alpha``, ``prior_m0`` (an array of n_features values), ``prior_tau0``,
        ``prior_a0`` and ``prior_b0``.

    Raises
    ------
    ValueError
        For bad input, naming the value; for data without spread and no priors.
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
    if isinstance(X, Data):
        data, X = X, X.to_data(X.rows)
    else:
        X = as_data(X)
        data = prepare_data(X)
    if data.weight is not None:
        raise ValueError("fit_posterior takes no sample weights: pass a Data without weight")
    n_clusters = check_n_clusters(n_clusters, data.rows)
    if method not in METHODS:
        raise ValueError(f"method={method!r} should be one of {METHODS}")
    sigma = check_sigma(sigma, allow_zero=False, allow_none=True)
    if priors is not None:
        check_priors(priors)
    counts = {
        "num_samples": check_positive_int("num_samples", num_samples),
        "num_warmup": check_positive_int("num_warmup", num_warmup, minimum=0),
        "num_chains": check_positive_int("num_chains", num_chains),
    }
    seed = check_seed(seed)
    _check_options(method, options)
    priors, source = choose_priors(priors, data, sigma)
    if isinstance(options.get("init"), GibbsState):  # a start in data units, moved with the rows
        options["init"] = options["init"]._replace(means=data.to_rows(options["init"].means))
    common = {"sigma": sigma, "priors": priors.shifted(data.offset), "seed": seed, "progress": progress}
    attrs = {"method": method, "seed": seed, "n_clusters": n_clusters, **counts}
    attrs.update(prior_attrs(priors, data.n_features, source))
    chains_at_once = counts["num_chains"] if method == "gibbs" else 1
    with serial_if_small(chains_at_once * data.n_samples * n_clusters * (data.n_features + 1)):
        draws = _run(method, data, n_clusters, common, counts, options)
        idata = to_inference_data(
            draws,
            data,
            sigma=sigma,
            priors=priors,
            attrs=attrs,
            observed=X,
            posterior_predictive=posterior_predictive,
            seed=seed,
            log_likelihood=bool(log_likelihood),
        )
    if not relabel:
        return idata
    idata = relabel_draws(idata, reference=canonical_reference(data, n_clusters, seed=seed))
    arviz_compat.update_attrs(idata, {"relabel_reference": CANONICAL_REFERENCE})
    return idata
