"""An annealing level's bookkeeping of its centroids and cells, each in one compiled call on the CPU.

Private to :mod:`kmeans_limit.inference._levels` (``Annealer.record`` and ``Annealer.settle``). As
tensor operations the two took a dozen calls a level on arrays of K or K × K numbers (a pairwise
distance matrix, its diagonal, a triangle, two ``bincount``\\ s and their comparison), about
0.3 ms a level on an AMD EPYC: 5-9% of an annealing run on the 2-D SIPU sets.
"""

from __future__ import annotations

import numpy as np

from ._fused import _compiled

__all__ = ["cell_sizes", "coincident_count", "moved_cells"]


@_compiled()
def cell_sizes(labels, n_clusters):  # pragma: no cover
    """How many rows carry each label, int64 of shape (n_clusters,) (``np.bincount`` with ``minlength``)."""
    sizes = np.zeros(n_clusters, dtype=np.int64)
    for label in labels:
        sizes[label] += 1
    return sizes


@_compiled()
def coincident_count(means, radius):  # pragma: no cover
    """How many centroids lie within ``radius`` of an earlier one (row order), the distances from
    the differences summed in float64 (exact to rounding even for centroids far from the origin)."""
    n_clusters, n_features = means.shape
    limit = np.float64(radius) * np.float64(radius)
    count = 0
    for j in range(1, n_clusters):
        for i in range(j):
            total = 0.0
            for t in range(n_features):
                gap = np.float64(means[j, t]) - np.float64(means[i, t])
                total += gap * gap
            if total <= limit:
                count += 1
                break
    return count


def moved_cells(change: np.ndarray, sizes: np.ndarray, fraction: float) -> list[bool]:
    """Whether each cell's row count changed by more than ``fraction`` of its size (at least 1)."""
    return (np.abs(change) > fraction * np.maximum(sizes, 1)).tolist()
