"""Simulation-based calibration (Talts et al. 2018) of every posterior method, as a library function.

Draw θ and X from the program's prior, fit the posterior of X, and rank θ's value of a test quantity
among the (thinned) posterior draws. When the method samples the posterior the ranks are uniform on
0..L; an approximation (MAP, SVI) shows up as ranks piled at the ends (too narrow) or in the middle
(too wide). The quantities are label-invariant (Modrák et al. 2023): σ when learned, the weights in
decreasing order and the log-likelihood of the data set ``Σ_n log p(x_n | θ)`` (z summed out).

S. Talts, M. Betancourt, D. Simpson, A. Vehtari, A. Gelman, "Validating Bayesian inference algorithms
with simulation-based calibration", arXiv:1804.06788 (2018). M. Modrák, A. H. Moon, S. Kim, P. Bürkner,
N. Huurre, K. Faltejsková, A. Gelman, A. Vehtari, "Simulation-based calibration checking for Bayesian
computation: the choice of test quantities shapes sensitivity", Bayesian Analysis (2023).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from typing import NamedTuple

import numpy as np
from scipy.stats import chisquare

from ..models import Priors
from .validation import check_positive_int, check_seed, check_sigma

__all__ = ["SBCResult", "quantity_names", "rank_uniformity", "sbc"]


class SBCResult(NamedTuple):
    """Ranks of the true values among the posterior draws, and their uniformity.

    Attributes
    ----------
    ranks : dict of str to int ndarray of shape (n_simulations,)
        Per quantity, the rank of the true value among the ``n_draws`` thinned draws: the number of
        draws below it (ties broken uniformly at random), in 0..n_draws.
    p_values : dict of str to float
        Per quantity, the p-value of the chi-square test of uniformity of the binned ranks
        (:func:`rank_uniformity`).
    truth : dict of str to ndarray of shape (n_simulations,)
        The true values of the quantities.
    n_draws : int
        L, the thinned posterior draws each true value is ranked among.
    n_bins : int
        Bins of the chi-square test.
    seeds : uint32 ndarray of shape (n_simulations, 2)
        Each simulation's data seed and fit seed (from ``numpy.random.SeedSequence(seed)``).
    settings : dict
        method, n_clusters, n_samples, n_features, sigma ("learned" or its value), priors, seed,
        num_samples, num_warmup, num_chains, thin and the method's options.
    """

    ranks: dict
    p_values: dict
    truth: dict
    n_draws: int
    n_bins: int
    seeds: np.ndarray
    settings: dict


def quantity_names(n_clusters: int, sigma: float | None) -> list[str]:
    """The test quantities: ``sigma`` (when learned), ``weights_sorted[r]`` (K >= 2), ``log_likelihood``."""
    names = ["sigma"] if sigma is None else []
    if n_clusters > 1:
        names += [f"weights_sorted[{r}]" for r in range(n_clusters)]
    return [*names, "log_likelihood"]


def rank_uniformity(ranks: np.ndarray, n_draws: int, n_bins: int) -> float:
    """p-value of Pearson's chi-square test that ``ranks`` are uniform on 0..n_draws.

    The n_draws + 1 possible ranks are split into ``n_bins`` bins of consecutive ranks, as equal as
    they can be, and the expected count of each bin is its exact share of the discrete uniform (so
    no bin is favoured when n_draws + 1 is not a multiple of n_bins). With at least 5 ranks expected
    in each bin the chi-square approximation with n_bins − 1 degrees of freedom is good.
    """
    edges = np.linspace(0, n_draws + 1, n_bins + 1)
    share = np.histogram(np.arange(n_draws + 1), bins=edges)[0] / (n_draws + 1)
    counts = np.histogram(ranks, bins=edges)[0]
    return float(chisquare(counts, share * len(ranks)).pvalue)


def _values(weights, sigma, log_lik, names) -> dict[str, np.ndarray]:
    """The quantities at draws: weights (M, K), σ (M,), log-likelihood (M,)."""
    ordered = -np.sort(-np.asarray(weights), axis=-1)
    out = {"sigma": np.asarray(sigma), "log_likelihood": np.asarray(log_lik)}
    out.update({f"weights_sorted[{r}]": ordered[:, r] for r in range(ordered.shape[1])})
    return {name: out[name] for name in names}


def simulate_one(task: tuple) -> tuple[dict, dict]:
    """One simulation: data from the prior, a fit, and the ranks. Top-level so that processes can run it.

    Parameters
    ----------
    task : tuple
        ``(data_seed, fit_seed, settings)``, settings as in :attr:`SBCResult.settings` (with the
        Priors object).

    Returns
    -------
    ranks, truth : dict of str to int and dict of str to float
    """
    from .density import pointwise_log_likelihood
    from .posterior import fit_posterior
    from .sampling import sample_prior

    data_seed, fit_seed, s = task
    sigma = None if s["sigma"] == "learned" else s["sigma"]
    names = quantity_names(s["n_clusters"], sigma)
    draw = sample_prior(
        s["n_samples"], n_clusters=s["n_clusters"], n_features=s["n_features"], sigma=sigma,
        priors=s["priors"], seed=int(data_seed),
    )  # fmt: skip
    x, weights, means, sig = draw.x[0], draw.weights[0], draw.means[0], draw.sigma[0]
    true_ll = pointwise_log_likelihood(x, weights[None], means[None], sig[None]).sum()
    truth = _values(weights[None].numpy(), sig[None].numpy(), true_ll[None].numpy(), names)
    idata = fit_posterior(
        x, s["n_clusters"], method=s["method"], sigma=sigma, priors=s["priors"], num_samples=s["num_samples"],
        num_warmup=s["num_warmup"], num_chains=s["num_chains"], seed=int(fit_seed), progress=False,
        relabel=False, **s["options"],
    )  # fmt: skip
    keep = slice(None, None, s["thin"])
    post = idata.posterior.isel(draw=keep)
    log_lik = idata.log_likelihood["x"].isel(draw=keep).sum("observation").values.reshape(-1)
    n_clusters = post["weights"].shape[-1]
    draws = _values(
        post["weights"].values.reshape(-1, n_clusters), post["sigma"].values.reshape(-1), log_lik, names
    )
    tie_rng = np.random.default_rng(int(fit_seed))
    ranks = {}
    for name in names:
        value = float(truth[name][0])
        below, ties = int((draws[name] < value).sum()), int((draws[name] == value).sum())
        ranks[name] = below + int(tie_rng.integers(0, ties + 1))
    return ranks, {name: float(v[0]) for name, v in truth.items()}


def _one_thread() -> None:
    """Each worker process computes on one thread: n_jobs processes, not n_jobs × cores threads."""
    import torch

    torch.set_num_threads(1)


def _run(tasks: list, n_jobs: int, progress: bool) -> list:
    from tqdm.auto import tqdm

    bar = tqdm(total=len(tasks), desc="sbc", disable=not progress, leave=False)
    if n_jobs == 1:
        results = []
        for task in tasks:
            results.append(simulate_one(task))
            bar.update()
        bar.close()
        return results
    results = [None] * len(tasks)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(n_jobs, mp_context=context, initializer=_one_thread) as pool:
        futures = {pool.submit(simulate_one, task): i for i, task in enumerate(tasks)}
        for future in concurrent.futures.as_completed(futures):
            results[futures[future]] = future.result()
            bar.update()
    bar.close()
    return results


def sbc(
    n_clusters: int,
    *,
    method: str = "gibbs",
    n_simulations: int = 100,
    n_samples: int = 20,
    n_features: int = 1,
    priors: Priors | None = None,
    sigma: float | None = None,
    seed: int = 0,
    num_samples: int = 500,
    num_warmup: int = 200,
    num_chains: int = 2,
    thin: int = 5,
    n_bins: int | None = None,
    n_jobs: int = 1,
    progress: bool = True,
    **options,
) -> SBCResult:
    """Simulation-based calibration of a posterior method of :func:`~kmeans_limit.inference.fit_posterior`.

    Parameters
    ----------
    n_clusters : int
        K >= 1.
    method : {"gibbs", "nuts", "svi", "map"}, default "gibbs"
    n_simulations : int, default 100
        Data sets drawn from the prior, one fit each.
    n_samples : int, default 20
        Rows of each simulated data set (N).
    n_features : int, default 1
    priors : Priors, optional
        The prior data are drawn from and fitted with (the same, as calibration requires);
        ``Priors()`` by default, the program's own. (Not data-scaled: priors that depend on the data
        are not the prior the data were drawn from.)
    sigma : float > 0, optional
        Fixed σ for both the simulation and the fit; ``None`` draws σ from its prior and learns it.
    seed : int, default 0
        Everything depends on it alone: ``numpy.random.SeedSequence(seed).spawn(n_simulations)``
        gives each simulation two 32-bit seeds, for its data and for its fit (and its ties).
    num_samples, num_warmup, num_chains : int
        Of each fit (``num_warmup`` is unused by svi and map).
    thin : int, default 5
        Every ``thin``-th kept draw of each chain is ranked (nearly independent draws, as the ranks'
        uniformity assumes): L = num_chains · ⌈num_samples / thin⌉.
    n_bins : int, optional
        Bins of the uniformity test; by default about n_simulations / 10 (at least 2, at most 20 and
        at most L + 1), so that each bin expects 10 ranks or more.
    n_jobs : int, default 1
        Processes (``spawn`` start method, one thread each); the results are identical to a serial
        run, simulation by simulation.
    progress : bool, default True
        A tqdm bar over the simulations.
    **options
        Passed to ``fit_posterior`` (for instance ``num_steps`` of svi and map).

    Returns
    -------
    SBCResult
        ``ranks`` and ``p_values`` per quantity (``sigma`` when learned, ``weights_sorted[r]``,
        ``log_likelihood``).

    Notes
    -----
    MAP repeats one point in every draw, so each rank is 0 or L: its p-values are tiny. SVI's Gaussian
    approximation is typically too narrow, which piles the ranks at both ends (a U-shaped histogram).
    The chi-square test has little power against small miscalibration with few simulations: read
    the histograms and ECDF plots (:func:`kmeans_limit.sbc_plots.plot_sbc`), not only the p-values.
    """
    from .posterior import METHODS

    n_clusters = check_positive_int("n_clusters", n_clusters)
    if method not in METHODS:
        raise ValueError(f"method={method!r} should be one of {METHODS}")
    n_simulations = check_positive_int("n_simulations", n_simulations, minimum=2)
    n_samples = check_positive_int("n_samples", n_samples, minimum=n_clusters)
    n_features = check_positive_int("n_features", n_features)
    priors = Priors() if priors is None else priors
    if not isinstance(priors, Priors):
        raise ValueError(f"priors should be a kmeans_limit.Priors, got {type(priors).__name__}")
    sigma = check_sigma(sigma, allow_zero=False, allow_none=True)
    seed = check_seed(seed)
    counts = {
        "num_samples": check_positive_int("num_samples", num_samples),
        "num_warmup": check_positive_int("num_warmup", num_warmup, minimum=0),
        "num_chains": check_positive_int("num_chains", num_chains),
        "thin": check_positive_int("thin", thin),
    }
    n_jobs = check_positive_int("n_jobs", n_jobs)
    n_draws = counts["num_chains"] * len(range(0, counts["num_samples"], counts["thin"]))
    if n_bins is None:
        n_bins = min(20, max(2, n_simulations // 10), n_draws + 1)
    n_bins = check_positive_int("n_bins", n_bins, minimum=2)
    if n_bins > n_draws + 1:
        raise ValueError(f"n_bins={n_bins} should be at most the {n_draws + 1} possible ranks")
    settings = {
        "method": method, "n_clusters": n_clusters, "n_samples": n_samples, "n_features": n_features,
        "sigma": "learned" if sigma is None else sigma, "priors": priors, "seed": seed, **counts,
        "options": dict(options),
    }  # fmt: skip
    children = np.random.SeedSequence(seed).spawn(n_simulations)
    seeds = np.stack([child.generate_state(2, dtype=np.uint32) for child in children])
    results = _run([(int(a), int(b), settings) for a, b in seeds], n_jobs, progress)
    names = quantity_names(n_clusters, sigma)
    ranks = {name: np.array([r[0][name] for r in results], dtype=np.int64) for name in names}
    truth = {name: np.array([r[1][name] for r in results]) for name in names}
    p_values = {name: rank_uniformity(ranks[name], n_draws, n_bins) for name in names}
    return SBCResult(ranks, p_values, truth, n_draws, n_bins, seeds, settings)
