"""Property tests: the E step and the inertia on data far from the origin equal the program's.

The Pyro program is the specification. For data X = s·X0 + o (spread s, offset o up to 1e4 spreads
in float32 and 1e8 in float64, s from 1e-6 to 1e6) held in float32 or float64, the fast path, which
works on ``prepare_data(X).rows`` with the parameters moved by ``Data.to_rows``, must give the
densities that ``pyro.poutine.trace`` of :func:`spherical_gmm` / :func:`spherical_gmm_marginal`
gives in float64 on the same data centred at their float64 mean (densities do not change under a
shift, and in float64 on centred data the reference keeps ~15 digits).

Tolerances. Write ``eps`` for the machine epsilon of the data's dtype, ``D`` for the number of
features and ``R² = max_n ‖x_n − x̄‖² + max_k ‖μ_k − x̄‖²`` (the squared size of the problem in the
centred frame, a few spreads² here). The kernels compute the logits ``log π_k − ‖x_n − μ_k‖²/2σ²``
from ``x·μ − ‖μ‖²/2`` in the rows' dtype: a dot product of D terms rounds by at most about
``D·eps·‖x‖‖μ‖``, the centred rows and the moved centroids are themselves rounded by ``eps`` of
their (centred) size, so each logit is off by at most ``TOL_LOGIT = 2(D + 4)·eps·R²/σ²`` (a factor
2 of slack over ``(D + 4)``). Softmax moves each responsibility by at most twice the largest change
of a logit, so γ is compared to ``2·TOL_LOGIT + eps``; ``log p(x_n)`` adds ``‖x‖² − 2 max t`` at the
same precision and its own rounding, so it is compared to ``3·TOL_LOGIT + 4·eps·|log p|``. That
bound is only useful where σ is not tiny against the spread: σ ranges over [0.05, 5] spreads (below,
float32 responsibilities are ill-conditioned for any implementation: a logit is ``R²/σ²`` ≈ 1e4
times bigger than its digits). Were the rows not centred, R² would be ``o²`` (up to 1e8 spreads² in
float32) and these bounds would fail by orders of magnitude: that is what the test guards.
"""

from __future__ import annotations

import math

import pyro
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import make_blobs

from kmeans_limit.inference import anneal, kmeans_objective, lloyd
from kmeans_limit.inference.data import prepare_data
from kmeans_limit.inference.kernels import log_responsibilities, sufficient_stats
from kmeans_limit.models import spherical_gmm, spherical_gmm_marginal

F64 = torch.float64
N, D, K = 40, 3, 3
#: Largest offset from the origin, in spreads, per dtype.
MAX_OFFSET = {torch.float32: 1e4, torch.float64: 1e8}


def standard_problem(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows X0 (N, D) of spread ~1 about 0, centroids (K, D), weights (K,) and a unit direction (D,)."""
    generator = torch.Generator().manual_seed(seed)
    centres = 2.0 * torch.randn(K, D, generator=generator, dtype=F64)
    labels = torch.arange(N) % K
    X0 = centres[labels] + torch.randn(N, D, generator=generator, dtype=F64)
    means = centres + 0.3 * torch.randn(K, D, generator=generator, dtype=F64)
    weights = 0.1 + torch.rand(K, generator=generator, dtype=F64)
    direction = torch.randn(D, generator=generator, dtype=F64)
    return X0, means, weights / weights.sum(), direction / direction.norm()


@st.composite
def far_problems(draw):
    """(X in its dtype, means in float64 data units, weights, σ) with X at a far offset and a scale."""
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    scale = 10.0 ** draw(st.floats(-6.0, 6.0))
    top = math.log10(MAX_OFFSET[dtype])
    offset = draw(st.one_of(st.just(0.0), st.floats(-1.0, top).map(lambda e: 10.0**e)))
    sigma = scale * 10.0 ** draw(st.floats(math.log10(0.05), math.log10(5.0)))
    X0, means, weights, direction = standard_problem(draw(st.integers(0, 2**16)))
    shift = offset * scale * direction
    return (scale * X0 + shift).to(dtype), scale * means + shift, weights, sigma


def programs_densities(Xc: torch.Tensor, means_c: torch.Tensor, weights: torch.Tensor, sigma: float):
    """The program's responsibilities (N, K) and log p(x_n) (N,), traced in float64 (centred inputs)."""
    log_joint = torch.empty(Xc.shape[0], weights.shape[0], dtype=F64)
    for k in range(weights.shape[0]):
        data = {"means": means_c, "weights": weights, "z": torch.full((Xc.shape[0],), k)}
        trace = pyro.poutine.trace(pyro.condition(spherical_gmm, data=data)).get_trace(
            Xc, n_clusters=weights.shape[0], sigma=sigma
        )
        trace.compute_log_prob()
        log_joint[:, k] = trace.nodes["z"]["log_prob"] + trace.nodes["x"]["log_prob"]
    conditioned = pyro.condition(spherical_gmm_marginal, data={"means": means_c, "weights": weights})
    trace = pyro.poutine.trace(conditioned).get_trace(Xc, n_clusters=weights.shape[0], sigma=sigma)
    trace.compute_log_prob()
    return torch.softmax(log_joint, -1), trace.nodes["x"]["log_prob"]


def centred_reference(X: torch.Tensor, means: torch.Tensor):
    """The rows and centroids in float64, centred at the rows' float64 mean; and R²."""
    Xd = X.double()
    centre = Xd.mean(0)
    Xc, means_c = Xd - centre, means - centre
    size = (Xc * Xc).sum(-1).max().item() + (means_c * means_c).sum(-1).max().item()
    return Xc, means_c, centre, size


def logit_tolerance(dtype: torch.dtype, size: float, sigma: float) -> float:
    return 2.0 * (D + 4) * torch.finfo(dtype).eps * size / sigma**2


@settings(max_examples=60, deadline=None, derandomize=True)
@given(far_problems())
def test_e_step_on_prepared_rows_is_the_programs(problem):
    X, means, weights, sigma = problem
    eps = torch.finfo(X.dtype).eps
    Xc, means_c, centre, size = centred_reference(X, means)
    gamma_ref, log_p_ref = programs_densities(Xc, means_c, weights, sigma)
    tol_logit = logit_tolerance(X.dtype, size, sigma)
    tol_gamma = 2.0 * tol_logit + eps
    tol_log_p = 3.0 * tol_logit + 4.0 * eps * log_p_ref.abs()

    data = prepare_data(X)
    rows_means, log_weights = data.to_rows(means), weights.log().to(X.dtype)
    log_gamma, log_p = log_responsibilities(data.rows, rows_means, log_weights, sigma)
    assert (log_gamma.exp().double() - gamma_ref).abs().max().item() <= tol_gamma
    assert ((log_p.double() - log_p_ref).abs() <= tol_log_p).all()

    # The E step's statistics: counts, the log-likelihood, the component means and scatters.
    stats = sufficient_stats(data.rows, rows_means, log_weights, sigma)
    counts_ref = gamma_ref.sum(0)
    assert (stats.counts.double() - counts_ref).abs().max().item() <= N * tol_gamma
    assert abs(stats.log_likelihood - log_p_ref.sum().item()) <= tol_log_p.sum().item()
    # S_k / N_k is in the rows' frame: back to the reference's (centred at its own mean).
    frame = data.offset.double() - centre
    means_ref = gamma_ref.T @ Xc / counts_ref[:, None]
    fast_means = stats.sums.double() / stats.counts.double()[:, None] + frame
    tol_means = math.sqrt(size) * (N * tol_gamma + 4 * D * eps) / counts_ref
    assert ((fast_means - means_ref).norm(dim=-1) <= tol_means).all()
    scatter_ref = (gamma_ref * ((Xc[:, None, :] - means_ref[None]) ** 2).sum(-1)).sum(0)
    scatter = stats.sums_sq.double() - (stats.sums.double() ** 2).sum(-1) / stats.counts.double()
    assert ((scatter - scatter_ref).abs() <= size * N * (tol_gamma + 8 * eps)).all()


@settings(max_examples=60, deadline=None, derandomize=True)
@given(far_problems())
def test_kmeans_objective_is_the_float64_inertia_on_centred_data(problem):
    """Σ_n min_k ‖x_n − μ_k‖² to the rounding of the centred problem, ``N·2(D + 6)·eps·R²``.

    Near-ties may pick the other centroid (the choice uses the expansion, off by about
    ``(D + 4)·eps·R²``, which also bounds what such a swap costs), and each distance is then taken
    from the rounded differences.
    """
    X, means, _, _ = problem
    Xc, means_c, _, size = centred_reference(X, means)
    expected = ((Xc[:, None, :] - means_c[None]) ** 2).sum(-1).min(-1).values.sum().item()
    tolerance = N * 2.0 * (D + 6) * torch.finfo(X.dtype).eps * size
    assert abs(kmeans_objective(X, means) - expected) <= tolerance


@st.composite
def far_float32_blobs(draw):
    scale = 10.0 ** draw(st.floats(-6.0, 6.0))
    offset = 10.0 ** draw(st.floats(0.0, 4.0))
    seed = draw(st.integers(0, 2**16))
    X0, _ = make_blobs(60, centers=[[0, 0], [10, 0], [0, 10]], cluster_std=1.0, random_state=seed)
    X0 = torch.from_numpy(X0)
    direction = torch.tensor([0.8, -0.6], dtype=F64)
    return (scale * X0).float(), (scale * X0 + offset * scale * 4.0 * direction).float()


@settings(max_examples=15, deadline=None, derandomize=True)
@given(far_float32_blobs())
def test_far_float32_labels_are_those_at_offset_zero(problem):
    """float32 data up to 1e4 spreads from the origin: the labels of the data at the origin.

    The rows at the offset are rounded by ``eps·1e4`` ≈ 1e-3 spread, far less than the gaps between
    these blobs, so every label must stay.
    """
    near, far = problem
    start = [0, 1, 2]
    assert torch.equal(lloyd(far, far[start]).labels, lloyd(near, near[start]).labels)
    assert torch.equal(anneal(far, 3).labels, anneal(near, 3).labels)
