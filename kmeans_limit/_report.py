"""Plain-text tables for the command line's summaries, readable at any K.

Up to :data:`LARGE_K` clusters the tables list every parameter (σ, each weight, each centroid
coordinate). Above it they list label-invariant quantities only (σ, the largest, median and smallest
weight, the effective number of clusters) and say so: 301 rows for K = 100 are not a summary.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "LARGE_K",
    "fmt",
    "format_table",
    "invariant_values",
    "list_values",
    "parameter_names",
    "point_table",
    "posterior_table",
]

#: Above this many clusters, summaries show label-invariant quantities instead of every parameter.
LARGE_K = 10


def fmt(value: float, digits: int = 4) -> str:
    """A number with ``digits`` significant digits, as the tables print it."""
    return f"{float(value):.{digits}g}"


def list_values(values: Sequence[float], limit: int = 6) -> str:
    """Numbers as ``a, b, c`` or, past ``limit`` of them, ``a, b, c, ..., z (n values)``."""
    values = [float(v) for v in values]
    if not values:
        return "none"
    if len(values) <= limit:
        return ", ".join(fmt(v) for v in values)
    head = ", ".join(fmt(v) for v in values[: limit - 1])
    return f"{head}, ..., {fmt(values[-1])} ({len(values)} values)"


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell: the first left-aligned, the others right-aligned."""
    cells = [list(header), *[list(map(str, row)) for row in rows]]
    widths = [max(len(row[j]) for row in cells) for j in range(len(header))]
    lines = []
    for row in cells:
        first = row[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join([first, *rest]).rstrip())
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def parameter_names(n_clusters: int, feature_names: Sequence[str]) -> list[str]:
    """Row names for σ, each weight and each centroid coordinate: ``sigma``, ``weight 0``, ``mean 0 x``."""
    names = ["sigma"] + [f"weight {k}" for k in range(n_clusters)]
    return names + [f"mean {k} {name}" for k in range(n_clusters) for name in feature_names]


def _flat(sigma, weights, means) -> np.ndarray:
    """σ, weights and means of each draw in :func:`parameter_names` order: shape (n_draws, 1 + K + K·D)."""
    sigma, weights, means = (np.asarray(v, dtype=float) for v in (sigma, weights, means))
    return np.column_stack([sigma.reshape(-1, 1), weights, means.reshape(len(means), -1)])


def invariant_values(sigma, weights) -> dict[str, np.ndarray]:
    """Quantities that do not change when the components are relabelled, per draw.

    Parameters
    ----------
    sigma : array-like of shape (...)
    weights : array-like of shape (..., K)

    Returns
    -------
    dict of str to ndarray of shape (...)
        ``sigma``, ``largest weight``, ``median weight``, ``smallest weight`` and ``effective K``
        = exp(entropy of the weights), which is K for equal weights and 1 for one component.
    """
    weights = np.asarray(weights, dtype=float)
    logs = np.log(np.where(weights > 0, weights, 1.0))
    return {
        "sigma": np.asarray(sigma, dtype=float),
        "largest weight": weights.max(-1),
        "median weight": np.median(weights, -1),
        "smallest weight": weights.min(-1),
        "effective K": np.exp(-(weights * logs).sum(-1)),
    }


def _large_note(n_clusters: int, where: str) -> str:
    return (
        f"K = {n_clusters} > {LARGE_K}: label-invariant quantities only (effective K = exp(entropy of the "
        f"weights)); every weight and centroid is in {where}"
    )


def point_table(
    sigma: float, weights, means, feature_names: Sequence[str], *, where: str, hard=None, label: str = "value"
) -> str:
    """A point estimate (one value a parameter, no spread) as a table; invariant quantities at large K.

    Parameters
    ----------
    sigma : float
    weights : array-like of shape (K,)
    means : array-like of shape (K, D)
    feature_names : sequence of str
    where : str
        Where the full fit is, for the note at large K (e.g. ``"anneal.json (with --out)"``).
    hard : tuple (sigma, weights, means), optional
        A second point (the hard fit), put in a column before the values.
    label : str, default "value"
        The heading of the values' column.
    """
    weights = np.asarray(weights, dtype=float)
    header = ["parameter", label] if hard is None else ["parameter", "hard fit", label]
    points = [(sigma, weights, means)] if hard is None else [hard, (sigma, weights, means)]
    if len(weights) > LARGE_K:
        columns = [invariant_values(s, w) for s, w, _ in points]
        rows = [[name, *(fmt(c[name]) for c in columns)] for name in columns[0]]
        return _large_note(len(weights), where) + "\n" + format_table(header, rows)
    columns = [_flat(*[np.asarray(v, dtype=float)[None] for v in point])[0] for point in points]
    names = parameter_names(len(weights), feature_names)
    rows = [[name, *(fmt(c[j]) for c in columns)] for j, name in enumerate(names)]
    return format_table(header, rows)


def _stat_row(name: str, values: np.ndarray, hard_value=None) -> list[str]:
    """Mean, sd, 94% HDI, bulk ESS and R-hat of one quantity's draws (chains, draws)."""
    from .inference import arviz_compat

    chains = values.shape[0]
    if np.ptp(values) == 0:
        ess = rhat = "-"
    else:
        ess = f"{arviz_compat.ess(values, method='bulk'):.0f}"
        rhat = fmt(arviz_compat.rhat(values), 3) if chains > 1 else "-"
    low, high = arviz_compat.hdi(values, prob=0.94)
    row = [name, fmt(values.mean()), fmt(values.std()), fmt(low), fmt(high), ess, rhat]
    return row if hard_value is None else [name, fmt(hard_value), *row[1:]]


def posterior_table(idata, feature_names: Sequence[str], hard=None, *, where: str = "the fit file") -> str:
    """Posterior mean, sd, 94% HDI, bulk ESS and R-hat of every parameter (relabelled draws), or of
    the label-invariant quantities when K > :data:`LARGE_K` (with a line saying so).

    Parameters
    ----------
    idata : arviz.InferenceData or xarray.DataTree
        With posterior ``sigma`` (chain, draw), ``weights`` (chain, draw, K), ``means`` (chain, draw, K, D).
    feature_names : sequence of str
    hard : tuple (sigma, weights, means), optional
        The hard fit's values, put in a first column of numbers.
    where : str
        Where every parameter can be found, for the note at large K.
    """
    post = idata.posterior
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    n_clusters = post.sizes["cluster"]
    header = ["parameter", "mean", "sd", "hdi 3%", "hdi 97%", "ess bulk", "r-hat"]
    if hard is not None:
        header.insert(1, "hard fit")
    sigma = post["sigma"].values.reshape(chains, draws)
    weights = post["weights"].values.reshape(chains, draws, -1)
    if n_clusters > LARGE_K:
        quantities = invariant_values(sigma, weights)
        hard_values = None if hard is None else invariant_values(float(hard[0]), np.asarray(hard[1], float))
        rows = [
            _stat_row(name, values, None if hard_values is None else hard_values[name])
            for name, values in quantities.items()
        ]
        return _large_note(n_clusters, where) + "\n" + format_table(header, rows)
    flat = _flat(
        sigma.reshape(-1),
        weights.reshape(chains * draws, -1),
        post["means"].values.reshape(chains * draws, -1),
    )
    by_chain = flat.reshape(chains, draws, -1)
    names = parameter_names(n_clusters, feature_names)
    hard_values = None if hard is None else _flat(*[np.asarray(v, dtype=float)[None] for v in hard])[0]
    rows = [
        _stat_row(name, by_chain[..., j], None if hard_values is None else hard_values[j])
        for j, name in enumerate(names)
    ]
    return format_table(header, rows)
