"""The pictures of K chosen by λ and of the posterior of K: what they draw, headless."""

import io

import numpy as np
import torch

from kmeans_limit.dp_plots import plot_cluster_count_posterior, plot_penalty_curve
from kmeans_limit.inference.anneal_penalty import PenaltyCurve, penalty_hull


def test_penalty_curve_draws_the_points_the_hull_and_one_line_a_penalty():
    curve = PenaltyCurve(
        torch.arange(1, 6), torch.tensor([10.0, 4.0, 3.0, 2.9, 2.5], dtype=torch.float64), ()
    )
    figure = plot_penalty_curve(curve, penalties=[2.0, 0.2])
    ax = figure.axes[0]
    points, hull_line, *penalty_lines = ax.lines
    assert points.get_xdata().tolist() == [1, 2, 3, 4, 5]
    assert hull_line.get_xdata().tolist() == penalty_hull(curve.n_clusters, curve.inertia).n_clusters.tolist()
    assert len(penalty_lines) == 2
    assert [t.get_text() for t in ax.get_legend().get_texts()][2:] == [
        "λ = 2 chooses K = 2",
        "λ = 0.2 chooses K = 5",
    ]
    assert len(ax.texts) == len(hull_line.get_xdata())
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    assert buffer.getvalue()[:4] == b"\x89PNG"


def test_cluster_count_posterior_bars_sum_to_one():
    figure = plot_cluster_count_posterior(
        {"σ = 1": np.array([1, 2, 2, 3]), "σ = 0.1": np.array([[2, 2], [2, 3]])}
    )
    heights = [p.get_height() for p in figure.axes[0].patches]
    assert sum(heights) == np.float64(2.0) and len(heights) == 5
