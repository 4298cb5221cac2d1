"""Pictures of the limit: the annealing path, blurry-to-hard responsibilities, the posterior, new data.

Every function takes plain arrays (or records of them), returns a ``matplotlib.figure.Figure`` and
touches no global state (no ``pyplot``), so it runs headless; :func:`save_figure` writes a PNG
atomically. Data with more than two features are drawn in the plane of their first two principal
components, and 1-D data against a small vertical jitter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator
from matplotlib.transforms import blended_transform_factory

from ._report import invariant_values
from .inference.kernels import log_responsibilities
from .io import atomic_write

__all__ = [
    "Projection",
    "plot_bifurcation",
    "plot_centroid_clouds",
    "plot_entropy_loglik",
    "plot_generated",
    "plot_posterior_pairs",
    "plot_responsibilities",
    "palette",
    "save_figure",
]

#: Colours of components 0, 1, 2, ... for K <= 10 (matplotlib's tab10).
COLOURS = [to_rgb(f"C{k}") for k in range(10)]
DPI = 100
#: Above this many components, legends name no single component (one entry says how they are coloured).
LEGEND_K = 10


def palette(n_colours: int) -> list[tuple[float, float, float]]:
    """``n_colours`` distinct colours: tab10 up to 10, tab20 up to 20, then evenly spaced hues of
    ``hsv`` interleaved (neighbouring labels far apart in hue), so that no colour repeats."""
    if n_colours <= 10:
        return COLOURS[:n_colours]
    if n_colours <= 20:
        return [tuple(c[:3]) for c in colormaps["tab20"].colors[:n_colours]]
    stride = next(s for s in range(int(n_colours**0.5), n_colours) if np.gcd(s, n_colours) == 1)
    hues = (np.arange(n_colours) * stride % n_colours) / n_colours
    return [tuple(float(v) for v in colormaps["hsv"](h)[:3]) for h in hues]


def _np(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=float)


def save_figure(figure: Figure, path, *, force: bool = False):
    """Write ``figure`` as a PNG at ``path`` atomically (refusing to overwrite without ``force``)."""
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=DPI), force=force)


class Projection:
    """The plane data are drawn in: the features themselves (D = 2), the first two principal
    components of the observed data (D > 2), or the feature against a jitter (D = 1).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The observed data, which fix the plane.
    feature_names : sequence of str
    """

    def __init__(self, X, feature_names: Sequence[str]):
        X = _np(X)
        self.n_features = X.shape[1]
        self.centre = X.mean(0)
        if self.n_features > 2:
            _, s, vt = np.linalg.svd(X - self.centre, full_matrices=False)
            share = s**2 / max((s**2).sum(), 1e-300)
            self.basis = vt[:2].T
            self.labels = tuple(f"PC{i + 1} ({100 * share[i]:.0f}% of variance)" for i in range(2))
        elif self.n_features == 2:
            self.labels = tuple(feature_names)
        else:
            self.labels = (feature_names[0], "(jitter)")

    def __call__(self, Y, jitter: bool = True) -> np.ndarray:
        """Points of shape (n, n_features) as (n, 2) plane coordinates (centroids: ``jitter=False``)."""
        Y = _np(Y)
        if self.n_features > 2:
            return (Y - self.centre) @ self.basis
        if self.n_features == 2:
            return Y
        noise = np.random.default_rng(0).uniform(-1, 1, len(Y)) if jitter else np.zeros(len(Y))
        return np.column_stack([Y[:, 0], noise])

    def label(self, ax) -> None:
        ax.set_xlabel(self.labels[0])
        ax.set_ylabel(self.labels[1])


def _positive_levels(path) -> tuple[np.ndarray, np.ndarray]:
    """Level indices with σ > 0 (drawable on a log axis) and their σ."""
    sigma = _np(path.sigma)
    keep = np.flatnonzero(sigma > 0)
    return keep, sigma[keep]


#: Split σ values labelled on a top axis at most; the others are lines only (the axis label says so).
MAX_SPLIT_LABELS = 6


def _spaced(values: np.ndarray, min_log_gap: float = 0.08, limit: int = MAX_SPLIT_LABELS) -> np.ndarray:
    """The values, largest first, less any within ``min_log_gap`` decades of one kept before it,
    and at most ``limit`` of them."""
    kept: list[float] = []
    for value in np.sort(values[values > 0])[::-1]:
        if len(kept) < limit and (not kept or np.log10(kept[-1] / value) >= min_log_gap):
            kept.append(float(value))
    return np.asarray(kept)


def _mark_splits(ax, split_sigmas, label: bool, critical_sigmas=None, sigma_range=None) -> None:
    """Dashed lines at the σ each split was made; with ``label``, at most :data:`MAX_SPLIT_LABELS`
    of their values as ticks on a top axis, spaced a seventh of the axis apart at least (the axis
    label says how many are labelled), and how many splits were made at σ = 0 (off the log axis).
    ``critical_sigmas`` within ``sigma_range`` get dotted lines. Many lines are drawn fainter."""
    split = _np(split_sigmas).ravel()
    many = split.size > LEGEND_K
    style = {"linewidth": 0.6, "alpha": 0.45} if many else {"linewidth": 1.0, "alpha": 1.0}
    for k, sigma in enumerate(split[split > 0]):
        name = "σ of a split" if label and k == 0 else None
        ax.axvline(sigma, color="0.35", linestyle="--", label=name, **style)
    if critical_sigmas is not None:
        critical = _np(critical_sigmas).ravel()
        if sigma_range is not None:
            critical = critical[(critical >= sigma_range[0]) & (critical <= sigma_range[1])]
        for k, sigma in enumerate(critical):
            name = "critical σ (√λmax of the split cluster)" if label and k == 0 else None
            ax.axvline(
                sigma, color="C7", linestyle=":", label=name, **{**style, "alpha": 0.8 * style["alpha"]}
            )
    if label and split.size:
        low, high = sorted(ax.get_xlim())
        span = np.log10(high / low) if low > 0 else 1.0
        ticks = _spaced(split, min_log_gap=span / 7)
        top = ax.secondary_xaxis("top")
        top.xaxis.set_major_locator(FixedLocator(ticks))
        top.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.3g}"))
        top.xaxis.set_minor_locator(NullLocator())
        top.tick_params(labelsize=8)
        soft = int((split > 0).sum())
        shown = f" ({len(ticks)} of {soft} labelled)" if len(ticks) < soft else ""
        more = f"; {split.size - soft} more at σ = 0" if split.size > soft else ""
        top.set_xlabel(f"σ of a split{shown}{more}", fontsize=8)


def _plain_number(value: float, _position=None) -> str:
    return f"{value:g}"


def _cooling_axis(ax) -> None:
    """A log σ axis, decreasing to the right (cooling), ticks as plain numbers; the ticks between
    decades (2, 3, 5) are labelled only when the axis spans less than about a decade and a half."""
    ax.set_xscale("log")
    if not ax.xaxis_inverted():
        ax.invert_xaxis()
    low, high = sorted(ax.get_xlim())
    ax.xaxis.set_major_formatter(FuncFormatter(_plain_number))
    ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 3.0, 5.0)))
    narrow = np.log10(high / low) < 1.5
    ax.xaxis.set_minor_formatter(FuncFormatter(_plain_number) if narrow else NullFormatter())
    ax.grid(True, which="both", alpha=0.25)


def _split_points(sigma, means, born, split_sigmas) -> dict[int, list[tuple[float, np.ndarray]]]:
    """Where each centroid leaves its parent: ``{k: [(σ_s, position before the split), ...]}``.

    The n-th level at which a centroid is born (its weight turns positive) is matched with the n-th
    split σ; when σ_s lies between that level and the one before (ends included: annealing records
    a split's level at its σ), the newborn and its parent (the centroid it sat on) both get a point
    at σ_s, so the branches fork at σ_s rather than between levels.
    """
    births = [i for i in range(1, len(sigma)) if (born[i] & ~born[i - 1]).any()]
    points: dict[int, list] = {k: [] for k in range(means.shape[1])}
    for i, sigma_c in zip(births, _np(split_sigmas).ravel(), strict=False):
        if not sigma[i] <= sigma_c <= sigma[i - 1]:
            continue
        newborn = np.flatnonzero(born[i] & ~born[i - 1])
        for k in range(means.shape[1]):
            on_newborn = any(np.allclose(means[i - 1, k], means[i - 1, j]) for j in newborn)
            if on_newborn and (born[i - 1, k] or k in newborn):
                points[k].append((float(sigma_c), means[i - 1, k]))
    return points


def _branches(path, split_sigmas) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per centroid: the σ of its line, the (n, D) positions on it, and which of them are levels.

    A centroid is drawn only while its weight is positive (born), from the σ at which it split off.
    """
    keep, sigma = _positive_levels(path)
    means, born = _np(path.means)[keep], _np(path.weights)[keep] > 0
    extra = _split_points(sigma, means, born, split_sigmas)
    branches = []
    for k in range(means.shape[1]):
        levels = np.flatnonzero(born[:, k])
        xs = np.concatenate([sigma[levels], [x for x, _ in extra[k]]])
        ys = np.concatenate([means[levels, k], np.reshape([y for _, y in extra[k]], (-1, means.shape[2]))])
        is_level = np.arange(len(xs)) < len(levels)
        order = np.argsort(-xs, kind="stable")
        branches.append((xs[order], ys[order], is_level[order]))
    return branches


def _mark_hard(ax, hard_means, d: int) -> None:
    """The σ = 0 centroids as arrowheads just inside the right edge (σ = 0 is off a log axis); the
    y range is widened to hold them."""
    at_edge = blended_transform_factory(ax.transAxes, ax.transData)
    values = _np(hard_means)[:, d]
    low, high = ax.get_ylim()
    pad = 0.06 * (max(high, values.max()) - min(low, values.min())) or 1.0
    ax.set_ylim(min(low, values.min() - pad), max(high, values.max() + pad))
    ax.scatter(
        np.full(len(values), 0.975),
        values,
        marker="<",
        s=60 if len(values) <= LEGEND_K else 30,
        c=palette(len(values)),
        edgecolors="black",
        linewidths=0.8,
        transform=at_edge,
        zorder=5,
        label="σ = 0 (Lloyd)",
    )


def plot_bifurcation(
    path,
    split_sigmas,
    feature_names: Sequence[str],
    *,
    hard_means=None,
    critical_sigmas=None,
    max_features: int = 4,
) -> Figure:
    """Each centroid's coordinates against σ as it cools (log axis, σ decreasing to the right).

    Parameters
    ----------
    path : record with ``sigma`` (L,), ``means`` (L, K, D) and ``weights`` (L, K)
        The annealing path; a centroid is drawn while its weight is positive, from the σ at which
        it split off; levels at σ = 0 are left off the log axis.
    split_sigmas : array-like of shape (n_splits,)
        The σ at which each split was made, in order (``AnnealResult.split_sigmas``), marked by
        dashed lines; those at σ = 0 (splits in the hard limit) are counted on the top axis.
    feature_names : sequence of str, length D
    hard_means : array-like of shape (K, D), optional
        The σ = 0 solution, drawn as arrowheads on the right edge.
    critical_sigmas : array-like of shape (n_splits,), optional
        The critical σ of each split cluster (``AnnealResult.critical_sigmas``: below it the
        cluster is unstable), drawn as dotted lines where they fall within the path's σ.
    max_features : int, default 4
        At most this many features get a panel.
    """
    branches = _branches(path, split_sigmas)
    sigma_range = _positive_levels(path)[1][[-1, 0]]
    n_features = branches[0][1].shape[1]
    n_panels = min(n_features, max_features)
    figure = Figure(figsize=(7, 2.2 + 2.0 * n_panels), layout="constrained")
    axes = figure.subplots(n_panels, 1, sharex=True, squeeze=False)[:, 0]
    colours = palette(len(branches))
    named = len(branches) <= LEGEND_K
    for d, ax in enumerate(axes):
        for k, (xs, ys, is_level) in enumerate(branches):
            ax.plot(xs, ys[:, d], color=colours[k], label=f"centroid {k}" if named else None)
            ax.plot(xs[is_level], ys[is_level, d], ".", color=colours[k], markersize=5)
        if hard_means is not None:
            _mark_hard(ax, hard_means, d)
        _cooling_axis(ax)
        _mark_splits(ax, split_sigmas, d == 0, critical_sigmas, sigma_range)
        ax.set_ylabel(feature_names[d])
    handles, labels = axes[0].get_legend_handles_labels()
    if not named:
        handles.insert(0, axes[0].plot([], [], color="0.4")[0])
        labels.insert(0, f"{len(branches)} centroids,\none colour each")
    figure.legend(handles, labels, loc="outside right center", fontsize=8)
    axes[-1].set_xlabel("σ (log scale; cooling →); dots: annealing levels")
    shown = "" if n_panels == n_features else f" (first {n_panels} of {n_features} features)"
    figure.suptitle(f"Deterministic annealing: centroids split as σ falls{shown}")
    return figure


def _pick_levels(mean_entropy: np.ndarray, n_panels: int) -> list[int]:
    """Levels to show, blurry to hard: the hottest, the blurriest (highest mean responsibility entropy),
    the coldest, and between the last two the levels whose entropy is nearest to falling fractions of
    the highest (each level once)."""
    last, blurriest = len(mean_entropy) - 1, int(mean_entropy.argmax())
    picks = {0, blurriest, last}
    for fraction in np.geomspace(0.5, 0.02, max(0, n_panels - 3)):
        gap = np.abs(mean_entropy - fraction * mean_entropy[blurriest])
        gap[: blurriest + 1] = np.inf
        gap[sorted(picks)] = np.inf
        if np.isfinite(gap).any():
            picks.add(int(gap.argmin()))
    return sorted(picks)


def _soft_colours(gamma: np.ndarray) -> np.ndarray:
    return np.clip(gamma @ np.array(palette(gamma.shape[1])), 0, 1)


def _responsibility_panel(ax, X: torch.Tensor, projection: Projection, sigma: float, means, weights) -> None:
    """One panel: points in the responsibility-weighted mix of the colours; born centroids as crosses."""
    mu, w = torch.as_tensor(_np(means)), torch.as_tensor(_np(weights))
    gamma = log_responsibilities(X, mu, w.log(), sigma)[0].exp().numpy()
    entropy = abs(-(gamma * np.log(np.where(gamma > 0, gamma, 1))).sum(1).mean())
    ax.scatter(*projection(X).T, c=_soft_colours(gamma), s=10, linewidths=0)
    born = np.flatnonzero(w.numpy() > 0)
    colours = np.array(palette(len(w)))[born]
    size = 110 if len(w) <= LEGEND_K else 50
    centres = projection(mu[born], jitter=False)
    ax.scatter(*centres.T, marker="X", s=size, c=colours, edgecolors="black", linewidths=1)
    count = "" if len(born) == len(w) else f", {len(born)} of {len(w)} centroids born"
    name = "σ = 0 (Lloyd's fixed point)" if sigma == 0 else f"σ = {sigma:.3g}"
    ax.set_title(f"{name}{count}\nmean entropy {entropy:.3f} nats", fontsize=9)
    projection.label(ax)


def plot_responsibilities(X, path, feature_names: Sequence[str], *, hard=None, n_panels: int = 4) -> Figure:
    """The data coloured by their soft assignments at a few σ along the path: blurry to hard.

    Each point's colour is the responsibility-weighted mix of the component colours; crosses are the
    centroids at that σ (those born so far, i.e. of positive weight).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    path : record with ``sigma`` (L,), ``means`` (L, K, D), ``weights`` (L, K) and ``entropy`` (L,)
        ``entropy`` is the mean responsibility entropy (nats); the levels shown are picked by it:
        the hottest, the blurriest, the coldest and ``n_panels - 3`` between.
    feature_names : sequence of str
    hard : tuple (means, weights), optional
        The σ = 0 solution, shown in a last panel.
    n_panels : int, default 4
        Levels of the path to show.
    """
    X_t = torch.as_tensor(_np(X))
    keep, sigma = _positive_levels(path)
    means, weights = _np(path.means)[keep], _np(path.weights)[keep]
    panels = [
        (float(sigma[i]), means[i], weights[i]) for i in _pick_levels(_np(path.entropy)[keep], n_panels)
    ]
    if hard is not None:
        panels.append((0.0, *hard))
    projection = Projection(X_t, feature_names)
    figure = Figure(figsize=(3.3 * len(panels), 3.7), layout="constrained")
    axes = figure.subplots(1, len(panels), sharex=True, sharey=True, squeeze=False)[0]
    for ax, panel in zip(axes, panels, strict=True):
        _responsibility_panel(ax, X_t, projection, *panel)
    figure.suptitle(
        "Responsibilities as σ falls, blurry to hard: each point's colour is its centroids' colours "
        "(crosses) mixed by its responsibilities"
    )
    return figure


def _loglik_panel(ax, sigma: np.ndarray, loglik: np.ndarray) -> None:
    """Log-likelihood per point, zoomed on its peak; values far below are noted, not drawn."""
    peak = int(loglik.argmax())
    ax.plot(sigma, loglik, color="C3", marker=".", markersize=3)
    if 0 < peak < len(loglik) - 1:  # a maximum over the path's σ, not where the path ends
        ax.plot(sigma[peak], loglik[peak], "o", color="C3", label=f"maximum at σ = {sigma[peak]:.3g}")
    floor = loglik[peak] - 10 * max(1.0, loglik[peak] - loglik[: peak + 1].min())
    if loglik.min() < floor:
        ax.set_ylim(floor, loglik[peak] + 0.1 * (loglik[peak] - floor))
        ax.annotate(
            f"falls off the axis to {loglik.min():.3g} at σ = {sigma[loglik.argmin()]:.3g} (no density at σ = 0)",
            (0.01, 0.04),
            xycoords="axes fraction",
            ha="left",
            fontsize=8,
            color="C3",
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85},
        )
    ax.set_ylabel("log-likelihood\nper point")


def _entropy_line(ax, sigma, entropy, born) -> None:
    """Entropy per level, the line broken before each level where a centroid is born (it jumps
    there: a split); levels with fewer than K centroids born get hollow markers."""
    cuts = np.zeros(len(sigma), dtype=bool)
    cuts[1:] = (born[1:] & ~born[:-1]).any(1)
    segment = np.cumsum(cuts)
    for piece in np.unique(segment):
        ax.plot(sigma[segment == piece], entropy[segment == piece], color="C0")
    partial = born.sum(1) < born.shape[1]
    ax.plot(sigma[~partial], entropy[~partial], ".", color="C0", markersize=7)
    if partial.any():
        ax.plot(
            sigma[partial],
            entropy[partial],
            "o",
            mfc="white",
            color="C0",
            markersize=5,
            label="levels with fewer than K centroids born",
        )


def plot_entropy_loglik(
    path, split_sigmas, n_samples: int, *, inertia: float | None = None, critical_sigmas=None
) -> Figure:
    """Mean responsibility entropy, log-likelihood and scaled log-likelihood per point against σ.

    Parameters
    ----------
    path : record with ``sigma``, ``entropy`` (mean over points, nats), ``log_likelihood``
        (summed over points) and ``weights`` (L, K), all per level.
    split_sigmas : array-like of shape (n_splits,)
        The σ at which each split was made (``AnnealResult.split_sigmas``), marked by dashed lines.
    n_samples : int
        N, to turn the summed log-likelihood into a mean per point.
    inertia : float, optional
        The hard fit's k-means objective J, the limit of ``−2σ² log p(X)`` (drawn as J/N, with
        ``σ* = √(J/(N·D))`` where it falls within the path). When the last level is not within 5%
        of J/N the title says why: the path stops above σ*/10 (the levels schedule), or it ends
        at another k-means local optimum than the hard fit (a dense path, whose end the hard fit's
        split-merge moves improved on). The log-likelihood's maximum is marked only when it lies
        inside the path (not at its last level).
    critical_sigmas : array-like of shape (n_splits,), optional
        The split clusters' critical σ, dotted where they fall within the path's σ.
    """
    keep, sigma = _positive_levels(path)
    entropy = _np(path.entropy)[keep]
    loglik = _np(path.log_likelihood)[keep] / n_samples
    n_clusters, n_features = _np(path.means).shape[1:]
    figure = Figure(figsize=(7, 7.5), layout="constrained")
    top, middle, bottom = figure.subplots(3, 1, sharex=True)
    _entropy_line(top, sigma, entropy, _np(path.weights)[keep] > 0)
    top.axhline(np.log(n_clusters), color="0.5", linestyle=":", label=f"log K = {np.log(n_clusters):.3f}")
    top.set_ylabel("mean responsibility\nentropy (nats)")
    _loglik_panel(middle, sigma, loglik)
    scaled = -2 * sigma**2 * loglik
    bottom.plot(sigma, scaled, color="C2", marker=".", markersize=3)
    if (scaled > 0).all() and (inertia is None or inertia > 0):
        bottom.set_yscale("log")
    note = ""
    if inertia is not None:
        mean_inertia = inertia / n_samples
        bottom.axhline(
            mean_inertia, color="0.3", linestyle=":", label=f"k-means inertia J / N = {mean_inertia:.3g}"
        )
        sigma_star = float(np.sqrt(mean_inertia / n_features))
        if sigma.min() <= sigma_star <= sigma.max():
            for ax in (middle, bottom):
                name = f"σ* = √(J/(N·D)) = {sigma_star:.3g}"
                ax.axvline(sigma_star, color="C4", linestyle="-.", linewidth=1, label=name)
        if abs(scaled[-1] - mean_inertia) > 0.05 * abs(mean_inertia):
            if sigma[-1] > sigma_star / 10:
                note = f"\n(not reached: this path stops at σ = {sigma[-1]:.3g}, above σ*/10)"
            else:  # the path's own end is another Lloyd fixed point (the hard fit was polished)
                note = f"\n(this path ends at another k-means local optimum: {scaled[-1]:.3g} at σ = {sigma[-1]:.3g})"
        bottom.legend(loc="best", fontsize=8)
    bottom.set_ylabel("−2σ² · log-likelihood\nper point")
    bottom.set_xlabel("σ (log scale; cooling →)")
    for ax in (top, middle, bottom):
        _cooling_axis(ax)
        _mark_splits(ax, split_sigmas, ax is top, critical_sigmas, (sigma.min(), sigma.max()))
    top.legend(loc="best", fontsize=8)
    if middle.get_legend_handles_labels()[0]:
        middle.legend(loc="best", fontsize=8)
    figure.suptitle(f"Soft to hard as σ → 0: entropy → 0, −2σ² log p(X)/N → J/N (k-means){note}")
    return figure


#: Most weights a pair plot shows; above, it shows label-invariant quantities instead.
PAIR_WEIGHTS = 5


def _pair_columns(sigma, weights, reference: Mapping[str, float]):
    """Columns of the pair plot, their names, the reference values by name, and a note on what is shown.

    σ (when it varies) and the first K − 1 weights (the last is one minus the others), or, for
    K − 1 > :data:`PAIR_WEIGHTS`, the label-invariant quantities of :func:`invariant_values`.
    """
    columns, names = [], []
    if np.ptp(sigma) > 0:
        columns.append(sigma)
        names.append("σ")
    n_clusters = weights.shape[1]
    if n_clusters - 1 <= PAIR_WEIGHTS:
        for k in range(n_clusters - 1):
            columns.append(weights[:, k])
            names.append(f"weight {k}")
        return columns, names, dict(reference), ""
    quantities = invariant_values(sigma, weights)
    del quantities["sigma"]
    columns += list(quantities.values())
    names += list(quantities)
    hard = [reference.get(f"weight {k}") for k in range(n_clusters)]
    known = dict(reference)
    if all(v is not None for v in hard):
        known.update({n: float(v) for n, v in invariant_values(0.0, np.asarray(hard, dtype=float)).items()})
    note = f" — K = {n_clusters}: label-invariant quantities, not {n_clusters - 1} weights"
    return columns, names, known, note


def plot_posterior_pairs(sigma, weights, *, reference: Mapping[str, float] | None = None) -> Figure:
    """Pair plot of σ and the mixing weights over posterior draws (relabelled).

    The last weight is left out (it is one minus the others), and so is σ when it was fixed; with
    neither left (σ fixed, K = 1) the figure says so. For more than ``PAIR_WEIGHTS + 1`` clusters
    the plot shows the largest, median and smallest weight and the effective number of clusters
    exp(entropy of the weights) instead, and its title says so: the panels stay at most 5 × 5.

    Parameters
    ----------
    sigma : array-like of shape (n_draws,)
    weights : array-like of shape (n_draws, n_clusters)
    reference : mapping from a column name (``"σ"``, ``"weight 0"``, ...) to a value, optional
        Drawn as dashed lines, e.g. the hard fit's σ* and weights.
    """
    columns, names, reference, what = _pair_columns(_np(sigma), _np(weights), dict(reference or {}))
    if not columns:
        figure = Figure(figsize=(5, 2), layout="constrained")
        figure.text(0.5, 0.5, "σ was fixed and K = 1: no σ or weights vary", ha="center", va="center")
        return figure
    n = len(columns)
    figure = Figure(figsize=(2.6 * n + 0.6, 2.6 * n + 0.4), layout="constrained")
    axes = figure.subplots(n, n, squeeze=False)
    alpha = min(0.6, max(0.05, 200 / len(columns[0])))
    for i in range(n):
        for j in range(n):
            ax = axes[i, j]
            if j > i:
                ax.set_visible(False)
                continue
            if i == j:
                ax.hist(columns[i], bins=40, color="C0", alpha=0.8)
            else:
                ax.scatter(columns[j], columns[i], s=3, alpha=alpha, color="C0", linewidths=0)
                if names[i] in reference:
                    ax.axhline(reference[names[i]], color="C3", linestyle="--", linewidth=1)
            if names[j] in reference:
                ax.axvline(reference[names[j]], color="C3", linestyle="--", linewidth=1)
            ax.set_xlabel(names[j] if i == n - 1 else "")
            ax.set_ylabel(names[i] if j == 0 and i > 0 else "")
    note = "; dashed: the annealed hard fit" if reference else ""
    figure.suptitle(f"Posterior of σ and weights ({len(columns[0])} draws){note}{what}")
    return figure


def _outside_legend(figure: Figure, ax, extra=()) -> None:
    """The axes' legend entries (and ``extra`` (handle, label) pairs first) beside the plot, not on it."""
    handles, labels = ax.get_legend_handles_labels()
    for handle, label in reversed(list(extra)):
        handles.insert(0, handle)
        labels.insert(0, label)
    figure.legend(handles, labels, loc="outside right upper", fontsize=8)


def plot_centroid_clouds(
    X, means, feature_names: Sequence[str], *, hard_means=None, point_estimate: bool = False
) -> Figure:
    """Posterior draws of each centroid (relabelled) over the data; or a point estimate's centroids.

    The legend stands beside the plot; above ``LEGEND_K`` centroids it names none of them (one entry
    says each has its own colour, from :func:`palette`, which never repeats a colour).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    means : array-like of shape (n_draws, n_clusters, n_features)
    feature_names : sequence of str
    hard_means : array-like of shape (n_clusters, n_features), optional
        The annealed k-means centroids, drawn as black crosses.
    point_estimate : bool, default False
        The draws repeat one point (MAP): its centroids are drawn once, as large dots.
    """
    projection = Projection(X, feature_names)
    means = _np(means)[:1] if point_estimate else _np(means)
    n_clusters = means.shape[1]
    colours = palette(n_clusters)
    named = n_clusters <= LEGEND_K
    figure = Figure(figsize=(7.2, 5), layout="constrained")
    ax = figure.subplots()
    ax.scatter(*projection(X).T, s=8, color="0.7", linewidths=0, label="data", rasterized=True)
    what = "centroid" if point_estimate else "centroid draws"
    if point_estimate:
        centres = projection(means[0], jitter=False)
        ax.scatter(*centres.T, s=60, c=colours, edgecolors="black", linewidths=0.8, zorder=4)
    else:
        alpha = min(0.5, max(0.03, 100 / means.shape[0]))
        clouds = np.concatenate([projection(means[:, k], jitter=False) for k in range(n_clusters)])
        cloud_colours = np.repeat(np.array(colours), means.shape[0], axis=0)
        ax.scatter(*clouds.T, s=4, alpha=alpha, c=cloud_colours, linewidths=0, rasterized=True)
    if named:
        for k in range(n_clusters):
            ax.scatter([], [], s=20, color=colours[k], label=f"{what} {k}")
    if hard_means is not None:
        centres = projection(_np(hard_means), jitter=False)
        ax.scatter(
            *centres.T,
            marker="x",
            s=90 if named else 40,
            color="black",
            linewidths=2,
            label="annealed k-means",
        )
    projection.label(ax)
    extra = (
        []
        if named
        else [(ax.scatter([], [], s=20, color="0.4"), f"{n_clusters} centroids,\none colour each")]
    )
    _outside_legend(figure, ax, extra)
    if point_estimate:
        ax.set_title("Centroids of the posterior mode (map): a point estimate, no spread")
    else:
        ax.set_title(f"Posterior centroid clouds ({means.shape[0]} draws, relabelled)")
    return figure


def plot_generated(X, generated: Mapping[str, tuple], feature_names: Sequence[str]) -> Figure:
    """Observed data next to data generated from fits, on shared axes.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    generated : mapping from a panel title to ``(x, z)``
        ``x`` of shape (m, n_features); ``z`` the component of each row (colours, from
        :func:`palette` over the largest component seen), or None.
    feature_names : sequence of str
    """
    projection = Projection(X, feature_names)
    panels = {"observed data": (X, None), **generated}
    labels = [_np(z).astype(int) for _, z in generated.values() if z is not None]
    colours = np.array(palette(max((int(z.max()) + 1 for z in labels if z.size), default=1)))
    figure = Figure(figsize=(3.6 * len(panels), 3.8), layout="constrained")
    axes = figure.subplots(1, len(panels), sharex=True, sharey=True, squeeze=False)[0]
    for ax, (title, (x, z)) in zip(axes, panels.items(), strict=True):
        x = _np(x)
        shade = "0.3" if z is None else colours[_np(z).astype(int)]
        ax.scatter(*projection(x).T, s=8, c=shade, linewidths=0)
        ax.set_title(f"{title}\n({len(x)} points)", fontsize=9)
        projection.label(ax)
    figure.suptitle("Observed data and new data generated by ancestral sampling (colour: component)")
    return figure
