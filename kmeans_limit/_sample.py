"""The command line's ``sample`` job: new data by ancestral sampling, from the prior or a saved fit."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch

from .inference.sampling import GeneratedData, sample_from, sample_prior
from .inference.validation import check_positive_int, make_generator
from .io import PointFit, PosteriorFit, atomic_write, load_fit, write_csv_rows, write_table

__all__ = [
    "OUT_FORMATS",
    "check_out_file",
    "check_sizes",
    "generate",
    "posterior_predictive",
    "run_sample",
    "write_generated",
    "write_stdout",
]

#: The extensions ``sample --out`` writes, and what each holds.
OUT_FORMATS = {
    ".csv": "CSV with a header and the component in the last column",
    ".tsv": "tab-separated, like the CSV",
    ".npy": "a NumPy float64 array of the features only",
}
#: Bytes per generated number the sampler and the writer hold at once (a float64 and its copies).
BYTES_PER_VALUE = 32


def _available_memory() -> int:
    """Bytes of memory available now (``MemAvailable``), or the physical memory where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_sizes(n_samples: int, n_clusters: int, n_features: int) -> None:
    """Refuse, before any allocation, a request whose arrays cannot fit in memory.

    Raises
    ------
    ValueError
        The points (``n_samples × (n_features + 1)`` numbers) or the components
        (``n_clusters × (n_features + 1)``) would take more memory than is available.
    """
    available = _available_memory()
    for what, count, option in (
        ("points", n_samples, f"-n {n_samples}"),
        ("components", n_clusters, f"-k {n_clusters}"),
    ):
        need = BYTES_PER_VALUE * count * (n_features + 1)
        if need > available:
            raise ValueError(
                f"{option} is too large: {count} {what} of {n_features} features need about "
                f"{need / 2**30:.3g} GiB, more than the {available / 2**30:.3g} GiB of memory available; "
                f"ask for fewer {what}"
            )


def check_out_file(out: Path | None, *, force: bool) -> None:
    """Refuse an ``--out`` of unknown extension, in a missing or unwritable folder, or that exists."""
    if out is None:
        return
    suffix = out.suffix.lower()
    if suffix not in OUT_FORMATS:
        known = ", ".join(OUT_FORMATS)
        shown = f"extension {out.suffix!r}" if out.suffix else "no extension"
        raise ValueError(f"--out {out} has {shown}; give a file ending in {known}")
    folder = out.parent
    if not folder.is_dir():
        raise ValueError(f"--out {out}: the folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(
            f"--out {out}: cannot write into {folder} (permission denied); choose another folder"
        )
    if out.is_dir():
        raise ValueError(f"--out {out} is a directory; give a file name ending in .csv, .tsv or .npy")
    if out.exists() and not force:
        raise ValueError(f"{out} exists; pass --force to overwrite it, or choose another --out")


def posterior_predictive(fit: PosteriorFit, n_samples: int, *, seed: int) -> GeneratedData:
    """New points from the posterior predictive distribution, by ancestral sampling through the program.

    Each point gets its own posterior draw (picked uniformly), then ``z ~ Categorical(weights)`` and
    ``x ~ Normal(means_z, σ² I)``: ``spherical_gmm`` run forward with ``Predictive`` on those draws.
    """
    import pyro
    from pyro.infer import Predictive

    from .models import spherical_gmm

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


def run_sample(
    n_samples: int,
    n_clusters,
    sigma,
    n_features: int | None,
    fit_path,
    *,
    seed: int,
    standardized_units: bool,
) -> tuple[GeneratedData, tuple[str, ...]]:
    """New data from the prior (``-k`` clusters, ``n_features``, default 2) or from a saved fit.

    Options that do not apply are refused: ``--features`` or ``--standardized-units`` with or
    without ``--from`` as the case may be, and ``-k`` that disagrees with the fit.
    """
    if fit_path is None:
        if n_clusters is None:
            raise ValueError("give -k K (clusters to draw from the prior), or --from FIT to use a saved fit")
        if standardized_units:
            raise ValueError(
                "--standardized-units applies with --from FIT only (a fit made with --standardize)"
            )
        n_features = 2 if n_features is None else n_features
        check_sizes(n_samples, n_clusters, n_features)
        draws = sample_prior(n_samples, n_clusters=n_clusters, n_features=n_features, sigma=sigma, seed=seed)
        return GeneratedData(draws.x[0], draws.z[0]), tuple(f"x{j}" for j in range(n_features))
    fit = load_fit(fit_path)
    k, d = fit.means.shape[-2:]
    if n_features is not None:
        raise ValueError(
            f"--features {n_features} does not apply with --from: the fit in '{fit_path}' has D = {d}"
        )
    if n_clusters is not None and n_clusters != k:
        raise ValueError(
            f"-k {n_clusters} disagrees with the fit in '{fit_path}', which has K = {k}; leave -k out"
        )
    check_sizes(n_samples, k, d)
    generated = generate(fit, n_samples, seed=seed, sigma=sigma)
    if fit.standardization is not None and not standardized_units:
        generated = generated._replace(x=fit.standardization.undo(generated.x))
    return generated, fit.feature_names


def write_stdout(generated: GeneratedData, names) -> None:
    """Generated rows as CSV on stdout (a header, the component last), written as they are formatted."""
    write_csv_rows(sys.stdout, generated.x, names, generated.z)
    sys.stdout.flush()


def write_generated(path: Path, generated: GeneratedData, names, *, force: bool) -> None:
    """Generated rows to ``.npy`` (features only, float64), CSV or TSV (with the component), atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        array = generated.x.detach().cpu().numpy().astype("float64")

        def write(tmp: Path) -> None:
            with tmp.open("wb") as handle:
                np.save(handle, array, allow_pickle=False)

        atomic_write(path, write, force=force)
    else:
        delimiter = "\t" if suffix == ".tsv" else ","
        write_table(path, generated.x, names, labels=generated.z, force=force, delimiter=delimiter)
