"""The posterior over the number of clusters: blocked Gibbs on the truncated DP mixture, as InferenceData."""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
import xarray as xr
from scipy.optimize import linear_sum_assignment
from tqdm.auto import tqdm

from ..models import Priors, data_scaled_priors, log_dp_concentration, prior_mean
from . import arviz_compat
from .data import Data, prepare_data
from .dp_gibbs import dp_gibbs_sweep, initial_dp_state
from .idata import package_versions
from .kernels import serial_if_small
from .validation import check_positive_int, check_real, check_seed, check_sigma, make_generator

__all__ = ["TruncationWarning", "dp_log_likelihood", "fit_dp_posterior", "occupied_summary"]


class TruncationWarning(UserWarning):
    """The last components of the truncated DP were occupied: raise ``max_clusters``."""


def _concentration(concentration, concentration_prior, penalty, sigma, priors, n_features):
    """(starting α, Gamma prior or None, description) from the three exclusive ways of giving α."""
    given = [
        name
        for name, v in (
            ("concentration", concentration),
            ("concentration_prior", concentration_prior),
            ("penalty", penalty),
        )
        if v is not None
    ]
    if len(given) > 1:
        raise ValueError(f"{' and '.join(given)}: give at most one way of setting the concentration")
    if penalty is not None:
        penalty = check_real("penalty", penalty, low=0.0, low_open=True)
        if sigma is None:
            raise ValueError(
                f"penalty={penalty!r} ties α to σ: give a fixed sigma (α(σ) with σ learned is not conjugate)"
            )
        return (
            math.exp(float(log_dp_concentration(sigma, penalty, priors.tau0, n_features))),
            None,
            f"alpha(sigma), penalty={penalty}",
        )
    if concentration_prior is not None:
        try:
            shape, rate = (
                check_real(n, float(v), low=0.0, low_open=True)
                for n, v in zip(("shape", "rate"), concentration_prior, strict=True)
            )
        except (TypeError, ValueError):
            raise ValueError(
                f"concentration_prior={concentration_prior!r} should be (shape, rate), both > 0"
            ) from None
        return shape / rate, (shape, rate), f"Gamma({shape}, {rate})"
    alpha = (
        priors.alpha
        if concentration is None
        else check_real("concentration", concentration, low=0.0, low_open=True)
    )
    return alpha, None, f"fixed {alpha}"


def dp_log_likelihood(
    rows: torch.Tensor, weights: torch.Tensor, means: torch.Tensor, sigma: torch.Tensor
) -> torch.Tensor:
    """``log p(x_n | π, means, σ) = logsumexp_k [log π_k + log N(x_n | μ_k, σ² I)]`` for every draw.

    Parameters
    ----------
    rows : tensor of shape (n_samples, n_features)
    weights : tensor of shape (n_draws, K)
    means : tensor of shape (n_draws, K, n_features)
        In the rows' frame.
    sigma : tensor of shape (n_draws,)

    Returns
    -------
    tensor of shape (n_draws, n_samples)
    """
    d = rows.shape[1]
    sq = torch.cdist(
        means, rows[None].expand(means.shape[0], -1, -1), compute_mode="donot_use_mm_for_euclid_dist"
    ).square()
    s2 = (sigma * sigma)[:, None, None]
    log_normal = -0.5 * sq / s2 - 0.5 * d * torch.log(2 * math.pi * s2)
    return torch.logsumexp(weights.log()[..., None] + log_normal, 1)


def _relabelled(sizes: np.ndarray, means: np.ndarray, weights: np.ndarray, lp: np.ndarray):
    """Draws with the modal occupied count m: their m occupied components, biggest first, then
    pivoted (Hungarian on squared distances) to the draw of highest lp among them."""
    occupied = (sizes > 0).sum(-1)
    values, freq = np.unique(occupied, return_counts=True)
    m = int(values[freq.argmax()])
    chain, draw = np.nonzero(occupied == m)
    order = np.argsort(-sizes[chain, draw], axis=-1, kind="stable")[:, :m]
    picked_means = np.take_along_axis(means[chain, draw], order[..., None], 1)
    picked_weights = np.take_along_axis(weights[chain, draw], order, 1)
    reference = picked_means[int(lp[chain, draw].argmax())]
    for i in range(picked_means.shape[0]):
        cost = ((picked_means[i][:, None, :] - reference[None]) ** 2).sum(-1)
        rows, cols = linear_sum_assignment(cost)
        perm = np.empty(m, dtype=int)
        perm[cols] = rows
        picked_means[i], picked_weights[i] = picked_means[i][perm], picked_weights[i][perm]
    return xr.Dataset(
        {
            "means": (("sample", "component", "feature"), picked_means),
            "weights": (("sample", "component"), picked_weights),
            "chain": (("sample",), chain),
            "draw": (("sample",), draw),
        },
        attrs={"n_components": m, "fraction_of_draws": float(len(chain) / occupied.size)},
    )


def occupied_summary(idata):
    """Mean, sd and the 3%-97% quantiles of the relabelled occupied components' weights and means.

    Returns
    -------
    pandas.DataFrame
        One row per ``weights[k]`` and ``means[k, j]``; computed from the draws with the modal number
        of occupied clusters (``idata.occupied_components.attrs``).
    """
    import pandas as pd

    group = idata.occupied_components
    rows = {}
    for k in range(group.attrs["n_components"]):
        rows[f"weights[{k}]"] = group.weights.values[:, k]
        for j in range(group.means.shape[-1]):
            rows[f"means[{k}, {j}]"] = group.means.values[:, k, j]
    return pd.DataFrame(
        {
            name: {"mean": v.mean(), "sd": v.std(), "q3%": np.quantile(v, 0.03), "q97%": np.quantile(v, 0.97)}
            for name, v in rows.items()
        }
    ).T


def fit_dp_posterior(
    X,
    max_clusters: int = 20,
    *,
    sigma: float | None = None,
    priors: Priors | None = None,
    concentration: float | None = None,
    concentration_prior: tuple[float, float] | None = None,
    penalty: float | None = None,
    num_samples: int = 1000,
    num_warmup: int = 500,
    num_chains: int = 4,
    seed: int = 0,
    coclustering: bool | None = None,
    progress: bool = False,
) -> object:
    """The posterior of the truncated DP mixture :func:`~kmeans_limit.models.dp_gmm` by blocked Gibbs.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features), or Data
    max_clusters : int, default 20
        The truncation K.
    sigma : float > 0, optional
        Fixed σ; ``None`` learns it (σ² ~ InverseGamma(a0, b0)).
    priors : Priors, optional
        In the data's units; by default :func:`~kmeans_limit.models.data_scaled_priors`.
        ``priors.alpha`` is the concentration unless one of the next three is given.
    concentration : float > 0, optional
        A fixed α.
    concentration_prior : (float, float), optional
        α ~ Gamma(shape, rate), sampled.
    penalty : float > 0, optional
        α = α(σ) of DP-means' λ (fixed σ only).
    num_samples, num_warmup, num_chains, seed : int
    coclustering : bool, optional
        Accumulate the N × N co-clustering matrix (default: when N ≤ 2000).
    progress : bool, default False

    Returns
    -------
    arviz.InferenceData (arviz 0.23) or xarray.DataTree (arviz 1.x)
        ``posterior``: n_occupied (chain, draw), cluster_sizes (chain, draw, cluster), v (chain, draw,
        stick), weights,
        means (data units, raw stick labels), sigma, alpha; ``sample_stats``: lp (log joint with z
        summed out, the program's); ``log_likelihood``: x (chain, draw, observation), z summed out;
        ``observed_data``: x; ``coclustering``: probability (observation, observation_other);
        ``occupied_components``: the relabelled components of the draws with the modal occupied count
        (:func:`occupied_summary`).

    Warns
    -----
    TruncationWarning
        When the last component was occupied in some kept draw.
    """
    data = prepare_data(X)
    max_clusters = check_positive_int("max_clusters", max_clusters, minimum=2)
    sigma = check_sigma(sigma, allow_zero=False, allow_none=True)
    priors = data_scaled_priors(data.mean, data.variance) if priors is None else priors
    if not isinstance(priors, Priors):
        raise ValueError(f"priors should be a Priors, got {type(priors).__name__}")
    alpha0, alpha_prior, alpha_mode = _concentration(
        concentration, concentration_prior, penalty, sigma, priors, data.n_features
    )
    counts = [
        check_positive_int(n, v, minimum=m)
        for n, v, m in (
            ("num_samples", num_samples, 1),
            ("num_warmup", num_warmup, 0),
            ("num_chains", num_chains, 1),
        )
    ]
    seed = check_seed(seed)
    coclustering = data.n_samples <= 2000 if coclustering is None else bool(coclustering)
    with serial_if_small(counts[2] * data.n_samples * max_clusters * (data.n_features + 1)):
        kept, co = _run(
            data, priors, max_clusters, sigma, alpha0, alpha_prior, *counts, seed, coclustering, progress
        )
        return _to_idata(
            data,
            priors,
            kept,
            co,
            sigma,
            alpha_prior,
            dict(
                method="dp-gibbs",
                seed=seed,
                max_clusters=max_clusters,
                concentration=alpha_mode,
                sigma="learned" if sigma is None else sigma,
            ),
        )


def _run(
    data: Data,
    priors,
    max_clusters,
    sigma,
    alpha0,
    alpha_prior,
    num_samples,
    num_warmup,
    num_chains,
    seed,
    coclustering,
    progress,
):
    X = data.rows
    m0 = prior_mean(priors.shifted(data.offset), data.n_features, X)
    generator = make_generator(seed, X.device)
    state = initial_dp_state(X, max_clusters, num_chains, sigma, alpha0, generator)
    kept = {name: [] for name in ("v", "means", "sigma", "alpha", "sizes")}
    co = X.new_zeros(data.n_samples, data.n_samples, dtype=torch.float64) if coclustering else None
    for sweep in tqdm(range(num_warmup + num_samples), disable=not progress, desc="dp-gibbs"):
        state, z = dp_gibbs_sweep(
            X, state, generator, priors, m0, learn_sigma=sigma is None, alpha_prior=alpha_prior
        )
        if not all(bool(torch.isfinite(t).all()) for t in state):
            raise FloatingPointError(
                f"the DP Gibbs sampler produced a non-finite draw at sweep {sweep}; check the scale of X and the priors"
            )
        if sweep < num_warmup:
            continue
        for name, value in zip(("v", "means", "sigma", "alpha"), state, strict=True):
            kept[name].append(value)
        kept["sizes"].append(torch.nn.functional.one_hot(z, max_clusters).sum(1))
        if co is not None:
            co += (z[:, :, None] == z[:, None, :]).sum(0).double()
    kept = {name: torch.stack(values, 1) for name, values in kept.items()}  # (chain, draw, ...)
    return kept, None if co is None else co / (num_chains * num_samples)


def _log_prior(kept, priors, m0, sigma_learned, alpha_prior) -> torch.Tensor:
    """log p(v, means, σ, α) of the program, per draw (chain, draw)."""
    from pyro.distributions import Beta, Gamma, InverseGamma, Normal

    alpha = kept["alpha"]
    as_t = lambda value: torch.as_tensor(value, dtype=alpha.dtype, device=alpha.device)  # noqa: E731  not float32
    lp = Beta(torch.ones_like(alpha)[..., None], alpha[..., None]).log_prob(kept["v"]).sum(-1)
    lp = lp + Normal(m0, as_t(priors.tau0)).log_prob(kept["means"]).sum((-1, -2))
    if sigma_learned:
        s = kept["sigma"]
        lp = lp + InverseGamma(as_t(priors.a0), as_t(priors.b0)).log_prob(s * s) + torch.log(2 * s)
    if alpha_prior is not None:
        lp = lp + Gamma(as_t(alpha_prior[0]), as_t(alpha_prior[1])).log_prob(alpha)
    return lp


def _to_idata(data: Data, priors, kept, co, sigma, alpha_prior, attrs) -> object:
    X = data.rows
    m0 = prior_mean(priors.shifted(data.offset), data.n_features, X)
    n_chains, n_draws, k = kept["sizes"].shape
    from ..models import stick_weights

    weights = stick_weights(kept["v"])
    flat = lambda t: t.reshape(n_chains * n_draws, *t.shape[2:])  # noqa: E731
    loglik = torch.cat(
        [
            dp_log_likelihood(X, w, m, s)
            for w, m, s in zip(
                flat(weights).split(256),
                flat(kept["means"]).split(256),
                flat(kept["sigma"]).split(256),
                strict=True,
            )
        ]
    )
    loglik = loglik.reshape(n_chains, n_draws, -1)
    lp = loglik.double().sum(-1) + _log_prior(kept, priors, m0, sigma is None, alpha_prior).double()
    sizes = kept["sizes"]
    if bool((sizes[..., -1] > 0).any()):
        share = float((sizes[..., -1] > 0).double().mean())
        warnings.warn(
            f"the last of max_clusters={k} components was occupied in {share:.1%} of the draws: the truncation may bias the posterior; raise max_clusters",
            TruncationWarning,
            stacklevel=3,
        )
    means = data.to_data(kept["means"])
    np_ = lambda t: t.detach().cpu().numpy()  # noqa: E731
    attrs = {**attrs, **package_versions()}
    posterior = {
        "n_occupied": np_((sizes > 0).sum(-1)),
        "cluster_sizes": np_(sizes),
        "v": np_(kept["v"]),
        "weights": np_(weights),
        "means": np_(means),
        "sigma": np_(kept["sigma"]),
        "alpha": np_(kept["alpha"]),
    }
    idata = arviz_compat.from_dict(
        {
            "posterior": posterior,
            "sample_stats": {"lp": np_(lp)},
            "log_likelihood": {"x": np_(loglik)},
            "observed_data": {"x": np_(data.to_data(X))},
        },
        dims={
            "cluster_sizes": ["cluster"],
            "v": ["stick"],
            "weights": ["cluster"],
            "means": ["cluster", "feature"],
            "x": ["observation"],
        },
        attrs=attrs,
    )
    groups = {"occupied_components": _relabelled(np_(sizes), np_(means), np_(weights), np_(lp))}
    if co is not None:
        groups["coclustering"] = xr.Dataset({"probability": (("observation", "observation_other"), np_(co))})
    arviz_compat.set_groups(idata, groups)
    return idata
