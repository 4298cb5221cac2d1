"""2-means on the rows of one cell, compiled with numba (the CPU path of ``_split._two_means``).

Private to :mod:`kmeans_limit.inference._split`. Annealing proposes a split for every cell it may
split next, and split-merge for every cell each round: on the benchmark's small sets (thousands of
rows, K = 15-50) that is ~50 runs of 2-means per annealing run, each some ten iterations of half a
dozen array operations on a few hundred rows, where the calls cost more than the arithmetic (0.5 ms
a run on s1, a third of the annealing). Compiled, an iteration is two passes over the rows.
"""

from __future__ import annotations

import numpy as np

from ._fused import _compiled

__all__ = ["two_means"]


@_compiled()
def two_means(y, u, sums, total, side, max_iter):  # pragma: no cover
    """2-means from the partition ``side`` of the rows ``y``, of weights ``u``; ``side`` is updated.

    Parameters
    ----------
    y : array of shape (n_rows, n_features)
    u : array of shape (n_rows,)
    sums : float64 array of shape (n_features,)
        ``Σ_n u_n y_n``.
    total : float
        ``Σ_n u_n`` (> 0).
    side : bool array of shape (n_rows,)
        True on the first side.
    max_iter : int

    Returns
    -------
    left, right : float64 arrays of shape (n_features,)
        The weighted means of the two sides of the last partition measured.
    mass_left : float
        0 or ``total`` when a side came out empty (no split then).

    Notes
    -----
    Each iteration takes the two sides' weighted means ``l``, ``r`` (the second by difference from
    ``sums``) and moves every row to the side of the nearer: first where
    ``y·(l − r) > (‖l‖² − ‖r‖²)/2``. It stops when no row moves, the sums in float64.
    """
    n_rows, n_features = y.shape
    left = np.zeros(n_features)
    right = np.zeros(n_features)
    mass_left = 0.0
    for _ in range(max_iter):
        mass_left = 0.0
        left[:] = 0.0
        for i in range(n_rows):
            if side[i]:
                mass_left += u[i]
                for t in range(n_features):
                    left[t] += u[i] * y[i, t]
        mass_right = total - mass_left
        if mass_left <= 0.0 or mass_right <= 0.0:
            return left, right, mass_left
        threshold = 0.0
        for t in range(n_features):
            right[t] = (sums[t] - left[t]) / mass_right
            left[t] = left[t] / mass_left
            threshold += 0.5 * (left[t] * left[t] - right[t] * right[t])
        moved = False
        for i in range(n_rows):
            projection = 0.0
            for t in range(n_features):
                projection += y[i, t] * (left[t] - right[t])
            nearer_left = projection > threshold
            if nearer_left != side[i]:
                side[i] = nearer_left
                moved = True
        if not moved:
            break
    return left, right, mass_left
