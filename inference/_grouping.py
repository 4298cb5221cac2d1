"""The rows of each cluster, in increasing order, from the labels: a stable sort by label.

Private to :mod:`kmeans_limit.inference`. On the CPU one counting pass does it (labels lie in
``[0, n_groups)``): the output and ``n_groups + 1`` counts are all it allocates, where
``torch.argsort(labels, stable=True)`` held four times the output at its peak (61 MB for 2e6 rows,
measured with memray) and took longer. Split-merge (:func:`._split.split_merge`) groups every
row by cluster each round, at the end of an annealing run when the most is held.
"""

from __future__ import annotations

import numpy as np
import torch

from ._fused import _compiled

__all__ = ["rows_by_label"]


@_compiled()
def _counting_order(labels, starts, order):  # pragma: no cover
    """Fill ``order`` with the rows grouped by label (stable) and ``starts`` with each group's first
    position (``starts[g + 1] − starts[g]`` rows in group g); -1 if a label lies outside the groups,
    else 0."""
    n_groups = starts.shape[0] - 1
    for i in range(labels.shape[0]):
        g = labels[i]
        if g < 0 or g >= n_groups:
            return -1
        starts[g + 1] += 1
    for g in range(n_groups):
        starts[g + 1] += starts[g]
    fill = starts[:-1].copy()
    for i in range(labels.shape[0]):
        g = labels[i]
        order[fill[g]] = i
        fill[g] += 1
    return 0


def rows_by_label(labels: torch.Tensor, n_groups: int) -> list[torch.Tensor]:
    """Each group's rows, in increasing order.

    Parameters
    ----------
    labels : long tensor of shape (n_rows,)
        Values in ``[0, n_groups)``.
    n_groups : int

    Returns
    -------
    list of n_groups long tensors
        Group g's rows (shape ``(count_g,)``): views into one tensor of shape (n_rows,), the
        stable ordering of the rows by label (what ``torch.argsort(labels, stable=True)`` gives).

    Raises
    ------
    ValueError
        If a label lies outside ``[0, n_groups)``.
    """
    if labels.device.type == "cpu" and labels.dtype == torch.long:
        order = torch.from_numpy(np.empty(labels.shape[0], dtype=np.int64))
        starts = np.zeros(n_groups + 1, dtype=np.int64)
        if _counting_order(np.ascontiguousarray(labels.numpy()), starts, order.numpy()) != 0:
            raise ValueError(f"labels should lie in [0, {n_groups}); got values outside that range")
        bounds = starts.tolist()
    else:
        if labels.numel() and not (0 <= labels.min().item() and labels.max().item() < n_groups):
            raise ValueError(f"labels should lie in [0, {n_groups}); got values outside that range")
        order = torch.argsort(labels, stable=True)
        bounds = [0] + torch.bincount(labels, minlength=n_groups).cumsum(0).tolist()
    return [order[bounds[g] : bounds[g + 1]] for g in range(n_groups)]
