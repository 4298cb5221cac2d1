"""Rows grouped by label (``_grouping.rows_by_label``), and what split-merge holds of them.

The counting pass must give exactly the stable argsort's grouping (split-merge's proposals, and
whether an earlier one is reused, depend on each cell's rows in order), on labels of every shape:
empty groups, one group, all rows in one label, no rows. Out-of-range labels are an error, not a
write outside the output. Split-merge must hold one grouping at a time: every cell's rows are views
into the newest one, and the caller's list of earlier proposals is emptied once matched.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import make_blobs

from kmeans_limit.inference import _grouping, _split  # private kernels: no public twin
from kmeans_limit.inference._comm import LOCAL
from kmeans_limit.inference.lloyd import lloyd_rows


def _argsort_cells(labels: torch.Tensor, n_groups: int) -> list[torch.Tensor]:
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels, minlength=n_groups).tolist()
    bounds = np.concatenate([[0], np.cumsum(counts)]).tolist()
    return [order[bounds[g] : bounds[g + 1]] for g in range(n_groups)]


@settings(max_examples=80, deadline=None, derandomize=True)
@given(
    n_rows=st.integers(0, 3000),
    n_groups=st.integers(1, 300),
    n_used=st.integers(1, 300),
    seed=st.integers(0, 2**31 - 1),
    dtype=st.sampled_from([torch.long, torch.int32]),
)
def test_groups_equal_the_stable_argsorts(n_rows, n_groups, n_used, seed, dtype):
    """Labels using ``min(n_used, n_groups)`` of the groups (the others empty), long (the counting
    pass) and int32 (the torch path): the same cells, in the same order, as the stable argsort."""
    generator = torch.Generator().manual_seed(seed)
    used = torch.randperm(n_groups, generator=generator)[: min(n_used, n_groups)]
    labels = used[torch.randint(0, used.numel(), (n_rows,), generator=generator)].to(dtype)
    cells = _grouping.rows_by_label(labels, n_groups)
    expected = _argsort_cells(labels.long(), n_groups)
    assert len(cells) == n_groups
    for got, want in zip(cells, expected, strict=True):
        assert got.dtype == torch.long
        assert torch.equal(got, want)


def test_every_cell_is_a_view_of_one_ordering():
    labels = torch.tensor([2, 0, 2, 1, 0, 2], dtype=torch.long)
    cells = _grouping.rows_by_label(labels, 4)
    assert [c.tolist() for c in cells] == [[1, 4], [3], [0, 2, 5], []]
    storages = {c.untyped_storage().data_ptr() for c in cells}
    assert len(storages) == 1


@pytest.mark.parametrize("dtype", [torch.long, torch.int32])
@pytest.mark.parametrize("bad", [-1, 3, 7])
def test_a_label_outside_the_groups_is_an_error(dtype, bad):
    labels = torch.tensor([0, 1, bad, 2], dtype=dtype)
    with pytest.raises(ValueError, match=r"labels should lie in \[0, 3\)"):
        _grouping.rows_by_label(labels, 3)


def test_split_merge_holds_one_grouping_and_empties_the_callers_list():
    """After split-merge on blobs, the proposals' rows it would reuse are views into one grouping,
    and the list of earlier proposals the caller passed is empty (its rows freed)."""
    X, _ = make_blobs(2000, n_features=3, centers=12, cluster_std=1.5, random_state=3)
    X = torch.from_numpy(X)
    weight = torch.ones(X.shape[0], dtype=X.dtype)
    start = X[torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(0))[:12]].clone()
    result = lloyd_rows(X, start, weight, max_iter=300, tol=0.0)
    known = _split._cell_proposals(X, weight, result.labels, 12, LOCAL)
    cells = _split._cell_proposals(X, weight, result.labels, 12, LOCAL, known)
    assert {c.rows.untyped_storage().data_ptr() for c in cells} == {
        cells[0].rows.untyped_storage().data_ptr()
    }
    assert all(a.proposal is b.proposal for a, b in zip(cells, known, strict=True))  # all reused
    assert all(
        a.rows.untyped_storage().data_ptr() != b.rows.untyped_storage().data_ptr()
        for a, b in zip(cells, known, strict=True)
    )
    passed = list(known)
    refined, _ = _split.split_merge(X, weight, result, n_trials=8, max_iter=300, variance=1.0, known=passed)
    assert passed == []
    assert refined.inertia <= result.inertia
