"""The top eigenpair by Lanczos iterations (``_lanczos``), and the callers that take it for wide cells.

``lanczos_top`` must give NumPy's top eigenvalue to far within the 1e-10 the annealing tests hold σ
to, and a unit vector whose residual is as small, or say that it did not settle (then the callers
fall back to LAPACK, and their answer is LAPACK's). Checked on spectra drawn over many scales: a top
eigenvalue well apart, a cluster of nearly equal ones, an exactly repeated top, a rank-one matrix,
zero, and the covariances of Gaussian blobs; the same pair from a cell's centred rows, the
covariance never formed (``lanczos_top_rows``); then annealing on 160-dimensional blobs with Lanczos
against annealing with LAPACK alone.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import make_blobs

from kmeans_limit.inference import _critical, _lanczos, anneal  # the kernel itself: no public twin
from kmeans_limit.inference._split import _top_eigenpair


def _with_spectrum(values: np.ndarray, seed: int) -> np.ndarray:
    """A symmetric matrix with eigenvalues ``values`` in a random orthonormal basis."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((len(values), len(values))))
    matrix = (q * values) @ q.T
    return (matrix + matrix.T) / 2


def _check(matrix: np.ndarray, value: float, vector: np.ndarray) -> None:
    top = np.linalg.eigvalsh(matrix)[-1]
    scale = max(abs(top), 1e-300)
    assert abs(value - top) <= 1e-12 * scale, (value, top)
    assert abs(np.linalg.norm(vector) - 1.0) <= 1e-12
    assert np.linalg.norm(matrix @ vector - value * vector) <= 1e-10 * scale


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    size=st.integers(_lanczos.LANCZOS_SIZE, 260),
    log_scale=st.floats(-6.0, 6.0),
    gap=st.sampled_from([0.5, 1e-2, 1e-4, 0.0]),
    seed=st.integers(0, 2**16),
)
def test_lanczos_top_is_numpys_or_says_it_did_not_settle(size, log_scale, gap, seed):
    """Top eigenvalue ``1 + gap`` over a bulk in [0, 1) (``gap = 0``: a repeated top), all scaled."""
    rng = np.random.default_rng(seed)
    values = np.sort(rng.uniform(0.0, 1.0, size))
    values[-1] = 1.0 + gap
    values[-2] = 1.0 if gap == 0.0 else values[-2]
    matrix = _with_spectrum(10.0**log_scale * values, seed)
    value, vector, converged = _lanczos.lanczos_top(matrix, _lanczos.MAX_STEPS, _lanczos.RESIDUAL)
    if gap >= 0.5:
        assert converged  # a top eigenvalue that stands apart settles within the steps allowed
    if converged:
        _check(matrix, value, vector)
    assert _critical.top_eigenvalue(matrix) == pytest.approx(np.linalg.eigvalsh(matrix)[-1], rel=1e-12)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(
    order=st.integers(1, 70),
    log_scale=st.floats(-150.0, 150.0),
    shape=st.sampled_from(["random", "split", "repeated", "coupled", "constant"]),
    seed=st.integers(0, 2**16),
)
def test_tridiagonal_top_pair_is_numpys(order, log_scale, shape, seed):
    """The top eigenpair of ``T_j`` (bisection, inverse iteration) against NumPy's dense solver:
    random entries, zero off-diagonals (``T`` splits into blocks), repeated blocks (a repeated top),
    the same weakly coupled (row swaps in the elimination),
    a constant diagonal with equal off-diagonals; scaled over 300 decades."""
    rng = np.random.default_rng(seed)
    alpha, beta = rng.standard_normal(order), rng.standard_normal(order)
    if shape == "split":
        beta[rng.random(order) < 0.3] = 0.0
    elif shape in ("repeated", "coupled") and order >= 2:
        half = order // 2
        alpha[half : 2 * half], beta[half : 2 * half] = alpha[:half], beta[:half]
        # Repeated: two equal blocks. Coupled, weakly: the first block's last pivot at the top
        # eigenvalue is about as small as the coupling, so that the elimination swaps rows there.
        beta[half - 1] = 0.0 if shape == "repeated" else 1e-9
    elif shape == "constant":
        alpha[:], beta[:] = 2.0, -1.0
    alpha, beta = alpha * 10.0**log_scale, beta * 10.0**log_scale
    dense = np.diag(alpha) + np.diag(beta[: order - 1], 1) + np.diag(beta[: order - 1], -1)
    value, vector = _lanczos._tridiagonal_top(alpha, beta, order)
    norm = np.abs(dense).sum(1).max()
    assert abs(value - np.linalg.eigvalsh(dense)[-1]) <= 1e-14 * order * norm, (
        value,
        np.linalg.eigvalsh(dense),
    )
    assert abs(np.linalg.norm(vector) - 1.0) <= 1e-12
    assert np.linalg.norm(dense @ vector - value * vector) <= 1e-12 * order * norm


@pytest.mark.parametrize(("centers", "n_features"), [(1, 256), (2, 256), (16, 256), (4, 130), (16, 64)])
def test_blob_covariances(centers, n_features):
    X, _ = make_blobs(n_samples=1024, n_features=n_features, centers=centers, random_state=0)
    z = X - X.mean(0)
    matrix = z.T @ z / len(X)
    value, vector, converged = _lanczos.lanczos_top(matrix, _lanczos.MAX_STEPS, _lanczos.RESIDUAL)
    assert converged or centers == 1
    if converged:
        _check(matrix, value, vector)


def test_rank_one_zero_and_deflated_matrices():
    """An invariant Krylov space ends the iterations at once, with the exact value."""
    v = np.random.default_rng(1).standard_normal(150)
    rank_one = 3.0 * np.outer(v, v) / (v @ v)
    value, vector, converged = _lanczos.lanczos_top(rank_one, _lanczos.MAX_STEPS, _lanczos.RESIDUAL)
    assert converged and value == pytest.approx(3.0, rel=1e-14)
    _check(rank_one, value, vector)
    value, _, converged = _lanczos.lanczos_top(np.zeros((140, 140)), _lanczos.MAX_STEPS, _lanczos.RESIDUAL)
    assert converged and value == 0.0
    assert _critical.top_eigenvalue(np.zeros((140, 140))) == 0.0
    diagonal = np.diag(np.linspace(0.0, 2.0, 200))  # the start vector meets every eigenvector
    value, vector, converged = _lanczos.lanczos_top(diagonal, 200, _lanczos.RESIDUAL)
    assert converged
    _check(diagonal, value, vector)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    size=st.integers(_lanczos.IMPLICIT_FEATURES, 260),
    extra_rows=st.integers(0, 300),
    log_scale=st.floats(-6.0, 6.0),
    gap=st.sampled_from([0.5, 1e-2, 0.0]),
    seed=st.integers(0, 2**16),
)
def test_lanczos_on_rows_is_numpys_top_of_their_gram_matrix(size, extra_rows, log_scale, gap, seed):
    """``lanczos_top_rows(Z)`` never forms ``ZᵀZ``: the same pair as NumPy's of it, or it says it
    did not settle, within the budget the callers give it (``implicit_steps``)."""
    rng = np.random.default_rng(seed)
    values = np.sort(rng.uniform(0.0, 1.0, size))
    values[-1] = 1.0 + gap
    values[-2] = 1.0 if gap == 0.0 else values[-2]
    n_rows = size + extra_rows
    left, _ = np.linalg.qr(rng.standard_normal((n_rows, size)))
    right, _ = np.linalg.qr(rng.standard_normal((size, size)))
    z = (left * np.sqrt(10.0**log_scale * values)) @ right.T  # ZᵀZ has eigenvalues 10^s · values
    budget = _lanczos.implicit_steps(n_rows, size)
    assert budget == size // 8
    value, vector, converged = _lanczos.lanczos_top_rows(z, budget, _lanczos.RESIDUAL)
    if converged:
        _check(z.T @ z, value, vector)
    value, vector, converged = _lanczos.lanczos_top_rows(z, _lanczos.MAX_STEPS, _lanczos.RESIDUAL)
    if gap >= 0.5:
        assert converged  # as lanczos_top on the matrix
    if converged:
        _check(z.T @ z, value, vector)


def test_only_wide_cells_of_at_least_as_many_rows_that_fit_go_to_the_rows():
    assert _lanczos.implicit_steps(1024, 256) == 32
    assert _lanczos.implicit_steps(1024, _lanczos.IMPLICIT_FEATURES - 1) == 0
    assert _lanczos.implicit_steps(255, 256) == 0  # fewer rows: the Gram matrix is smaller
    assert _lanczos.implicit_steps(_lanczos.IMPLICIT_ENTRIES // 256 + 1, 256) == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("offset", [0.0, 1e4])
@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
@pytest.mark.parametrize(("centers", "n_features", "n_rows"), [(6, 200, 900), (1, 130, 500), (3, 256, 100)])
def test_cell_top_from_the_rows_is_the_covariances(
    monkeypatch, dtype, offset, scale, centers, n_features, n_rows
):
    """:func:`_critical.cell_top`: Lanczos on the centred rows where it settles (blobs), the covariance
    where it does not (one blob of noise) or where rows are fewer than features (the Gram matrix):
    NumPy's top eigenvalue of the float64 weighted covariance, and a unit vector of it; far from the
    origin, at tiny and huge scales, in float32 and float64."""
    X, _ = make_blobs(n_samples=n_rows, n_features=n_features, centers=centers, random_state=n_features)
    x = ((X + offset) * scale).astype(np.float32 if dtype == torch.float32 else np.float64)
    rng = np.random.default_rng(0)
    index = np.sort(rng.choice(n_rows, size=n_rows - 7, replace=False))
    u = rng.uniform(0.1, 2.0, index.shape[0])
    rows = x[index].astype(np.float64)
    mean = u @ rows / u.sum()
    covariance = ((rows - mean) * u[:, None]).T @ (rows - mean) / u.sum()
    calls = []
    original = _lanczos.lanczos_top_rows
    monkeypatch.setattr(
        _lanczos, "lanczos_top_rows", lambda *args: calls.append(original(*args)[2]) or original(*args)
    )
    top = _critical.cell_top(x, index, u, vector=True)
    assert top.total == pytest.approx(u.sum(), rel=1e-14)
    np.testing.assert_allclose(top.mean, mean, rtol=1e-13, atol=1e-13 * (abs(offset) + 10) * scale)
    _check(covariance, top.value, top.vector)
    assert _critical.cell_top(x, index, u, vector=False).value == top.value
    assert calls == ([] if n_rows < n_features else [centers > 1] * 2)
    monkeypatch.setattr(_lanczos, "implicit_steps", lambda *shape: 0)  # the covariance always
    dense = _critical.cell_top(x, index, u, vector=True)
    assert dense.value == pytest.approx(top.value, rel=1e-12)
    assert abs(dense.vector @ top.vector) == pytest.approx(1.0, rel=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_callers_fall_back_to_lapack_when_lanczos_does_not_settle(monkeypatch, dtype):
    """With a step budget too small to settle, the callers give LAPACK's pair; with it, the same."""
    matrix = _with_spectrum(np.linspace(0.0, 1.0, 160) ** 3, 4)
    tensor = torch.from_numpy(matrix).to(dtype)
    expected = np.linalg.eigvalsh(tensor.double().numpy())[-1]
    tolerance = 1e-12 if dtype == torch.float64 else 1e-6
    for steps in (_lanczos.MAX_STEPS, 3):
        monkeypatch.setattr(_lanczos, "MAX_STEPS", steps)
        value, vector = _top_eigenpair(tensor)
        assert vector.dtype == dtype and value == pytest.approx(expected, rel=tolerance)
        residual = tensor.double() @ vector.double() - value * vector.double()
        assert residual.norm().item() <= 10 * tolerance * expected
        assert _critical.top_eigenvalue(matrix) == pytest.approx(np.linalg.eigvalsh(matrix)[-1], rel=1e-12)
    assert not _lanczos.lanczos_top(matrix, 3, _lanczos.RESIDUAL)[2]


def test_annealing_wide_blobs_with_lanczos_is_annealing_with_lapack(monkeypatch):
    """160 features: the cells' covariances (and, where they hold 160 rows or more, their rows) go to
    Lanczos; the fit and its σ are LAPACK's to rounding."""
    X, _ = make_blobs(n_samples=700, n_features=160, centers=8, cluster_std=2.0, random_state=1)
    X = torch.as_tensor(X + 100.0)
    calls, rows_calls = [], []
    original, original_rows = _lanczos.lanczos_top, _lanczos.lanczos_top_rows

    def counted(*args):
        calls.append(args[0].shape[0])
        return original(*args)

    def counted_rows(*args):
        rows_calls.append(args[0].shape)
        return original_rows(*args)

    with monkeypatch.context() as patch:
        patch.setattr(_lanczos, "lanczos_top", counted)
        patch.setattr(_lanczos, "lanczos_top_rows", counted_rows)
        fast = anneal(X, 8)
    with monkeypatch.context() as patch:
        patch.setattr(_lanczos, "LANCZOS_SIZE", math.inf)
        patch.setattr(_lanczos, "IMPLICIT_FEATURES", math.inf)
        dense = anneal(X, 8)
    assert calls and min(calls) >= _lanczos.LANCZOS_SIZE
    assert rows_calls and all(n >= m >= _lanczos.IMPLICIT_FEATURES for n, m in rows_calls)
    assert torch.equal(fast.labels, dense.labels) and fast.n_iter == dense.n_iter
    torch.testing.assert_close(fast.means, dense.means, rtol=0, atol=1e-9)
    assert fast.inertia == pytest.approx(dense.inertia, rel=1e-12)
    torch.testing.assert_close(fast.critical_sigmas, dense.critical_sigmas, rtol=1e-11, atol=0)
    torch.testing.assert_close(fast.split_sigmas, dense.split_sigmas, rtol=1e-11, atol=0)
