"""Comparing posterior fits: across samplers, across K, and along a path of shrinking σ."""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
import xarray as xr
from scipy.stats import energy_distance

from . import arviz_compat
from .data import prepare_data
from .gibbs import GibbsState
from .init import kmeans_plusplus
from .lloyd import lloyd
from .posterior import fit_posterior
from .relabel import pivot_permutations, relabel
from .summaries import assignment_probabilities, invariant_dataset
from .validation import as_data, check_n_clusters, check_positive_int, check_seed, check_sigma, derive_seeds

__all__ = ["TemperedPath", "compare_k", "compare_posteriors", "kmeans_reference", "tempered_path"]


def _aligned_means(idata, reference: np.ndarray | None) -> xr.DataArray:
    """Relabelled means, with components permuted as a whole to match ``reference`` (posterior means)."""
    if idata.posterior.attrs.get("relabelled", "none") == "none":
        idata = relabel(idata)
    means = idata.posterior["means"]
    if reference is None:
        return means
    centre = torch.as_tensor(means.mean(("chain", "draw")).values)[None]
    perm = pivot_permutations(centre, torch.as_tensor(reference))[0].numpy()
    return means.isel(cluster=perm).assign_coords(cluster=means["cluster"].values)


def _parameters(idata, reference: np.ndarray | None) -> xr.Dataset:
    """σ (when learned), sorted weights and aligned means of one fit, flattened to scalar variables."""
    invariant = invariant_dataset(idata).drop_vars("lp")
    means = _aligned_means(idata, reference)
    data = {}
    if "sigma" in invariant:
        data["sigma"] = invariant["sigma"]
    for r in invariant["rank"].values:
        data[f"weights_sorted[{r}]"] = invariant["weights_sorted"].sel(rank=r, drop=True)
    for k, d in itertools.product(means["cluster"].values, means["feature"].values):
        data[f"means[{k},{d}]"] = means.sel(cluster=k, feature=d, drop=True)
    return xr.Dataset(data)


def is_point_estimate(idata) -> bool:
    """Whether a fit is one point repeated (MAP: ``point_estimate_repeated`` in its attrs), not draws."""
    return bool(idata.posterior.attrs.get("point_estimate_repeated", 0))


def _in_mcse(difference: float, mcse: float) -> float:
    """``difference / mcse``; NaN when there is no Monte-Carlo error to measure it in (two points)."""
    return difference / mcse if mcse > 0 else float("nan")


def _spread(sd: xr.Dataset, point: bool) -> xr.Dataset:
    """The sds of a fit's draws, NaN for a point estimate (which has no spread, not a spread of 0)."""
    return sd * np.nan if point else sd


def _pair_rows(name_a, a: xr.Dataset, name_b, b: xr.Dataset, points: tuple[bool, bool]) -> list[dict]:
    """One row per parameter of the comparison of fits ``a`` and ``b`` (see compare_posteriors)."""
    mean_a, mean_b = a.mean(("chain", "draw")), b.mean(("chain", "draw"))
    sd_a = _spread(a.std(("chain", "draw")), points[0])
    sd_b = _spread(b.std(("chain", "draw")), points[1])
    # A point estimate has no Monte-Carlo error (and az.mcse of constant draws is 0 only up to rounding).
    mcse_a, mcse_b = (
        fit.mean(("chain", "draw")) * 0.0 if point else arviz_compat.mcse(fit, method="mean")
        for fit, point in zip((a, b), points, strict=True)
    )
    rows = []
    for var in a.data_vars:
        diff = float(mean_a[var] - mean_b[var])
        rows.append(
            {
                "a": name_a,
                "b": name_b,
                "parameter": var,
                "point_a": points[0],
                "point_b": points[1],
                "mean_a": float(mean_a[var]),
                "mean_b": float(mean_b[var]),
                "z_mcse": _in_mcse(diff, float(np.hypot(mcse_a[var], mcse_b[var]))),
                "sd_a": float(sd_a[var]),
                "sd_b": float(sd_b[var]),
                "sd_ratio": float(sd_a[var] / sd_b[var]),
                "energy_distance": energy_distance(a[var].values.ravel(), b[var].values.ravel()),
            }
        )
    return rows


def compare_posteriors(fits: dict, reference=None) -> pd.DataFrame:
    """Compare posterior fits of the same data and K, pair by pair, on identifiable quantities.

    Parameters
    ----------
    fits : dict of str to arviz.InferenceData or xarray.DataTree
        At least two fits (for instance ``{"nuts": ..., "gibbs": ...}``), or one with ``reference``.
        Means are relabelled (pivot) if they are not already, then each fit's components are matched
        as a whole to the first fit's posterior means.
    reference : ExactPosterior, optional
        The exact posterior (:func:`~kmeans_limit.inference.exact.exact_posterior`) of the fits' data,
        K, σ and priors: each fit is then compared with it instead of with the others
        (:func:`~kmeans_limit.inference.reference.compare_to_reference`: errors in MCSE units).

    Returns
    -------
    pandas.DataFrame
        One row per pair and parameter (``sigma`` when learned in both, ``weights_sorted[r]``,
        ``means[k,d]``): the posterior means, ``z_mcse`` = (mean_a − mean_b) / √(mcse_a² + mcse_b²)
        with MCSEs from ``az.mcse``, the sds and their ratio, and the energy distance between the two
        sets of draws (``scipy.stats.energy_distance``, 0 for identical distributions).
        ``point_a``/``point_b`` say when a fit is a point estimate (MAP): it has no spread, so its
        sd and the sd ratio are NaN, its mean is the point (no Monte-Carlo error: ``z_mcse`` measures
        the gap in the other fit's MCSE, and is NaN between two points).
    """
    if reference is not None:  # one fit is enough against the truth
        from .reference import compare_to_reference

        return compare_to_reference(fits, reference)
    if len(fits) < 2:
        raise ValueError(f"compare_posteriors needs at least two fits, got {len(fits)}")
    shapes = {name: tuple(idata.posterior["means"].shape[2:]) for name, idata in fits.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"the fits differ in (n_clusters, n_features): {shapes}")
    first = next(iter(fits.values()))
    reference = _aligned_means(first, None).mean(("chain", "draw")).values
    params = {name: _parameters(idata, reference) for name, idata in fits.items()}
    rows = []
    for (name_a, a), (name_b, b) in itertools.combinations(params.items(), 2):
        common = [v for v in a.data_vars if v in b.data_vars]
        points = (is_point_estimate(fits[name_a]), is_point_estimate(fits[name_b]))
        rows += _pair_rows(name_a, a[common], name_b, b[common], points)
    return pd.DataFrame(rows)


def compare_k(X, ks, *, ic: str = "loo", **fit_kwargs) -> pd.DataFrame:
    """Rank choices of K by expected log predictive density (LOO or WAIC) with ``az.compare``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    ks : iterable of int
        The numbers of clusters to compare (at least two).
    ic : {"loo", "waic"}, default "loo"
        WAIC only on arviz 0.23 (arviz 1.x has LOO only).
    **fit_kwargs
        Passed to :func:`~kmeans_limit.inference.fit_posterior` (method, sigma, num_samples, seed...).

    Returns
    -------
    pandas.DataFrame
        ``az.compare``'s table, indexed by ``"K=k"``, best first.
    """
    X = as_data(X)
    ks = [check_n_clusters(k, X) for k in ks]
    if len(set(ks)) < 2:
        raise ValueError(f"ks={ks} should hold at least two different numbers of clusters")
    fits = {f"K={k}": fit_posterior(X, k, **fit_kwargs) for k in ks}
    return arviz_compat.compare(fits, ic=ic)


def kmeans_reference(X: torch.Tensor, n_clusters: int, *, seed: int = 0, n_init: int = 10) -> torch.Tensor:
    """The best of ``n_init`` runs of Lloyd's algorithm from k-means++ seedings: centroids (K, D).

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features)
    n_clusters : int
    seed : int in [0, 2**32 - 1], default 0
        The seedings' seeds are ``derive_seeds(seed, n_init)``.
    n_init : int, default 10

    Returns
    -------
    tensor of shape (n_clusters, n_features)
        In X's units.
    """
    seeds = derive_seeds(check_seed(seed), check_positive_int("n_init", n_init))
    runs = [lloyd(X, kmeans_plusplus(X, n_clusters, seed=s)) for s in seeds]
    return min(runs, key=lambda run: run.inertia).means


class TemperedPath(NamedTuple):
    """Posteriors at fixed σ along a decreasing path.

    Attributes
    ----------
    posteriors : dict of float to arviz.InferenceData or xarray.DataTree
        σ → Gibbs posterior at that σ, relabelled to the k-means centroids.
    summary : pandas.DataFrame
        One row per σ: ``means_sd`` (posterior sd of the means, averaged over components and
        features), ``centroid_distance`` (max_k ‖E[μ_k] − c_k‖ to the k-means centroids c),
        ``hard_agreement`` (fraction of rows whose most probable component is their k-means
        cluster) and ``assignment_entropy`` (mean entropy of P(z_n | X), nats).
    centroids : tensor of shape (n_clusters, n_features)
        The k-means solution the path is compared with.
    """

    posteriors: dict
    summary: pd.DataFrame
    centroids: torch.Tensor


def _hard_labels(X: torch.Tensor, centroids: torch.Tensor) -> np.ndarray:
    """The nearest centroid of every row, rows and centroids moved by the same offset first (float64)."""
    data = prepare_data(X.to(torch.float64).cpu())
    return torch.cdist(data.rows, data.to_rows(centroids)).argmin(1).numpy()


def _path_row(sigma: float, idata, labels: np.ndarray, centroids: torch.Tensor) -> dict:
    means = idata.posterior["means"]
    centre = torch.as_tensor(means.mean(("chain", "draw")).values)
    probs = assignment_probabilities(idata)
    return {
        "sigma": sigma,
        "means_sd": float(means.std(("chain", "draw")).mean()),
        "centroid_distance": float((centre - centroids.cpu()).norm(dim=-1).max()),
        "hard_agreement": float((probs.argmax(1) == labels).mean()),
        "assignment_entropy": float(-(probs * np.log(np.clip(probs, 1e-300, None))).sum(1).mean()),
    }


def _last_state(idata) -> GibbsState:
    """Every chain's last draw, to start the next σ of the path from."""
    last = idata.posterior.isel(draw=-1)
    return GibbsState(*(torch.as_tensor(last[name].values) for name in ("weights", "means", "sigma")))


def tempered_path(
    X,
    n_clusters: int,
    sigmas,
    *,
    centroids=None,
    num_samples: int = 200,
    num_warmup: int = 100,
    num_chains: int = 2,
    seed: int = 0,
    priors=None,
    progress: bool = False,
) -> TemperedPath:
    """Gibbs posteriors at a decreasing sequence of fixed σ, converging on the k-means solution.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_clusters : int
    sigmas : sequence of float
        Strictly decreasing, all > 0. Each σ starts from the last draws at the previous one
        (annealing), so the chains follow one mode down the path.
    centroids : array-like of shape (n_clusters, n_features), optional
        The k-means solution to compare with; by default the best of 10 k-means++ + Lloyd runs.
    num_samples, num_warmup, num_chains, seed, priors, progress
        As in :func:`~kmeans_limit.inference.fit_posterior` (priors in X's units, data-scaled by
        default). The fit at the i-th σ has seed ``derive_seeds(seed, len(sigmas))[i]``.

    Returns
    -------
    TemperedPath

    Notes
    -----
    At fixed σ, ``means_k | z ~ Normal(·, (1/τ0² + N_k/σ²)⁻¹)`` and ``P(z_n = k | θ) ∝ π_k
    exp(−‖x_n − μ_k‖²/2σ²)``: as σ → 0 the means' spread shrinks like σ/√N_k and the assignments
    become nearest-centroid, so the posterior concentrates on a fixed point of Lloyd's algorithm.
    """
    X = as_data(X)
    n_clusters = check_n_clusters(n_clusters, X)
    sigmas = [check_sigma(s, allow_zero=False) for s in sigmas]
    if len(sigmas) < 1 or any(b >= a for a, b in zip(sigmas, sigmas[1:], strict=False)):
        raise ValueError(f"sigmas={sigmas} should be a non-empty, strictly decreasing sequence")
    seed = check_seed(seed)
    if centroids is None:
        centroids = kmeans_reference(X, n_clusters, seed=seed)
    centroids = torch.as_tensor(np.asarray(centroids), dtype=torch.float64)
    labels = _hard_labels(X, centroids)
    posteriors, rows, init = {}, [], None
    for sigma, sigma_seed in zip(sigmas, derive_seeds(seed, len(sigmas)), strict=True):
        idata = fit_posterior(
            X, n_clusters, method="gibbs", sigma=sigma, priors=priors, num_samples=num_samples,
            num_warmup=num_warmup, num_chains=num_chains, seed=sigma_seed, progress=progress,
            relabel=False, init=init,
        )  # fmt: skip
        posteriors[sigma] = relabel(idata, reference=centroids)
        rows.append(_path_row(sigma, posteriors[sigma], labels, centroids))
        init = _last_state(idata)
    return TemperedPath(posteriors, pd.DataFrame(rows), centroids)
