"""The command line's jobs: load data, fit, check, generate, and write the files and pictures.

Each job is a plain function on tensors and records, so the click commands in :mod:`kmeans_limit.cli`
only parse options, call these and print what they return.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import NamedTuple

import torch

from ._report import fmt, list_values, point_table, posterior_table
from .datasets import load_faithful
from .inference.data import prepare_data
from .inference.validation import check_n_clusters
from .io import (
    PointFit,
    Standardization,
    atomic_write,
    read_data,
    save_point_fit,
    save_posterior,
    standardize_with_stats,
)

# matplotlib (plotting) and Pyro are imported by the functions that draw or sample, not here.

__all__ = [
    "ANNEAL_FILES",
    "LOG_LIKELIHOOD_LIMIT",
    "POSTERIOR_PLOTS",
    "AnnealOutcome",
    "Data",
    "anneal_summary",
    "check_fixed_sigma",
    "default_draws",
    "faithful_data",
    "is_point_estimate",
    "keep_log_likelihood",
    "load_data",
    "plan_outputs",
    "posterior_files",
    "posterior_summary",
    "run_anneal",
    "run_posterior",
    "write_anneal",
    "write_compare",
    "write_posterior",
    "write_posterior_plots",
    "writing",
]


class Data(NamedTuple):
    """Data as fitted: ``X`` (standardized when asked), column names, the standardization, the source."""

    X: torch.Tensor
    feature_names: tuple[str, ...]
    standardization: Standardization | None
    source: str


def load_data(path, columns, standardize: bool, n_clusters: int | None = None) -> Data:
    """Read a data file, standardize it if asked, and check that it has room for ``n_clusters``.

    The data model's own check (:func:`~kmeans_limit.inference.data.prepare_data`) runs here, so
    that data too large for float64 (squares that overflow, e.g. values near 1e300) are refused with
    the advice to pass --standardize before any fit starts.
    """
    dataset = read_data(path, columns=columns)
    X, standardization = standardize_with_stats(dataset.data) if standardize else (dataset.data, None)
    try:
        prepare_data(X, name=f"data file '{path}'")
    except ValueError:
        peak = float(dataset.data.abs().max())
        raise ValueError(
            f"data file '{path}' is too large for float64: its squared distances overflow (values up to "
            f"{peak:.3g}); pass --standardize, or rescale the data"
        ) from None
    if n_clusters is not None:
        try:
            check_n_clusters(n_clusters, X)
        except ValueError as error:
            raise ValueError(f"data file '{path}': {error} (-k sets n_clusters)") from None
    return Data(X, dataset.feature_names, standardization, str(path))


def faithful_data() -> Data:
    """The embedded Old Faithful data, standardized: the demo's data."""
    dataset = load_faithful()
    X, standardization = standardize_with_stats(dataset.data)
    return Data(X, dataset.feature_names, standardization, "Old Faithful (embedded)")


def plan_outputs(out: Path | None, names, force: bool) -> dict[str, Path]:
    """Paths of the files a job will write into ``out``, checked before any work is done.

    Nothing is created here: :func:`writing` creates ``out`` when the results are ready, so a run
    that fails leaves no folder behind. Returns an empty mapping when ``out`` is None.

    Raises
    ------
    ValueError
        ``out`` or a folder above it is a file, ``out`` cannot be written (or created) by this
        user, or one of the files exists and ``force`` is false.
    """
    if out is None:
        return {}
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a directory for the outputs")
    existing_parent = out
    while not existing_parent.exists() and existing_parent != existing_parent.parent:
        existing_parent = existing_parent.parent
    if not existing_parent.is_dir():
        raise ValueError(f"--out {out}: {existing_parent} is a file, not a folder; choose another --out")
    if not os.access(existing_parent, os.W_OK | os.X_OK):
        verb = "write into" if existing_parent == out else f"create {out} in"
        raise ValueError(
            f"--out {out}: cannot {verb} {existing_parent} (permission denied); choose another --out"
        )
    paths = {name: out / name for name in names}
    existing = [str(path) for path in paths.values() if path.exists()]
    if existing and not force:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise ValueError(f"{existing[0]} exists{more}; pass --force to overwrite, or choose another --out")
    return paths


@contextlib.contextmanager
def writing(paths: dict[str, Path]):
    """Create the folder of ``paths`` (planned by :func:`plan_outputs`) for the block that writes them;
    if the block fails, a folder created here that is still empty is removed again."""
    if not paths:
        yield
        return
    folder = next(iter(paths.values())).parent
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        raise


# ---------------------------------------------------------------------------------------------
# The hard limit: annealing down to k-means, and Lloyd's fixed point
# ---------------------------------------------------------------------------------------------


class AnnealOutcome(NamedTuple):
    """The annealing result and the check that its end is a fixed point of Lloyd's algorithm.

    Attributes
    ----------
    result : AnnealResult
    lloyd_shift : float
        Largest centroid move of one more Lloyd step from the result.
    lloyd_changed : int
        Labels that step changes.
    """

    result: object
    lloyd_shift: float
    lloyd_changed: int

    @property
    def fixed_point(self) -> bool:
        """One more Lloyd step changes no label and moves no centroid beyond rounding."""
        scale = float(self.result.means.abs().max()) + 1.0
        return self.lloyd_changed == 0 and self.lloyd_shift <= 1e-9 * scale


def run_anneal(
    X: torch.Tensor,
    n_clusters: int,
    *,
    seed: int,
    cooling: float | None,
    weights: str,
    path: str = "levels",
) -> AnnealOutcome:
    """Anneal from the data mean down to hard k-means, then take one more Lloyd step from the end.

    ``path``: ``"levels"`` (the fast schedule's levels) or ``"dense"`` (the equilibrium path on a
    fine σ grid, for the pictures); ``cooling`` None is that path's default.
    """
    from .inference.anneal import anneal
    from .inference.lloyd import lloyd

    result = anneal(X, n_clusters, cooling=cooling, weights=weights, seed=seed, path=path)
    step = lloyd(X, result.means, max_iter=1)
    shift = (step.means - result.means).norm(dim=1).max().item()
    changed = int((step.labels != result.labels).sum())
    return AnnealOutcome(result, shift, changed)


def anneal_summary(outcome: AnnealOutcome, data: Data, *, table: bool = True) -> str:
    """The hard fit as text: σ*, weights, centroids, inertia, the split and critical σ, the Lloyd check."""
    result = outcome.result
    n, d = data.X.shape
    sigma = result.path.sigma
    split_sigmas = torch.as_tensor(result.split_sigmas).reshape(-1).tolist()
    split = list_values(split_sigmas)
    hard = "; 0: made in the hard limit" if 0.0 in split_sigmas else ""
    critical = list_values(torch.as_tensor(result.critical_sigmas).reshape(-1).tolist())
    lam = torch.linalg.eigvalsh(torch.cov(data.X.T, correction=0).reshape(d, d)).max().item()
    verdict = "it is Lloyd's fixed point" if outcome.fixed_point else "it is NOT a fixed point of Lloyd"
    lines = [
        f"annealing: {len(sigma)} levels from σ = {fmt(sigma[0])} down to {fmt(sigma[-1])}, then σ = 0 (Lloyd)",
        f"splits made at σ = {split} (the first transition in theory: √λmax(Cov X) = {fmt(lam**0.5)}, "
        f"no split before it{hard})",
        f"critical σ of the split clusters (√λmax of their responsibility-weighted covariance when "
        f"split; unstable below it): {critical}",
        f"hard k-means: inertia J = {fmt(result.inertia, 6)}, σ* = √(J/(N·D)) = {fmt(result.sigma_star)} "
        f"(N = {n}, D = {d})",
        f"Lloyd check: one more Lloyd step moves the centroids by {outcome.lloyd_shift:.2g} and changes "
        f"{outcome.lloyd_changed} of {n} labels: {verdict}",
    ]
    if table:
        where, label = "anneal.json (--out)", "hard fit (σ → 0)"
        point = (result.sigma_star, result.weights, result.means)
        lines += ["", point_table(*point, data.feature_names, where=where, label=label)]
    return "\n".join(lines)


ANNEAL_FILES = ("anneal.json", "anneal_bifurcation.png", "anneal_responsibilities.png", "anneal_entropy.png")


def write_anneal(
    outcome: AnnealOutcome, data: Data, paths: dict[str, Path], *, force: bool, seed: int
) -> None:
    """Save the hard fit as JSON (with its annealing path) and draw the three annealing pictures."""
    result = outcome.result
    path = result.path
    fit = PointFit(
        result.means,
        result.weights,
        float(result.sigma_star),
        data.feature_names,
        data.standardization,
        {
            "kind_detail": "deterministic annealing to sigma = 0, then the Lloyd fixed-point check",
            "source": data.source,
            "n_samples": data.X.shape[0],
            "seed": seed,
            "inertia": float(result.inertia),
            "labels": result.labels,
            "split_sigmas": result.split_sigmas,
            "critical_sigmas": result.critical_sigmas,
            "lloyd_fixed_point": outcome.fixed_point,
            "path": {k: getattr(path, k) for k in ("sigma", "means", "weights", "log_likelihood", "entropy")},
        },
    )
    save_point_fit(paths["anneal.json"], fit, kind="anneal", force=force)
    from . import plotting

    figures = {
        "anneal_bifurcation.png": plotting.plot_bifurcation(
            path,
            result.split_sigmas,
            data.feature_names,
            hard_means=result.means,
            critical_sigmas=result.critical_sigmas,
        ),
        "anneal_responsibilities.png": plotting.plot_responsibilities(
            data.X, path, data.feature_names, hard=(result.means, result.weights)
        ),
        "anneal_entropy.png": plotting.plot_entropy_loglik(
            path,
            result.split_sigmas,
            data.X.shape[0],
            inertia=float(result.inertia),
            critical_sigmas=result.critical_sigmas,
        ),
    }
    for name, figure in figures.items():
        plotting.save_figure(figure, paths[name], force=force)


# ---------------------------------------------------------------------------------------------
# The posterior: the fit, its summary, its pictures
# ---------------------------------------------------------------------------------------------

POSTERIOR_PLOTS = ("posterior_pairs.png", "posterior_centroids.png")
#: Pointwise log-likelihood values (chains x draws x N) stored without being asked: 40 MB of float64.
#: Above this, --log-likelihood must be given to keep them (they serve LOO and WAIC).
LOG_LIKELIHOOD_LIMIT = 5_000_000


def posterior_files(method: str) -> tuple[str, ...]:
    """What ``posterior --out`` writes: the netCDF fit, the pair plot (not for map) and the centroids."""
    plots = POSTERIOR_PLOTS[1:] if method == "map" else POSTERIOR_PLOTS
    return ("posterior.nc", *plots)


def is_point_estimate(idata) -> bool:
    """Whether the draws repeat one point (MAP): ``point_estimate_repeated`` in the attrs."""
    return bool(int(idata.posterior.attrs.get("point_estimate_repeated", 0)))


def keep_log_likelihood(choice: bool | None, n_values: int, progress) -> bool:
    """``--log-likelihood`` / ``--no-log-likelihood`` as given, else whether ``n_values`` (chains x
    draws x N) is at most :data:`LOG_LIKELIHOOD_LIMIT`; leaving it out is said on stderr."""
    if choice is not None:
        return choice
    if n_values <= LOG_LIKELIHOOD_LIMIT:
        return True
    progress.say(
        f"not storing the pointwise log-likelihood: {n_values:,} values ({8 * n_values / 1e6:.0f} MB) "
        f"exceed {LOG_LIKELIHOOD_LIMIT:,}; pass --log-likelihood to keep it (for LOO/WAIC)"
    )
    return False


def write_posterior_plots(idata, data: Data, paths: dict[str, Path], *, force: bool, hard=None) -> None:
    """The pair plot of σ and weights (not for a point estimate) and the centroid clouds
    (``hard``: (σ*, weights, means))."""
    from . import plotting

    post = idata.posterior
    sigma = post["sigma"].values.reshape(-1)
    weights = post["weights"].values.reshape(sigma.shape[0], -1)
    means = post["means"].values.reshape(sigma.shape[0], weights.shape[1], -1)
    point = is_point_estimate(idata)
    if "posterior_pairs.png" in paths and not point:
        reference = None
        if hard is not None:
            reference = {"σ": float(hard[0]), **{f"weight {k}": float(w) for k, w in enumerate(hard[1])}}
        pairs = plotting.plot_posterior_pairs(sigma, weights, reference=reference)
        plotting.save_figure(pairs, paths["posterior_pairs.png"], force=force)
    clouds = plotting.plot_centroid_clouds(
        data.X,
        means[:1] if point else means,
        data.feature_names,
        hard_means=None if hard is None else hard[2],
        point_estimate=point,
    )
    plotting.save_figure(clouds, paths["posterior_centroids.png"], force=force)


#: Draws a chain when --num-samples is not given; mini-batch SVI (large N) keeps fewer.
DEFAULT_DRAWS = 1000
MINIBATCH_DRAWS = 250


def default_draws(num_samples: int | None, method: str, batch_size: int | None) -> int:
    """``--num-samples`` as given, else :data:`DEFAULT_DRAWS`, or :data:`MINIBATCH_DRAWS` for svi
    with ``--batch-size``: every draw's lp and relabelling cost a pass over all N rows, which for the
    data mini-batches are for (N = 100,000, K = 100) is most of the run."""
    if num_samples is not None:
        return num_samples
    return MINIBATCH_DRAWS if method == "svi" and batch_size is not None else DEFAULT_DRAWS


def check_fixed_sigma(sigma: float | None, X: torch.Tensor) -> None:
    """Refuse a fixed σ so small that the kernels' ``‖x − μ‖² / σ²``, summed over the rows,
    overflows float64 (``--sigma 1e-300``: σ² itself underflows to 0).

    The bound is ``σ² ≥ 1e-300 · N · max(1, 4 · max_n ‖x_n − x̄‖²)``: every scaled squared distance
    is then at most 1e300 / N, and their sum over the rows stays finite with room to spare.
    """
    if sigma is None:
        return
    spread = float((X - X.mean(0)).square().sum(1).max()) * 4
    smallest = math.sqrt(1e-300 * X.shape[0] * max(1.0, spread))
    if sigma < smallest:
        raise ValueError(
            f"--sigma {sigma:g} is too small for these data in float64 (‖x − μ‖²/σ² over {X.shape[0]} rows "
            f"overflows); give σ >= {smallest:.3g}, or anneal to σ = 0 with 'kmeans-limit anneal'"
        )


def run_posterior(
    data: Data,
    n_clusters: int,
    *,
    method: str,
    sigma,
    num_samples: int | None,
    num_warmup: int,
    chains: int,
    seed: int,
    progress,
    num_steps: int | None = None,
    batch_size: int | None = None,
    reference=None,
    log_likelihood: bool | None = None,
    point_once: bool = False,
) -> object:
    """``fit_posterior`` on the data, with progress bars when they are on, relabelled: pivoted to the
    MAP draw, or to ``reference`` centroids (of shape (K, D)) when given, e.g. the hard fit's.

    ``num_steps`` goes to the optimisers of svi and map (the samplers have no such option), and
    ``batch_size`` (mini-batches) to them too. ``num_samples`` None: :func:`default_draws`. ``log_likelihood``: store the pointwise
    log-likelihood (None: :func:`keep_log_likelihood` decides). ``point_once``: MAP keeps its point
    once (one chain, one draw) instead of repeating it ``chains x num_samples`` times.
    """
    from .inference.posterior import fit_posterior
    from .inference.relabel import relabel

    check_fixed_sigma(sigma, data.X)
    num_samples = default_draws(num_samples, method, batch_size)
    if sigma is None and bool((data.X == data.X[0]).all()):
        raise ValueError(
            f"every row of '{data.source}' is the same point: there is no spread to learn σ from; "
            "fix σ with --sigma S, or use 'kmeans-limit anneal'"
        )
    if method == "map" and point_once:
        chains, num_samples = 1, 1
        progress.note("finding the posterior mode (map), a point estimate")
    else:
        progress.note(
            f"sampling the posterior with {method} ({chains} chains x {num_warmup} + {num_samples})"
        )
    keep = keep_log_likelihood(log_likelihood, chains * num_samples * data.X.shape[0], progress)
    idata = fit_posterior(
        data.X,
        n_clusters,
        method=method,
        sigma=sigma,
        num_samples=num_samples,
        num_warmup=num_warmup,
        num_chains=chains,
        seed=seed,
        progress=progress.enabled,
        relabel=reference is None,
        log_likelihood=keep,
        **({"num_steps": num_steps} if num_steps is not None and method in ("svi", "map") else {}),
        **({"batch_size": batch_size} if batch_size is not None and method in ("svi", "map") else {}),
    )
    return idata if reference is None else relabel(idata, reference=reference)


def posterior_summary(
    idata, data: Data, method: str, hard=None, *, where: str = "posterior.nc (--out)"
) -> str:
    """The posterior table with a line saying what it is; a point estimate (MAP) as one value each."""
    post = idata.posterior
    n, d = data.X.shape
    if is_point_estimate(idata):
        head = (
            f"posterior ({method}): a point estimate, the posterior mode (no spread: no sd, interval, "
            f"ESS or R-hat), N = {n}, D = {d}"
        )
        values = [
            post[name].values.reshape(-1, *post[name].shape[2:])[0] for name in ("sigma", "weights", "means")
        ]
        table = point_table(*values, data.feature_names, where=where, hard=hard, label="map")
        return head + "\n\n" + table
    head = (
        f"posterior ({method}): {post.sizes['chain']} chains x {post.sizes['draw']} draws, "
        f"N = {n}, D = {d}; weights and means relabelled"
    )
    return head + "\n\n" + posterior_table(idata, data.feature_names, hard=hard, where=where)


def _save_posterior(path: Path, idata, data: Data, *, force: bool) -> None:
    save_posterior(
        path, idata, feature_names=data.feature_names, standardization=data.standardization, force=force
    )


def write_posterior(
    idata, data: Data, paths: dict[str, Path], *, force: bool, name: str = "posterior.nc", hard=None
) -> None:
    """Save the posterior as netCDF and draw its pictures."""
    _save_posterior(paths[name], idata, data, force=force)
    write_posterior_plots(idata, data, paths, force=force, hard=hard)


def write_compare(fits: dict, data: Data, paths: dict[str, Path], *, force: bool):
    """``compare_posteriors`` of the fits; with ``paths``, also compare.csv (no index column) and
    each posterior."""
    from .inference.compare import compare_posteriors

    table = compare_posteriors(fits)
    if paths:
        for method, idata in fits.items():
            _save_posterior(paths[f"posterior_{method}.nc"], idata, data, force=force)
        atomic_write(paths["compare.csv"], lambda tmp: table.to_csv(tmp, index=False), force=force)
    return table
