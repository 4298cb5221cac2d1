"""The DP blocked Gibbs: every conditional equals the program's joint up to a constant; the fit's records."""

import math
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from kmeans_limit.inference.dp_gibbs import (
    DPGibbsState,
    alpha_conditional,
    dp_means_conditional,
    sample_labels,
    sticks_conditional,
)
from kmeans_limit.inference.dp_posterior import TruncationWarning, fit_dp_posterior, occupied_summary
from kmeans_limit.inference.gibbs import GibbsState, assignment_logits, sigma2_conditional
from kmeans_limit.models import Priors, dp_gmm, dp_gmm_marginal, stick_weights

F64 = torch.float64
PRIORS = Priors(m0=(0.5, -1.0), tau0=1.7, a0=2.5, b0=0.8)
ALPHA_PRIOR = (2.0, 1.5)
GEN = torch.Generator().manual_seed(11)
X = torch.randn(7, 2, generator=GEN, dtype=F64) * 2.0
Z = torch.tensor([0, 0, 1, 2, 1, 0, 2])
K = 4


def site_values(**changes):
    values = {
        "v": torch.tensor([0.4, 0.5, 0.3], dtype=F64),
        "means": torch.randn(K, 2, generator=torch.Generator().manual_seed(3), dtype=F64),
        "sigma": torch.tensor(0.9, dtype=F64),
        "alpha": torch.tensor(1.3, dtype=F64),
        "z": Z,
    }
    return {**values, **changes}


def log_joint(values) -> float:
    model = pyro.condition(dp_gmm, data=values)
    trace = pyro.poutine.trace(model).get_trace(
        X, max_clusters=K, priors=PRIORS, concentration_prior=ALPHA_PRIOR
    )
    return trace.log_prob_sum().item()


def stats_of(z):
    one_hot = torch.nn.functional.one_hot(z, K).to(F64).T[None]  # (1, K, N)
    from kmeans_limit.inference.gibbs import AssignmentStats

    return AssignmentStats(one_hot.sum(-1), one_hot @ X, one_hot @ X.square().sum(-1))


def assert_same_differences(log_q, values_a, values_b, q_a, q_b):
    expected = log_joint(values_a) - log_joint(values_b)
    assert q_a - q_b == pytest.approx(expected, abs=1e-8)


def test_assignment_conditional_is_the_programs():
    base = site_values()
    state = GibbsState(stick_weights(base["v"])[None], base["means"][None], base["sigma"][None])
    logits = assignment_logits(X, state)[0]  # (K, N)
    for n in (0, 2, 3, 6):
        for k in range(K):
            z = Z.clone()
            z[n] = k
            expected = log_joint(site_values(z=z)) - log_joint(base)
            assert (logits[k, n] - logits[Z[n], n]).item() == pytest.approx(expected, abs=1e-8)


def test_sticks_conditional_is_the_programs():
    a, b = sticks_conditional(stats_of(Z).counts, torch.tensor([1.3], dtype=F64))
    q = dist.Beta(a[0], b[0])
    for v in (torch.tensor([0.2, 0.7, 0.5], dtype=F64), torch.tensor([0.9, 0.1, 0.05], dtype=F64)):
        values = site_values(v=v)
        base = site_values()
        assert_same_differences(
            None, values, base, q.log_prob(v).sum().item(), q.log_prob(base["v"]).sum().item()
        )


def test_means_conditional_is_the_programs():
    m0 = torch.tensor(PRIORS.m0, dtype=F64)
    loc, scale = dp_means_conditional(stats_of(Z), torch.tensor([0.9], dtype=F64), m0, PRIORS.tau0)
    q = dist.Normal(loc[0], scale[0][:, None])
    base = site_values()
    other = torch.randn(K, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
    values = site_values(means=other)
    assert_same_differences(
        None, values, base, q.log_prob(other).sum().item(), q.log_prob(base["means"]).sum().item()
    )


def test_sigma_conditional_is_the_programs():
    base = site_values()
    concentration, rate = sigma2_conditional(stats_of(Z), base["means"][None], PRIORS)
    q = dist.InverseGamma(concentration[0], rate[0])
    log_q = lambda s: (q.log_prob(s * s) + torch.log(2 * s)).item()  # noqa: E731  density of σ
    for s in (0.4, 1.7):
        s = torch.tensor(s, dtype=F64)
        assert_same_differences(None, site_values(sigma=s), base, log_q(s), log_q(base["sigma"]))


def test_alpha_conditional_is_the_programs():
    base = site_values()
    shape, rate = alpha_conditional(base["v"][None], ALPHA_PRIOR)
    q = dist.Gamma(shape[0], rate[0])
    for a in (0.2, 4.0):
        a = torch.tensor(a, dtype=F64)
        assert_same_differences(
            None, site_values(alpha=a), base, q.log_prob(a).item(), q.log_prob(base["alpha"]).item()
        )


def test_sample_labels_statistics_match_the_labels():
    base = site_values()
    state = DPGibbsState(
        base["v"].expand(3, -1),
        base["means"].expand(3, -1, -1),
        base["sigma"].expand(3),
        base["alpha"].expand(3),
    )
    z, stats = sample_labels(X, state, torch.Generator().manual_seed(0), chunk_size=3)
    for c in range(3):
        expected = stats_of(z[c])
        assert torch.allclose(stats.counts[c], expected.counts[0]) and torch.allclose(
            stats.sums[c], expected.sums[0]
        )


@pytest.fixture(scope="module")
def fitted():
    X2 = (
        torch.cat(
            [
                torch.randn(15, 2, generator=GEN, dtype=F64) - 4,
                torch.randn(15, 2, generator=GEN, dtype=F64) + 4,
            ]
        )
        + 100.0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncationWarning)
        idata = fit_dp_posterior(
            X2,
            8,
            sigma=1.0,
            num_samples=60,
            num_warmup=40,
            num_chains=2,
            concentration_prior=(1.0, 4.0),
            seed=1,
        )
    return X2, idata


def test_inference_data_records(fitted):
    X2, idata = fitted
    post = idata.posterior
    assert post.n_occupied.shape == (2, 60) and post.means.shape == (2, 60, 8, 2)
    assert (post.n_occupied.values == (post.cluster_sizes.values > 0).sum(-1)).all()
    assert (post.cluster_sizes.values.sum(-1) == 30).all()
    co = idata.coclustering.probability.values
    assert co.shape == (30, 30) and np.allclose(np.diag(co), 1.0) and np.allclose(co, co.T)
    assert co[:15, :15].mean() > 0.8 and co[:15, 15:].max() < 0.05
    summary = occupied_summary(idata)
    # the DP posterior also gives weight to a third, small cluster (Miller & Harrison 2013); the two
    # largest components of the reference draw come first
    assert idata.occupied_components.attrs["n_components"] in (2, 3)
    assert sorted(summary.loc[["means[0, 0]", "means[1, 0]"], "mean"]) == pytest.approx(
        [96.0, 104.0], abs=0.8
    )


@pytest.mark.parametrize(
    "options",
    [dict(concentration_prior=(2.0, 1.0)), dict(sigma=0.8, concentration=0.7), dict(sigma=0.8, penalty=3.0)],
)
def test_lp_and_pointwise_log_likelihood_are_the_programs(options):
    """lp = the marginal program's traced log density (z summed out, σ's and α's priors included)."""
    X2 = torch.cat(
        [torch.randn(6, 2, generator=GEN, dtype=F64) - 3, torch.randn(6, 2, generator=GEN, dtype=F64) + 3]
    )
    X2 = X2 * 10.0 + 1e3  # far from the origin: the rows are centred, the program sees the data
    scaled = {k: v for k, v in options.items()}
    if "sigma" in scaled:
        scaled["sigma"] = scaled["sigma"] * 10.0
    if "penalty" in scaled:
        scaled["penalty"] = scaled["penalty"] * 100.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncationWarning)
        idata = fit_dp_posterior(X2, 5, num_samples=3, num_warmup=5, num_chains=2, seed=2, **scaled)
    post = idata.posterior
    variance = X2.var(0, correction=0).mean().item()
    priors = Priors(m0=tuple(X2.mean(0).tolist()), tau0=2 * math.sqrt(variance), a0=2.0, b0=0.5 * variance)
    for chain, draw in [(0, 0), (1, 2)]:
        sel = dict(chain=chain, draw=draw)
        values = {name: torch.tensor(post[name].isel(**sel).values) for name in ("v", "means", "sigma")}
        if "concentration_prior" in scaled:
            values["alpha"] = torch.tensor(post.alpha.isel(**sel).values)
        program = {k: v for k, v in scaled.items() if k != "sigma"}
        model = pyro.condition(dp_gmm_marginal, data=values)
        trace = pyro.poutine.trace(model).get_trace(
            X2, max_clusters=5, priors=priors, sigma=scaled.get("sigma"), **program
        )
        trace.compute_log_prob()
        assert float(idata.sample_stats.lp.isel(**sel)) == pytest.approx(
            trace.log_prob_sum().item(), rel=1e-9
        )
        np.testing.assert_allclose(
            idata.log_likelihood.x.isel(**sel).values, trace.nodes["x"]["log_prob"].numpy(), rtol=1e-9
        )


def test_truncation_warning_and_bad_input():
    X2 = torch.randn(40, 1, generator=torch.Generator().manual_seed(0), dtype=F64)
    with pytest.warns(TruncationWarning, match="last of max_clusters=2 components was occupied"):
        fit_dp_posterior(X2, 2, num_samples=5, num_warmup=0, num_chains=1, concentration=5.0)
    with pytest.raises(ValueError, match="concentration and penalty: give at most one"):
        fit_dp_posterior(X2, 5, concentration=1.0, penalty=1.0, sigma=1.0)
    with pytest.raises(ValueError, match="penalty=1.0 ties α to σ: give a fixed sigma"):
        fit_dp_posterior(X2, 5, penalty=1.0)
    with pytest.raises(ValueError, match="max_clusters=1 should be an integer >= 2"):
        fit_dp_posterior(X2, 1)
