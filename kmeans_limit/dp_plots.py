"""Pictures of "how many clusters?": J(K) along the annealing path, its lower convex hull, λ choosing K.

Like :mod:`kmeans_limit.plotting`, every function returns a ``matplotlib.figure.Figure`` and touches
no global state (no ``pyplot``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from .inference.anneal_penalty import PenaltyCurve, PenaltyHull, choose_k, penalty_hull

__all__ = ["plot_penalty_curve", "plot_cluster_count_posterior"]


def plot_penalty_curve(
    curve: PenaltyCurve, hull: PenaltyHull | None = None, *, penalties: Sequence[float] = ()
) -> Figure:
    """J(K) against K, the lower convex hull, and for each λ the line ``J = c − λK`` it minimises along.

    Parameters
    ----------
    curve : PenaltyCurve
        From :func:`~kmeans_limit.inference.anneal_penalty.anneal_penalized` (``result.curve``).
    hull : PenaltyHull, optional
        Its hull (computed when not given).
    penalties : sequence of float > 0
        λ values to draw: each touches the hull at the K it chooses.

    Returns
    -------
    Figure
        One axes; hull vertices are labelled with the λ interval that chooses them.
    """
    hull = penalty_hull(curve.n_clusters, curve.inertia) if hull is None else hull
    ks, js = curve.n_clusters.numpy(), curve.inertia.numpy()
    figure = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = figure.add_subplot()
    ax.plot(ks, js, "o", color="0.6", label="J(K) on the annealing path")
    ax.plot(hull.n_clusters.numpy(), hull.inertia.numpy(), "-", color="C0", label="lower convex hull")
    for k, j, low, high in zip(*(v.tolist() for v in hull), strict=True):
        ax.annotate(
            f"λ ∈ [{low:.3g}, {high:.3g}]",
            (k, j),
            textcoords="offset points",
            xytext=(6, 6),
            fontsize=7,
            color="C0",
        )
    span = np.array([ks.min(), ks.max()], dtype=float)
    for i, penalty in enumerate(penalties):
        k = choose_k(curve, penalty)
        j = float(js[list(ks).index(k)])
        ax.plot(
            span, j - penalty * (span - k), "--", color=f"C{i + 1}", label=f"λ = {penalty:g} chooses K = {k}"
        )
    ax.set_ylim(bottom=min(0.0, float(js.min())), top=float(js.max()) * 1.05)
    ax.set_xlabel("number of clusters K")
    ax.set_ylabel("hard inertia J(K)")
    ax.set_title("K chosen by the price λ of a cluster: argmin J(K) + λK")
    ax.legend(fontsize=8)
    return figure


def plot_cluster_count_posterior(
    counts: dict, *, title: str = "posterior of the number of occupied clusters"
) -> Figure:
    """Bars of the posterior probability of each number of occupied clusters.

    Parameters
    ----------
    counts : mapping of label to array of int
        For each series (a σ, a method), the draws of the occupied-cluster count (any shape).

    Returns
    -------
    Figure
    """
    figure = Figure(figsize=(6.0, 3.5), layout="constrained")
    ax = figure.add_subplot()
    series = list(counts.items())
    width = 0.8 / max(1, len(series))
    for i, (label, draws) in enumerate(series):
        draws = np.asarray(draws).reshape(-1).astype(int)
        values, freq = np.unique(draws, return_counts=True)
        ax.bar(values + (i - (len(series) - 1) / 2) * width, freq / draws.size, width, label=str(label))
    ax.set_xlabel("occupied clusters")
    ax.set_ylabel("posterior probability")
    ax.set_title(title)
    if series:
        ax.legend(fontsize=8)
    return figure
