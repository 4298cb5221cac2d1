"""An annealing level's compiled bookkeeping (``inference._cells``) against the tensor operations it
replaced: ``torch.bincount`` for the cells' sizes, the pairwise-distance count of coincident
centroids, and which cells moved."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kmeans_limit.inference import _cells  # the kernels themselves: no public twin


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.integers(1, 40), st.integers(0, 500), st.integers(0, 2**16))
def test_cell_sizes_are_bincount_with_minlength(n_clusters, n_rows, seed):
    labels = np.random.default_rng(seed).integers(0, n_clusters, n_rows)
    sizes = _cells.cell_sizes(labels, n_clusters)
    assert sizes.dtype == np.int64
    assert torch.equal(
        torch.from_numpy(sizes), torch.bincount(torch.from_numpy(labels), minlength=n_clusters)
    )


@settings(max_examples=80, deadline=None, derandomize=True)
@given(
    st.sampled_from([np.float32, np.float64]),
    st.integers(1, 12),
    st.integers(1, 6),
    st.sampled_from([0.0, 1e3, 1e6]),
    st.floats(-6.0, 6.0),
    st.integers(0, 2**16),
)
def test_coincident_count_is_the_centroids_near_an_earlier_one(
    dtype, n_clusters, n_features, offset, log_scale, seed
):
    """Counted from the differences (exact to rounding far from the origin too), against the
    same count from float64 differences, with some centroids put exactly or nearly on others."""
    rng = np.random.default_rng(seed)
    scale = 10.0**log_scale
    means = scale * (rng.standard_normal((n_clusters, n_features)) + offset)
    for j in range(1, n_clusters):
        if rng.random() < 0.4:  # on top of an earlier one, or just off it
            means[j] = means[rng.integers(0, j)] + scale * rng.choice(
                [0.0, 1e-6, 1e-2]
            ) * rng.standard_normal(n_features)
    means = means.astype(dtype)
    radius = 1e-3 * scale
    wide = means.astype(np.float64)
    gaps = np.sqrt(((wide[:, None, :] - wide[None, :, :]) ** 2).sum(-1))
    expected = sum(bool((gaps[:j, j] <= radius).any()) for j in range(n_clusters))
    # Pairs within a rounding of the radius may fall either way.
    edge = np.abs(gaps - radius) <= 1e-12 * max(radius, gaps.max())
    count = _cells.coincident_count(means, radius)
    assert count == expected or edge.any()


def test_coincident_count_of_repeated_and_distinct_centroids():
    means = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [1.0, 1e-9], [5.0, 5.0]])
    assert _cells.coincident_count(means, 1e-6) == 2  # rows 2 and 3 repeat rows 0 and 1
    assert _cells.coincident_count(means, 2.0) == 3  # and row 1 lies within 2 of row 0
    assert _cells.coincident_count(means[:1], 1.0) == 0


def test_moved_cells_compare_the_change_with_a_fraction_of_the_size():
    change = np.array([0, -3, 2, 1, 0])
    sizes = np.array([10, 100, 100, 0, 0])
    assert _cells.moved_cells(change, sizes, 0.02) == [False, True, False, True, False]
