"""The three annealing pictures at the sizes users have (K = 2, 15, 100): nothing drawn outside the
figure or its axes, bounded legends, top-axis labels that do not overlap, finite data, true titles."""

import itertools

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import Collection
from matplotlib.legend import Legend
from matplotlib.text import Text
from sklearn.datasets import make_blobs

from kmeans_limit import plotting
from kmeans_limit.inference import anneal

#: How each size is annealed: the dense path at a coarse cooling up to K = 15 (seconds), the fast
#: levels schedule at K = 100.
SIZES = {2: ("dense", 0.85, 120), 15: ("dense", 0.8, 450), 100: ("levels", None, 1500)}
NAMES = ("x", "y")
MAX_LEGEND = 12
TOLERANCE = 1.0  # pixels: rounding of the extents


@pytest.fixture(scope="module", params=sorted(SIZES), ids=lambda k: f"K={k}")
def fitted(request):
    k = request.param
    path, cooling, n = SIZES[k]
    X, _ = make_blobs(
        n,
        centers=k,
        cluster_std=0.6,
        center_box=(-10 * np.sqrt(k / 15), 10 * np.sqrt(k / 15)),
        random_state=k,
    )
    X = torch.as_tensor(X)
    return k, X, anneal(X, k, path=path, cooling=cooling)


def _figures(X, result):
    return {
        "bifurcation": plotting.plot_bifurcation(
            result.path,
            result.split_sigmas,
            NAMES,
            hard_means=result.means,
            critical_sigmas=result.critical_sigmas,
        ),
        "responsibilities": plotting.plot_responsibilities(
            X, result.path, NAMES, hard=(result.means, result.weights)
        ),
        "entropy": plotting.plot_entropy_loglik(
            result.path,
            result.split_sigmas,
            X.shape[0],
            inertia=result.inertia,
            critical_sigmas=result.critical_sigmas,
        ),
    }


def _inside(inner, outer, tolerance=TOLERANCE) -> bool:
    return (
        inner.x0 >= outer.x0 - tolerance
        and inner.y0 >= outer.y0 - tolerance
        and inner.x1 <= outer.x1 + tolerance
        and inner.y1 <= outer.y1 + tolerance
    )


def _overlap(a, b) -> bool:
    return (
        a.x0 < b.x1 - TOLERANCE
        and b.x0 < a.x1 - TOLERANCE
        and a.y0 < b.y1 - TOLERANCE
        and b.y0 < a.y1 - TOLERANCE
    )


def _check_figure(name, figure):
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    frame = figure.bbox
    # Every visible text (titles, labels, ticks, legend entries) and every legend lies inside the figure.
    every_axes = [a for ax in figure.axes for a in (ax, *ax.child_axes)]
    axes_of_ticks = [axis for a in every_axes for axis in (a.xaxis, a.yaxis)]
    tick_labels = {
        id(label)
        for axis in axes_of_ticks
        for tick in axis.get_major_ticks() + axis.get_minor_ticks()
        for label in (tick.label1, tick.label2)
    }
    drawn_ticks = [  # the ticks matplotlib draws: those inside the view
        label
        for axis in axes_of_ticks
        for tick in axis._update_ticks()
        for label in (tick.label1, tick.label2)
    ]
    texts = [
        t
        for t in [*figure.findobj(Text), *drawn_ticks]
        if t.get_visible() and t.get_text().strip() and (id(t) not in tick_labels or t in drawn_ticks)
    ]
    for text in texts:
        assert _inside(text.get_window_extent(renderer), frame), (name, text.get_text())
    legends = [obj for obj in figure.findobj(Legend)]
    for legend in legends:
        assert _inside(legend.get_window_extent(renderer), frame), name
        assert len(legend.get_texts()) <= MAX_LEGEND, (name, len(legend.get_texts()))
    # Legends clear of the title and of each other.
    if figure._suptitle is not None:
        title = figure._suptitle.get_window_extent(renderer)
        for legend in legends:
            assert not _overlap(title, legend.get_window_extent(renderer)), name
    for a, b in itertools.combinations(legends, 2):
        assert not _overlap(a.get_window_extent(renderer), b.get_window_extent(renderer)), name
    for ax in figure.axes:
        box = ax.bbox
        # Lines: finite data; unclipped ones inside the axes.
        for line in ax.lines:
            assert np.isfinite(line.get_xydata()).all(), (name, line.get_label())
        # Markers (scatter): every offset inside the axes, a marker's radius from its edges.
        for collection in ax.findobj(Collection):
            offsets = collection.get_offsets()
            if len(offsets) == 0:
                continue
            assert np.isfinite(np.asarray(offsets, dtype=float)).all(), name
            xy = collection.get_offset_transform().transform(offsets)
            sizes = collection.get_sizes()
            radius = 0.5 * np.sqrt(sizes.max() if len(sizes) else 0.0) * figure.dpi / 72
            assert (xy[:, 0] >= box.x0 + radius - TOLERANCE).all() and (
                xy[:, 0] <= box.x1 - radius + TOLERANCE
            ).all(), name
            assert (xy[:, 1] >= box.y0 + radius - TOLERANCE).all() and (
                xy[:, 1] <= box.y1 - radius + TOLERANCE
            ).all(), name
        # Texts placed in the axes (annotations) stay inside them.
        for text in ax.texts:
            assert _inside(text.get_window_extent(renderer), box), (name, text.get_text())
        # Tick labels of the top (split σ) axis do not overlap.
        for child in ax.child_axes:
            labels = [
                tick.label2.get_window_extent(renderer)
                for tick in child.xaxis._update_ticks()
                if tick.label2.get_visible() and tick.label2.get_text()
            ]
            labels += [
                tick.label1.get_window_extent(renderer)
                for tick in child.xaxis._update_ticks()
                if tick.label1.get_visible() and tick.label1.get_text()
            ]
            for a, b in itertools.combinations(labels, 2):
                assert not _overlap(a, b), name
            assert len(labels) <= plotting.MAX_SPLIT_LABELS


def test_pictures_read_well_at_every_size(fitted):
    k, X, result = fitted
    for name, figure in _figures(X, result).items():
        _check_figure(f"{name} K={k}", figure)


def test_entropy_title_says_whether_the_path_reaches_the_k_means_objective(fitted):
    k, X, result = fitted
    title = _figures(X, result)["entropy"]._suptitle.get_text()
    n, d = X.shape
    sigma = result.path.sigma[-1].item()
    scaled = (-2 * sigma**2 * result.path.log_likelihood[-1] / n).item()
    reached = abs(scaled - result.inertia / n) <= 0.05 * result.inertia / n
    stops_early = sigma > result.sigma_star / 10
    assert stops_early == (SIZES[k][0] == "levels")  # the dense path goes down to σ*/20
    assert ("not reached" in title) == (not reached and stops_early)
    assert ("another k-means local optimum" in title) == (not reached and not stops_early)


def test_the_log_likelihood_maximum_is_marked_only_inside_the_path():
    sigma = np.array([2.0, 1.0, 0.5])
    for loglik, marked in (([-3.0, -2.0, -1.0], False), ([-3.0, -1.0, -2.0], True)):
        figure = plotting.Figure()
        ax = figure.subplots()
        plotting._loglik_panel(ax, sigma, np.array(loglik))
        labels = [line.get_label() for line in ax.lines]
        assert any(label.startswith("maximum") for label in labels) == marked
