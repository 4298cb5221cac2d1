"""The chunked kernels against dense textbook formulas and against the Pyro program."""

import math

import pyro
import pytest
import torch
from pyro.infer import TraceEnum_ELBO

from kmeans_limit.inference.kernels import (
    chunk_rows,
    hard_temperature,
    log_responsibilities,
    nearest_centroid,
    row_sq_norms,
    squared_distances,
    sufficient_stats,
)
from kmeans_limit.models import spherical_gmm, spherical_gmm_marginal


@pytest.fixture
def problem():
    generator = torch.Generator().manual_seed(1)
    X = 3.0 * torch.randn(97, 3, generator=generator, dtype=torch.float64) + 10.0
    means = X[[3, 40, 77, 90]] + 0.1
    weights = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    sample_weight = torch.rand(97, generator=generator, dtype=torch.float64) * 2.0
    return X, means, weights, sample_weight


def dense_responsibilities(X, means, weights, sigma):
    """The textbook expressions, no tricks."""
    d2 = ((X[:, None, :] - means[None]) ** 2).sum(-1)
    log_joint = weights.log() - d2 / (2 * sigma**2) - 0.5 * X.shape[1] * math.log(2 * math.pi * sigma**2)
    log_density = torch.logsumexp(log_joint, -1)
    return log_joint - log_density[:, None], log_density


def test_chunk_rows_cover_every_row_once():
    slices = list(chunk_rows(10, 3, chunk_size=4))
    assert [(s.start, s.stop) for s in slices] == [(0, 4), (4, 8), (8, 10)]
    assert sum(s.stop - s.start for s in chunk_rows(1000, 7)) == 1000


def test_squared_distances_and_row_norms_match_differences(problem):
    X, means, _, _ = problem
    expected = ((X[:, None, :] - means[None]) ** 2).sum(-1)
    assert torch.allclose(squared_distances(X, means), expected, rtol=1e-10, atol=1e-9)
    assert (squared_distances(means, means).diagonal() >= 0).all()
    assert torch.allclose(row_sq_norms(X), (X * X).sum(-1), rtol=1e-14)


def test_nearest_centroid_matches_dense_argmin(problem):
    X, means, _, _ = problem
    d2 = ((X[:, None, :] - means[None]) ** 2).sum(-1)
    labels, min_sq = nearest_centroid(X, means, chunk_size=10)
    assert torch.equal(labels, d2.argmin(-1))
    assert torch.allclose(min_sq, d2.min(-1).values, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("sigma", [30.0, 3.0, 0.3, 0.03])
def test_log_responsibilities_match_dense_formulas(problem, sigma):
    X, means, weights, _ = problem
    log_gamma, log_density = log_responsibilities(X, means, weights.log(), sigma)
    expected_gamma, expected_density = dense_responsibilities(X, means, weights, sigma)
    assert torch.allclose(log_gamma.exp(), expected_gamma.exp(), atol=1e-12)
    assert torch.allclose(log_density, expected_density, rtol=1e-10, atol=1e-8)


@pytest.mark.parametrize("sigma", [10.0, 3.0, 1.0, 0.5])
def test_log_responsibilities_are_the_programs_marginals_of_z(problem, sigma):
    X, means, weights, _ = problem
    model = pyro.condition(spherical_gmm, data={"means": means, "weights": weights})
    marginals = TraceEnum_ELBO(max_plate_nesting=1).compute_marginals(
        model, lambda *args, **kwargs: None, X, n_clusters=4, sigma=sigma
    )
    log_gamma, log_density = log_responsibilities(X, means, weights.log(), sigma)
    assert torch.allclose(marginals["z"].probs, log_gamma.exp(), atol=1e-10, rtol=0)
    marginal = pyro.condition(spherical_gmm_marginal, data={"means": means, "weights": weights})
    trace = pyro.poutine.trace(marginal).get_trace(X, n_clusters=4, sigma=sigma)
    trace.compute_log_prob()
    expected = trace.nodes["x"]["log_prob_sum"].item()
    assert log_density.sum().item() == pytest.approx(expected, rel=1e-12, abs=1e-10)


def test_zero_sigma_is_one_hot_nearest_centroid(problem):
    X, means, weights, _ = problem
    log_gamma, log_density = log_responsibilities(X, means, weights.log(), 0.0)
    labels = nearest_centroid(X, means)[0]
    assert torch.equal(log_gamma.exp(), torch.nn.functional.one_hot(labels, 4).double())
    assert torch.isneginf(log_density).all()
    assert hard_temperature(0.0, torch.float64)
    assert hard_temperature(1e-30, torch.float32) and not hard_temperature(1e-30, torch.float64)


def test_components_of_weight_zero_get_no_responsibility(problem):
    X, means, _, _ = problem
    log_weights = torch.tensor([-math.inf, math.log(0.5), math.log(0.5), -math.inf], dtype=torch.float64)
    log_gamma, log_density = log_responsibilities(X, means, log_weights, 1.0)
    assert torch.isfinite(log_density).all()
    assert (log_gamma[:, [0, 3]].exp() == 0).all()
    stats = sufficient_stats(X, means, log_weights, 1.0)
    assert math.isfinite(stats.entropy) and math.isfinite(stats.log_likelihood)
    assert stats.counts[[0, 3]].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("sigma", [5.0, 1.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
def test_sufficient_stats_match_dense_sums(problem, sigma, weighted):
    X, means, weights, sample_weight = problem
    w = sample_weight if weighted else torch.ones(X.shape[0], dtype=X.dtype)
    stats = sufficient_stats(
        X, means, weights.log(), sigma, sample_weight=sample_weight if weighted else None,
        scatter=True, chunk_size=13,
    )  # fmt: skip
    log_gamma, log_density = dense_responsibilities(X, means, weights, sigma)
    gamma = log_gamma.exp() * w[:, None]
    assert torch.allclose(stats.counts, gamma.sum(0), rtol=1e-12)
    assert torch.allclose(stats.sums, gamma.T @ X, rtol=1e-11)
    assert torch.allclose(stats.sums_sq, gamma.T @ (X * X).sum(-1), rtol=1e-11)
    assert torch.allclose(stats.scatter, torch.einsum("nk,ni,nj->kij", gamma, X, X), rtol=1e-11)
    assert stats.log_likelihood == pytest.approx((w * log_density).sum().item(), rel=1e-11)
    entropy = -(w[:, None] * log_gamma.exp() * log_gamma).sum().item()
    assert stats.entropy == pytest.approx(entropy, rel=1e-9, abs=1e-12)


def test_sufficient_stats_do_not_depend_on_the_chunks(problem):
    X, means, weights, sample_weight = problem
    whole = sufficient_stats(X, means, weights.log(), 0.7, sample_weight=sample_weight)
    pieces = sufficient_stats(X, means, weights.log(), 0.7, sample_weight=sample_weight, chunk_size=7)
    for a, b in zip(whole[:3], pieces[:3], strict=True):
        assert torch.allclose(a, b, rtol=1e-12)
    assert whole.log_likelihood == pytest.approx(pieces.log_likelihood, rel=1e-12)


def test_hard_sufficient_stats_are_lloyd_statistics(problem):
    X, means, weights, sample_weight = problem
    stats = sufficient_stats(X, means, weights.log(), 0.0, sample_weight=sample_weight)
    labels = nearest_centroid(X, means)[0]
    one_hot = torch.nn.functional.one_hot(labels, 4).double() * sample_weight[:, None]
    assert torch.allclose(stats.counts, one_hot.sum(0))
    assert torch.allclose(stats.sums, one_hot.T @ X)
    assert stats.entropy == 0.0 and stats.log_likelihood == -math.inf


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("below", [0.25, 0.6])
def test_responsibilities_below_the_negligible_floor_are_zero_and_change_no_sum(problem, dtype, below):
    """At low σ many logits fall below the floor: those responsibilities are exactly 0 (never
    subnormal), and the rest and every statistic agree with the textbook sums taken in float64."""
    from kmeans_limit.inference.kernels import _tempered, negligible_logit

    X, means, weights, sample_weight = problem
    floor = negligible_logit(dtype)
    d2 = ((X[:, None, :] - means[None]) ** 2).sum(-1)
    gap = (d2 - d2.amin(-1, keepdim=True)) / 2.0  # −(shifted logit)·σ², up to the weights
    sigma = math.sqrt(gap[gap > 0].quantile(1.0 - below).item() / -floor.logit)  # `below` of them under
    log_gamma, log_density = dense_responsibilities(X, means, weights, sigma)
    shifted = log_gamma - log_gamma.amax(-1, keepdim=True)
    cast = lambda t: t.to(dtype)  # noqa: E731
    x, m, lw, sw = cast(X), cast(means), cast(weights.log()), cast(sample_weight)
    gamma = _tempered(x, m, lw, sigma).gamma
    under = shifted < floor.logit - 1.0
    assert under.float().mean() > below / 2  # the floor is met
    assert (gamma[under] == 0).all() and not ((gamma > 0) & (gamma < torch.finfo(dtype).tiny)).any()
    # Rounding of the logits: about 2β · max ‖x‖² · eps (the expansion's cancellation), in log space.
    slack = 8.0 * (X * X).sum(-1).max().item() / sigma**2 * torch.finfo(dtype).eps
    kept = shifted > floor.logit + 1.0 + slack
    assert torch.allclose(gamma[kept].double().log(), log_gamma[kept], rtol=0.0, atol=slack + 1e-12)
    stats = sufficient_stats(x, m, lw, sigma, sample_weight=sw)
    w = sample_weight[:, None] * log_gamma.exp()
    rtol = max(slack, 1e-10)
    assert torch.allclose(stats.counts.double(), w.sum(0), rtol=rtol, atol=1e-12)
    assert torch.allclose(stats.sums.double(), w.T @ X, rtol=rtol, atol=1e-9)
    assert stats.log_likelihood == pytest.approx((sample_weight * log_density).sum().item(), rel=rtol)


def test_float32_kernels_stay_finite_at_tiny_sigma(problem):
    X, means, weights, _ = problem
    X32, means32, log_w32 = X.float(), means.float(), weights.log().float()
    for sigma in [1e-3, 1e-8, 1e-19, 1e-30]:
        stats = sufficient_stats(X32, means32, log_w32, sigma)
        assert torch.isfinite(stats.counts).all() and torch.isfinite(stats.sums).all()
        assert not math.isnan(stats.log_likelihood) and not math.isnan(stats.entropy)
        assert stats.counts.sum().item() == pytest.approx(X.shape[0], rel=1e-5)


def test_finite_check_finds_nan_and_inf_and_passes_sums_that_overflow():
    from kmeans_limit.inference.validation import as_data

    X = torch.full((1 << 19, 4), 3e38, dtype=torch.float32)  # every entry finite, their sum is not
    assert as_data(X).data_ptr() == X.data_ptr()  # no copy
    for bad in (math.nan, math.inf, -math.inf):
        X[300_000, 2] = bad  # in the second chunk of 2**20 entries
        with pytest.raises(ValueError, match=r"X holds NaN or inf \(first at index \(300000, 2\)\)"):
            as_data(X)
        X[300_000, 2] = 1.0


def test_serial_contexts_keep_the_callers_thread_count_for_the_compiled_step():
    from kmeans_limit.inference.kernels import cpu_threads, serial_if_small

    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with serial_if_small(10):
            assert torch.get_num_threads() == 1
            assert cpu_threads() == 2
            with serial_if_small(10):  # nested: still the caller's count
                assert cpu_threads() == 2
        assert cpu_threads() == torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


def test_background_work_runs_on_its_own_thread_in_the_callers_context():
    import threading

    from kmeans_limit.inference.kernels import idle_threads, in_background, serial_if_small

    previous = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        with serial_if_small(10):
            seen = in_background(lambda: (threading.current_thread().name, idle_threads())).result()
    finally:
        torch.set_num_threads(previous)
    assert seen[0].startswith("kmeans-limit-background") and seen[0] != threading.current_thread().name
    assert seen[1] == 2  # the serial context came along
    with pytest.raises(ZeroDivisionError):
        in_background(lambda: 1 / 0).result()


@pytest.mark.parametrize("threads", [1, 3])
def test_idle_threads_are_the_callers_but_one_inside_a_serial_context(threads):
    from kmeans_limit.inference.kernels import idle_threads, serial_if_small

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert idle_threads() == 0  # outside: the pools have every thread
        with serial_if_small(10):
            assert idle_threads() == threads - 1
        with serial_if_small(1 << 40):  # a large problem: the pools keep their threads
            assert idle_threads() == 0
    finally:
        torch.set_num_threads(previous)


def test_tensors_that_require_grad_are_fitted_without_their_graph():
    from kmeans_limit.inference import anneal, em, lloyd

    X = torch.randn(200, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    for fit in (lloyd(X, X[:3], tol=0.0), anneal(X, 3), em(X, X[:3], max_iter=500)):
        assert not fit.means.requires_grad and torch.isfinite(fit.means).all()
    assert X.grad is None
