"""The command line's "how many clusters?" jobs: ``anneal --penalty`` and ``posterior --dp``.

Like :mod:`kmeans_limit._jobs`, plain functions on tensors and records; the click commands only parse
options, call these and print what they return. Heavy imports (the inference modules, arviz,
matplotlib) happen inside the functions.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ._jobs import Data, keep_log_likelihood
from ._report import fmt, format_table, point_table
from .io import PointFit, save_point_fit, save_posterior

__all__ = [
    "DP_POSTERIOR_FILES",
    "MIN_MAX_CLUSTERS",
    "PENALTY_FILES",
    "check_max_clusters",
    "dp_posterior_summary",
    "hull_table",
    "penalized_summary",
    "run_anneal_penalized",
    "run_dp_posterior",
    "write_dp_posterior",
    "write_penalized",
]

PENALTY_FILES = ("dp_means.json", "penalty_curve.png")
DP_POSTERIOR_FILES = ("posterior.nc", "posterior_cluster_count.png")
#: The truncated stick-breaking DP needs two components at least (the last stick takes the rest).
MIN_MAX_CLUSTERS = 2
#: Hull vertices printed in full; past this, the first and last few with a count between.
HULL_LINES = 10


# ---------------------------------------------------------------------------------------------
# anneal --penalty: K chosen by λ
# ---------------------------------------------------------------------------------------------


def run_anneal_penalized(X: torch.Tensor, penalty: float, *, seed: int, cooling: float, weights: str):
    """``anneal(X, penalty=λ)``: the annealing path's J(K), the K minimising J + λK, DP-means from it."""
    from .inference.anneal import anneal

    return anneal(X, penalty=penalty, cooling=cooling, weights=weights, seed=seed)


def _weights_and_sigma(result, n: int, d: int) -> tuple[torch.Tensor, float]:
    """The share of the rows in each cluster and the maximum-likelihood σ* = √(J/(N·D)) of the hard fit."""
    counts = torch.bincount(result.labels, minlength=result.n_clusters).double()
    return counts / n, math.sqrt(max(result.inertia, 0.0) / (n * d))


def hull_table(hull, limit: int = HULL_LINES) -> str:
    """Which K each λ chooses: a row per hull vertex, the middle ones left out past ``limit`` rows."""
    rows = []
    for k, j, low, high in zip(*(v.tolist() for v in hull), strict=True):
        if math.isinf(high) and low == 0.0:
            interval = "every λ > 0"
        elif math.isinf(high):
            interval = f"λ >= {fmt(low)}"
        elif low == 0.0:
            interval = f"0 < λ <= {fmt(high)}"
        else:
            interval = f"{fmt(low)} <= λ <= {fmt(high)}"
        rows.append([str(k), fmt(j, 6), interval])
    if len(rows) > limit:
        head, tail = limit // 2, limit - limit // 2 - 1
        rows = [*rows[:head], [f"... {len(rows) - head - tail} more", "", ""], *rows[-tail:]]
    return format_table(["K", "J(K)", "λ choosing it"], rows)


def penalized_summary(result, data: Data, penalty: float) -> str:
    """K chosen, J, J + λK, σ*, the hull of J(K) (which K each λ chooses) and the fit's table."""
    n, d = data.X.shape
    weights, sigma = _weights_and_sigma(result, n, d)
    curve = result.curve
    units = "standardized units squared" if data.standardization is not None else "squared data units"
    polish = (
        "the same K"
        if result.n_clusters == result.path_k
        else f"the path chose K = {result.path_k}, the polish moved it"
    )
    lines = [
        f"annealing with a price per cluster λ = {fmt(penalty)} ({units}): K chosen = {result.n_clusters} "
        f"(argmin J(K) + λK on the annealing path, K = 1..{int(curve.n_clusters[-1])}, then DP-means: "
        f"{polish})",
        f"hard clustering: J = {fmt(result.inertia, 6)}, J + λK = {fmt(result.objective, 6)}, "
        f"σ* = √(J/(N·D)) = {fmt(sigma)} (N = {n}, D = {d})",
        "",
        "which K each λ chooses (the lower convex hull of J(K) on the annealing path):",
        hull_table(result.hull),
        "",
        point_table(
            sigma,
            weights,
            result.means,
            data.feature_names,
            where="dp_means.json (--out)",
            label="DP-means fit",
        ),
    ]
    return "\n".join(lines)


def write_penalized(result, data: Data, paths: dict[str, Path], *, force: bool, seed: int, penalty: float):
    """Save the DP-means fit as a JSON point fit (readable by 'sample --from') and draw the curve."""
    n, d = data.X.shape
    weights, sigma = _weights_and_sigma(result, n, d)
    fit = PointFit(
        result.means,
        weights,
        sigma,
        data.feature_names,
        data.standardization,
        {
            "kind_detail": "annealing with a penalty: K = argmin J(K) + penalty*K on the annealing path, "
            "then DP-means; sigma = sqrt(J / (N D))",
            "source": data.source,
            "n_samples": n,
            "seed": seed,
            "penalty": penalty,
            "n_clusters": result.n_clusters,
            "inertia": result.inertia,
            "objective": result.objective,
            "path_k": result.path_k,
            "labels": result.labels,
            "curve": {"n_clusters": result.curve.n_clusters, "inertia": result.curve.inertia},
            "hull": result.hull._asdict(),
        },
    )
    save_point_fit(paths["dp_means.json"], fit, kind="dp-means", force=force)
    from . import plotting
    from .dp_plots import plot_penalty_curve

    figure = plot_penalty_curve(result.curve, result.hull, penalties=[penalty])
    plotting.save_figure(figure, paths["penalty_curve.png"], force=force)


# ---------------------------------------------------------------------------------------------
# posterior --dp: the posterior of the number of clusters
# ---------------------------------------------------------------------------------------------


def check_max_clusters(max_clusters: int) -> int:
    """``--max-clusters`` at least :data:`MIN_MAX_CLUSTERS`, or a ValueError saying why."""
    if max_clusters < MIN_MAX_CLUSTERS:
        raise ValueError(
            f"--max-clusters {max_clusters} should be >= {MIN_MAX_CLUSTERS}: the truncated DP mixture "
            "needs two components at least (the last stick takes the rest of the weight)"
        )
    return max_clusters


def run_dp_posterior(
    data: Data,
    max_clusters: int,
    *,
    sigma: float | None,
    num_samples: int,
    num_warmup: int,
    chains: int,
    seed: int,
    progress,
    log_likelihood: bool | None = None,
):
    """``fit_dp_posterior`` (blocked Gibbs on the truncated DP mixture) on the data, with progress bars
    when they are on; the pointwise log-likelihood group dropped when not kept."""
    from ._jobs import check_fixed_sigma
    from .inference.dp_posterior import fit_dp_posterior

    check_max_clusters(max_clusters)
    check_fixed_sigma(sigma, data.X)
    if bool((data.X == data.X[0]).all()):
        raise ValueError(
            f"every row of '{data.source}' is the same point: the DP posterior's priors are scaled to the "
            "data's spread, and there is none; there is one cluster ('kmeans-limit anneal --penalty L' says so)"
        )
    progress.note(
        f"sampling the DP posterior with gibbs ({chains} chains x {num_warmup} + {num_samples}, "
        f"truncated at {max_clusters} components)"
    )
    keep = keep_log_likelihood(log_likelihood, chains * num_samples * data.X.shape[0], progress)
    idata = fit_dp_posterior(
        data.X,
        max_clusters,
        sigma=sigma,
        num_samples=num_samples,
        num_warmup=num_warmup,
        num_chains=chains,
        seed=seed,
        progress=progress.enabled,
    )
    if not keep:
        from .inference.arviz_compat import drop_group

        drop_group(idata, "log_likelihood")
    # fit_dp_posterior hands its attrs to az.from_dict, which does not store them: record the run here
    # (only what is missing), so that the summary and posterior.nc say how the draws were made
    run = dict(method="dp-gibbs", seed=seed, max_clusters=max_clusters, concentration="fixed 1.0")
    run["sigma"] = "learned" if sigma is None else sigma
    for key, value in run.items():
        idata.posterior.attrs.setdefault(key, value)
    return idata


def _occupied_rows(idata, feature_names) -> list[list[str]]:
    from .inference.dp_posterior import occupied_summary

    table = occupied_summary(idata)
    rows = []
    for name, row in table.iterrows():
        if name.startswith("means["):
            k, j = (int(part) for part in name[len("means[") : -1].split(","))
            name = f"mean {k} {feature_names[j]}"
        else:
            name = f"weight {int(name[len('weights[') : -1])}"
        rows.append([name, *(fmt(row[c]) for c in ("mean", "sd", "q3%", "q97%"))])
    return rows


def dp_posterior_summary(idata, data: Data) -> str:
    """The posterior of the number of occupied clusters, σ and α, and the occupied components."""
    post = idata.posterior
    n, d = data.X.shape
    attrs = post.attrs
    counts = post["n_occupied"].values.reshape(-1)
    values, freq = np.unique(counts, return_counts=True)
    rows = [[str(int(k)), fmt(f / counts.size, 3)] for k, f in zip(values, freq, strict=True)]
    sigma, alpha = post["sigma"].values.reshape(-1), post["alpha"].values.reshape(-1)
    group = idata.occupied_components
    m = int(group.attrs["n_components"])
    share = float(group.attrs["fraction_of_draws"])
    lines = [
        f"DP posterior (blocked gibbs, truncated at {attrs['max_clusters']} components; concentration "
        f"{attrs['concentration']}; σ {'learned' if attrs['sigma'] == 'learned' else 'fixed'}): "
        f"{post.sizes['chain']} chains x {post.sizes['draw']} draws, N = {n}, D = {d}",
        f"σ: mean {fmt(sigma.mean())}, sd {fmt(sigma.std())}; α: mean {fmt(alpha.mean())}",
        "",
        "number of occupied clusters:",
        format_table(["K", "posterior probability"], rows),
        "",
        f"occupied components: the {share:.1%} of draws with the modal K = {m}, biggest first, relabelled",
        format_table(["parameter", "mean", "sd", "3%", "97%"], _occupied_rows(idata, data.feature_names)),
    ]
    return "\n".join(lines)


def write_dp_posterior(idata, data: Data, paths: dict[str, Path], *, force: bool) -> None:
    """Save the DP posterior as netCDF (every group, the relabelled occupied components and the
    co-clustering matrix too) and draw the posterior of the number of occupied clusters."""
    save_posterior(
        paths["posterior.nc"],
        idata,
        feature_names=data.feature_names,
        standardization=data.standardization,
        force=force,
    )
    from . import plotting
    from .dp_plots import plot_cluster_count_posterior

    figure = plot_cluster_count_posterior({"DP mixture, blocked gibbs": idata.posterior["n_occupied"].values})
    plotting.save_figure(figure, paths["posterior_cluster_count.png"], force=force)
