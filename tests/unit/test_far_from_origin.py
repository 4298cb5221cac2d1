"""Property tests: the posterior's fast paths equal the program's traced densities on any data.

Data ``X = b + s·Z`` (Z three blobs of unit spread) with scales ``s`` from 1e-6 to 1e6, offsets ``b``
up to 1e4·s in float32 and 1e8·s in float64, in both dtypes, prepared once by ``prepare_data``. The
fast paths run as ``fit_posterior`` runs them: in X's dtype, on ``data.rows``, with the data-scaled
priors shifted by ``data.offset`` and parameters in the rows' frame. The reference is the program
(``pyro.poutine.trace`` of ``spherical_gmm`` / ``spherical_gmm_marginal``, and Pyro's own potential
of the marginal program) in float64 on the centred data ``X − x̄`` with the same parameters moved by
``x̄ − offset``: the densities do not change under that shift, so the two must agree.

Tolerances. Every fast path expands ``‖x − μ‖²/2σ² = (‖x‖² − 2x·μ + ‖μ‖²)/2σ²`` in its dtype, so
its rounding error is a few ulps (``eps`` of the dtype) of the terms of that expansion, which the
centred reference bounds by ``W_n = (‖x_n − x̄‖ + max_k ‖μ_k‖)²/σ²`` per row (the rows the fast path
sees are centred, or uncentred only where ``‖x̄‖²`` is below the variance, which changes ``W_n`` by a
factor of at most about 4). Each bound below is ``C·eps·`` (the derivative of the checked quantity with
respect to those terms) with ``C = 8·(D + 2)``: D + 2 roundings in a dot product and its bias, a
factor 4 for uncentred rows and 2 to spare. Over 1000 examples of each test the largest ratio of
error to bound was 0.07 (the assignment logits), 0.03 or less for the others. The bounds are
measured on the centred data, not on what the fast path did: rows left at 1e4·s in float32 (or
1e8·s in float64) have terms ~1e8 (1e16) times larger, and a fast path run on them (``prepare_data``
made never to centre) failed even bounds 8 times wider in 17-32% of the examples, by factors up to
1e9, in every test but the means conditional's (linear in the data, its rounding grows only like the
offset: 7%, by up to 368).
"""

from typing import NamedTuple

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pyro.ops.integrator import potential_grad

from kmeans_limit.inference import pyro_samplers as samplers
from kmeans_limit.inference.data import Data, prepare_data
from kmeans_limit.inference.density import pointwise_log_likelihood
from kmeans_limit.inference.gibbs import (
    AssignmentStats,
    GibbsState,
    assignment_logits,
    means_conditional,
    sigma2_conditional,
    weights_conditional,
)
from kmeans_limit.inference.idata import PosteriorDraws, to_inference_data
from kmeans_limit.models import Priors, data_scaled_priors, spherical_gmm, spherical_gmm_marginal

N, K = 20, 3
EPS64 = torch.finfo(torch.float64).eps
SETTINGS = settings(max_examples=20, deadline=None)  # about a second a test


class Case(NamedTuple):
    """One data set and parameter value, in the fast path's frame and in the reference's."""

    dtype: torch.dtype
    data: Data  # prepare_data(X)
    rows: torch.Tensor  # data.rows, X's dtype
    priors: Priors  # data-scaled priors, in the data's units
    priors_rows: Priors  # the same shifted by data.offset
    weights: torch.Tensor  # (K,) in X's dtype
    means: torch.Tensor  # (K, D) in the rows' frame, X's dtype
    sigma: torch.Tensor  # () in X's dtype
    z: torch.Tensor  # (N,) an assignment
    centred: torch.Tensor  # X − x̄ in float64: the reference data
    priors_ref: Priors  # the same priors shifted by x̄
    weights_ref: torch.Tensor  # float64, renormalized
    means_ref: torch.Tensor  # float64, the same means in the centred frame
    sigma_ref: torch.Tensor  # float64
    shift: torch.Tensor  # x̄ − offset (float64): rows = centred + shift

    @property
    def eps(self) -> float:
        return torch.finfo(self.dtype).eps

    @property
    def C(self) -> float:
        return 8.0 * (self.means.shape[1] + 2)

    def magnitudes(self) -> torch.Tensor:
        """``W_n = (‖x_n − x̄‖ + max_k ‖μ_k‖)²/σ²`` on the centred data, shape (N,)."""
        reach = self.centred.norm(dim=1) + self.means_ref.norm(dim=1).max()
        return (reach / self.sigma_ref) ** 2

    def reference_error(self) -> float:
        """A bound on the rounding of the float64 reference itself: 1000 ulps of its largest terms."""
        n_features = self.means.shape[1]
        log_sigma = abs(float(self.sigma_ref.log()))
        return 1e3 * EPS64 * float(1.0 + self.magnitudes().sum() + N * n_features * (1.0 + log_sigma))


@st.composite
def cases(draw) -> Case:
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    n_features = draw(st.integers(1, 3))
    scale = 10.0 ** draw(st.floats(-6.0, 6.0))
    top = 4.0 if dtype == torch.float32 else 8.0
    ratio = 10.0 ** draw(st.floats(-1.0, top))  # the offset's size in units of the spread s
    component = st.tuples(st.sampled_from([-1.0, 1.0]), st.floats(0.25, 1.0)).map(lambda t: t[0] * t[1])
    direction = torch.tensor(draw(st.lists(component, min_size=n_features, max_size=n_features)))
    sigma_std = draw(st.floats(0.3, 3.0))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    normal = lambda *shape: torch.randn(*shape, generator=generator, dtype=torch.float64)  # noqa: E731
    centres = 3.0 * normal(K, n_features)
    z = torch.randint(K, (N,), generator=generator)
    Z = centres[z] + normal(N, n_features)
    X = (ratio * scale * direction.double() + scale * Z).to(dtype)
    data = prepare_data(X)
    centre = X.double().mean(0)
    shift = centre - data.offset.double()
    means_centred = scale * (centres + 0.3 * normal(K, n_features) - Z.mean(0))
    means = (means_centred + shift).to(dtype)
    weights = torch.softmax(0.5 * normal(K), 0).to(dtype)
    sigma = torch.tensor(scale * sigma_std, dtype=dtype)
    priors = data_scaled_priors(data.mean, data.variance)
    return Case(
        dtype,
        data,
        data.rows,
        priors,
        priors.shifted(data.offset),
        weights,
        means,
        sigma,
        z,
        X.double() - centre,
        priors.shifted(centre),
        weights.double() / weights.double().sum(),
        means.double() - shift,
        sigma.double(),
        shift,
    )


def joint_trace(case: Case, means=None, sigma=None, weights=None, z=None):
    """The program's trace in float64 on the centred data, conditioned on every latent site."""
    data = {
        "weights": case.weights_ref if weights is None else weights,
        "means": case.means_ref if means is None else means,
        "sigma": case.sigma_ref if sigma is None else sigma,
        "z": case.z if z is None else z,
    }
    conditioned = pyro.condition(spherical_gmm, data=data)
    return pyro.poutine.trace(conditioned).get_trace(case.centred, n_clusters=K, priors=case.priors_ref)


def stats_of(rows: torch.Tensor, z: torch.Tensor) -> AssignmentStats:
    """The statistics of an assignment, one chain, in the rows' dtype (as the sampler makes them)."""
    one_hot = torch.nn.functional.one_hot(z, K).to(rows.dtype).T
    return AssignmentStats(
        one_hot.sum(-1)[None], (one_hot @ rows)[None], (one_hot @ (rows * rows).sum(-1))[None]
    )


def assert_within(error, bound) -> None:
    """Every error at most its bound (tensors or floats, broadcast)."""
    error, bound = torch.as_tensor(error, dtype=torch.float64), torch.as_tensor(bound, dtype=torch.float64)
    assert (error <= bound).all(), f"error {error.max().item():.3g} over bound {bound.min().item():.3g}"


def spread(values) -> float:
    """``max − min`` of a list of floats: 0 when they differ by a constant."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.max() - values.min())


@SETTINGS
@given(cases())
def test_pointwise_log_likelihood_equals_the_program(case):
    """The fast pointwise log-likelihood (in X's dtype) and the stored one of to_inference_data
    (float64, on the centred rows) against the marginal program's per-row density.

    Bound: the log-density of row n rounds as its terms, ``W_n`` plus ``D·|log 2πσ²|`` for the normal
    constant and 1 for the log-sum-exp; the stored one is float64 whatever the dtype.
    """
    conditioned = pyro.condition(
        spherical_gmm_marginal,
        data={"weights": case.weights_ref, "means": case.means_ref, "sigma": case.sigma_ref},
    )
    trace = pyro.poutine.trace(conditioned).get_trace(case.centred, n_clusters=K, priors=case.priors_ref)
    trace.compute_log_prob()
    reference = trace.nodes["x"]["log_prob"]
    log_norm = case.means.shape[1] * abs(np.log(2 * np.pi * case.sigma_ref.item() ** 2))
    bound = case.C * case.eps * (1.0 + case.magnitudes() + log_norm) + case.reference_error()
    fast = pointwise_log_likelihood(case.rows, case.weights[None], case.means[None], case.sigma[None])[0]
    assert_within((fast.double() - reference).abs(), bound)
    # Stored: float64 on data.rows, which are X − offset rounded in X's dtype (exactly, far from the
    # origin, where X and the offset agree to within a factor 2): the same bound holds.
    draws = PosteriorDraws(case.weights[None, None], case.means[None, None], case.sigma[None, None], {}, {})
    idata = to_inference_data(draws, case.data, sigma=None, priors=case.priors, attrs={})
    stored = torch.as_tensor(idata.log_likelihood["x"].values[0, 0])
    assert stored.dtype == torch.float64
    assert_within((stored - reference).abs(), bound)


@SETTINGS
@given(cases())
def test_the_gibbs_weights_and_means_conditionals_are_the_joint_up_to_a_constant(case):
    """``log q(v) − log p(X, z, v, rest)`` is the same at several values v of the updated variable.

    Weights: Dirichlet(α + N_k) with exact counts, float64 rounding only. Means: the conditional's
    loc and scale carry relative errors ~eps of ``max ‖x‖ + ‖m0‖`` and of 1; at ``v = loc + scale·ε``
    the log-density moves by ``‖ε‖·δloc/scale + ‖ε‖²·δscale/scale`` per component.
    """
    stats = stats_of(case.rows, case.z)
    concentration = weights_conditional(stats.counts, case.priors_rows)[0].double()
    values = dist.Dirichlet(torch.ones(K, dtype=torch.float64)).sample((4,))
    differences = []
    for v in values:
        joint = joint_trace(case, weights=v).log_prob_sum().item()
        differences.append(dist.Dirichlet(concentration).log_prob(v).item() - joint)
    assert_within(spread(differences), case.reference_error())

    loc, scale = means_conditional(stats, case.sigma[None], case.priors_rows)
    loc, scale = loc[0].double(), scale[0].double()[:, None]  # (K, D), (K, 1)
    generator = torch.Generator().manual_seed(0)
    noise = [torch.randn(loc.shape, generator=generator, dtype=torch.float64) for _ in range(4)]
    differences = []
    for eps in noise:
        v = loc + scale * eps  # in the rows' frame; the reference's is v − shift
        q = dist.Normal(loc, scale).log_prob(v).sum().item()
        differences.append(q - joint_trace(case, means=v - case.shift).log_prob_sum().item())
    m0 = torch.tensor(case.priors_ref.m0, dtype=torch.float64)
    reach = case.centred.norm(dim=1).max() + case.means_ref.norm(dim=1).max() + m0.norm()
    largest = max(e.norm().item() for e in noise)
    bound = case.C * case.eps * K * (largest * (reach / scale.min()).item() + largest**2 + 1.0)
    assert_within(spread(differences), bound + case.reference_error())


@SETTINGS
@given(cases())
def test_the_gibbs_sigma_conditional_is_the_joint_up_to_a_constant(case):
    """σ² | z, means ~ InverseGamma(a, rate), as a density of σ (with its Jacobian 2σ).

    ``rate = b0 + Σ_k (Q_k − 2μ_k·S_k + N_k‖μ_k‖²)/2`` rounds as its terms, at most
    ``σ²·Σ_n W_n/2``; at σ_j the log-density depends on rate through ``−rate/σ_j²``.
    """
    stats = stats_of(case.rows, case.z)
    concentration, rate = sigma2_conditional(stats, case.means[None], case.priors_rows)
    concentration, rate = concentration[0].double(), rate[0].double()
    mode = (rate / (concentration + 1.0)).sqrt()
    values = [mode * f for f in (0.7, 1.0, 1.4)]
    differences = []
    for sigma in values:
        q = dist.InverseGamma(concentration, rate).log_prob(sigma**2) + torch.log(2 * sigma)
        differences.append(q.item() - joint_trace(case, sigma=sigma).log_prob_sum().item())
    rate_error = case.C * case.eps * (case.sigma_ref**2 * case.magnitudes().sum() / 2 + case.priors_rows.b0)
    bound = rate_error * abs(1 / values[0] ** 2 - 1 / values[-1] ** 2)
    assert_within(spread(differences), bound.item() + case.reference_error())


@SETTINGS
@given(cases())
def test_the_gibbs_assignment_conditional_is_the_joint_up_to_a_constant(case):
    """``log q(z_n = k)`` against the terms of the joint that z_n changes, ``log w_k + log N(x_n | μ_k)``,
    traced with every z_n = k. The logits round as ``W_n``; log-softmax adds ~eps of their range."""
    state = GibbsState(case.weights[None], case.means[None], case.sigma[None])
    fast = torch.log_softmax(assignment_logits(case.rows, state)[0].T, -1).double()  # (N, K)
    program = []
    for k in range(K):
        trace = joint_trace(case, z=torch.full((N,), k))
        trace.compute_log_prob()
        program.append(trace.nodes["z"]["log_prob"] + trace.nodes["x"]["log_prob"])
    program = torch.stack(program, -1)  # (N, K): the changing terms of the joint
    differences = fast - program
    spreads = differences.amax(-1) - differences.amin(-1)
    assert_within(spreads, case.C * case.eps * (1.0 + case.magnitudes()) + case.reference_error())


@SETTINGS
@given(cases())
def test_the_nuts_potential_and_its_gradient_equal_pyros_traced_potential(case):
    """ClosedFormPotential on the rows against Pyro's potential of the marginal program on the centred
    data (``initialize_model``, gradient by autograd), at the same θ moved by the shift.

    Bounds: the value rounds as ``Σ_n (1 + W_n)``; a responsibility moves by ~eps·(1 + W_n), which
    moves ∂/∂u by that, ∂/∂μ by that times ``‖x_n − μ_k‖/σ² ≤ √W_n/σ`` and ∂/∂log σ by that times
    ``W_n``.
    """
    n_features = case.means.shape[1]
    layout = samplers.FlatLayout(K, n_features, True)
    # θ in float64 (the potential takes it so); only the pass over the rows runs in their dtype.
    theta_rows = layout.pack(case.weights_ref, case.means.double(), case.sigma_ref)
    theta_ref = layout.pack(case.weights_ref, case.means_ref, case.sigma_ref)
    closed_form = samplers.ClosedFormPotential(case.rows, layout, case.priors_rows)
    value, grads = closed_form.value_and_grad({"theta": theta_rows})
    model_kwargs = {"n_clusters": K, "sigma": None, "priors": case.priors_ref}
    program = samplers._program_potential(case.centred, model_kwargs, layout, seed=0, jit_compile=False)
    expected_grads, expected = potential_grad(program, {"theta": theta_ref})
    W = case.magnitudes()
    value_bound = case.C * case.eps * (1.0 + W).sum() + case.reference_error()
    assert_within(abs(value.item() - expected.item()), value_bound)
    per_row = case.C * case.eps * (1.0 + W)
    bound = torch.empty(layout.size, dtype=torch.float64)
    bound[: K - 1] = per_row.sum()
    bound[K - 1 : -1] = (per_row * W.sqrt()).sum() / case.sigma_ref
    bound[-1] = (per_row * (1.0 + W)).sum()
    error = (grads["theta"] - expected_grads["theta"]).abs()
    assert_within(error, bound + case.reference_error() * (1.0 + bound / (case.C * case.eps)))
