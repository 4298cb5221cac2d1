"""The ``kmeans-limit sbc`` job: simulation-based calibration of a posterior method, its files and summary.

The command line parses the options and calls :func:`run_sbc_job`; everything else is here.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .io import atomic_write

__all__ = ["SBC_FILES", "SBCJob", "run_sbc_job", "sbc_summary", "write_sbc"]

#: What the job writes into --out.
SBC_FILES = ("sbc_ranks.csv", "sbc.png", "sbc_summary.txt")


class SBCJob(NamedTuple):
    """The parsed options of ``kmeans-limit sbc`` (the names of the command line's options)."""

    n_clusters: int
    method: str = "gibbs"
    simulations: int = 200
    n_samples: int = 30
    n_features: int = 1
    sigma: float | None = None
    num_samples: int = 1000
    num_warmup: int = 200
    chains: int = 2
    thin: int = 10
    bins: int | None = None
    jobs: int = 1
    num_steps: int | None = None
    batch_size: int | None = None
    seed: int = 0
    out: Path | None = None
    force: bool = False


def _plan(out: Path | None, force: bool) -> dict[str, Path]:
    """The output paths, checked before any work: ``out`` must be a directory, files new or forced."""
    if out is None:
        return {}
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a directory for the outputs")
    paths = {name: out / name for name in SBC_FILES}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not force:
        raise ValueError(f"{existing[0]} exists; pass --force to overwrite, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    return paths


def ranks_csv(result) -> str:
    """One row per simulation: its seeds, and the rank and true value of every quantity."""
    names = list(result.ranks)
    header = [
        "simulation",
        "data_seed",
        "fit_seed",
        *(f"rank_{n}" for n in names),
        *(f"true_{n}" for n in names),
    ]
    buffer = io.StringIO()
    buffer.write(",".join(header) + "\n")
    for i in range(len(result.seeds)):
        ranks = [str(int(result.ranks[n][i])) for n in names]
        truth = [repr(float(result.truth[n][i])) for n in names]
        buffer.write(",".join([str(i), *(str(int(s)) for s in result.seeds[i]), *ranks, *truth]) + "\n")
    return buffer.getvalue()


def sbc_summary(result, *, level: float = 1e-3) -> str:
    """A one-screen summary: the settings, and per quantity the p-value, a verdict and the rank spread."""
    s = result.settings
    sigma = "learned" if s["sigma"] == "learned" else f"fixed at {s['sigma']:g}"
    n_sim = len(result.seeds)
    lines = [
        f"Simulation-based calibration of {s['method']}: {n_sim} data sets of N = {s['n_samples']} rows, "
        f"D = {s['n_features']}, K = {s['n_clusters']}, σ {sigma}, seed {s['seed']}",
        f"each true value ranked among L = {result.n_draws} posterior draws "
        f"({s['num_chains']} chain(s) × {s['num_samples']} kept, thinned by {s['thin']}); "
        f"chi-square on {result.n_bins} bins, level {level:g}",
        "",
        f"{'quantity':<20} {'p-value':>9}  {'verdict':<12} {'ranks at 0 or L':>15}  {'mean rank / L':>13}",
    ]
    for name, p in result.p_values.items():
        ranks = result.ranks[name]
        ends = np.mean((ranks == 0) | (ranks == result.n_draws))
        verdict = "calibrated" if p > level else "NOT uniform"
        lines.append(
            f"{name:<20} {p:>9.3g}  {verdict:<12} {ends:>15.1%}  {ranks.mean() / result.n_draws:>13.3f}"
        )
    failed = [n for n, p in result.p_values.items() if p <= level]
    lines += [
        "",
        "Uniform ranks expect 0.5 as mean rank / L and "
        f"{2 / (result.n_draws + 1):.1%} of ranks at 0 or L. "
        + (f"{len(failed)} quantity(ies) fail: {', '.join(failed)}." if failed else "No quantity fails."),
    ]
    return "\n".join(lines)


def write_sbc(result, paths: dict[str, Path], *, force: bool) -> None:
    """The ranks (CSV), the plots (PNG) and the summary (text) at ``paths``."""
    from .plotting import save_figure
    from .sbc_plots import plot_sbc

    text = ranks_csv(result)
    atomic_write(paths["sbc_ranks.csv"], lambda tmp: Path(tmp).write_text(text), force=force)
    save_figure(plot_sbc(result), paths["sbc.png"], force=force)
    summary = sbc_summary(result) + "\n"
    atomic_write(paths["sbc_summary.txt"], lambda tmp: Path(tmp).write_text(summary), force=force)


def run_sbc_job(job: SBCJob, *, progress: bool = False) -> tuple[str, dict[str, Path]]:
    """Run SBC with the command line's options and write its files.

    Returns
    -------
    summary : str
        What to print.
    paths : dict of str to Path
        The files written (empty without ``--out``).

    Raises
    ------
    ValueError
        For a bad option value (from :func:`~kmeans_limit.inference.sbc.sbc`), ``--num-steps`` or
        ``--batch-size`` with a sampler, or an ``--out`` that is a file or holds the outputs already
        (without ``--force``), before any simulation runs.
    """
    from .inference.sbc import sbc

    if job.method not in ("svi", "map") and (job.num_steps is not None or job.batch_size is not None):
        raise ValueError(
            f"--num-steps and --batch-size apply to the svi and map methods only, not {job.method}"
        )
    optimiser = {"num_steps": job.num_steps, "batch_size": job.batch_size}
    options = {name: value for name, value in optimiser.items() if value is not None}
    paths = _plan(job.out, job.force)
    result = sbc(
        job.n_clusters, method=job.method, n_simulations=job.simulations, n_samples=job.n_samples,
        n_features=job.n_features, sigma=job.sigma, seed=job.seed, num_samples=job.num_samples,
        num_warmup=job.num_warmup, num_chains=job.chains, thin=job.thin, n_bins=job.bins, n_jobs=job.jobs,
        progress=progress, **options,
    )  # fmt: skip
    if paths:
        write_sbc(result, paths, force=job.force)
    return sbc_summary(result), paths
