"""Plain-text tables for the command line's summaries."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["format_table", "fmt", "parameter_names", "posterior_table"]


def fmt(value: float, digits: int = 4) -> str:
    """A number with ``digits`` significant digits, as the tables print it."""
    return f"{float(value):.{digits}g}"


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


def posterior_table(idata, feature_names: Sequence[str], hard=None) -> str:
    """Posterior mean, sd, 94% HDI, bulk ESS and R-hat of every parameter (relabelled draws).

    Parameters
    ----------
    idata : arviz.InferenceData
        With posterior ``sigma`` (chain, draw), ``weights`` (chain, draw, K), ``means`` (chain, draw, K, D).
    feature_names : sequence of str
    hard : tuple (sigma, weights, means), optional
        The hard fit's values, put in a first column of numbers.
    """
    import arviz as az

    post = idata.posterior
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    flat = _flat(
        post["sigma"].values.reshape(-1),
        post["weights"].values.reshape(chains * draws, -1),
        post["means"].values.reshape(chains * draws, -1),
    )
    by_chain = flat.reshape(chains, draws, -1)
    names = parameter_names(post.sizes["cluster"], feature_names)
    hard_values = None if hard is None else _flat(*[np.asarray(v, dtype=float)[None] for v in hard])[0]
    rows = []
    for j, name in enumerate(names):
        values = by_chain[..., j]
        if np.ptp(values) == 0:
            ess = rhat = "-"
        else:
            ess = f"{float(az.ess(values, method='bulk')):.0f}"
            rhat = fmt(az.rhat(values), 3) if chains > 1 else "-"
        low, high = az.hdi(values.reshape(-1), hdi_prob=0.94)
        row = [name, fmt(values.mean()), fmt(values.std()), fmt(low), fmt(high), ess, rhat]
        rows.append(row if hard_values is None else [name, fmt(hard_values[j]), *row[1:]])
    header = ["parameter", "mean", "sd", "hdi 3%", "hdi 97%", "ess bulk", "r-hat"]
    if hard_values is not None:
        header.insert(1, "hard fit")
    return format_table(header, rows)
