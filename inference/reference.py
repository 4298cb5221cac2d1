"""Posterior fits measured against an exact reference posterior, in Monte-Carlo standard errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
import xarray as xr

from . import arviz_compat
from .batched import batched_log_responsibilities
from .density import total_log_likelihood
from .exact import ExactPosterior
from .idata import posterior_tensors

__all__ = ["compare_to_reference", "reference_quantities"]

#: Co-clustering pairs are compared for at most this many rows (N(N−1)/2 quantities).
MAX_PAIR_ROWS = 40


def _z(error: float, mcse: float) -> float:
    """``error / mcse``: 0 when both vanish, ±inf for an error without Monte-Carlo noise (MAP)."""
    if mcse > 0:
        return error / mcse
    return 0.0 if error == 0 else math.copysign(math.inf, error)


def _draws(idata, name: str, values: np.ndarray) -> xr.DataArray:
    chain, draw = idata.posterior["chain"].values, idata.posterior["draw"].values
    return xr.DataArray(
        values.reshape(len(chain), len(draw)), coords={"chain": chain, "draw": draw}, name=name
    )


def reference_quantities(
    idata, reference: ExactPosterior, *, coclustering: bool = True
) -> tuple[xr.Dataset, dict[str, tuple[float, float, float]]]:
    """The fit's draws of the quantities the reference knows, and the reference's values.

    Parameters
    ----------
    idata : arviz.InferenceData or xarray.DataTree
        From :func:`~kmeans_limit.inference.fit_posterior` on the reference's data and K.
    reference : ExactPosterior
    coclustering : bool, default True
        Include ``P(z_i = z_j)`` for every pair i < j (draw by draw ``Σ_k γ_ik γ_jk``, its
        Rao-Blackwellized value), for at most ``MAX_PAIR_ROWS`` rows.

    Returns
    -------
    draws : xarray.Dataset
        One (chain, draw) variable per quantity: ``sigma`` and ``sigma2`` (σ learned),
        ``weights_sorted[r]``, ``log_likelihood`` (Σ_n log p(x_n | θ)), ``coclustering[i,j]``.
    values : dict of str to (float, float, float)
        Per quantity the reference's value, its Monte-Carlo standard error (nonzero only for the
        log-likelihood) and its posterior sd (σ only; NaN otherwise).
    """
    post = idata.posterior
    x = torch.as_tensor(np.asarray(idata.observed_data["x"].values, np.float64))
    n = x.shape[0]
    if (
        reference.coclustering.shape[0] != n
        or reference.weights_sorted_mean.shape[0] != post["weights"].shape[-1]
    ):
        raise ValueError(
            f"the fit has N={n}, K={post['weights'].shape[-1]} but the reference N={reference.coclustering.shape[0]}, "
            f"K={reference.weights_sorted_mean.shape[0]}: fit the reference's data and K"
        )
    learned = post.attrs.get("sigma") == "learned"
    if learned != (reference.sigma is None):
        raise ValueError(
            f"the fit's sigma is {post.attrs.get('sigma')!r} but the reference's is "
            f"{'learned' if reference.sigma is None else reference.sigma!r}: both should learn σ or fix it"
        )
    weights, means, sigma = posterior_tensors(idata)
    data, values = {}, {}
    if learned:
        data["sigma"] = _draws(idata, "sigma", sigma.numpy())
        data["sigma2"] = _draws(idata, "sigma2", sigma.square().numpy())
        values["sigma"] = (reference.sigma_mean, 0.0, reference.sigma_sd)
        values["sigma2"] = (reference.sigma2_mean, 0.0, math.nan)
    ordered = -np.sort(-weights.numpy(), axis=-1)
    for r, value in enumerate(reference.weights_sorted_mean):
        data[f"weights_sorted[{r}]"] = _draws(idata, "w", ordered[:, r])
        values[f"weights_sorted[{r}]"] = (float(value), 0.0, math.nan)
    if arviz_compat.has_group(idata, "log_likelihood"):
        log_lik = idata.log_likelihood["x"].sum("observation").values.reshape(-1)
    else:
        log_lik = total_log_likelihood(x, weights, means, sigma).numpy()
    data["log_likelihood"] = _draws(idata, "ll", log_lik)
    values["log_likelihood"] = (reference.log_likelihood_mean, reference.log_likelihood_mcse, math.nan)
    if coclustering and n <= MAX_PAIR_ROWS:
        gamma = batched_log_responsibilities(x, means, weights.log(), sigma)[0].exp()  # (M, K, N)
        i, j = np.triu_indices(n, 1)
        same = (gamma[:, :, i] * gamma[:, :, j]).sum(1).numpy()  # (M, pairs)
        for p, (a, b) in enumerate(zip(i, j, strict=True)):
            data[f"coclustering[{a},{b}]"] = _draws(idata, "c", same[:, p])
            values[f"coclustering[{a},{b}]"] = (float(reference.coclustering[a, b]), 0.0, math.nan)
    return xr.Dataset(data), values


def _mcse_ess(draws: xr.Dataset, mean: xr.Dataset, sd: xr.Dataset) -> tuple[dict, dict]:
    """``arviz_compat.mcse(method="mean")`` and bulk ESS per variable; 0 and NaN for draws that do not vary (a
    point such as MAP's, where arviz would take the square root of a rounding-negative variance)."""
    varying = [v for v in draws.data_vars if float(sd[v]) > 1e-12 * (1.0 + abs(float(mean[v])))]
    mcse, ess = dict.fromkeys(draws.data_vars, 0.0), dict.fromkeys(draws.data_vars, math.nan)
    if varying:
        found, bulk = (
            arviz_compat.mcse(draws[varying], method="mean"),
            arviz_compat.ess(draws[varying], method="bulk"),
        )
        mcse.update({v: float(found[v]) for v in varying})
        ess.update({v: float(bulk[v]) for v in varying})
    return mcse, ess


def compare_to_reference(fits: dict, reference: ExactPosterior, *, coclustering: bool = True) -> pd.DataFrame:
    """Each fit's error against the exact posterior, in Monte-Carlo standard errors.

    Parameters
    ----------
    fits : dict of str to arviz.InferenceData or xarray.DataTree
        Fits of the reference's data and K (for instance ``{"gibbs": ..., "nuts": ...}``), with σ
        learned or fixed as in the reference.
    reference : ExactPosterior
        From :func:`~kmeans_limit.inference.exact.exact_posterior` with the fits' priors and σ.
    coclustering : bool, default True
        Also compare ``P(z_i = z_j)`` for every pair of rows (see :func:`reference_quantities`).

    Returns
    -------
    pandas.DataFrame
        One row per fit and quantity: ``method``, ``parameter``, ``mean`` (the fit's posterior
        mean), ``reference``, ``error`` = mean − reference, ``mcse`` = √(mcse_fit² + mcse_ref²)
        (``arviz_compat.mcse(method="mean")``, and the reference's own for the log-likelihood), ``z_mcse`` =
        error / mcse (±inf for an error without Monte-Carlo noise, as MAP's), ``ess`` (the fit's
        bulk ESS of the quantity), ``sd`` and ``reference_sd`` (σ only). A correct sampler has
        |z_mcse| below 4 on nearly every row; MAP and SVI show by how far they miss.

    Notes
    -----
    The MCSE is estimated from the draws, so it cannot see states the chains have not visited. A
    co-clustering probability p near 0 or 1 is often carried by rare states (all rows in one
    cluster, say, with posterior probability 1e-4): with ``ess · min(p, 1 − p)`` below about 10
    the chains have not resolved it, and its z_mcse can be large for a correct sampler. Read such
    rows as "not resolved by this run", not as a failure (or run longer chains).
    """
    if not fits:
        raise ValueError("compare_to_reference needs at least one fit")
    if not isinstance(reference, ExactPosterior):
        raise ValueError(f"reference should be an ExactPosterior, got {type(reference).__name__}")
    rows = []
    for name, idata in fits.items():
        draws, values = reference_quantities(idata, reference, coclustering=coclustering)
        mean, sd = draws.mean(("chain", "draw")), draws.std(("chain", "draw"))
        mcse, ess = _mcse_ess(draws, mean, sd)
        for var, (value, ref_mcse, ref_sd) in values.items():
            fit_mcse = mcse[var]
            error, total = float(mean[var]) - value, math.hypot(fit_mcse, ref_mcse)
            rows.append(
                {
                    "method": name,
                    "parameter": var,
                    "mean": float(mean[var]),
                    "reference": value,
                    "error": error,
                    "mcse": total,
                    "z_mcse": _z(error, total),
                    "ess": ess[var],
                    "sd": float(sd[var]),
                    "reference_sd": ref_sd,
                }
            )
    return pd.DataFrame(rows)
