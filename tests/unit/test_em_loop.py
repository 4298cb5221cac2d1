"""The compiled EM loop (``_em_loop``), the compiled critical σ and nearby rows (``_critical``) and
Lloyd's loop on arrays (``_lloyd_host``) against the array code they replace.

``em_iterations`` and annealing's local EM take :func:`compiled_em` for small CPU problems; the
references are the array loop they replace (E steps by ``sufficient_stats``, M steps by ``m_step``,
written out here as ``_levels`` and ``em`` had them), on prepared rows at offsets far from the
origin, tiny and huge scales, float32 and float64, sample weights with zeros, a subset of rows with
the other rows' statistics added. One EM run is a chaotic map in float32 (each step's rounding
moves the next), so the float64 runs are held to 1e-9 of the scale over ten iterations and the
float32 ones over two (where the compiled M step's float32 arithmetic and the tensors' differ in
the order of a sum at most: a few ulps of the statistics, 1e-4 of the scale with room). Lloyd's
loop on arrays does the tensor loop's operations in the same order: equal bit for bit.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kmeans_limit.inference import _critical, _em_loop  # the kernels themselves: no public twin
from kmeans_limit.inference._comm import Comm
from kmeans_limit.inference.data import prepare_data
from kmeans_limit.inference.em import m_step
from kmeans_limit.inference.kernels import SufficientStats, negligible_logit, sufficient_stats

F64 = torch.float64


@st.composite
def problems(draw):
    """Prepared rows of a blob mixture at an offset and scale, centroids, log-weights, σ, weights."""
    dtype = draw(st.sampled_from([torch.float32, F64]))
    n_features = draw(st.sampled_from([1, 2, 5, 12]))
    n_clusters = draw(st.integers(1, 6))
    n_samples = draw(st.integers(n_clusters, 300))
    scale = 10.0 ** draw(st.floats(-6.0, 6.0))
    offset = draw(st.sampled_from([0.0, 1e3, 1e6 if dtype == F64 else 1e3]))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    centres = 3.0 * torch.randn(n_clusters, n_features, generator=generator, dtype=F64)
    X0 = centres[torch.arange(n_samples) % n_clusters]
    X0 = X0 + torch.randn(n_samples, n_features, generator=generator, dtype=F64)
    data = prepare_data((scale * (X0 + offset)).to(dtype))
    means = data.rows[torch.randperm(n_samples, generator=generator)[:n_clusters]].clone()
    log_weights = torch.full((n_clusters,), -math.log(n_clusters), dtype=dtype)
    sigma = scale * 10.0 ** draw(st.floats(math.log10(0.3), math.log10(3.0)))
    weight = torch.rand(n_samples, generator=generator, dtype=F64).to(dtype)
    weight[torch.rand(n_samples, generator=generator) < 0.2] = 0.0
    weight[0] = 1.0  # some weight in every case
    return data.rows, means, log_weights, sigma, weight, scale, draw(st.booleans())


def array_loop(
    X,
    means,
    log_weights,
    sigma,
    weight,
    *,
    learn,
    max_iter,
    tol,
    floor,
    rows=None,
    outside=None,
    final_e=True,
):
    """The loops of ``em_iterations`` (``final_e``) and of annealing's local EM, on tensors."""

    def e_step(means, log_weights):
        stats = sufficient_stats(X, means, log_weights, sigma, sample_weight=weight, rows=rows)
        if outside is None:
            return stats
        return SufficientStats(
            *(a + b for a, b in zip(stats[:3], outside[:3], strict=True)),
            None,
            stats.log_likelihood + outside.log_likelihood,
            stats.entropy + outside.entropy,
        )

    def m(stats, means):
        new_means, new_log_weights, _ = m_step(
            stats, means, learn_weights=learn, learn_sigma=False, sigma=sigma
        )
        return new_means, new_log_weights.clamp_min(floor)

    history, n_iter = [], 0
    if final_e:
        stats = e_step(means, log_weights)
        history.append(stats.log_likelihood)
        for _ in range(max_iter):
            means, log_weights = m(stats, means)
            n_iter += 1
            stats = e_step(means, log_weights)
            history.append(stats.log_likelihood)
            if abs(history[-1] - history[-2]) <= tol:
                break
        return means, log_weights, n_iter, history
    for _ in range(max_iter):
        stats = e_step(means, log_weights)
        history.append(stats.log_likelihood)
        if len(history) > 1 and abs(history[-1] - history[-2]) <= tol:
            break
        means, log_weights = m(stats, means)
        n_iter += 1
    return means, log_weights, n_iter, history


@settings(max_examples=60, deadline=None, derandomize=True)
@given(problems(), st.booleans(), st.sampled_from([0.0, 1e-3, math.inf]))
def test_compiled_em_is_the_array_loop(problem, local, relative_tol):
    X, means, log_weights, sigma, weight, scale, learn = problem
    float64 = X.dtype == F64
    max_iter = 10 if float64 else 2
    total = weight.sum().item()
    tol = relative_tol * total  # 0: every iteration; inf: one M step
    floor = math.log(torch.finfo(X.dtype).tiny)
    options = dict(learn=learn, max_iter=max_iter, tol=tol, floor=floor)
    compiled_options = dict(learn_weights=learn, max_iter=max_iter, tol=tol, min_log_weight=floor)
    rows = outside = None
    if local:  # a subset of the rows visited, the statistics of the others added
        rows = torch.nonzero(torch.arange(X.shape[0]) % 3 != 1).flatten()
        others = torch.nonzero(torch.arange(X.shape[0]) % 3 == 1).flatten()
        outside = sufficient_stats(X, means, log_weights, sigma, sample_weight=weight, rows=others)
    expected = array_loop(
        X, means, log_weights, sigma, weight, rows=rows, outside=outside, final_e=not local, **options
    )
    fit = _em_loop.compiled_em(
        X,
        means,
        log_weights,
        sigma,
        sample_weight=weight,
        rows=rows,
        outside=outside,
        final_e=not local,
        **compiled_options,
    )
    assert fit.n_iter == expected[2]
    assert len(fit.history) == len(expected[3])
    tolerance = 1e-9 if float64 else 1e-4
    torch.testing.assert_close(fit.means, expected[0], rtol=0, atol=tolerance * scale)
    torch.testing.assert_close(fit.log_weights.exp(), expected[1].exp(), rtol=0, atol=tolerance)
    spread = abs(expected[3][0]) + total * (X.shape[1] + 1)
    np.testing.assert_allclose(fit.history, expected[3], rtol=0, atol=tolerance * spread)
    assert means.data_ptr() != fit.means.data_ptr()  # the caller's tensors are left as they were


def test_em_iterations_takes_the_compiled_loop_and_keeps_its_results():
    """``em_iterations`` on a small CPU problem: the compiled loop, the array loop's numbers."""
    from kmeans_limit.inference.em import em_iterations

    generator = torch.Generator().manual_seed(3)
    X = prepare_data(torch.randn(400, 3, generator=generator, dtype=F64) + 50.0).rows
    means, log_weights = X[:4].clone(), torch.full((4,), -math.log(4), dtype=F64)
    assert _em_loop.takes_compiled_em(X, means, log_weights, 0.8, None, _em_loop.Comm(), X.shape[0])
    options = dict(weight=None, learn_weights=True, learn_sigma=False, max_iter=50, tol=1e-9)
    result, stats = em_iterations(X, means, log_weights, 0.8, **options)
    expected = array_loop(
        X, means, log_weights, 0.8, None, learn=True, max_iter=50, tol=1e-9 * 400, floor=-math.inf
    )
    assert result.n_iter == expected[2] and result.converged == (expected[2] < 50)
    torch.testing.assert_close(result.means, expected[0], rtol=0, atol=1e-10)
    closing = sufficient_stats(X, result.means, result.weights.log(), 0.8)
    torch.testing.assert_close(stats.counts, closing.counts, rtol=1e-12, atol=1e-9)
    assert stats.log_likelihood == pytest.approx(closing.log_likelihood, rel=1e-12)


def weighted_top_eigenvalue(X, u):
    """``λ_max`` of ``Σ u (x − m)(x − m)ᵀ / Σ u`` in float64, by NumPy."""
    x, u = X.double().numpy(), u.double().numpy()
    mean = u @ x / u.sum()
    z = x - mean
    return float(np.linalg.eigvalsh((z * u[:, None]).T @ z / u.sum())[-1])


@pytest.mark.parametrize("n_features", [1, 3, 9, 40, 64, 130])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("n_rows", [2, 30, 700])
def test_hard_cell_eigenvalue_is_numpys(n_features, dtype, n_rows):
    """Fewer rows than features (the Gram matrix) and more (the covariance, in chunks of rows; from
    128 features Lanczos on the centred rows first, which on this noise does not settle in its
    budget: the covariance after all)."""
    generator = torch.Generator().manual_seed(n_features * n_rows)
    X = (1e4 + torch.randn(900, n_features, generator=generator, dtype=F64) * 1e-2).to(dtype)
    rows = torch.randperm(900, generator=generator)[:n_rows]
    u = torch.rand(n_rows, generator=generator, dtype=F64).to(dtype)
    lam = _critical.top_eigenvalue(_critical.hard_cell_matrix(X, u, rows))
    expected = weighted_top_eigenvalue(X[rows], u)
    assert lam == pytest.approx(expected, rel=1e-9 if dtype == F64 else 1e-5)
    assert _critical.hard_top_eigenvalue(X, u, rows) == pytest.approx(
        expected, rel=1e-9 if dtype == F64 else 1e-5
    )


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("n_features", [2, 12, 160])
def test_soft_cell_eigenvalue_is_the_responsibility_weighted_one(dtype, n_features):
    """γ from the level's terms, the rows found from the nearest centroids: float64 formulas over all
    rows; from the covariance and (160 features: Lanczos on the centred rows) from :func:`cell_top`."""
    generator = torch.Generator().manual_seed(n_features)
    centres = 4.0 * torch.randn(5, n_features, generator=generator, dtype=F64)
    X0 = centres[torch.arange(2000) % 5] + torch.randn(2000, n_features, generator=generator, dtype=F64)
    X = prepare_data((X0 * 1e3 + 1e4).to(dtype)).rows
    means = torch.stack([X[torch.arange(2000) % 5 == k].mean(0) for k in range(5)])
    log_weights = torch.log_softmax(torch.randn(5, generator=generator, dtype=F64), 0).to(dtype)
    weight = torch.rand(2000, generator=generator, dtype=F64).to(dtype)
    sigma = 1.5e3
    terms = X.new_empty(2, 2000)
    sufficient_stats(X, means, log_weights, sigma, sample_weight=weight, row_terms=terms)
    d2 = torch.cdist(X.double(), means.double()).square()
    min_sq, labels = d2.min(1)
    logits = log_weights.double() - d2 / (2 * sigma**2)
    for k in range(5):
        gamma = torch.softmax(logits, 1)[:, k]
        expected = weighted_top_eigenvalue(X, weight.double() * gamma)
        threshold = math.log(1e-3 * torch.finfo(dtype).eps)
        floor = negligible_logit(dtype)
        cell = (X, weight, labels, min_sq.to(dtype), means, log_weights, k, sigma, threshold, terms, floor)
        lam = _critical.top_eigenvalue(_critical.soft_cell_matrix(*cell))
        assert lam == pytest.approx(expected, rel=1e-9 if dtype == F64 else 1e-4), k
        top = _critical.cell_top(*_critical.soft_cell_rows(*cell), vector=False)
        assert top.value == pytest.approx(lam, rel=1e-12), k


@pytest.mark.parametrize("short", [0, 1, 37])
def test_soft_cell_rows_counted_short_are_found_again(monkeypatch, short):
    """The rows are counted before they are weighed; if the count came out short (the two passes
    should agree), the weighing runs again with room for every row and the matrix is the same."""
    generator = torch.Generator().manual_seed(11)
    X = prepare_data(torch.randn(1500, 3, generator=generator, dtype=F64) * 5.0).rows
    means = X[:4].clone()
    log_weights = torch.full((4,), -math.log(4.0), dtype=F64)
    weight = torch.ones(1500, dtype=F64)
    terms = X.new_empty(2, 1500)
    sufficient_stats(X, means, log_weights, 2.0, sample_weight=weight, row_terms=terms)
    d2 = torch.cdist(X, means).square()
    min_sq, labels = d2.min(1)
    threshold = math.log(1e-3 * torch.finfo(F64).eps)
    cell = (X, weight, labels, min_sq, means, log_weights, 1, 2.0, threshold, terms, negligible_logit(F64))
    expected = _critical.soft_cell_matrix(*cell)
    counted = _critical._count_near
    monkeypatch.setattr(
        _critical, "_count_near", lambda *args: max(counted(*args) - short - 1, 0) if short else 0
    )
    np.testing.assert_array_equal(_critical.soft_cell_matrix(*cell), expected)


def test_top_eigenvalue_of_known_matrices():
    assert _critical.top_eigenvalue(np.zeros((0, 0))) == 0.0
    for size in (1, 5, 20):
        order = np.random.default_rng(size).permutation(size)
        matrix = np.diag(np.arange(size, dtype=np.float64))[order][:, order].copy()  # symmetric
        assert _critical.top_eigenvalue(matrix) == size - 1
    assert _critical.top_eigenvalue(-np.eye(3)) == 0.0  # at least 0: a covariance's


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_nearby_rows_are_the_rows_the_bound_keeps(dtype):
    """``log π_k − β‖x − μ_k‖² ≥ log π_z − β d2_z + log t`` row by row, in float64 (rows within
    1e-3 of the boundary in float32 may fall either way)."""
    generator = torch.Generator().manual_seed(5)
    X = prepare_data((torch.randn(3000, 3, generator=generator, dtype=F64) * 1e2 + 1e5).to(dtype)).rows
    means = X[:6].clone()
    log_weights = torch.log_softmax(torch.randn(6, generator=generator, dtype=F64), 0).to(dtype)
    d2 = torch.cdist(X.double(), means.double()).square()
    min_sq, labels = d2.min(1)
    sigma, threshold = 40.0, 1e-4
    beta = 1.0 / (2 * sigma**2)
    for k in range(6):
        margin = (log_weights[k].double() - beta * d2[:, k]) - (
            log_weights.double()[labels] - beta * min_sq + math.log(threshold)
        )
        rows = _critical.nearby_rows(X, labels, min_sq.to(dtype), means, log_weights, k, sigma, threshold)
        kept = torch.zeros(3000, dtype=torch.bool)
        kept[rows] = True
        assert torch.equal(rows, torch.sort(rows).values)  # in order
        sure = margin.abs() > (0.0 if dtype == F64 else 1e-3)
        assert torch.equal(kept[sure], (margin >= 0)[sure]), k
        assert 0 < rows.numel() < 3000


@pytest.mark.parametrize("n_near", [1400, 1500, 1600, 3000])
def test_nearby_rows_of_most_rows_are_those_rows(n_near):
    """Where at least half the rows are kept they come back as a view of the buffer, not a copy:
    still exactly those rows, in order, and none past them. Two groups of rows 141 apart at σ = 1:
    centroid 0 may hold only the ``n_near`` rows on top of it."""
    X = torch.cat([torch.zeros(n_near, 2), torch.full((3000 - n_near, 2), 100.0)]).double()
    means = torch.tensor([[0.0, 0.0], [100.0, 100.0]], dtype=F64)
    log_weights = torch.tensor([0.0, 0.0], dtype=F64)
    labels = (torch.arange(3000) >= n_near).long()
    min_sq = torch.zeros(3000, dtype=F64)
    rows = _critical.nearby_rows(X, labels, min_sq, means, log_weights, 0, 1.0, 1e-4)
    assert torch.equal(rows, torch.arange(n_near))


def test_problems_too_large_to_gather_once_take_the_array_loop(monkeypatch):
    """The EM loop gathers a problem's rows once; past ``PREPARED_BYTES`` ``em_iterations`` runs its
    array loop (E steps gathering a chunk at a time) and reaches the same fit."""
    from kmeans_limit.inference.em import em_iterations

    generator = torch.Generator().manual_seed(11)
    X = prepare_data(torch.randn(700, 9, generator=generator, dtype=F64) + 3.0).rows
    means, log_weights = X[:5].clone(), torch.full((5,), -math.log(5), dtype=F64)
    weight = torch.rand(700, generator=generator, dtype=F64)
    options = dict(weight=weight, learn_weights=True, learn_sigma=False, max_iter=6, tol=0.0)
    terms = [X.new_zeros(2, 700), X.new_zeros(2, 700)]
    assert _em_loop.takes_compiled_em(X, means, log_weights, 0.9, weight, Comm(), 700)
    once = em_iterations(X, means, log_weights, 0.9, row_terms=terms[0], **options)
    monkeypatch.setattr(_em_loop, "PREPARED_BYTES", 700 * (2 * 9 + 4) * 8 - 1)
    assert not _em_loop.takes_compiled_em(X, means, log_weights, 0.9, weight, Comm(), 700)
    chunked = em_iterations(X, means, log_weights, 0.9, row_terms=terms[1], **options)
    assert once[0].n_iter == chunked[0].n_iter == 6
    torch.testing.assert_close(once[0].means, chunked[0].means, rtol=0, atol=1e-12)
    torch.testing.assert_close(terms[0], terms[1], rtol=1e-12, atol=1e-12)
    assert (terms[0] != 0).any()


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("local", [False, True])
def test_rows_gathered_earlier_give_the_same_fit_and_stay_as_they_were(dtype, local):
    """``compiled_em(..., gathered=gather_rows(...))``: the fit of gathering them itself, bit for bit,
    and the gathered arrays are only read (annealing passes the same ones to every level)."""
    generator = torch.Generator().manual_seed(5)
    X = prepare_data((torch.randn(500, 6, generator=generator, dtype=F64) * 1e3 + 1e5).to(dtype)).rows
    weight = torch.rand(500, generator=generator, dtype=F64).to(dtype)
    means, log_weights = X[:4].clone(), torch.full((4,), -math.log(4), dtype=dtype)
    rows = torch.arange(0, 500, 2) if local else None
    options = dict(sample_weight=weight, learn_weights=True, max_iter=8, tol=0.0, min_log_weight=-80.0)
    options.update(rows=rows, final_e=not local)
    gathered = _em_loop.gather_rows(X, weight, rows)
    copies = [array.copy() for array in gathered]
    fits = [_em_loop.compiled_em(X, means, log_weights, 1e3, **options, gathered=g) for g in (gathered, None)]
    assert fits[0].n_iter == fits[1].n_iter == 8 and fits[0].history == fits[1].history
    assert torch.equal(fits[0].means, fits[1].means) and torch.equal(fits[0].log_weights, fits[1].log_weights)
    assert all(np.array_equal(a, b) for a, b in zip(gathered, copies, strict=True))


def test_annealing_gathers_every_row_once_and_anneals_as_without(monkeypatch):
    """The levels that visit every row share one gathering (``Annealer._all_rows``); the annealed
    path and fit are those of gathering the rows afresh at each level."""
    from kmeans_limit.inference import anneal
    from kmeans_limit.inference._levels import Annealer

    generator = torch.Generator().manual_seed(2)
    centres = 6.0 * torch.randn(6, 16, generator=generator, dtype=F64)
    X = centres[torch.arange(600) % 6] + torch.randn(600, 16, generator=generator, dtype=F64) + 40.0
    calls = []
    original = _em_loop.gather_rows

    def counted(X, weight, rows=None):
        calls.append(rows is None)
        return original(X, weight, rows)

    with monkeypatch.context() as patch:
        patch.setattr(_em_loop, "gather_rows", counted)
        shared = anneal(X, 6)
    with monkeypatch.context() as patch:
        patch.setattr(Annealer, "_all_rows", lambda self: None)
        fresh = anneal(X, 6)
    assert calls.count(True) == 1, calls  # every row gathered once, for all the levels
    assert torch.equal(shared.means, fresh.means) and torch.equal(shared.labels, fresh.labels)
    assert torch.equal(shared.path.log_likelihood, fresh.path.log_likelihood)
    assert torch.equal(shared.critical_sigmas, fresh.critical_sigmas) and shared.n_iter == fresh.n_iter


def _blobs_in(n_features: int, n_rows: int = 1024, seed: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    centres = 6.0 * torch.randn(8, n_features, generator=generator, dtype=F64)
    noise = torch.randn(n_rows, n_features, generator=generator, dtype=F64)
    return centres[torch.arange(n_rows) % 8] + noise + 30.0


def test_critical_sigmas_measured_in_the_background_are_those_measured_inline(monkeypatch):
    """On two threads a small problem's critical σ are measured on the background thread from
    copies of the level (``Annealer.step``); the fit, the path and every critical σ are those of
    measuring each one inline, while the level that follows writes over the originals."""
    from kmeans_limit.inference import _levels, anneal

    X = _blobs_in(64)  # 1024 × 64²: BACKGROUND_WORK
    assert X.shape[0] * X.shape[1] ** 2 >= _levels.BACKGROUND_WORK
    where = []
    measured = _critical.soft_cell_rows

    def recorded(*cell):
        where.append(threading.current_thread().name)
        return measured(*cell)

    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(_critical, "soft_cell_rows", recorded)
            background = anneal(X, 8)
        with monkeypatch.context() as patch:
            patch.setattr(_levels, "idle_threads", lambda: 0)
            inline = anneal(X, 8)
    finally:
        torch.set_num_threads(previous)
    assert where and all(name.startswith("kmeans-limit-background") for name in where), where
    assert torch.equal(background.critical_sigmas, inline.critical_sigmas)
    assert torch.equal(background.means, inline.means) and torch.equal(background.labels, inline.labels)
    assert torch.equal(background.path.log_likelihood, inline.path.log_likelihood)
    assert background.n_iter == inline.n_iter


def test_an_error_measuring_in_the_background_reaches_the_caller(monkeypatch):
    from kmeans_limit.inference import anneal

    def broken(*cell):
        raise FloatingPointError("in the background")

    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(_critical, "soft_cell_rows", broken)
        with pytest.raises(FloatingPointError, match="in the background"):
            anneal(_blobs_in(64), 8)
    finally:
        torch.set_num_threads(previous)


def test_cheap_critical_sigmas_and_one_thread_stay_inline(monkeypatch):
    """Below ``BACKGROUND_WORK`` (here 1024 × 8²), and on one thread, no level hands its critical σ over."""
    from kmeans_limit.inference import _levels, anneal

    handed = []
    monkeypatch.setattr(_critical, "in_background", lambda function: handed.append(1) or function())
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        anneal(_blobs_in(8), 8)
        torch.set_num_threads(1)
        anneal(_blobs_in(64), 8)
    finally:
        torch.set_num_threads(previous)
    assert handed == []
    assert 1024 * 8**2 < _levels.BACKGROUND_WORK


class _Elsewhere(Comm):
    """The single-process Comm under another type: ``lloyd_rows`` then takes its tensor loop."""


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize(("n_features", "n_clusters"), [(2, 6), (20, 9)])
def test_lloyd_on_arrays_is_the_tensor_loop(dtype, weighted, n_features, n_clusters):
    """Same centroids, labels, iterations and inertia, bit for bit, empty clusters relocated too
    (centroids started on one row: all but one cluster empty after the first step)."""
    from kmeans_limit.inference.lloyd import lloyd_rows

    generator = torch.Generator().manual_seed(n_features)
    X = prepare_data(
        (torch.randn(600, n_features, generator=generator, dtype=F64) * 1e3 + 1e5).to(dtype)
    ).rows
    weight = torch.rand(600, generator=generator, dtype=F64).to(dtype) if weighted else None
    starts = [X[:n_clusters].clone(), X[:1].repeat(n_clusters, 1) + 1e-3 * torch.arange(n_clusters)[:, None]]
    for means in starts:
        for tol in (0.0, 1e-2):
            host = lloyd_rows(X, means.to(dtype), weight, max_iter=300, tol=tol)
            tensor = lloyd_rows(X, means.to(dtype), weight, max_iter=300, tol=tol, comm=_Elsewhere())
            assert torch.equal(host.means, tensor.means) and torch.equal(host.labels, tensor.labels)
            assert host.n_iter == tensor.n_iter and host.converged == tensor.converged
            assert host.inertia == tensor.inertia
