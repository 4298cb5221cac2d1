"""Convergence diagnostics of the per-component parameters before and after relabelling."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import xarray as xr

from . import arviz_compat

__all__ = ["relabelling_diagnostics"]


def _components(idata) -> xr.Dataset:
    """``weights[k]`` and ``means[k,d]`` as scalar (chain, draw) variables."""
    post = idata.posterior
    data = {f"weights[{k}]": post["weights"].isel(cluster=k, drop=True) for k in range(post.sizes["cluster"])}
    for k, d in itertools.product(range(post.sizes["cluster"]), range(post.sizes["feature"])):
        data[f"means[{k},{d}]"] = post["means"].isel(cluster=k, feature=d, drop=True)
    return xr.Dataset(data)


def relabelling_diagnostics(idata_raw, idata_relabelled) -> pd.DataFrame:
    """R-hat and bulk ESS of every weight and mean, before and after relabelling.

    Parameters
    ----------
    idata_raw : arviz.InferenceData or xarray.DataTree
        A fit as sampled (``fit_posterior(..., relabel=False)``).
    idata_relabelled : arviz.InferenceData or xarray.DataTree
        The same draws relabelled (:func:`~kmeans_limit.inference.relabel`, any method).

    Returns
    -------
    pandas.DataFrame
        Indexed by parameter (``weights[k]``, ``means[k,d]``), columns ``r_hat_before``,
        ``ess_bulk_before``, ``r_hat_after``, ``ess_bulk_after`` (rank-normalized split R-hat and
        bulk ESS, ``az.rhat`` and ``az.ess``; Vehtari et al. 2021) and ``mean_after``, the
        relabelled posterior mean. Label switching between or within chains shows as R-hat far above
        1.01 before; a relabelling that worked brings it below. Permutation-invariant quantities
        (σ, sorted weights, lp) do not change and are in
        :func:`~kmeans_limit.inference.invariant_summary`.
    """
    shapes = [tuple(i.posterior["means"].shape) for i in (idata_raw, idata_relabelled)]
    if shapes[0] != shapes[1]:
        raise ValueError(
            f"the two fits differ in (chain, draw, cluster, feature): {shapes[0]} and {shapes[1]}"
        )
    before, after = _components(idata_raw), _components(idata_relabelled)
    columns = {}
    for suffix, data in (("before", before), ("after", after)):
        rhat, ess = arviz_compat.rhat(data), arviz_compat.ess(data, method="bulk")
        columns[f"r_hat_{suffix}"] = [float(rhat[v]) for v in data.data_vars]
        columns[f"ess_bulk_{suffix}"] = [float(ess[v]) for v in data.data_vars]
    columns["mean_after"] = [float(after[v].mean()) for v in after.data_vars]
    return pd.DataFrame(columns, index=pd.Index(list(before.data_vars), name="parameter")).astype(np.float64)
