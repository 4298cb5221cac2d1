"""The Gibbs sampler's conditionals, held against the joint density the Pyro program traces.

For a conditional p(v | rest) of the joint p(v, rest), ``log p(v | rest) − log p(v, rest)`` does not
depend on v. Each test evaluates that difference at several values of the updated variable.
"""

import pyro
import pyro.distributions as dist
import pytest
import torch

from kmeans_limit.inference import gibbs
from kmeans_limit.inference.gibbs import (
    AssignmentStats,
    GibbsState,
    assignment_logits,
    gibbs_sweep,
    initial_state,
    means_conditional,
    run_gibbs,
    sample_assignments,
    sigma2_conditional,
    weights_conditional,
)
from kmeans_limit.models import Priors, spherical_gmm

PRIORS = Priors(alpha=1.5, m0=0.3, tau0=1.7, a0=2.5, b0=0.8)
PER_FEATURE = Priors(alpha=1.5, m0=(3.0, -20.0), tau0=1.7, a0=2.5, b0=0.8)  # one m0 a feature
K = 3


@pytest.fixture
def problem():
    """Small float64 data, an assignment z and a parameter value (one chain)."""
    generator = torch.Generator().manual_seed(11)
    X = torch.randn(25, 2, generator=generator, dtype=torch.float64) * 2.0
    z = torch.randint(0, K, (25,), generator=generator)
    state = GibbsState(
        weights=torch.tensor([[0.2, 0.5, 0.3]], dtype=torch.float64),
        means=torch.randn(1, K, 2, generator=generator, dtype=torch.float64),
        sigma=torch.tensor([0.9], dtype=torch.float64),
    )
    return X, z, state


def stats_of(X, z) -> AssignmentStats:
    """The statistics of a given assignment, as one chain."""
    one_hot = torch.nn.functional.one_hot(z, K).to(X.dtype).T
    return AssignmentStats(one_hot.sum(-1)[None], (one_hot @ X)[None], (one_hot @ (X * X).sum(-1))[None])


def log_joint(X, z, state, fixed_sigma=None, priors=PRIORS) -> float:
    """``log p(X, z, weights, means, sigma)`` from the program's trace (σ a site unless fixed)."""
    data = {"weights": state.weights[0], "means": state.means[0], "z": z}
    if fixed_sigma is None:
        data["sigma"] = state.sigma[0]
    trace = pyro.poutine.trace(pyro.condition(spherical_gmm, data=data)).get_trace(
        X, n_clusters=K, sigma=fixed_sigma, priors=priors
    )
    return trace.log_prob_sum().item()


def assert_constant(differences):
    differences = torch.tensor(differences, dtype=torch.float64)
    assert (differences - differences[0]).abs().max() < 1e-8, differences


def test_weights_conditional_matches_the_joint(problem):
    X, z, state = problem
    concentration = weights_conditional(stats_of(X, z).counts, PRIORS)[0]
    values = dist.Dirichlet(torch.ones(K, dtype=torch.float64)).sample((5,))
    assert_constant(
        [
            dist.Dirichlet(concentration).log_prob(v).item()
            - log_joint(X, z, state._replace(weights=v[None]))
            for v in values
        ]
    )


@pytest.mark.parametrize("priors", [PRIORS, PER_FEATURE], ids=["m0", "per-feature-m0"])
@pytest.mark.parametrize("fixed_sigma", [None, 0.9])
def test_means_conditional_matches_the_joint(problem, fixed_sigma, priors):
    X, z, state = problem
    loc, scale = means_conditional(stats_of(X, z), state.sigma, priors)
    conditional = dist.Normal(loc[0], scale[0][:, None])
    values = torch.randn(5, K, 2, dtype=torch.float64)
    assert_constant(
        [
            conditional.log_prob(v).sum().item()
            - log_joint(X, z, state._replace(means=v[None]), fixed_sigma, priors)
            for v in values
        ]
    )


def test_sigma_conditional_matches_the_joint_with_its_jacobian(problem):
    X, z, state = problem
    concentration, rate = sigma2_conditional(stats_of(X, z), state.means, PRIORS)
    inverse_gamma = dist.InverseGamma(concentration[0], rate[0])
    differences = []
    for v in (0.3, 0.7, 1.1, 2.4):
        sigma = torch.tensor(v, dtype=torch.float64)
        log_density = inverse_gamma.log_prob(sigma**2) + torch.log(2 * sigma)  # density of σ, not σ²
        differences.append(log_density.item() - log_joint(X, z, state._replace(sigma=sigma[None])))
    assert_constant(differences)


@pytest.mark.parametrize("fixed_sigma", [None, 0.9])
def test_assignment_conditional_matches_the_joint(problem, fixed_sigma):
    X, z, state = problem
    log_probs = torch.log_softmax(assignment_logits(X, state)[0].T, -1)  # (N, K)
    for row in (0, 7):
        differences = []
        for k in range(K):
            z_k = z.clone()
            z_k[row] = k
            differences.append(log_probs[row, k].item() - log_joint(X, z_k, state, fixed_sigma))
        assert_constant(differences)
    generator = torch.Generator().manual_seed(3)
    whole = [torch.randint(0, K, z.shape, generator=generator) for _ in range(4)]
    rows = torch.arange(len(z))
    assert_constant([log_probs[rows, zz].sum().item() - log_joint(X, zz, state, fixed_sigma) for zz in whole])


def test_assignments_are_drawn_with_the_conditional_probabilities():
    """One row, 20000 chains: the frequencies of z match softmax(logits) within 4 standard errors."""
    x = torch.tensor([[0.4, -0.2]], dtype=torch.float64)
    n_chains = 20000
    state = GibbsState(
        torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64).expand(n_chains, K),
        torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, -1.0]], dtype=torch.float64).expand(n_chains, K, 2),
        torch.full((n_chains,), 0.8, dtype=torch.float64),
    )
    counts = sample_assignments(x, state, torch.Generator().manual_seed(0), chunk_size=1).counts
    frequency = counts.mean(0)
    expected = torch.softmax(assignment_logits(x, state)[0, :, 0], -1)
    assert torch.allclose(counts.sum(-1), torch.ones(n_chains, dtype=torch.float64))
    assert ((frequency - expected).abs() < 4 * (expected * (1 - expected) / n_chains).sqrt()).all()


def test_one_sweep_draws_the_conjugate_updates():
    """Labels certain (far-apart points): over 4000 chains, the moments of one sweep's draws."""
    X = torch.tensor(
        [[-10.0, 0.0], [-10.2, 0.1], [10.0, 0.0], [10.1, 0.3], [10.2, -0.2]], dtype=torch.float64
    )
    n_chains = 4000
    state = GibbsState(
        torch.full((n_chains, 2), 0.5, dtype=torch.float64),
        torch.tensor([[-10.0, 0.0], [10.0, 0.0]], dtype=torch.float64).expand(n_chains, 2, 2),
        torch.full((n_chains,), 0.5, dtype=torch.float64),
    )
    new = gibbs_sweep(X, state, torch.Generator().manual_seed(1), PRIORS, learn_sigma=True)
    stats = stats_of(X, torch.tensor([0, 0, 1, 1, 1]))
    stats = AssignmentStats(stats.counts[:, :2], stats.sums[:, :2], stats.sums_sq[:, :2])
    concentration = weights_conditional(stats.counts, PRIORS)[0]
    expected_weight = concentration / concentration.sum()
    se = new.weights.std(0) / n_chains**0.5
    assert ((new.weights.mean(0) - expected_weight).abs() < 4 * se).all()
    loc, scale = means_conditional(stats, state.sigma[:1], PRIORS)
    assert ((new.means.mean(0) - loc[0]).abs() < 4 * scale[0][:, None] / n_chains**0.5).all()
    assert torch.isclose(new.means.std(0), scale[0][:, None].expand(2, 2), rtol=0.1).all()
    a, b = sigma2_conditional(stats, new.means, PRIORS)
    expected_var = (b / (a - 1)).mean()  # E[σ²] averaged over the drawn means
    assert abs(new.sigma.square().mean() - expected_var) < 4 * new.sigma.square().std() / n_chains**0.5


def test_fixed_sigma_is_kept_and_the_same_generator_gives_the_same_draws():
    X = torch.randn(30, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    start = initial_state(X, 2, 3, 0.4, torch.Generator().manual_seed(5))
    assert start.means.shape == (3, 2, 2) and torch.equal(
        start.sigma, torch.full((3,), 0.4, dtype=torch.float64)
    )
    kept = run_gibbs(
        X, start, torch.Generator().manual_seed(2), PRIORS, num_samples=7, num_warmup=3, learn_sigma=False
    )
    assert kept.weights.shape == (3, 7, 2) and kept.means.shape == (3, 7, 2, 2) and kept.sigma.shape == (3, 7)
    assert (kept.sigma == 0.4).all()
    again = run_gibbs(
        X, start, torch.Generator().manual_seed(2), PRIORS, num_samples=7, num_warmup=3, learn_sigma=False
    )
    assert all(torch.equal(u, v) for u, v in zip(kept, again, strict=True))


def test_float32_runs_in_float32():
    X = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
    start = initial_state(X, 2, 2, None, torch.Generator().manual_seed(0))
    kept = run_gibbs(
        X, start, torch.Generator().manual_seed(0), PRIORS, num_samples=5, num_warmup=5, learn_sigma=True
    )
    assert kept.means.dtype == torch.float32 and torch.isfinite(kept.sigma).all()


def test_a_nan_draw_raises_with_the_sweep(monkeypatch):
    X = torch.randn(30, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    start = initial_state(X, 2, 2, None, torch.Generator().manual_seed(0))
    calls = []

    def poisoned(*args, **kwargs):
        calls.append(None)
        state = gibbs_sweep(*args, **kwargs)
        if len(calls) == 4:
            state = state._replace(means=state.means.clone().index_fill_(0, torch.tensor([1]), float("nan")))
        return state

    monkeypatch.setattr(gibbs, "gibbs_sweep", poisoned)
    with pytest.raises(FloatingPointError, match=r"non-finite means at sweep 3 \(warm-up\) in chain 1"):
        run_gibbs(X, start, torch.Generator(), PRIORS, num_samples=5, num_warmup=5, learn_sigma=True)


def test_init_of_the_wrong_shape_is_refused():
    X = torch.randn(30, 2, dtype=torch.float64)
    bad = GibbsState(torch.ones(1, 2) / 2, torch.zeros(1, 2, 2), torch.ones(1))
    with pytest.raises(ValueError, match=r"init.weights of shape \(1, 2\) should have shape \(2, 2\)"):
        gibbs.gibbs_posterior(
            X,
            2,
            sigma=None,
            priors=PRIORS,
            num_samples=2,
            num_warmup=0,
            num_chains=2,
            seed=0,
            progress=False,
            init=bad,
        )
    with pytest.raises(ValueError, match="init should be a GibbsState"):
        gibbs.gibbs_posterior(
            X,
            2,
            sigma=None,
            priors=PRIORS,
            num_samples=2,
            num_warmup=0,
            num_chains=2,
            seed=0,
            progress=False,
            init=3,
        )
