"""The command line's jobs: load data, fit, check, generate, and write the files and pictures.

Each job is a plain function on tensors and records, so the click commands in :mod:`kmeans_limit.cli`
only parse options, call these and print what they return.
"""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyro
import torch
from pyro.infer import Predictive

from . import plotting
from ._report import fmt, format_table, parameter_names, posterior_table
from .datasets import load_faithful
from .inference import GeneratedData, sample_from, sample_prior
from .inference.validation import check_n_clusters, check_positive_int, make_generator
from .io import (
    PointFit,
    PosteriorFit,
    Standardization,
    atomic_write,
    load_fit,
    read_data,
    save_point_fit,
    save_posterior,
    standardize_with_stats,
    write_csv_rows,
    write_table,
)
from .models import spherical_gmm

__all__ = [
    "ANNEAL_FILES",
    "POSTERIOR_PLOTS",
    "AnnealOutcome",
    "Data",
    "anneal_summary",
    "csv_text",
    "faithful_data",
    "generate",
    "load_data",
    "plan_outputs",
    "posterior_predictive",
    "posterior_summary",
    "run_anneal",
    "run_posterior",
    "run_sample",
    "write_anneal",
    "write_compare",
    "write_generated",
    "write_posterior",
    "write_posterior_plots",
]


class Data(NamedTuple):
    """Data as fitted: ``X`` (standardized when asked), column names, the standardization, the source."""

    X: torch.Tensor
    feature_names: tuple[str, ...]
    standardization: Standardization | None
    source: str


def load_data(path, columns, standardize: bool, n_clusters: int | None = None) -> Data:
    """Read a data file, standardize it if asked, and check that it has room for ``n_clusters``."""
    dataset = read_data(path, columns=columns)
    X, standardization = standardize_with_stats(dataset.data) if standardize else (dataset.data, None)
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

    Creates ``out`` if needed. Returns an empty mapping when ``out`` is None (nothing is written).

    Raises
    ------
    ValueError
        ``out`` is a file, or one of the files exists and ``force`` is false.
    """
    if out is None:
        return {}
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a directory for the outputs")
    paths = {name: out / name for name in names}
    existing = [str(path) for path in paths.values() if path.exists()]
    if existing and not force:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise ValueError(f"{existing[0]} exists{more}; pass --force to overwrite, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    return paths


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


def run_anneal(X: torch.Tensor, n_clusters: int, *, seed: int, cooling: float, weights: str) -> AnnealOutcome:
    """Anneal from the data mean down to hard k-means, then take one more Lloyd step from the end."""
    from .inference.anneal import anneal
    from .inference.lloyd import lloyd

    result = anneal(X, n_clusters, cooling=cooling, weights=weights, seed=seed)
    step = lloyd(X, result.means, max_iter=1)
    shift = (step.means - result.means).norm(dim=1).max().item()
    changed = int((step.labels != result.labels).sum())
    return AnnealOutcome(result, shift, changed)


def anneal_summary(outcome: AnnealOutcome, data: Data, *, table: bool = True) -> str:
    """The hard fit as text: σ*, weights, centroids, inertia, the split and critical σ, the Lloyd check."""
    result = outcome.result
    n, d = data.X.shape
    sigma = result.path.sigma
    split_sigmas = torch.as_tensor(result.split_sigmas).tolist()
    split = ", ".join(fmt(s) for s in split_sigmas) or "none"
    hard = "; 0: made in the hard limit" if 0.0 in split_sigmas else ""
    critical = ", ".join(fmt(s) for s in torch.as_tensor(result.critical_sigmas).tolist()) or "none"
    lam = torch.linalg.eigvalsh(torch.cov(data.X.T, correction=0).reshape(d, d)).max().item()
    values = [result.sigma_star, *result.weights.tolist(), *result.means.reshape(-1).tolist()]
    names = parameter_names(result.means.shape[0], data.feature_names)
    rows = [[name, fmt(value)] for name, value in zip(names, values, strict=True)]
    verdict = "it is Lloyd's fixed point" if outcome.fixed_point else "it is NOT a fixed point of Lloyd"
    lines = [
        f"annealing: {len(sigma)} levels from σ = {fmt(sigma[0])} down to {fmt(sigma[-1])}, then σ = 0 (Lloyd); "
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
        lines += ["", format_table(["parameter", "hard fit (σ → 0)"], rows)]
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
# The posterior: pictures, and new data from it
# ---------------------------------------------------------------------------------------------

POSTERIOR_PLOTS = ("posterior_pairs.png", "posterior_centroids.png")


def write_posterior_plots(idata, data: Data, paths: dict[str, Path], *, force: bool, hard=None) -> None:
    """The pair plot of σ and weights and the centroid clouds (``hard``: (σ*, weights, means))."""
    post = idata.posterior
    sigma = post["sigma"].values.reshape(-1)
    weights = post["weights"].values.reshape(sigma.shape[0], -1)
    means = post["means"].values.reshape(sigma.shape[0], weights.shape[1], -1)
    reference = None
    if hard is not None:
        reference = {"σ": float(hard[0]), **{f"weight {k}": float(w) for k, w in enumerate(hard[1])}}
    pairs = plotting.plot_posterior_pairs(sigma, weights, reference=reference)
    clouds = plotting.plot_centroid_clouds(
        data.X, means, data.feature_names, hard_means=None if hard is None else hard[2]
    )
    plotting.save_figure(pairs, paths["posterior_pairs.png"], force=force)
    plotting.save_figure(clouds, paths["posterior_centroids.png"], force=force)


def posterior_predictive(fit: PosteriorFit, n_samples: int, *, seed: int) -> GeneratedData:
    """New points from the posterior predictive distribution, by ancestral sampling through the program.

    Each point gets its own posterior draw (picked uniformly), then ``z ~ Categorical(weights)`` and
    ``x ~ Normal(means_z, σ² I)``: ``spherical_gmm`` run forward with ``Predictive`` on those draws.
    """
    n_samples = check_positive_int("n_samples", n_samples)
    pick = torch.randint(fit.sigma.shape[0], (n_samples,), generator=make_generator(seed))
    # weights get an explicit plate dim: Predictive(parallel=True) reshapes by total rank, event dims included
    draws = {"weights": fit.weights[pick][:, None], "means": fit.means[pick], "sigma": fit.sigma[pick]}
    predictive = Predictive(spherical_gmm, posterior_samples=draws, parallel=True, return_sites=("z", "x"))
    with pyro.poutine.seed(rng_seed=seed):
        sites = predictive(
            n_clusters=fit.means.shape[1], n_features=fit.means.shape[2], n_samples=1, dtype=fit.means.dtype
        )
    return GeneratedData(sites["x"].reshape(n_samples, -1), sites["z"].reshape(n_samples))


def generate(
    fit: PointFit | PosteriorFit, n_samples: int, *, seed: int, sigma: float | None
) -> GeneratedData:
    """New data from a saved fit: ancestral sampling from a point fit (σ overridable) or a posterior."""
    if isinstance(fit, PosteriorFit):
        if sigma is not None:
            raise ValueError("--sigma cannot be combined with a posterior fit: σ comes from its draws")
        return posterior_predictive(fit, n_samples, seed=seed)
    return sample_from(
        fit.means, n_samples, weights=fit.weights, sigma=fit.sigma if sigma is None else sigma, seed=seed
    )


def run_posterior(
    data: Data,
    n_clusters: int,
    *,
    method: str,
    sigma,
    num_samples: int,
    num_warmup: int,
    chains: int,
    seed: int,
    progress,
    num_steps: int | None = None,
    batch_size: int | None = None,
    reference=None,
) -> object:
    """``fit_posterior`` on the data, with progress bars when they are on, relabelled: pivoted to the
    MAP draw, or to ``reference`` centroids (of shape (K, D)) when given, e.g. the hard fit's.
    ``num_steps`` goes to the optimisers of svi and map (the samplers have no such option), and
    ``batch_size`` (mini-batches) to them too."""
    from .inference.posterior import fit_posterior
    from .inference.relabel import relabel

    progress.note(f"sampling the posterior with {method} ({chains} chains x {num_warmup} + {num_samples})")
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
        **({"num_steps": num_steps} if num_steps is not None and method in ("svi", "map") else {}),
        **({"batch_size": batch_size} if batch_size is not None and method in ("svi", "map") else {}),
    )
    return idata if reference is None else relabel(idata, reference=reference)


def posterior_summary(idata, data: Data, method: str, hard=None) -> str:
    """The posterior table with a line saying what it is."""
    post = idata.posterior
    head = (
        f"posterior ({method}): {post.sizes['chain']} chains x {post.sizes['draw']} draws, "
        f"N = {data.X.shape[0]}, D = {data.X.shape[1]}; weights and means relabelled"
    )
    return head + "\n\n" + posterior_table(idata, data.feature_names, hard=hard)


def _save_posterior(path: Path, idata, data: Data, *, force: bool) -> None:
    save_posterior(
        path, idata, feature_names=data.feature_names, standardization=data.standardization, force=force
    )


def write_posterior(
    idata, data: Data, paths: dict[str, Path], *, force: bool, name: str = "posterior.nc", hard=None
) -> None:
    """Save the posterior as netCDF and draw its two pictures."""
    _save_posterior(paths[name], idata, data, force=force)
    write_posterior_plots(idata, data, paths, force=force, hard=hard)


def write_compare(fits: dict, data: Data, paths: dict[str, Path], *, force: bool):
    """``compare_posteriors`` of the fits; with ``paths``, also compare.csv and each posterior."""
    from .inference.compare import compare_posteriors

    table = compare_posteriors(fits)
    if paths:
        for method, idata in fits.items():
            _save_posterior(paths[f"posterior_{method}.nc"], idata, data, force=force)
        atomic_write(paths["compare.csv"], lambda tmp: table.to_csv(tmp), force=force)
    return table


# ---------------------------------------------------------------------------------------------
# sample
# ---------------------------------------------------------------------------------------------


def run_sample(
    n_samples: int, n_clusters, sigma, n_features: int, fit_path, *, seed: int, standardized_units: bool
) -> tuple[GeneratedData, tuple[str, ...]]:
    """New data from the prior (``-k`` clusters, ``n_features``) or from a saved fit."""
    if fit_path is None:
        if n_clusters is None:
            raise ValueError("give -k K (clusters to draw from the prior), or --from FIT to use a saved fit")
        draws = sample_prior(n_samples, n_clusters=n_clusters, n_features=n_features, sigma=sigma, seed=seed)
        return GeneratedData(draws.x[0], draws.z[0]), tuple(f"x{j}" for j in range(n_features))
    fit = load_fit(fit_path)
    k = fit.means.shape[-2]
    if n_clusters is not None and n_clusters != k:
        raise ValueError(
            f"-k {n_clusters} disagrees with the fit in '{fit_path}', which has K = {k}; leave -k out"
        )
    generated = generate(fit, n_samples, seed=seed, sigma=sigma)
    if fit.standardization is not None and not standardized_units:
        generated = generated._replace(x=fit.standardization.undo(generated.x))
    return generated, fit.feature_names


def csv_text(generated: GeneratedData, names) -> str:
    """Generated rows as CSV text with a header, the component in the last column."""
    buffer = StringIO()
    write_csv_rows(buffer, generated.x, names, generated.z)
    return buffer.getvalue()


def write_generated(path: Path, generated: GeneratedData, names, *, force: bool) -> None:
    """Generated rows to ``.npy`` (features only, float64) or CSV (with the component), atomically."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        array = generated.x.detach().cpu().numpy().astype("float64")

        def write(tmp: Path) -> None:
            with tmp.open("wb") as handle:
                np.save(handle, array, allow_pickle=False)

        atomic_write(path, write, force=force)
    else:
        write_table(path, generated.x, names, labels=generated.z, force=force)
