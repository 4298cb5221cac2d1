"""The main job, on the embedded Old Faithful data: from hard k-means to the posterior and back to data."""

from __future__ import annotations

from pathlib import Path

import torch

from . import _jobs, _sample, plotting
from ._progress import Progress
from ._report import fmt, format_table
from .inference.sampling import sample_from
from .io import atomic_write, posterior_fit, write_table

__all__ = ["DEMO_FILES", "run_demo"]

N_CLUSTERS = 2
DEMO_FILES = (
    *_jobs.ANNEAL_FILES,
    "posterior.nc",
    *_jobs.POSTERIOR_PLOTS,
    "generated_hard.csv",
    "generated_posterior.csv",
    "generated.png",
    "summary.txt",
)


def _moments(name: str, X: torch.Tensor) -> list[str]:
    mean, sd = X.mean(0), X.std(0, unbiased=False)
    corr = torch.corrcoef(X.T)[0, 1].item() if X.shape[1] > 1 else float("nan")
    return [name, *(f"{v + 0.0:.3f}" for v in [*mean.tolist(), *sd.tolist(), corr])]


def _generated_table(data: _jobs.Data, generated: dict) -> str:
    """Means, sds and correlation of the observed and generated data (standardized units)."""
    names = data.feature_names
    header = ["data (standardized)", *(f"mean {n}" for n in names), *(f"sd {n}" for n in names), "corr"]
    rows = [_moments("observed", data.X)] + [_moments(title, x) for title, (x, _) in generated.items()]
    return format_table(header, rows)


def _original_units(data: _jobs.Data, means: torch.Tensor) -> str:
    centres = data.standardization.undo(means)
    parts = [
        f"centroid {k} = ("
        + ", ".join(f"{n} {fmt(v, 4)}" for n, v in zip(data.feature_names, row, strict=True))
        + ")"
        for k, row in enumerate(centres.tolist())
    ]
    return "hard fit in the data's units (minutes): " + "; ".join(parts)


def _fit_everything(data: _jobs.Data, *, seed: int, num_samples: int, num_warmup: int, chains: int, progress):
    progress.note("annealing from the data mean down to hard k-means (K = 2)")
    outcome = _jobs.run_anneal(data.X, N_CLUSTERS, seed=seed, cooling=None, weights="learn", path="dense")
    idata = _jobs.run_posterior(
        data,
        N_CLUSTERS,
        method="gibbs",
        sigma=None,
        num_samples=num_samples,
        num_warmup=num_warmup,
        chains=chains,
        seed=seed,
        progress=progress,
        reference=outcome.result.means,
    )
    return outcome, idata


def run_demo(
    out: Path, *, force: bool, seed: int, num_samples: int, num_warmup: int, chains: int, progress: Progress
) -> str:
    """Run the demo, write its files into ``out`` and return the summary it prints.

    The steps: deterministic annealing to σ = 0 on standardized Old Faithful (K = 2); one more Lloyd
    step from its end, which must change nothing; the posterior at learned σ by blocked Gibbs
    (relabelled, aligned with the hard fit); N new points from each fit by ancestral sampling
    (``sample_from`` at σ* for the hard fit, the posterior predictive for the Bayesian one).
    """
    data = _jobs.faithful_data()
    paths = _jobs.plan_outputs(Path(out), DEMO_FILES, force)
    outcome, idata = _fit_everything(
        data, seed=seed, num_samples=num_samples, num_warmup=num_warmup, chains=chains, progress=progress
    )
    hard = outcome.result
    hard_values = (hard.sigma_star, hard.weights, hard.means)
    n = data.X.shape[0]
    progress.note("generating new data from both fits")
    generated = {
        f"hard fit at σ* = √(J/(N·D)) = {fmt(hard.sigma_star, 3)}": sample_from(
            hard.means, n, weights=hard.weights, sigma=hard.sigma_star, seed=seed
        ),
        "posterior predictive (Gibbs)": _sample.posterior_predictive(posterior_fit(idata), n, seed=seed),
    }
    summary = _summary(data, outcome, idata, generated, hard_values, chains=chains)
    summary += f"\n\nwrote into {Path(out)}/: {', '.join(paths)}"
    progress.note("writing the fits and the plots")
    with _jobs.writing(paths):
        _jobs.write_anneal(outcome, data, paths, force=force, seed=seed)
        _jobs.write_posterior(idata, data, paths, force=force, hard=hard_values)
        for name, (x, z) in zip(
            ("generated_hard.csv", "generated_posterior.csv"), generated.values(), strict=True
        ):
            write_table(paths[name], data.standardization.undo(x), data.feature_names, labels=z, force=force)
        figure = plotting.plot_generated(
            data.X, {t: tuple(g) for t, g in generated.items()}, data.feature_names
        )
        plotting.save_figure(figure, paths["generated.png"], force=force)
        atomic_write(paths["summary.txt"], lambda tmp: tmp.write_text(summary + "\n"), force=force)
    return summary


def _summary(data, outcome, idata, generated, hard_values, *, chains: int) -> str:
    n, d = data.X.shape
    return "\n".join(
        [
            f"kmeans-limit demo: {data.source}, N = {n} eruptions, D = {d} "
            f"({', '.join(data.feature_names)}; standardized), K = {N_CLUSTERS}",
            "",
            _jobs.anneal_summary(outcome, data, table=False),
            _original_units(data, outcome.result.means),
            "",
            _jobs.posterior_summary(idata, data, "gibbs, σ learned", hard=hard_values),
            "",
            f"new data by ancestral sampling, {n} points from each fit:",
            _generated_table(data, generated),
        ]
    )
