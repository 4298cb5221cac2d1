"""The ``kmeans-limit`` command line: the demo on Old Faithful, and anneal/explore/posterior/sample/compare.

Every error a user can cause (a missing or malformed file, a bad value, an output that exists) ends
the program with exit status 2 and one line on stderr, ``kmeans-limit: error: ...``, saying what is
wrong and what to do; set ``KMEANS_LIMIT_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import click

from ._progress import Progress

# Nothing heavy is imported here: torch, Pyro, arviz, scikit-learn and matplotlib are loaded by the
# commands that need them (``from . import _jobs`` inside each), so --help and --version start at once.

METHODS = ("gibbs", "nuts", "svi", "map")
PROG = "kmeans-limit"


# ---------------------------------------------------------------------------------------------
# Option types and shared options
# ---------------------------------------------------------------------------------------------


class Sigma(click.ParamType):
    """σ on the command line, checked by the library's own ``check_sigma``."""

    name = "SIGMA"

    def __init__(self, allow_zero: bool):
        self.allow_zero = allow_zero

    def convert(self, value, param, ctx):
        from .inference.validation import check_sigma

        try:
            return check_sigma(float(value), allow_zero=self.allow_zero)
        except ValueError:
            bound = ">= 0" if self.allow_zero else "> 0"
            self.fail(f"{value!r} should be a finite number {bound}", param, ctx)


class Penalty(click.ParamType):
    """λ on the command line: a finite number > 0, checked by the library's own ``check_penalty``."""

    name = "L"

    def convert(self, value, param, ctx):
        from .inference.dp_means import check_penalty

        try:
            return check_penalty(float(value))
        except ValueError:
            self.fail(f"{value!r} should be a finite number > 0 (the price λ of a cluster)", param, ctx)


def _split(value: str | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(part.strip() for part in value.split(",") if part.strip())


def _methods(ctx, param, value: str) -> tuple[str, ...]:
    methods = _split(value)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or len(methods) < 2 or len(set(methods)) != len(methods):
        raise click.BadParameter(
            f"{value!r} should be two or more distinct methods from {', '.join(METHODS)}, comma-separated",
            ctx,
            param,
        )
    return methods


def data_options(command):
    """DATA, --columns and --standardize."""
    command = click.option(
        "--standardize", is_flag=True, help="Centre each column and scale it to unit variance before fitting."
    )(command)
    command = click.option(
        "--columns",
        metavar="LIST",
        help="Columns to use: header names or 0-based indices, comma-separated (default: all). "
        "One column is fine (1-D clustering).",
    )(command)
    return click.argument("data", type=click.Path(path_type=Path), metavar="DATA")(command)


def run_options(out_help: str):
    """--seed, --out (``out_help`` says what it writes), --force and --quiet."""

    def decorate(command):
        command = click.option(
            "-q", "--quiet", is_flag=True, help="No progress bars, stage notes or notes on stderr."
        )(command)
        command = click.option("--force", is_flag=True, help="Overwrite files that exist in --out.")(command)
        command = click.option("--out", type=click.Path(path_type=Path), metavar="DIR", help=out_help)(
            command
        )
        return click.option(
            "--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Random seed."
        )(command)

    return decorate


def log_likelihood_option(command):
    """--log-likelihood/--no-log-likelihood."""
    return click.option(
        "--log-likelihood/--no-log-likelihood",
        "log_likelihood",
        default=None,
        help="Store the pointwise log-likelihood (chains x draws x N numbers, for LOO/WAIC) in the "
        "netCDF fit, or leave it out. Default: stored up to 5,000,000 numbers (40 MB), left out above "
        "with a note on stderr.",
    )(command)


def clusters_option(required: bool = True):
    """-k/--clusters."""
    return click.option(
        "-k",
        "--clusters",
        "n_clusters",
        type=click.IntRange(min=1),
        required=required,
        help="Number of clusters K.",
    )


def sampler_options(command):
    """--sigma, --num-samples, --num-warmup, --chains, --num-steps and --batch-size of the posterior methods."""
    command = click.option(
        "--batch-size",
        type=click.IntRange(min=1),
        help="Rows each svi or map step observes, at random, scaled to all N (mini-batches; default: all).",
    )(command)
    command = click.option(
        "--num-steps",
        type=click.IntRange(min=1),
        help="Optimisation steps of svi and map (default: the library's, 2000).",
    )(command)
    command = click.option(
        "--chains",
        default=2,
        show_default=True,
        type=click.IntRange(min=1),
        help="Chains (svi: its independent draws split into chains; posterior --method map: one point).",
    )(command)
    command = click.option(
        "--num-warmup",
        default=500,
        show_default=True,
        type=click.IntRange(min=0),
        help="Warm-up steps a chain (gibbs and nuts).",
    )(command)
    command = click.option(
        "--num-samples",
        type=click.IntRange(min=1),
        help="Draws kept a chain (svi: drawn from the fitted guide). Default: 1000; 250 for svi with "
        "--batch-size, since each draw's lp is summed over all N rows.",
    )(command)
    return click.option(
        "--sigma", type=Sigma(allow_zero=False), help="Fix σ (> 0) instead of learning it (default: learned)."
    )(command)


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="kmeans-limit", prog_name=PROG)
def cli() -> None:
    """k-means is the zero-variance limit of a spherical Gaussian mixture.

    Start with 'kmeans-limit demo'. DATA files are text, one row per point: comma-, semicolon-, tab-
    or whitespace-separated (the sipu .data files, numpy.savetxt's default; a header line is detected;
    .gz is read as it is), or NumPy .npy arrays. Every error exits with status 2 and one line on stderr.
    """


@cli.command(
    short_help="The main job: Old Faithful from annealing to hard k-means, the posterior and new data."
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("kmeans-limit-demo"),
    show_default=True,
    metavar="DIR",
    help="Directory for the files and plots.",
)
@click.option("--force", is_flag=True, help="Overwrite files that exist in --out.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Random seed.")
@click.option(
    "--num-samples",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Posterior draws kept a chain.",
)
@click.option(
    "--num-warmup", default=500, show_default=True, type=click.IntRange(min=0), help="Warm-up a chain."
)
@click.option("--chains", default=2, show_default=True, type=click.IntRange(min=1), help="Gibbs chains.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or stage notes on stderr.")
def demo(out, force, seed, num_samples, num_warmup, chains, quiet) -> None:
    """The main job on the embedded Old Faithful data (standardized, K = 2).

    Anneals from the data mean down to hard k-means and checks that the end is Lloyd's fixed point,
    samples the posterior at learned σ with Gibbs, generates new data from both fits by ancestral
    sampling, prints a summary and writes the fits, the new data and six plots into --out.
    """
    from ._demo import run_demo

    click.echo(
        run_demo(
            out,
            force=force,
            seed=seed,
            num_samples=num_samples,
            num_warmup=num_warmup,
            chains=chains,
            progress=Progress(quiet),
        )
    )


COOLING_HELP = (
    "With --path dense: the ratio of consecutive σ levels of the dense path (default 0.97; closer to 1 "
    "gives more levels, never fewer). With --path levels: each split is made at σ = cooling × √λmax of "
    "the split cluster's covariance (just below its transition), or at the current σ if that is lower, "
    "and after the last split σ falls by cooling^4 a level (default 0.9); that path has one level a "
    "split whatever the cooling, so closer to 1 does not give more levels."
)


def cooling_option(command):
    """--cooling (None: the path's own default)."""
    return click.option(
        "--cooling",
        default=None,
        type=click.FloatRange(0, 1, min_open=True, max_open=True),
        help=COOLING_HELP,
    )(command)


def weights_option(command):
    """--weights learn|equal."""
    return click.option(
        "--weights",
        "weights_mode",
        type=click.Choice(["learn", "equal"]),
        default="learn",
        show_default=True,
        help="Learn the mixing weights along the path, or hold them equal.",
    )(command)


@cli.command(short_help="Anneal σ down to 0: the path to hard k-means, checked against Lloyd.")
@data_options
@clusters_option(required=False)
@click.option(
    "--penalty",
    type=Penalty(),
    help="Choose K instead of giving -k: the K minimising J + λK (λ = L, the price of a cluster, in "
    "squared data units) on the annealing path, then DP-means; writes dp_means.json and penalty_curve.png.",
)
@cooling_option
@weights_option
@click.option(
    "--path",
    "path_mode",
    type=click.Choice(["levels", "dense"]),
    default=None,
    help="The path recorded in anneal.json and drawn: 'levels', the fast schedule's few levels (one a "
    "split), or 'dense', the equilibrium path on a fine σ grid down to σ*/20 with each split where "
    "it happens (slower: on s1 with K = 15, 14 s against 5 s with the pictures). Default: dense with --out (the pictures), "
    "levels without. The hard fit is the same either way.",
)
@run_options(
    "Directory for anneal.json (the hard fit and its path, readable by 'sample --from') and three PNG "
    "plots: anneal_bifurcation.png, anneal_responsibilities.png, anneal_entropy.png."
)
def anneal(
    data, columns, standardize, n_clusters, penalty, cooling, weights_mode, path_mode, seed, out, force, quiet
) -> None:
    """Anneal σ from above the first split down to 0: the path to hard k-means.

    Prints the hard fit (centroids, weights, inertia J, σ* = √(J/(N·D))) and checks that one more
    Lloyd step changes nothing. With --out, writes anneal.json (the fit, readable by 'sample --from')
    and the bifurcation, responsibility and entropy plots.

    With --penalty L instead of -k, K is chosen: prints K, J, J + λK and which K each λ chooses (the
    lower convex hull of J(K) on the annealing path); --out writes dp_means.json and penalty_curve.png.
    """
    if penalty is not None or n_clusters is None:
        _anneal_penalized(
            data, columns, standardize, n_clusters, penalty, cooling, weights_mode, seed, out, force, quiet
        )
        return
    from . import _jobs

    loaded = _jobs.load_data(data, _split(columns), standardize, n_clusters)
    paths = _jobs.plan_outputs(out, _jobs.ANNEAL_FILES, force)
    progress = Progress(quiet)
    path_mode = path_mode or ("dense" if paths else "levels")
    progress.note(f"annealing {loaded.X.shape[0]} points to K = {n_clusters} ({path_mode} path)")
    outcome = _jobs.run_anneal(
        loaded.X, n_clusters, seed=seed, cooling=cooling, weights=weights_mode, path=path_mode
    )
    with _jobs.writing(paths):
        if paths:
            _jobs.write_anneal(outcome, loaded, paths, force=force, seed=seed)
    click.echo(_jobs.anneal_summary(outcome, loaded))
    _echo_written(paths)


def _anneal_penalized(
    data, columns, standardize, n_clusters, penalty, cooling, weights_mode, seed, out, force, quiet
) -> None:
    """``anneal --penalty L``: K chosen by λ (the usage errors first: both or neither of -k and --penalty)."""
    if n_clusters is not None:
        raise click.UsageError(
            f"-k {n_clusters} and --penalty {penalty:g}: give one (-k: K given; --penalty: K chosen)"
        )
    if penalty is None:
        raise click.UsageError(
            "give -k K (the number of clusters) or --penalty L (K chosen by the price λ of a cluster)"
        )
    from . import _dp_jobs, _jobs

    loaded = _jobs.load_data(data, _split(columns), standardize)
    paths = _jobs.plan_outputs(out, _dp_jobs.PENALTY_FILES, force)
    Progress(quiet).note(f"annealing {loaded.X.shape[0]} points, K chosen by λ = {penalty:g}")
    result = _dp_jobs.run_anneal_penalized(
        loaded.X, penalty, seed=seed, cooling=cooling, weights=weights_mode
    )
    with _jobs.writing(paths):
        if paths:
            _dp_jobs.write_penalized(result, loaded, paths, force=force, seed=seed, penalty=penalty)
    click.echo(_dp_jobs.penalized_summary(result, loaded, penalty))
    _echo_written(paths)


@cli.command(short_help="One self-contained HTML page: the path from soft to hard, with a σ slider.")
@click.argument("data", type=click.Path(path_type=Path), metavar="[DATA]", required=False)
@click.option("--demo", is_flag=True, help="Use the embedded Old Faithful data (standardized; the default).")
@click.option(
    "-k",
    "--clusters",
    "n_clusters",
    type=click.IntRange(min=1),
    help="Number of clusters K (needed with DATA; 2 for the demo).",
)
@click.option(
    "--columns",
    metavar="LIST",
    help="Columns of DATA to fit: header names or 0-based indices, comma-separated (default: all).",
)
@click.option("--standardize", is_flag=True, help="Centre each column of DATA and scale it to unit variance.")
@click.option(
    "--draw",
    metavar="A,B",
    help="The two features to draw (names or 0-based indices of the fitted columns). Default: both "
    "of 2-D data, the first two principal axes above 2 features.",
)
@click.option(
    "--cooling",
    default=0.97,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="The ratio of consecutive σ levels of the dense path (closer to 1: more levels, never fewer).",
)
@weights_option
@click.option(
    "--max-points",
    default=5000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Points drawn at most: above it a random subsample is drawn (the page says so); the path and "
    "the fit use every point.",
)
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Random seed.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("kmeans-limit-explorer.html"),
    show_default=True,
    metavar="FILE",
    help="The HTML file to write.",
)
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="No stage notes on stderr.")
def explore(
    data,
    demo,
    n_clusters,
    columns,
    standardize,
    draw,
    cooling,
    weights_mode,
    max_points,
    seed,
    out,
    force,
    quiet,
) -> None:
    """Write ONE self-contained HTML page (no server, no network) to explore the annealing path.

    A σ slider runs from above the first split down to σ = 0: the points coloured by their
    responsibilities, the centroids, the bifurcation diagram and the free energy −2σ² log p(X)/N
    with the split σ values and J/N at σ = 0, a play button, and Lloyd's result from a bad
    k-means++ start beside the annealed one. Without DATA (or with --demo): Old Faithful, K = 2.
    """
    if data is not None and demo:
        raise click.UsageError("give DATA or --demo, not both")
    if data is not None and n_clusters is None:
        raise click.UsageError("DATA needs -k K, the number of clusters")
    if data is None and (columns is not None or standardize):
        raise click.UsageError("--columns and --standardize apply to DATA, not to the demo data")
    pair = _split(draw)
    if pair is not None and (len(pair) != 2 or pair[0] == pair[1]):
        raise click.UsageError(f"--draw {draw!r} should name two different features, comma-separated: A,B")
    if out.is_dir():
        raise click.UsageError(f"--out {out} is a directory; give the path of the HTML file to write")
    if out.exists() and not force:
        raise click.UsageError(f"--out {out} exists; pass --force to overwrite it, or choose another --out")
    from . import _jobs
    from .explorer import check_draw
    from .explorer import explore as write_page

    if data is None:
        loaded, n_clusters = _jobs.faithful_data(), n_clusters or 2
    else:
        loaded = _jobs.load_data(data, _split(columns), standardize, n_clusters)
    if pair is not None:
        try:
            check_draw(pair, loaded.feature_names)
        except ValueError as error:
            raise click.UsageError(f"--draw {draw!r}: {error}") from None
    progress = Progress(quiet)
    progress.note(f"the dense annealing path of {loaded.X.shape[0]} points to K = {n_clusters}")
    with _jobs.writing({out.name: out}):
        text = write_page(
            loaded.X,
            n_clusters,
            out=out,
            feature_names=loaded.feature_names,
            source=loaded.source,
            force=force,
            columns=pair,
            seed=seed,
            cooling=cooling,
            weights=weights_mode,
            max_points=max_points,
        )
    click.echo(text)


@cli.command(short_help="The posterior of weights, means and σ (gibbs, nuts, svi or map).")
@data_options
@clusters_option(required=False)
@click.option(
    "--dp",
    is_flag=True,
    help="Instead of -k: the posterior of the number of clusters, by blocked Gibbs on a truncated "
    "Dirichlet-process mixture (writes posterior.nc and posterior_cluster_count.png).",
)
@click.option(
    "--max-clusters",
    type=int,
    metavar="M",
    help="With --dp: the truncation, components of the DP mixture (>= 2; default 20).",
)
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default="gibbs",
    show_default=True,
    help="Blocked Gibbs, NUTS or SVI on the Pyro program, or MAP.",
)
@sampler_options
@log_likelihood_option
@run_options(
    "Directory for posterior.nc (arviz InferenceData, netCDF, readable by 'sample --from') and PNG plots: "
    "posterior_pairs.png (σ and weights; not for map, a point) and posterior_centroids.png."
)
def posterior(
    data,
    columns,
    standardize,
    n_clusters,
    dp,
    max_clusters,
    method,
    sigma,
    num_samples,
    num_warmup,
    chains,
    num_steps,
    batch_size,
    log_likelihood,
    seed,
    out,
    force,
    quiet,
) -> None:
    """The posterior of weights, means and σ (relabelled), summarized with ESS and R-hat.

    map is a point estimate (the posterior mode): it is reported as one value a parameter and kept
    once in posterior.nc. Above K = 10 the summary and the pair plot show label-invariant
    quantities (σ, largest, median and smallest weight, effective K) and say so.

    With --dp instead of -k (gibbs only): the posterior of the number of occupied clusters of a
    Dirichlet-process mixture truncated at --max-clusters components, and its occupied components.
    """
    if dp or max_clusters is not None or n_clusters is None:
        _posterior_dp(
            data, columns, standardize, n_clusters, dp, max_clusters, method, batch_size,
            dict(sigma=sigma, num_samples=num_samples, num_warmup=num_warmup, chains=chains, seed=seed),
            log_likelihood, out, force, quiet,
        )  # fmt: skip
        return
    from . import _jobs

    _optimisers_only(batch_size, [method])
    loaded = _jobs.load_data(data, _split(columns), standardize, n_clusters)
    paths = _jobs.plan_outputs(out, _jobs.posterior_files(method), force)
    progress = Progress(quiet)
    idata = _jobs.run_posterior(
        loaded,
        n_clusters,
        method=method,
        sigma=sigma,
        num_samples=num_samples,
        num_warmup=num_warmup,
        chains=chains,
        num_steps=num_steps,
        batch_size=batch_size,
        seed=seed,
        progress=progress,
        log_likelihood=log_likelihood,
        point_once=True,
    )
    progress.note("summarizing")
    summary = _jobs.posterior_summary(idata, loaded, method)
    with _jobs.writing(paths):
        if paths:
            progress.note(f"writing into {out}")
            _jobs.write_posterior(idata, loaded, paths, force=force)
    click.echo(summary)
    _echo_written(paths)


def _posterior_dp(
    data, columns, standardize, n_clusters, dp, max_clusters, method, batch_size, sampling,
    log_likelihood, out, force, quiet,
) -> None:  # fmt: skip
    """``posterior --dp``: the posterior of the number of clusters (the usage errors first)."""
    if not dp:
        if max_clusters is not None:
            raise click.UsageError(f"--max-clusters {max_clusters} applies with --dp only")
        raise click.UsageError("give -k K (the number of clusters) or --dp (the posterior of the number)")
    if n_clusters is not None:
        raise click.UsageError(
            f"-k {n_clusters} and --dp: give one (-k: K given; --dp: K unknown, up to --max-clusters)"
        )
    if method != "gibbs":
        raise click.UsageError(
            f"--dp samples with gibbs only (blocked Gibbs on the DP mixture), not {method}"
        )
    _optimisers_only(batch_size, [method])
    from . import _dp_jobs, _jobs

    max_clusters = _dp_jobs.check_max_clusters(20 if max_clusters is None else max_clusters)
    loaded = _jobs.load_data(data, _split(columns), standardize)
    paths = _jobs.plan_outputs(out, _dp_jobs.DP_POSTERIOR_FILES, force)
    progress = Progress(quiet)
    sampling["num_samples"] = _jobs.default_draws(sampling["num_samples"], method, None)
    idata = _dp_jobs.run_dp_posterior(
        loaded, max_clusters, progress=progress, log_likelihood=log_likelihood, **sampling
    )
    progress.note("summarizing")
    summary = _dp_jobs.dp_posterior_summary(idata, loaded)
    with _jobs.writing(paths):
        if paths:
            progress.note(f"writing into {out}")
            _dp_jobs.write_dp_posterior(idata, loaded, paths, force=force)
    click.echo(summary)
    _echo_written(paths)


@cli.command(short_help="New data by ancestral sampling, from the prior or from a saved fit.")
@click.option(
    "-n", "--num", "n_samples", type=click.IntRange(min=1), required=True, help="Points to generate."
)
@clusters_option(required=False)
@click.option(
    "--sigma",
    type=Sigma(allow_zero=True),
    help="σ >= 0 (0 gives the centroids themselves). Default: drawn from its prior, or the fit's σ.",
)
@click.option(
    "--features",
    "n_features",
    type=click.IntRange(min=1),
    help="Features D, without --from only (default: 2; a fit has its own).",
)
@click.option(
    "--from",
    "fit_path",
    type=click.Path(path_type=Path),
    metavar="FIT",
    help="Generate from a saved fit (anneal.json or posterior.nc) instead of the prior.",
)
@click.option(
    "--standardized-units",
    is_flag=True,
    help="Keep the standardized units of a fit made with --standardize (default: the data's units).",
)
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Random seed.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="Write the data here: .csv (with a header and the component), .tsv (the same, tab-separated) "
    "or .npy (float64 features only); default: CSV on stdout.",
)
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def sample(n_samples, n_clusters, sigma, n_features, fit_path, standardized_units, seed, out, force) -> None:
    """New data by ancestral sampling through the generative program.

    Without --from: weights, centroids (and σ unless --sigma) are drawn from the prior, for -k
    clusters. With --from FIT: from a saved point fit (σ overridable by --sigma) or a posterior
    (posterior predictive: each point from its own posterior draw). Rows carry their component.
    Options that do not apply (--features with --from, an unknown --out extension) are refused.
    """
    from . import _sample

    _sample.check_out_file(out, force=force)
    generated, names = _sample.run_sample(
        n_samples, n_clusters, sigma, n_features, fit_path, seed=seed, standardized_units=standardized_units
    )
    if out is None:
        _sample.write_stdout(generated, names)
    else:
        _sample.write_generated(out, generated, names, force=force)
        click.echo(f"wrote {n_samples} points to {out}", err=True)


@cli.command(short_help="Posteriors from several methods, compared side by side.")
@data_options
@clusters_option()
@click.option(
    "--methods",
    default="gibbs,nuts",
    show_default=True,
    callback=_methods,
    metavar="LIST",
    help=f"Comma-separated methods from {', '.join(METHODS)}.",
)
@sampler_options
@log_likelihood_option
@run_options(
    "Directory for compare.csv (the table printed) and posterior_METHOD.nc for each method (netCDF, "
    "readable by 'sample --from'); no plots."
)
def compare(
    data,
    columns,
    standardize,
    n_clusters,
    methods,
    sigma,
    num_samples,
    num_warmup,
    chains,
    num_steps,
    batch_size,
    log_likelihood,
    seed,
    out,
    force,
    quiet,
) -> None:
    """Fit the posterior with several methods and compare them side by side.

    One row per pair of methods and identifiable quantity: posterior means, z-score of their
    difference, sds and energy distance. map is a point estimate: it has no spread.
    """
    from . import _jobs

    _optimisers_only(batch_size, methods)
    names = ("compare.csv", *(f"posterior_{m}.nc" for m in methods))
    loaded = _jobs.load_data(data, _split(columns), standardize, n_clusters)
    paths = _jobs.plan_outputs(out, names, force)
    progress = Progress(quiet)
    fits = {
        m: _jobs.run_posterior(
            loaded,
            n_clusters,
            method=m,
            sigma=sigma,
            num_samples=num_samples,
            num_warmup=num_warmup,
            chains=chains,
            num_steps=num_steps,
            batch_size=batch_size,
            seed=seed,
            progress=progress,
            log_likelihood=log_likelihood,
        )
        for m in methods
    }
    with _jobs.writing(paths):
        table = _jobs.write_compare(fits, loaded, paths, force=force)
    click.echo(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if "map" in methods:
        click.echo(
            "\nnote: map is a point estimate (the posterior mode): it has no spread, so its sd and sd "
            "ratio are NaN, and a z-score against it measures the other method's Monte Carlo error only"
        )
    _echo_written(paths)


@cli.command(short_help="Simulation-based calibration of a posterior method on the program's prior.")
@clusters_option()
@click.option("--method", type=click.Choice(METHODS), default="gibbs", show_default=True)
@click.option("--simulations", default=200, show_default=True, type=click.IntRange(min=2))
@click.option(
    "--n-samples",
    default=30,
    show_default=True,
    type=click.IntRange(min=1),
    help="Rows of each simulated data set.",
)
@click.option("--features", "n_features", default=1, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--thin", default=10, show_default=True, type=click.IntRange(min=1), help="Keep every THIN-th draw."
)
@click.option(
    "--bins", type=click.IntRange(min=2), help="Bins of the rank histograms (default: the library's)."
)
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1), help="Processes.")
@sampler_options
@run_options(
    "Directory for sbc_ranks.csv (the ranks), sbc.png (rank histograms, ECDF differences), sbc_summary.txt."
)
def sbc(
    n_clusters,
    method,
    simulations,
    n_samples,
    n_features,
    thin,
    bins,
    jobs,
    sigma,
    num_samples,
    num_warmup,
    chains,
    num_steps,
    batch_size,
    seed,
    out,
    force,
    quiet,
) -> None:
    """Simulation-based calibration (Talts et al. 2018): draw parameters and data from the prior,
    fit each data set, and test whether the ranks of the true σ, sorted weights and log-likelihood
    among the posterior draws are uniform. A calibrated method passes; map and svi are expected to fail.
    """
    from ._sbc_job import SBCJob, run_sbc_job

    _optimisers_only(batch_size, [method])
    if num_steps is not None and method not in ("svi", "map"):
        raise click.UsageError(f"--num-steps {num_steps} applies to the svi and map methods only")
    job = SBCJob(
        n_clusters, method, simulations, n_samples, n_features, sigma, num_samples, num_warmup, chains,
        thin, bins, jobs, num_steps, batch_size, seed, out, force,
    )  # fmt: skip
    summary, paths = run_sbc_job(job, progress=Progress(quiet).enabled)
    click.echo(summary)
    if paths:
        _echo_written(paths)


def _optimisers_only(batch_size: int | None, methods) -> None:
    """A usage error for --batch-size without svi or map among the methods."""
    if batch_size is not None and not {"svi", "map"} & set(methods):
        raise click.UsageError(f"--batch-size {batch_size} applies to the svi and map methods only")


def _echo_written(paths: dict[str, Path]) -> None:
    if paths:
        folder = next(iter(paths.values())).parent
        click.echo(f"\nwrote into {folder}/: {', '.join(paths)}")
    else:
        click.echo("\n(no files written; pass --out DIR to save the fit and the plots)")


# ---------------------------------------------------------------------------------------------
# Entry point: one line for every error
# ---------------------------------------------------------------------------------------------


def _fail(message: str, status: int = 2):
    click.echo(f"{PROG}: error: {message}", err=True)
    sys.exit(status)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    click.echo(f"{PROG}: warning: {str(message).splitlines()[0]}", err=True)


def main(argv: list[str] | None = None) -> None:
    """Run the command line; errors become one line on stderr and exit status 2.

    Warnings print as one line, ``kmeans-limit: warning: ...``, while it runs; the warning filters
    and ``warnings.showwarning`` are restored on the way out (called from Python, it leaves the
    process as it was).
    """
    with warnings.catch_warnings():
        # arviz 0.23 announces its 1.0 refactor once a day; the message starts with a newline.
        warnings.filterwarnings(
            "ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning
        )
        warnings.showwarning = _show_warning
        _main(argv)


def _main(argv: list[str] | None) -> None:
    debug = bool(os.environ.get("KMEANS_LIMIT_DEBUG"))
    try:
        cli.main(args=argv, prog_name=PROG, standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as error:
        click.echo(error.ctx.get_help() if error.ctx else str(error), err=True)
        sys.exit(2)
    except click.UsageError as error:
        hint = f" (see '{error.ctx.command_path} --help')" if error.ctx else ""
        _fail(f"{error.format_message()}{hint}")
    except click.ClickException as error:
        _fail(error.format_message(), error.exit_code)
    except (click.Abort, KeyboardInterrupt):
        _fail("interrupted", 130)
    except (ValueError, FileExistsError, FloatingPointError) as error:
        if debug:
            raise
        _fail(str(error).splitlines()[0] if str(error) else type(error).__name__)
    except MemoryError:
        if debug:
            raise
        _fail("out of memory; use fewer points, clusters or draws")
    except OSError as error:
        if debug:
            raise
        status = 2 if isinstance(error, PermissionError) else 1
        _fail(f"{error.strerror or error}: {error.filename or ''}".rstrip(": "), status)


if __name__ == "__main__":
    main()
