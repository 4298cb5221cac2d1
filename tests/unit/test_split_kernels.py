"""The CPU kernels of a split: 2-means compiled, the covariance's top eigenpair by BLAS and LAPACK.

The compiled 2-means of a cell (``_two_means``) and the whole compiled proposal (below 9 features
one call; wider cells their mean and covariance, or Gram matrix, compiled, LAPACK's eigenpair, then
the sides and 2-means compiled), against the array loop they replace on the CPU.

``propose_split`` runs 2-means inside each cell; a cell held whole in one process on the CPU takes
the compiled loop, any other (a process group, or a ``Comm`` subclass as here) the loop of array
operations. Both start from the same partition and must reach the same sides, masses and means
on any data: far offsets, tiny and huge scales, float32 and float64, with sample weights. The
top eigenvalue of a cell's weighted covariance (``?syrk`` and ``?syevr`` on the CPU, from the
``n × n`` Gram matrix when there are fewer rows than features) against NumPy's in float64.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kmeans_limit.inference import _split
from kmeans_limit.inference._comm import Comm
from kmeans_limit.inference._two_means import two_means
from kmeans_limit.inference.data import prepare_data


class _Here(Comm):
    """The single-process Comm under another type: ``_two_means`` then takes the array loop."""


@st.composite
def cells(draw):
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    n_rows = draw(st.integers(2, 400))
    n_features = draw(st.sampled_from([1, 2, 3, 8, 40]))
    scale = 10.0 ** draw(st.floats(-6.0, 6.0))
    offset = draw(st.sampled_from([0.0, 1e3, 1e6]))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    centres = 3.0 * torch.randn(2, n_features, generator=generator, dtype=torch.float64)
    X0 = centres[torch.arange(n_rows) % 2] + torch.randn(
        n_rows, n_features, generator=generator, dtype=torch.float64
    )
    rows = prepare_data((scale * (X0 + offset)).to(dtype)).rows
    weighted = draw(st.booleans())
    u = (
        torch.rand(n_rows, generator=generator, dtype=torch.float64).to(dtype)
        if weighted
        else torch.ones(n_rows, dtype=dtype)
    )
    return rows, u


@settings(max_examples=80, deadline=None, derandomize=True)
@given(cells())
def test_compiled_two_means_reaches_the_array_loops_split(cell_data):
    X, u = cell_data
    compiled = _split.propose_split(X, u)
    looped = _split.propose_split(X, u, comm=_Here())
    eps = torch.finfo(X.dtype).eps
    size = X.double().abs().max().item()
    assert math.isclose(compiled.left_mass, looped.left_mass, rel_tol=1e3 * eps, abs_tol=1e-300)
    assert math.isclose(compiled.right_mass, looped.right_mass, rel_tol=1e3 * eps, abs_tol=1e-300)
    tol = 1e3 * eps * size * X.shape[0]
    assert (compiled.left - looped.left).abs().max().item() <= tol
    assert (compiled.right - looped.right).abs().max().item() <= tol
    assert math.isclose(compiled.gain, looped.gain, rel_tol=1e4 * eps * X.shape[0], abs_tol=1e-300)
    spread = ((X.double() - X.double().mean(0)) ** 2).sum(-1).max().item()
    assert (
        abs(compiled.critical_sigma2 - looped.critical_sigma2)
        <= 16 * (X.shape[0] + X.shape[1]) * eps * spread
    )
    assert compiled.left.dtype == X.dtype


def test_two_means_of_a_known_partition():
    """Two groups on a line, started with one row on the wrong side: one move, then a fixed point."""
    y = np.array([[0.0], [1.0], [10.0], [11.0]])
    u = np.array([1.0, 1.0, 1.0, 3.0])
    sums = (u[:, None] * y).sum(0)
    side = np.array([True, True, True, False])
    left, right, mass_left = two_means(y, u, sums, u.sum(), side, 30)
    assert side.tolist() == [True, True, False, False]
    assert mass_left == 2.0 and left.tolist() == [0.5] and right.tolist() == [(10.0 + 33.0) / 4]


def test_a_side_that_empties_gives_no_split():
    y = np.array([[0.0], [0.0], [0.0]])
    u = np.ones(3)
    side = np.array([False, False, False])
    _left, _right, mass_left = two_means(y, u, y.sum(0), 3.0, side, 30)
    assert mass_left == 0.0


@settings(max_examples=60, deadline=None, derandomize=True)
@given(cells())
def test_covariance_top_eigenvalue_is_numpys(cell_data):
    """λ_max within ``8·(n + D)·eps`` of the float64 value relative to the spread (the rounding of the
    rows and their products), plus the square of the mean's rounding (a cell of one row: λ = 0)."""
    X, u = cell_data
    index = torch.arange(0, X.shape[0], 2)  # a cell of every other row (copied out of X)
    lam = _split.covariance_top_eigenvalue(X, u[index], index=index)
    y, w = X[index].double().numpy(), u[index].double().numpy()
    mean = w @ y / w.sum()
    expected = np.linalg.eigvalsh(((y - mean) * w[:, None]).T @ (y - mean) / w.sum())[-1]
    eps = torch.finfo(X.dtype).eps
    scale = ((y - mean) ** 2).sum(-1).max()
    mean_rounding = 16.0 * eps**2 * (y**2).sum(-1).max()
    assert abs(lam - expected) <= 8.0 * (len(index) + X.shape[1]) * eps * scale + mean_rounding + 1e-300


def test_top_eigenpair_of_a_known_matrix():
    for dtype in (torch.float32, torch.float64):
        matrix = torch.tensor([[2.0, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 1.0]], dtype=dtype)
        lam, vector = _split._top_eigenpair(matrix)
        assert lam == pytest.approx(3.0, rel=4 * torch.finfo(dtype).eps)
        assert torch.allclose(vector.abs(), torch.tensor([1.0, 1.0, 0.0], dtype=dtype) / math.sqrt(2.0))
        assert vector.dtype == dtype


def test_split_merge_reuses_a_proposal_only_for_the_same_rows():
    """A known proposal is taken for a cluster of exactly its rows, never for one whose rows changed;
    with the true proposals known, split-merge ends where it ends without them."""
    from kmeans_limit.inference.lloyd import lloyd_rows

    X = prepare_data(torch.from_numpy(np.random.default_rng(4).normal(size=(600, 2)))).rows
    weight = torch.ones(600, dtype=X.dtype)
    start = lloyd_rows(X, X[:6].clone(), weight, max_iter=300, tol=0.0)
    fresh = _split._cell_proposals(X, weight, start.labels, 6, Comm())
    marker = _split.SplitProposal(1.0, X[0], X[1], 1.0, 1.0, 1.0)
    known = [_split.CellProposal(cell.rows, marker) for cell in fresh]
    known[2] = _split.CellProposal(fresh[2].rows[1:], marker)  # one row fewer: not the same cell
    again = _split._cell_proposals(X, weight, start.labels, 6, Comm(), known)
    assert all(again[k].proposal is marker for k in range(6) if k != 2)
    assert again[2].proposal is not marker and torch.equal(again[2].proposal.left, fresh[2].proposal.left)
    options = dict(n_trials=8, max_iter=300, variance=1.0)
    plain, n_plain = _split.split_merge(X, weight, start, **options)
    reused, n_reused = _split.split_merge(X, weight, start, **options, known=fresh)
    assert torch.equal(plain.means, reused.means) and torch.equal(plain.labels, reused.labels)
    assert n_plain == n_reused


@settings(max_examples=60, deadline=None, derandomize=True)
@given(cells(), st.integers(1, 5), st.integers(0, 2**16))
def test_a_labelled_cells_proposal_is_propose_splits_of_its_rows(cell_data, n_labels, seed):
    """The rows labelled k and their proposal by ``labelled_proposal`` (two compiled calls) equal
    ``nonzero(labels == k)`` and ``propose_split`` of those rows, number for number; cells it does
    not take (more than 8 features, fewer than two rows, no weight) give None."""
    from kmeans_limit.inference._two_means import labelled_proposal

    X, u = cell_data
    labels = torch.randint(0, n_labels, (X.shape[0],), generator=torch.Generator().manual_seed(seed))
    for k in range(n_labels + 1):  # the last label is held by no row
        rows = torch.nonzero(labels == k).flatten()
        found = labelled_proposal(X, u, labels, k)
        if X.shape[1] > 8 or rows.numel() < 2 or u[rows].sum() <= 0:
            assert found is None
            continue
        got_rows, got = found
        want = _split.propose_split(X, u[rows], index=rows)
        assert torch.equal(got_rows, rows)
        assert got.critical_sigma2 == want.critical_sigma2 and got.gain == want.gain
        assert got.left_mass == want.left_mass and got.right_mass == want.right_mass
        assert torch.equal(got.left, want.left) and torch.equal(got.right, want.right)
        assert got.left.dtype == X.dtype


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_features", [2, 8, 9])
def test_annealing_with_labelled_proposals_is_annealing_without(monkeypatch, dtype, n_features):
    """Annealing (weighted, far from the origin) gives the same path and fit whether its cells'
    proposals come from ``labelled_proposal`` or from ``propose_split`` of the gathered rows."""
    from kmeans_limit.inference import _two_means, anneal

    generator = torch.Generator().manual_seed(n_features)
    centres = 6.0 * torch.randn(9, n_features, generator=generator, dtype=torch.float64)
    X = centres[torch.arange(1800) % 9] + torch.randn(
        1800, n_features, generator=generator, dtype=torch.float64
    )
    X = (X * 1e-3 + 50.0).to(dtype)
    weight = torch.rand(1800, generator=generator, dtype=torch.float64).to(dtype) + 0.5
    fast = anneal(X, 9, seed=1, sample_weight=weight)
    monkeypatch.setattr(_two_means, "labelled_proposal", lambda *args: None)
    plain = anneal(X, 9, seed=1, sample_weight=weight)
    assert torch.equal(fast.means, plain.means) and torch.equal(fast.labels, plain.labels)
    assert torch.equal(fast.path.sigma, plain.path.sigma) and torch.equal(fast.path.means, plain.path.means)
    assert torch.equal(fast.critical_sigmas, plain.critical_sigmas) and fast.n_iter == plain.n_iter
