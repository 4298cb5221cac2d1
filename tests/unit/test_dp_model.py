"""The truncated DP mixture program: sites, Pyro's own inference on it, and its σ → 0 limit (DP-means)."""

import itertools
import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC, NUTS, SVI, TraceEnum_ELBO
from pyro.infer.autoguide import AutoDelta

from kmeans_limit.inference.dp_kernels import collapsed_assignment_logits, dp_means_scores, stick_log_marginal
from kmeans_limit.models import (
    DP_SITE_NAMES,
    Priors,
    dp_concentration,
    dp_gmm,
    dp_gmm_marginal,
    log_dp_concentration,
    stick_weights,
)

F64 = torch.float64


def test_sites_shapes_and_weights_from_sticks():
    with pyro.poutine.seed(rng_seed=0), pyro.poutine.trace() as tracer:
        x = dp_gmm(max_clusters=5, n_features=2, n_samples=7, sigma=0.5, dtype=F64)
    nodes = tracer.trace.nodes
    assert set(DP_SITE_NAMES) <= set(nodes) and x.shape == (7, 2)
    v, w = nodes["v"]["value"], nodes["weights"]["value"]
    assert v.shape == (4,) and w.shape == (5,) and nodes["means"]["value"].shape == (5, 2)
    assert w.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert w[0].item() == pytest.approx(v[0].item()) and w[-1].item() == pytest.approx(
        torch.prod(1 - v).item()
    )
    assert nodes["z"]["infer"]["enumerate"] == "parallel"


def test_one_component_has_no_stick_sites():
    with pyro.poutine.seed(rng_seed=0), pyro.poutine.trace() as tracer:
        dp_gmm(max_clusters=1, n_features=1, n_samples=3, sigma=1.0)
    assert tracer.trace.nodes["weights"]["value"].tolist() == [1.0]
    assert (tracer.trace.nodes["z"]["value"] == 0).all()


def test_concentration_is_alpha_of_sigma_with_a_penalty():
    priors = Priors(tau0=1.5)
    trace = pyro.poutine.trace(dp_gmm).get_trace(
        max_clusters=3, n_features=2, n_samples=1, sigma=0.7, penalty=2.0, priors=priors, dtype=F64
    )
    alpha = (
        trace.nodes["v"]["fn"].base_dist.concentration0
        if hasattr(trace.nodes["v"]["fn"], "base_dist")
        else None
    )
    alpha = trace.nodes["v"]["fn"].concentration0 if alpha is None else alpha
    expected = (1 + 1.5**2 / 0.7**2) ** 1 * math.exp(-2.0 / (2 * 0.7**2))
    assert alpha.reshape(-1)[0].item() == pytest.approx(expected, rel=1e-12)
    assert dp_concentration(0.7, 2.0, 1.5, 2).item() == pytest.approx(expected, rel=1e-12)
    assert dp_concentration(1e-3, 2.0, 1.5, 2).item() > 0  # clamped to the smallest normal, not 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(max_clusters=0), "max_clusters=0 should be an integer >= 1"),
        (dict(max_clusters=3, penalty=-1.0, sigma=1.0), r"penalty=-1.0 should be None or a positive"),
        (dict(max_clusters=3, concentration=1.0, penalty=1.0, sigma=1.0), "give one"),
        (dict(max_clusters=3, penalty=1.0, sigma=0.0), "penalty=1.0 with sigma=0"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dp_gmm(n_features=1, n_samples=2, **kwargs)


def test_ancestral_sampling_at_sigma_zero_gives_the_means():
    with pyro.poutine.seed(rng_seed=2), pyro.poutine.trace() as tracer:
        x = dp_gmm(max_clusters=6, n_features=3, n_samples=40, sigma=0.0, concentration=2.0, dtype=F64)
    nodes = tracer.trace.nodes
    assert torch.equal(x, nodes["means"]["value"][nodes["z"]["value"]])


def test_prior_draws_of_the_first_weight_are_beta_one_alpha():
    """Ancestral sampling from the prior: E π_1 = 1/(1 + α), and the occupied count grows with α."""
    draws, occupied = [], {0.3: [], 5.0: []}
    for alpha in occupied:
        for seed in range(200):
            with pyro.poutine.seed(rng_seed=seed), pyro.poutine.trace() as tracer:
                dp_gmm(max_clusters=20, n_features=1, n_samples=30, sigma=0.0, concentration=alpha, dtype=F64)
            occupied[alpha].append(tracer.trace.nodes["z"]["value"].unique().numel())
            if alpha == 5.0:
                draws.append(tracer.trace.nodes["weights"]["value"][0].item())
    mean, se = np.mean(draws), np.std(draws) / math.sqrt(len(draws))
    assert abs(mean - 1 / 6) < 4 * se
    # E[occupied] under the CRP with N = 30: Σ α/(α + i), i = 0..29
    for alpha, counts in occupied.items():
        expected = sum(alpha / (alpha + i) for i in range(30))
        assert abs(np.mean(counts) - expected) < 4 * np.std(counts) / math.sqrt(len(counts)) + 0.05 * expected


def test_marginal_equals_logsumexp_of_the_enumerated_program():
    X = torch.randn(9, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    v = torch.tensor([0.4, 0.3, 0.5], dtype=F64)
    means = torch.randn(4, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    data = {"v": v, "means": means}
    marginal = pyro.poutine.trace(pyro.condition(dp_gmm_marginal, data=data)).get_trace(
        X, max_clusters=4, sigma=0.8
    )
    marginal.compute_log_prob()
    per_k = []
    for k in range(4):
        z = torch.full((9,), k)
        trace = pyro.poutine.trace(pyro.condition(dp_gmm, data={**data, "z": z})).get_trace(
            X, max_clusters=4, sigma=0.8
        )
        trace.compute_log_prob()
        per_k.append(trace.nodes["x"]["log_prob"] + trace.nodes["z"]["log_prob"])
    expected = torch.logsumexp(torch.stack(per_k), 0)
    assert torch.allclose(marginal.nodes["x"]["log_prob"], expected, rtol=1e-12, atol=1e-12)


def test_pyro_nuts_and_trace_enum_elbo_run_and_a_fit_samples():
    X = torch.cat([torch.randn(4, 1) - 3, torch.randn(4, 1) + 3]).double()
    pyro.set_rng_seed(0)
    kernel = NUTS(dp_gmm, max_plate_nesting=1, max_tree_depth=3)
    mcmc = MCMC(kernel, num_samples=2, warmup_steps=2, disable_progbar=True)
    mcmc.run(X, max_clusters=4, penalty=4.0)
    samples = mcmc.get_samples()
    assert samples["v"].shape == (2, 3) and samples["means"].shape == (2, 4, 1)
    guide = AutoDelta(pyro.poutine.block(dp_gmm, hide=["z"]))
    svi = SVI(dp_gmm, guide, pyro.optim.Adam({"lr": 0.05}), TraceEnum_ELBO(max_plate_nesting=1))
    losses = [svi.step(X, max_clusters=4, sigma=1.0, concentration=1.0) for _ in range(5)]
    assert all(math.isfinite(loss) for loss in losses)
    # ancestral sampling from the fit: the program conditioned on the fitted globals, σ = 0
    fitted = {name: value.detach() for name, value in guide.median(X, max_clusters=4, sigma=1.0).items()}
    with pyro.poutine.seed(rng_seed=0), pyro.poutine.trace() as tracer:
        x = pyro.condition(dp_gmm, data=fitted)(
            max_clusters=4, n_features=1, n_samples=50, sigma=0.0, concentration=1.0, dtype=F64
        )
    assert torch.equal(x, fitted["means"][tracer.trace.nodes["z"]["value"]])


def _gauss_legendre(n):
    nodes, weights = np.polynomial.legendre.leggauss(n)
    return (nodes + 1) / 2, weights / 2


@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("labels", [[0, 0, 1, 2, 2], [2, 2, 2, 0], [1, 1, 0, 1, 2, 0]])
def test_stick_marginal_is_the_programs_integral_over_the_sticks(alpha, labels):
    """Gauss-Legendre with 8 nodes a stick is exact here: the integrand is a polynomial of degree ≤ 8."""
    z = torch.tensor(labels)
    nodes, weights = _gauss_legendre(8)
    total = 0.0
    for (a, wa), (b, wb) in itertools.product(
        zip(nodes, weights, strict=True), zip(nodes, weights, strict=True)
    ):
        data = {"v": torch.tensor([a, b], dtype=F64), "z": z}
        trace = pyro.poutine.trace(pyro.condition(dp_gmm, data=data)).get_trace(
            max_clusters=3, n_features=1, n_samples=len(labels), sigma=0.0, concentration=alpha, dtype=F64
        )
        trace.compute_log_prob(site_filter=lambda name, site: name in ("v", "z"))
        total += (
            wa
            * wb
            * math.exp(trace.nodes["v"]["log_prob_sum"].item() + trace.nodes["z"]["log_prob_sum"].item())
        )
    counts = torch.bincount(z, minlength=3).to(F64)
    assert stick_log_marginal(counts, math.log(alpha)).item() == pytest.approx(math.log(total), rel=1e-10)


def test_new_cluster_likelihood_is_the_programs_integral_over_an_empty_mean():
    """∫ N(x | μ, σ²) N(μ | m0, τ0²) dμ through the traced program, by Gauss-Hermite over μ (D = 1)."""
    priors, sigma, x = Priors(m0=0.5, tau0=1.2), 0.9, torch.tensor([[1.7]], dtype=F64)
    nodes, weights = np.polynomial.hermite_e.hermegauss(60)  # weight exp(−t²/2)
    total = 0.0
    for t, w in zip(nodes, weights, strict=True):
        mu = torch.tensor([[0.5 + 1.2 * t]], dtype=F64)
        data = {"means": mu, "z": torch.tensor([0])}
        trace = pyro.poutine.trace(pyro.condition(dp_gmm, data=data)).get_trace(
            x, max_clusters=1, sigma=sigma, priors=priors
        )
        trace.compute_log_prob()
        total += w / math.sqrt(2 * math.pi) * math.exp(trace.nodes["x"]["log_prob_sum"].item())
    logits = collapsed_assignment_logits(
        x[0], torch.zeros(1, dtype=F64), mu, sigma, 0.0, torch.tensor([0.5], dtype=F64), 1.2
    )
    assert logits[0].item() == pytest.approx(math.log(total), rel=1e-10)


SIGMAS = [1.0, 0.3, 0.1, 0.03, 0.01, 0.003]


@pytest.mark.parametrize("seed", range(4))
def test_collapsed_assignment_tends_to_the_dp_means_rule(seed):
    """−2σ² log p(z_n = k | z_{−n}, means) → ‖x_n − μ_k‖² (occupied) or λ (any empty one), error bounded.

    The occupied components are 0..K_occ − 1 (no gaps: a gap's stick already paid its α). The error of
    each score is at most σ² [2 (K + 1) log(N + 2) + ‖x − m0‖²/τ0²]: the stick predictive terms are
    between (N + 2)^−(K+1) and 1, and the exact factor (1 + τ0²/σ²)^(D/2) of α(σ) cancels the new
    cluster's wider normal constant.
    """
    gen = torch.Generator().manual_seed(seed)
    n_clusters, d, n_occ, penalty, tau0 = 6, 2, 3, 1.5, 2.0
    means = 2.0 * torch.randn(n_clusters, d, generator=gen, dtype=F64)
    counts = torch.zeros(n_clusters, dtype=F64)
    counts[:n_occ] = torch.randint(1, 5, (n_occ,), generator=gen).to(F64)
    m0 = torch.zeros(d, dtype=F64)
    choices = []
    for x in [means[0] + 0.3, means[1] - 0.5, 0.3 * means[0] + 0.7 * means[2], means[0] + 3.0]:
        occupied = counts > 0
        target = dp_means_scores(x, means, occupied, penalty)
        target = torch.cat([target[occupied], target[~occupied][:1]])
        errors = []
        for sigma in SIGMAS:
            log_alpha = log_dp_concentration(sigma, penalty, tau0, d)
            logits = collapsed_assignment_logits(x, counts, means, sigma, log_alpha, m0, tau0)
            grouped = torch.cat([logits[occupied], logits[~occupied].logsumexp(0, keepdim=True)])
            scores = -2 * sigma**2 * grouped - d * sigma**2 * math.log(2 * math.pi * sigma**2)
            bound = sigma**2 * (
                2 * (n_clusters + 1) * math.log(counts.sum() + 2) + (x - m0).square().sum() / tau0**2
            )
            errors.append((scores - target).abs().max().item())
            assert errors[-1] <= bound + 1e-9
        assert errors[-1] < 1e-3
        gap = target.sort().values[1] - target.min()
        if gap > 2 * bound:  # the limit decides: the program's most probable choice is DP-means'
            choices.append(grouped.argmax().item() == target.argmin().item())
    assert choices and all(choices)


def test_stick_weights_of_zero_sticks():
    assert stick_weights(torch.zeros(3)).tolist() == [0.0, 0.0, 0.0, 1.0]
    assert dist.Categorical(stick_weights(torch.ones(2))).probs.tolist() == [1.0, 0.0, 0.0]
