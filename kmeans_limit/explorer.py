"""The annealing path in the browser: one self-contained HTML page with a σ slider down to σ = 0.

The page (no server, no network: every script and style inline, plain JavaScript, canvas and SVG)
holds the dense annealing path (:func:`~kmeans_limit.inference.dense_path.dense_path`) and draws the
data coloured by their responsibilities at the slider's σ, the centroids, the bifurcation diagram and
the free energy ``−2σ² log p(X)/N`` with the split σ values and ``J/N`` at σ = 0. Between recorded
levels the page interpolates the centroids and weights (:func:`path_at` is the same interpolation
in Python) and computes the responsibilities itself with the package's E step in log space
(``window.KML.logResponsibilities``).

Above ``MAX_POINTS`` rows a random subsample is drawn (and only its responsibilities are
computed); the page says so. The path, the free energy and the fit are always those of every row.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from ._explorer_page import render_page
from .inference.dense_path import DensePath, dense_path
from .inference.init import kmeans_plusplus
from .inference.lloyd import lloyd
from .inference.validation import as_data, check_n_clusters, check_positive_int
from .io import atomic_write

__all__ = [
    "MAX_POINTS",
    "ExplorerPage",
    "check_draw",
    "explore",
    "explorer_data",
    "path_at",
    "sigma_to_t",
    "write_explorer",
]

#: Rows drawn at most; above this a random subsample of this many is drawn (and said so on the page).
MAX_POINTS = 5000
#: Starts of k-means++ + Lloyd tried for the side-by-side picture; the worst one is shown.
N_STARTS = 10


class ExplorerPage(NamedTuple):
    """What :func:`write_explorer` wrote.

    Attributes
    ----------
    path : Path
        The HTML file.
    n_bytes : int
        Its size.
    n_drawn : int
        Rows drawn (all of them up to ``max_points``).
    record : DensePath
        The dense annealing path the page holds.
    data : dict
        The page's data (what ``explorer_data`` returned), as embedded in the page.
    """

    path: Path
    n_bytes: int
    n_drawn: int
    record: DensePath
    data: dict


def _floats(tensor) -> list:
    """Nested lists of Python floats (shortest round-trip repr in JSON)."""
    return torch.as_tensor(tensor, dtype=torch.float64).tolist()


def _drawing_axes(X: torch.Tensor, centre: torch.Tensor, columns, feature_names) -> tuple[torch.Tensor, list]:
    """A (D, 2) projection of the centred data for drawing, and the axis names.

    Two chosen columns, the two columns of 2-D data, the first principal axes for D > 2; 1-D data
    get a zero second axis (the page draws a jitter there).
    """
    d = X.shape[1]
    names = list(feature_names) if feature_names is not None else [f"x{j}" for j in range(d)]
    if len(names) != d:
        raise ValueError(f"feature_names has {len(names)} names for {d} features")
    projection = torch.zeros(d, 2, dtype=torch.float64)
    if columns is not None:
        picked = check_draw(columns, names)
        projection[picked[0], 0] = projection[picked[1], 1] = 1.0
        return projection, [names[picked[0]], names[picked[1]]]
    if d <= 2:
        projection[:, : min(d, 2)] = torch.eye(d, dtype=torch.float64)[:, : min(d, 2)]
        return projection, names + (["(jitter)"] if d == 1 else [])
    _, values, vh = torch.linalg.svd(X.double() - centre, full_matrices=False)
    share = values.square() / values.square().sum()
    labels = [f"principal axis {i + 1} ({100 * share[i].item():.0f}% of the variance)" for i in range(2)]
    return vh[:2].T.contiguous(), labels


def check_draw(columns, feature_names) -> tuple[int, int]:
    """The indices of the two features ``columns`` names (names or 0-based indices) among ``feature_names``.

    Raises
    ------
    ValueError
        Not two different features, or one that is not among ``feature_names``.
    """
    names = list(feature_names)
    picked = [_column_index(c, names) for c in columns]
    if len(picked) != 2 or picked[0] == picked[1]:
        raise ValueError(f"columns={tuple(columns)!r} should name two different features")
    return picked[0], picked[1]


def _column_index(column, names: list) -> int:
    if isinstance(column, str) and column in names:
        return names.index(column)
    if isinstance(column, str) and column.strip().isdigit():
        column = int(column)
    if isinstance(column, int | np.integer) and not isinstance(column, bool) and 0 <= column < len(names):
        return int(column)
    raise ValueError(f"column {column!r} should be one of {names} or an index in [0, {len(names)})")


def _math_basis(means: torch.Tensor, centre: torch.Tensor, spread: float) -> torch.Tensor | None:
    """An orthonormal basis (D, r) of the span of every recorded centroid about ``centre``, when r < D.

    The distances of a row to centroids in that affine span differ from those of its coordinates in
    the basis by the same amount for every centroid, which the responsibilities do not see: the page
    then holds r coordinates a row instead of D. None when the span is all of R^D.
    """
    flat = means.reshape(-1, means.shape[-1]).double() - centre
    _, values, vh = torch.linalg.svd(flat, full_matrices=False)
    # Singular values of pure rounding are about ε √(L·K) times the data's spread: 1e-12 of it is signal.
    rank = int((values > 1e-12 * math.sqrt(flat.shape[0]) * max(spread, 1e-300)).sum())
    return vh[: max(rank, 1)].T.contiguous() if rank < means.shape[-1] else None


def _worst_start(X, record: DensePath, seed: int, weight) -> dict:
    """Lloyd from the worst of ``N_STARTS`` k-means++ starts, its clusters matched to the annealed ones."""
    k = record.final_means.shape[0]
    fits = [
        lloyd(X, kmeans_plusplus(X, k, seed=seed + s, sample_weight=weight), sample_weight=weight)
        for s in range(N_STARTS)
    ]
    worst = max(fits, key=lambda fit: fit.inertia)
    cost = torch.cdist(worst.means.double(), record.final_means.double()).numpy()
    rows, cols = linear_sum_assignment(cost)
    order = np.empty(k, dtype=np.int64)
    order[rows] = cols  # worst cluster rows[i] gets the annealed colour cols[i]
    return {
        "means": worst.means.double()[torch.as_tensor(np.argsort(order))],
        "labels": torch.as_tensor(order)[worst.labels],
        "inertia": worst.inertia,
        "n_reached": sum(fit.inertia <= record.inertia * (1 + 1e-9) for fit in fits),
    }


def explorer_data(
    X,
    record: DensePath,
    *,
    feature_names=None,
    title: str = "",
    columns=None,
    max_points: int = MAX_POINTS,
    seed: int = 0,
    compare: bool = True,
    sample_weight=None,
) -> dict:
    """The page's data (a JSON-ready dict) for the data ``X`` and their dense path ``record``.

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features)
    record : DensePath
        ``dense_path(X, ...)``.
    feature_names : sequence of str, optional
    title : str
    columns : pair of int or str, optional
        The two features to draw (default: both of 2-D data, the first principal axes for D > 2).
    max_points : int, default MAX_POINTS
        Rows drawn at most (a seeded random subsample above it).
    seed : int
        Draws the subsample and the k-means++ starts.
    compare : bool, default True
        Add Lloyd's result from the worst of ``N_STARTS`` k-means++ starts.
    sample_weight : tensor of shape (n_samples,), optional
        The weights the path was fitted with (for the k-means++ comparison).

    Returns
    -------
    dict
        ``levels`` (σ with a last 0, centroids and weights per level in the page's coordinates,
        ending with the σ = 0 fit), ``points`` (the drawn rows in those coordinates), ``draw`` (what
        is drawn: 2-D coordinates of points and centroids), ``curve`` (free energy, entropy), the
        split σ values, ``fit`` (J/N, σ*, labels of the drawn rows), ``compare`` and ``meta``.
    """
    X = as_data(X)
    n, d = X.shape
    max_points = check_positive_int("max_points", max_points)
    generator = torch.Generator().manual_seed(seed)
    drawn = (
        torch.arange(n)
        if n <= max_points
        else torch.randperm(n, generator=generator)[:max_points].sort().values
    )
    centre = X.double().mean(0)
    projection, axis_names = _drawing_axes(X, centre, columns, feature_names)
    means = torch.cat([record.means.double(), record.final_means.double()[None]])  # (L + 1, K, D)
    weights = torch.cat([record.weights.double(), record.final_weights.double()[None]])
    basis = _math_basis(means, centre, math.sqrt(max(_total_variance(X, None), 0.0)))
    rows = X[drawn].double() - centre
    to_math = (lambda v: v @ basis) if basis is not None else (lambda v: v)
    draw_xy = (X[drawn].double() - centre) @ projection + centre @ projection
    if d == 1:
        draw_xy[:, 1] = torch.rand(len(drawn), generator=generator, dtype=torch.float64) * 2 - 1
    means_xy = (means - centre) @ projection + centre @ projection
    data = {
        "meta": {
            "title": title,
            "n_samples": n,
            "n_drawn": len(drawn),
            "n_features": d,
            "n_clusters": record.final_means.shape[0],
            "axis_names": axis_names,
            "math_dim": basis.shape[1] if basis is not None else d,
            "max_points": max_points,
        },
        "levels": {
            "sigma": _floats(record.sigma) + [0.0],
            "means": _floats(to_math(means - centre)),
            "weights": _floats(weights),
        },
        "points": _floats(to_math(rows)),
        "draw": {"points": _floats(draw_xy), "means": _floats(means_xy)},
        "curve": {"free_energy": _floats(record.free_energy), "entropy": _floats(record.entropy)},
        "splits": {
            "split_sigma": _floats(record.split_sigma),
            "critical_sigma": _floats(record.critical_sigma),
            "births": record.births.tolist(),
            "parents": record.parents.tolist(),
        },
        "fit": {
            "mean_inertia": record.mean_inertia,
            "sigma_star": record.sigma_star,
            "total_variance": _total_variance(X, sample_weight),
            "labels": record.labels[drawn].tolist(),
            "lloyd_n_iter": record.lloyd_n_iter,
        },
        "compare": None,
    }
    if compare and record.final_means.shape[0] > 1:
        worst = _worst_start(X, record, seed, sample_weight)
        total = n if sample_weight is None else float(torch.as_tensor(sample_weight).sum())
        data["compare"] = {
            "means": _floats((worst["means"] - centre) @ projection + centre @ projection),
            "labels": worst["labels"][drawn].tolist(),
            "mean_inertia": worst["inertia"] / total,
            "n_starts": N_STARTS,
            "n_reached": worst["n_reached"],
        }
    return data


def _total_variance(X: torch.Tensor, sample_weight) -> float:
    """``Σ_n w_n ‖x_n − x̄‖² / N``: the inertia of one centroid (the free energy's scale above the first split)."""
    w = (
        torch.ones(X.shape[0], dtype=torch.float64)
        if sample_weight is None
        else torch.as_tensor(sample_weight).double()
    )
    x = X.double()
    centred = x - (w @ x) / w.sum()
    return float((w @ centred.square().sum(1)) / w.sum())


def sigma_to_t(sigma_grid, sigma: float) -> float:
    """The slider position of σ: level index, log-linear between levels, linear from the last level to 0.

    ``sigma_grid`` is the page's ``levels.sigma`` (decreasing, ending with 0); the page's
    ``KML.tOfSigma`` is the same map.
    """
    grid = list(sigma_grid)
    last = len(grid) - 1
    if sigma <= 0:
        return float(last)
    if sigma >= grid[0]:
        return 0.0
    if sigma < grid[last - 1]:
        return last - sigma / grid[last - 1]
    for i in range(last - 1):
        if grid[i] >= sigma >= grid[i + 1]:
            return i + math.log(grid[i] / sigma) / math.log(grid[i] / grid[i + 1])
    return float(last - 1)


def path_at(levels: dict, t: float) -> tuple[float, torch.Tensor, torch.Tensor]:
    """σ, centroids (K, r) and weights (K,) at slider position ``t`` (the page's ``KML.pathAt``).

    Centroids and weights are linear in ``t`` between levels; σ is geometric between levels and
    linear from the last level down to 0 at ``t = L``.
    """
    sigma = levels["sigma"]
    last = len(sigma) - 1
    t = min(max(t, 0.0), float(last))
    i = min(int(math.floor(t)), last - 1)
    s = t - i
    means = torch.tensor(levels["means"], dtype=torch.float64)
    weights = torch.tensor(levels["weights"], dtype=torch.float64)
    if i + 1 == last:
        value = (1 - s) * sigma[i]
    else:
        value = sigma[i] ** (1 - s) * sigma[i + 1] ** s
    if s == 0:
        return value, means[i], weights[i]
    return value, (1 - s) * means[i] + s * means[i + 1], (1 - s) * weights[i] + s * weights[i + 1]


def page_json(data: dict) -> str:
    """The data as JSON safe inside a ``<script>`` element (no ``</``)."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def write_explorer(
    out,
    X,
    n_clusters: int,
    *,
    feature_names=None,
    title: str = "",
    columns=None,
    seed: int = 0,
    cooling: float = 0.97,
    weights: str = "learn",
    sample_weight=None,
    max_points: int = MAX_POINTS,
    compare: bool = True,
    force: bool = False,
) -> ExplorerPage:
    """Fit the dense annealing path of ``X`` and write the explorer page to ``out``.

    Parameters
    ----------
    out : path-like
        The HTML file to write (atomically; an existing file needs ``force``).
    X : tensor of shape (n_samples, n_features)
    n_clusters : int
    feature_names, title, columns, seed, max_points, compare
        As in :func:`explorer_data`.
    cooling, weights, sample_weight
        As in :func:`~kmeans_limit.inference.dense_path.dense_path`.
    force : bool, default False

    Returns
    -------
    ExplorerPage
    """
    X = as_data(X)
    check_n_clusters(n_clusters, X)
    if Path(out).is_dir():
        raise ValueError(f"out={str(out)!r} is a directory; give the path of the HTML file to write")
    record = dense_path(X, n_clusters, cooling=cooling, weights=weights, sample_weight=sample_weight)
    data = explorer_data(
        X,
        record,
        feature_names=feature_names,
        title=title,
        columns=columns,
        max_points=max_points,
        seed=seed,
        compare=compare,
        sample_weight=sample_weight,
    )
    html = render_page(page_json(data), title or "kmeans-limit explorer")
    path = atomic_write(out, lambda tmp: tmp.write_text(html, encoding="utf-8"), force=force)
    return ExplorerPage(Path(path), len(html.encode("utf-8")), data["meta"]["n_drawn"], record, data)


def explore(
    X, n_clusters: int, *, out, feature_names=None, source: str = "", force: bool = False, **options
) -> str:
    """The ``kmeans-limit explore`` command on data already read: write the page, return what to print.

    ``options`` go to :func:`write_explorer` (``columns``, ``seed``, ``cooling``, ``weights``,
    ``max_points``, ``compare``).
    """
    page = write_explorer(
        out, X, n_clusters, feature_names=feature_names, title=source, force=force, **options
    )
    record, meta = page.record, page.data["meta"]
    drawn = (
        f"all {meta['n_samples']} points drawn"
        if meta["n_drawn"] == meta["n_samples"]
        else f"{meta['n_drawn']} of {meta['n_samples']} points drawn (random subsample)"
    )
    splits = ", ".join(f"{s:.3g}" for s in record.split_sigma.tolist()) or "none"
    return "\n".join(
        [
            f"explorer: {source or 'data'}, N = {meta['n_samples']}, D = {meta['n_features']}, K = {n_clusters}",
            f"dense path: {len(record.sigma)} levels from σ = {record.sigma[0].item():.3g} down to "
            f"{record.sigma[-1].item():.3g}, then σ = 0 (Lloyd); splits at σ = {splits}",
            f"J/N = {record.mean_inertia:.6g}, σ* = √(J/(N·D)) = {record.sigma_star:.4g}; {drawn}",
            f"wrote {page.path} ({page.n_bytes / 1e6:.2f} MB); open it in a browser (no network needed)",
        ]
    )
