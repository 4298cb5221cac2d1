"""The compiled E step (sufficient statistics at σ > 0 on the CPU) against float64 formulas.

``sufficient_stats`` takes the compiled path for CPU tensors (``kmeans_limit.inference._estep``);
test_far_data_properties holds it to the Pyro program's densities on prepared rows. Here it meets a
direct float64 evaluation of the same sums, ``γ = softmax(log π − ‖x − μ‖²/2σ²)``, over the cases
the fast path must get right on any data: offsets far from the origin, tiny and huge scales,
float32 and float64, sample weights with zeros, components of weight 0 (``log π = -inf``), a subset
of rows, chunks of any length. The tolerances are those of test_far_data_properties (the logits
are formed as ``x·μ − ‖μ‖²/2`` in the rows' dtype, each off by ``TOL_LOGIT = 2(D + 4)·eps·R²/σ²``).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kmeans_limit.inference import _estep  # the kernels themselves: no public twin
from kmeans_limit.inference.data import prepare_data
from kmeans_limit.inference.kernels import negligible_logit, sufficient_stats

F64 = torch.float64


def reference(X, means, log_weights, sigma, weight):
    """Float64 counts, sums, Σγ‖x‖², log-likelihood and entropy, straight from the definitions."""
    Xd, md, lw = X.double(), means.double(), log_weights.double()
    logits = lw - torch.cdist(Xd, md).square() / (2.0 * sigma**2)
    log_gamma = torch.log_softmax(logits, -1)
    gamma = log_gamma.exp()
    log_norm = 0.5 * X.shape[1] * math.log(2.0 * math.pi * sigma**2)
    log_p = torch.logsumexp(logits, -1) - log_norm
    row_entropy = -(gamma * log_gamma.nan_to_num(0.0, neginf=0.0)).sum(-1)
    w = torch.ones(X.shape[0], dtype=F64) if weight is None else weight.double()
    return (
        w @ gamma,
        (gamma * w[:, None]).T @ Xd,
        (w * (Xd * Xd).sum(-1)) @ gamma,
        torch.where(w > 0, w * log_p, 0.0).sum().item(),
        (w * row_entropy).sum().item(),
        gamma,
    )


@st.composite
def problems(draw):
    """Prepared rows of a blob mixture at an offset and scale, centroids, log-weights, σ, weights, rows."""
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    n_features = draw(st.sampled_from([1, 2, 3, 4, 5, 17]))  # both sides of DIRECT_FEATURES
    n_clusters = draw(st.integers(1, 9))
    n_samples = draw(st.integers(1, 300))
    scale = 10.0 ** draw(st.floats(-6.0, 6.0))
    offset = draw(st.sampled_from([0.0, 1e3, 1e6 if dtype == F64 else 1e3]))
    seed = draw(st.integers(0, 2**16))
    generator = torch.Generator().manual_seed(seed)
    centres = 2.0 * torch.randn(n_clusters, n_features, generator=generator, dtype=F64)
    X0 = centres[torch.arange(n_samples) % n_clusters] + torch.randn(
        n_samples, n_features, generator=generator, dtype=F64
    )
    data = prepare_data((scale * (X0 + offset)).to(dtype))
    means = data.rows[torch.randint(n_samples, (n_clusters,), generator=generator)].clone()
    means += 0.3 * scale * torch.randn(n_clusters, n_features, generator=generator, dtype=F64).to(dtype)
    log_weights = torch.log_softmax(torch.randn(n_clusters, generator=generator, dtype=F64), 0).to(dtype)
    if n_clusters > 1 and draw(st.booleans()):
        log_weights[draw(st.integers(0, n_clusters - 1))] = -math.inf  # a component of weight 0
    sigma = scale * 10.0 ** draw(st.floats(math.log10(0.05), math.log10(5.0)))
    weight = None
    if draw(st.booleans()):
        weight = torch.rand(n_samples, generator=generator, dtype=F64).to(dtype)
        weight[torch.rand(n_samples, generator=generator) < 0.2] = 0.0
    rows = None
    if draw(st.booleans()):
        rows = torch.nonzero(torch.rand(n_samples, generator=generator) < 0.6).flatten()
    chunk = draw(st.sampled_from([None, 1, 7, 64]))
    return data.rows, means, log_weights, sigma, weight, rows, chunk


@settings(max_examples=120, deadline=None, derandomize=True)
@given(problems())
def test_compiled_e_step_equals_the_float64_sums(problem):
    X, means, log_weights, sigma, weight, rows, chunk = problem
    stats = sufficient_stats(X, means, log_weights, sigma, sample_weight=weight, rows=rows, chunk_size=chunk)
    if rows is not None:
        X, weight = X[rows], None if weight is None else weight[rows]
    counts, sums, sums_sq, log_likelihood, entropy, gamma = reference(X, means, log_weights, sigma, weight)
    eps = torch.finfo(X.dtype).eps
    size = (
        (X.double() ** 2).sum(-1).max().item() + (means.double() ** 2).sum(-1).max().item() if len(X) else 0.0
    )
    n_features = X.shape[1]
    tol_gamma = 4.0 * (n_features + 4) * eps * size / sigma**2 + 4.0 * eps
    w = torch.ones(X.shape[0], dtype=F64) if weight is None else weight.double()
    mass = w.sum().item()
    assert stats.counts.dtype == X.dtype and stats.sums.shape == means.shape
    assert (stats.counts.double() - counts).abs().max().item() <= mass * tol_gamma + 1e-300
    assert (stats.sums.double() - sums).abs().max().item() <= mass * math.sqrt(size) * (
        tol_gamma + 4 * eps
    ) + 1e-300
    assert (stats.sums_sq.double() - sums_sq).abs().max().item() <= mass * size * (
        tol_gamma + 4 * eps
    ) + 1e-300
    log_p_tol = (3.0 * tol_gamma + 8.0 * eps * (abs(log_likelihood) / max(mass, 1e-300) + 1.0)) * mass
    assert abs(stats.log_likelihood - log_likelihood) <= log_p_tol + 1e-300
    # The entropy: each row's moves by at most its γ's change times the logits' range.
    spread = size / sigma**2 + 50.0
    assert abs(stats.entropy - entropy) <= mass * means.shape[0] * tol_gamma * spread + 1e-9 * max(
        entropy, 1.0
    )
    if len(X) and not math.isinf(log_weights.min().item()):
        k = int(torch.argmax(log_weights))
        column = responsibility_column(X, torch.arange(X.shape[0]), means, log_weights, sigma, k)
        assert (column.double() - gamma[:, k]).abs().max().item() <= tol_gamma


@settings(max_examples=80, deadline=None, derandomize=True)
@given(
    st.sampled_from([np.float32, np.float64]),
    st.integers(1, _estep.DIRECT_FEATURES + 2),
    st.integers(1, 40),
    st.integers(1, 200),
    st.floats(-6.0, 6.0),
    st.sampled_from([0.0, 1e3, 1e6]),
    st.integers(0, 2**16),
)
def test_chunk_scores_are_the_products_plus_bias_within_rounding(
    dtype, n_features, n_clusters, n_rows, log_scale, offset, seed
):
    """The scores ``μ·x + bias`` of a chunk, from the loop (few features) or BLAS (more), against
    extended precision: within ``(D + 1)`` roundings of ``Σ |μ_t x_t| + |bias|``."""
    if np.finfo(np.longdouble).eps >= np.finfo(dtype).eps:
        pytest.skip("this platform's long double is no wider than the dtype: no extended reference")
    rng = np.random.default_rng(seed)
    scale = 10.0**log_scale
    x = (scale * (rng.standard_normal((n_rows, n_features)) + offset)).astype(dtype)
    means = (scale * (rng.standard_normal((n_clusters, n_features)) + offset)).astype(dtype)
    bias = (scale**2 * rng.standard_normal(n_clusters)).astype(dtype)
    scores = _estep.chunk_scores(means, x, bias)
    assert scores.dtype == dtype and scores.shape == (n_clusters, n_rows)
    wide = lambda a: a.astype(np.longdouble)  # noqa: E731
    exact = wide(means) @ wide(x).T + wide(bias)[:, None]
    size = np.abs(wide(means)) @ np.abs(wide(x)).T + np.abs(wide(bias))[:, None]
    bound = (n_features + 1) * np.finfo(dtype).eps * size
    assert (np.abs(wide(scores) - exact) <= bound).all()


def responsibility_column(X, rows, means, log_weights, sigma, k):
    return _estep.tempered_column(X, rows, means, log_weights, sigma, k, negligible_logit(X.dtype))


def test_negligible_responsibilities_are_zero_and_the_rest_sum_to_one():
    """Far components get exactly 0 (below the dtype's floor), and a row's γ sum to 1 within rounding."""
    for dtype in (torch.float32, F64):
        X = torch.tensor([[0.0], [1.0], [50.0]], dtype=dtype)
        means = torch.tensor([[0.0], [1.0], [1e4]], dtype=dtype)
        column = responsibility_column(
            X, torch.arange(3), means, torch.zeros(3, dtype=dtype).log_softmax(0), 0.5, 2
        )
        assert column.tolist() == [0.0, 0.0, 0.0]
        total = sum(
            responsibility_column(
                X, torch.arange(3), means, torch.zeros(3, dtype=dtype).log_softmax(0), 0.5, k
            )
            for k in range(3)
        )
        assert torch.allclose(total.double(), torch.ones(3, dtype=F64), atol=4 * torch.finfo(dtype).eps)


@pytest.mark.parametrize(("dtype", "low"), [(np.float64, 708.0), (np.float32, 87.0)])
def test_exp_nonpositive_is_within_one_ulp(dtype, low):
    """The vectorisable exponential against float64's over its whole range, in each dtype."""

    @numba.njit
    def evaluate(x, out):
        for i in range(x.shape[0]):
            out[i] = _estep.exp_nonpositive(x[i])

    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            [0.0, -0.0, -1e-300, -5e-324, -math.log(2) / 2, -math.log(2), -1.0, -low],
            -rng.uniform(0.0, low, 200_000),
            -rng.uniform(0.0, 1.0, 50_000),
            -np.arange(1, int(low / math.log(2))) * math.log(2),  # the reduction's edges: x = -n ln 2
        ]
    ).astype(dtype)
    out = np.empty_like(x)
    evaluate(x, out)
    assert out.dtype == dtype
    expected = np.exp(x.astype(np.float64))  # exact to float64's rounding, far below dtype's ulp
    assert out[0] == 1.0 and out[1] == 1.0
    ulp = np.spacing(expected.astype(dtype)).astype(np.float64)
    assert (np.abs(out.astype(np.float64) - expected) <= ulp).all()


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_a_gradient_or_another_dtype_takes_the_array_path(dtype):
    """Tensors that need a gradient are left to torch's operations, which give the same numbers."""
    generator = torch.Generator().manual_seed(3)
    X = torch.randn(50, 3, generator=generator, dtype=dtype)
    means = X[:4].clone()
    log_weights = torch.full((4,), -math.log(4), dtype=dtype)
    compiled = sufficient_stats(X, means, log_weights, 0.8)
    traced = sufficient_stats(X, means.clone().requires_grad_(), log_weights, 0.8)
    eps = torch.finfo(dtype).eps
    assert torch.allclose(compiled.counts, traced.counts.detach(), rtol=100 * eps, atol=100 * eps)
    assert torch.allclose(compiled.sums, traced.sums.detach(), rtol=100 * eps, atol=100 * eps)
    assert math.isclose(compiled.log_likelihood, traced.log_likelihood, rel_tol=100 * eps)
    assert math.isclose(compiled.entropy, traced.entropy, rel_tol=1e3 * eps)


@pytest.mark.parametrize("with_rows", [False, True])
def test_blocks_on_two_threads_give_the_one_thread_statistics(with_rows):
    """Rows cut into one block a thread (each summing its own statistics, added in block order).

    The blocks' chunks of rows start elsewhere than the one-thread chunks, so the BLAS products are
    of other shapes, and a BLAS may round a float32 score otherwise by shape (OpenBLAS' Haswell
    kernels on an AMD EPYC did, by 8e-12 of the log-likelihood). Each row's density and entropy
    then move by at most ``4β`` times the scores' rounding, ``8 eps (‖x‖ max‖μ‖ + max‖μ‖²)``: the
    bound below, 1.4e-6 of the total, about a ninth of what one row lost or counted twice moves it.
    """
    generator = torch.Generator().manual_seed(5)
    X = torch.randn(40_000, 16, generator=generator, dtype=torch.float32)
    means = X[:16].clone()
    log_weights = torch.full((16,), -math.log(16), dtype=torch.float32)
    weight = torch.rand(40_000, generator=generator, dtype=torch.float32)
    rows = torch.arange(0, 40_000, 1, dtype=torch.long).flip(0) if with_rows else None
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = sufficient_stats(X, means, log_weights, 1.5, sample_weight=weight, rows=rows)
        torch.set_num_threads(2)
        two = sufficient_stats(X, means, log_weights, 1.5, sample_weight=weight, rows=rows)
    finally:
        torch.set_num_threads(saved)
    assert torch.allclose(one.counts, two.counts, rtol=1e-5)
    assert torch.allclose(one.sums, two.sums, rtol=1e-5, atol=1e-2)
    largest = means.norm(dim=1).max().item()
    beta = 1.0 / (2.0 * 1.5**2)
    terms = (X.norm(dim=1).double() * largest + largest**2) * weight.double()
    bound = 4.0 * beta * 8.0 * torch.finfo(torch.float32).eps * terms.sum().item()
    assert bound < 0.25 * abs(one.log_likelihood) / 40_000  # under a quarter of one row's average share
    assert abs(one.log_likelihood - two.log_likelihood) <= bound
    assert abs(one.entropy - two.entropy) <= bound


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_row_terms_are_each_rows_top_score_and_lse(dtype):
    """``row_terms``: max_k t_nk and log Σ_k exp(2β (t_nk − max)) of each visited row, others untouched."""
    generator = torch.Generator().manual_seed(11)
    X = torch.randn(300, 3, generator=generator, dtype=F64).to(dtype)
    means = X[:5].clone()
    log_weights = torch.log_softmax(torch.randn(5, generator=generator, dtype=F64), 0).to(dtype)
    sigma = 0.7
    rows = torch.arange(0, 300, 2)
    terms = torch.full((2, 300), -7.0, dtype=dtype)
    sufficient_stats(X, means, log_weights, sigma, rows=rows, row_terms=terms)
    Xd, md = X.double(), means.double()
    t = Xd @ md.T - 0.5 * (md * md).sum(-1) + sigma**2 * log_weights.double()
    top = t.max(-1).values
    lse = torch.logsumexp((t - top[:, None]) / sigma**2, -1)
    eps = torch.finfo(dtype).eps
    assert torch.allclose(terms[0, rows].double(), top[rows], rtol=0, atol=64 * eps * t.abs().max().item())
    assert torch.allclose(
        terms[1, rows].double(), lse[rows], rtol=0, atol=64 * eps * t.abs().max().item() / sigma**2
    )
    assert (terms[:, 1::2] == -7.0).all()
