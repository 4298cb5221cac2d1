"""Pictures of simulation-based calibration: rank histograms and ECDF differences, with their bands.

Like :mod:`kmeans_limit.plotting`, this touches no global state (no ``pyplot``): it returns a
``matplotlib.figure.Figure`` and runs headless.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from scipy.stats import binom

from .inference.sbc import SBCResult

__all__ = ["plot_sbc"]


def _bins(n_draws: int, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """The bin edges of the uniformity test and each bin's share of the uniform on 0..n_draws."""
    edges = np.linspace(0, n_draws + 1, n_bins + 1)
    share = np.histogram(np.arange(n_draws + 1), bins=edges)[0] / (n_draws + 1)
    return edges, share


def plot_sbc(result: SBCResult, *, band: float = 0.99) -> Figure:
    """Rank histograms (top row) and ECDF differences (bottom row), one column per quantity.

    Parameters
    ----------
    result : SBCResult
        From :func:`~kmeans_limit.inference.sbc.sbc`.
    band : float, default 0.99
        Probability of the grey bands under uniform ranks.

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    *Histogram.* The ranks in the bins of the chi-square test; under uniformity a bin's count is
    Binomial(n_simulations, share), and the grey band spans its central ``band`` interval (per bin).
    *ECDF difference* (Säilynoja, Bürkner & Vehtari 2022): ``F̂(r) − (r + 1)/(L + 1)`` at every rank r,
    where F̂ is the ranks' empirical CDF; under uniformity ``n F̂(r) ~ Binomial(n, (r + 1)/(L + 1))``,
    whose central ``band`` interval (pointwise, not simultaneous) is shaded. A ∪-shaped histogram
    (an S-shaped ECDF difference dipping then rising) means the posterior is too narrow; a ∩ shape
    too wide; a slope, biased.
    """
    if not 0 < band < 1:
        raise ValueError(f"band={band!r} should be a probability in (0, 1)")
    names = list(result.ranks)
    n_draws, n_bins = result.n_draws, result.n_bins
    edges, share = _bins(n_draws, n_bins)
    figure = Figure(figsize=(3.0 * len(names), 5.4), layout="constrained")
    axes = figure.subplots(2, len(names), squeeze=False)
    lo_q, hi_q = (1 - band) / 2, 1 - (1 - band) / 2
    for column, name in enumerate(names):
        ranks = result.ranks[name]
        n = len(ranks)
        top, bottom = axes[0, column], axes[1, column]
        lower, upper = binom.ppf(lo_q, n, share), binom.ppf(hi_q, n, share)
        top.hist(ranks, bins=edges, color="C0", edgecolor="white")
        top.stairs(upper, edges, baseline=lower, fill=True, color="0.5", alpha=0.3, zorder=3)
        top.stairs(n * share, edges, color="0.2", lw=1, zorder=4)
        top.set_title(f"{name}\np = {result.p_values[name]:.3g}", fontsize=9)
        top.set_xlabel(f"rank among L = {n_draws}", fontsize=8)
        r = np.arange(n_draws + 1)
        expected = (r + 1) / (n_draws + 1)
        ecdf = np.searchsorted(np.sort(ranks), r, side="right") / n
        bottom.fill_between(
            r, binom.ppf(lo_q, n, expected) / n - expected, binom.ppf(hi_q, n, expected) / n - expected,
            step="post", color="0.85",
        )  # fmt: skip
        bottom.step(r, ecdf - expected, where="post", color="C0")
        bottom.axhline(0.0, color="0.35", lw=0.8)
        bottom.set_xlabel("rank", fontsize=8)
        for ax in (top, bottom):
            ax.tick_params(labelsize=7)
    axes[0, 0].set_ylabel("simulations")
    axes[1, 0].set_ylabel("ECDF − uniform CDF")
    settings = result.settings
    figure.suptitle(
        f"SBC of {settings.get('method', '?')}: {n} simulations, K = {settings.get('n_clusters', '?')}, "
        f"N = {settings.get('n_samples', '?')}, σ {settings.get('sigma', '?')} (grey: {band:.0%} bands of uniform ranks)",
        fontsize=10,
    )
    return figure
