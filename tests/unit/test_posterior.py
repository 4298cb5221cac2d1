"""fit_posterior: the InferenceData it returns, seeding, the assignment posterior and bad input."""

import math

import numpy as np
import pyro
import pytest
import torch

from kmeans_limit.inference import (
    arviz_compat,
    assignment_probabilities,
    coclustering_matrix,
    fit_posterior,
    invariant_summary,
)
from kmeans_limit.inference import pyro_samplers as samplers
from kmeans_limit.inference.data import prepare_data
from kmeans_limit.inference.density import pointwise_log_likelihood
from kmeans_limit.inference.idata import PosteriorDraws, to_inference_data
from kmeans_limit.inference.summaries import MAX_COCLUSTERING_SAMPLES
from kmeans_limit.models import Priors, spherical_gmm_marginal

QUICK = {"progress": False, "num_samples": 40, "num_warmup": 20, "num_chains": 2}
NUTS_QUICK = {"method": "nuts", "progress": False, "num_samples": 15, "num_warmup": 15, "num_chains": 2}
SVI_QUICK = {"progress": False, "num_samples": 20, "num_chains": 2, "num_steps": 30}


def priors_of(idata) -> Priors:
    """The priors a fit recorded in its attributes."""
    attrs = idata.posterior.attrs
    return Priors(
        alpha=attrs["prior_alpha"],
        m0=tuple(np.asarray(attrs["prior_m0"]).tolist()),
        tau0=attrs["prior_tau0"],
        a0=attrs["prior_a0"],
        b0=attrs["prior_b0"],
    )


@pytest.fixture(scope="module")
def blobs():
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-4.0, 0.0], [0.0, 4.0], [4.0, 0.0]], dtype=torch.float64)
    labels = torch.arange(3).repeat_interleave(20)
    return centres[labels] + 0.5 * torch.randn(60, 2, generator=generator, dtype=torch.float64), labels


@pytest.fixture(scope="module")
def gibbs_fit(blobs):
    return fit_posterior(blobs[0], 3, seed=3, posterior_predictive=True, **QUICK)


def test_gibbs_inference_data_layout(gibbs_fit, blobs):
    X = blobs[0]
    post = gibbs_fit.posterior
    assert set(arviz_compat.group_names(gibbs_fit)) == {
        "posterior",
        "sample_stats",
        "log_likelihood",
        "observed_data",
        "posterior_predictive",
    }
    assert post["weights"].dims == ("chain", "draw", "cluster") and post["weights"].shape == (2, 40, 3)
    assert post["means"].dims == ("chain", "draw", "cluster", "feature") and post["means"].shape == (
        2,
        40,
        3,
        2,
    )
    assert post["sigma"].dims == ("chain", "draw")
    assert gibbs_fit.log_likelihood["x"].dims == ("chain", "draw", "observation")
    assert gibbs_fit.observed_data["x"].shape == (60, 2)
    np.testing.assert_array_equal(gibbs_fit.observed_data["x"].values, X.numpy())
    assert gibbs_fit.posterior_predictive["x"].shape == (2, 40, 60, 2)
    assert np.allclose(post["weights"].sum("cluster"), 1.0)
    attrs = post.attrs
    assert attrs["method"] == "gibbs" and attrs["seed"] == 3 and attrs["sigma"] == "learned"
    assert attrs["relabelled"] == "pivot" and attrs["pyro_version"] == pyro.__version__
    assert attrs["torch_version"] == torch.__version__ and "kmeans_limit_version" in attrs


def test_the_inference_data_round_trips_through_netcdf(gibbs_fit, tmp_path):
    path = tmp_path / "fit.nc"
    arviz_compat.to_netcdf(gibbs_fit, path)
    loaded = arviz_compat.from_netcdf(path)
    np.testing.assert_array_equal(loaded.posterior["means"].values, gibbs_fit.posterior["means"].values)
    assert loaded.posterior.attrs["torch_version"] == torch.__version__


def test_log_likelihood_is_the_marginal_by_hand_and_by_the_program(gibbs_fit, blobs):
    X = blobs[0]
    post = gibbs_fit.posterior
    for chain, draw in [(0, 0), (1, 17), (0, 39)]:
        weights = torch.as_tensor(post["weights"].values[chain, draw])
        means = torch.as_tensor(post["means"].values[chain, draw])
        sigma = torch.as_tensor(post["sigma"].values[chain, draw])
        stored = torch.as_tensor(gibbs_fit.log_likelihood["x"].values[chain, draw])
        d2 = ((X[:, None, :] - means[None]) ** 2).sum(-1)
        by_hand = torch.logsumexp(weights.log() - d2 / (2 * sigma**2), -1) - math.log(2 * math.pi * sigma**2)
        assert torch.allclose(stored, by_hand, atol=1e-10)
        data = {"weights": weights, "means": means, "sigma": sigma}
        trace = pyro.poutine.trace(pyro.condition(spherical_gmm_marginal, data=data)).get_trace(
            X, n_clusters=3, priors=priors_of(gibbs_fit)
        )
        trace.compute_log_prob()
        assert torch.allclose(stored, trace.nodes["x"]["log_prob"], atol=1e-10)
        lp = gibbs_fit.sample_stats["lp"].values[chain, draw]
        assert lp == pytest.approx(trace.log_prob_sum().item(), abs=1e-8)


def test_log_likelihood_of_float32_data_is_computed_in_float64():
    """Far from the origin and at small σ, float32 would lose the log-density to cancellation.

    The draws of a float32 sampler on the centred rows are moved to float64 exactly; the stored
    log-likelihood is that of those draws, computed in float64 (the means stored in data units are
    float32 roundings of them, 3e-7 off at 5, which moves log p by up to 1e-4 at σ = 0.01).
    """
    generator = torch.Generator().manual_seed(0)
    X = (torch.tensor([5.0, 5.0]) + 0.01 * torch.randn(40, 2, generator=generator)).float()
    data = prepare_data(X)
    assert data.centred
    means_rows = (0.005 * torch.randn(1, 3, 2, 2, generator=generator)).float()  # (chain, draw, K, D)
    weights = torch.tensor([0.3, 0.7]).expand(1, 3, 2)
    draws = PosteriorDraws(weights, means_rows, torch.full((1, 3), 0.01), {}, {})
    idata = to_inference_data(draws, data, sigma=0.01, priors=Priors(m0=5.0), attrs={})
    stored = torch.as_tensor(idata.log_likelihood["x"].values[0, 0])
    means = means_rows[0, 0].double() + data.offset.double()  # exactly the sampler's draw, in data units
    sigma = float(torch.tensor(0.01).float())
    d2 = ((X.double()[:, None, :] - means[None]) ** 2).sum(-1)
    log_w = weights[0, 0].double().log()
    exact = torch.logsumexp(log_w - d2 / (2 * sigma**2), -1) - math.log(2 * math.pi * sigma**2)
    assert stored.dtype == torch.float64
    assert torch.allclose(stored, exact, rtol=0, atol=1e-9)
    in_float32 = pointwise_log_likelihood(X, weights[0, :1], means[None].float(), torch.tensor([sigma]))[0]
    assert (in_float32.double() - exact).abs().max() > 1e-3  # what float32 arithmetic in data units loses
    np.testing.assert_array_equal(idata.observed_data["x"].values, X.numpy())  # the user's X, as given


def test_gibbs_recovers_the_blobs(gibbs_fit, blobs):
    centre = gibbs_fit.posterior["means"].mean(("chain", "draw")).values
    truth = np.array([[-4.0, 0.0], [0.0, 4.0], [4.0, 0.0]])
    assert np.abs(np.sort(centre, axis=0) - np.sort(truth, axis=0)).max() < 0.4
    assert abs(gibbs_fit.posterior["sigma"].mean().item() - 0.5) < 0.15
    replicated = gibbs_fit.posterior_predictive["x"].values.reshape(-1, 2)
    assert np.abs(replicated.mean(0) - blobs[0].numpy().mean(0)).max() < 0.3


def test_nuts_layout_and_its_sample_stats(blobs):
    idata = fit_posterior(blobs[0], 3, seed=1, **NUTS_QUICK)
    stats = idata.sample_stats
    assert {"lp", "diverging", "step_size", "tree_depth", "n_steps"} <= set(stats.data_vars)
    assert stats["diverging"].dtype == bool and stats["diverging"].shape == (2, 15)
    assert (stats["step_size"] > 0).all() and (stats["n_steps"] >= 1).all()
    depth, n_steps = stats["tree_depth"].values, stats["n_steps"].values
    assert ((2**depth - 1 <= n_steps) & (n_steps <= 2 ** (depth + 1) - 1)).all()  # a tree of that depth
    assert idata.posterior.attrs["method"] == "nuts" and idata.posterior.attrs["potential"] == "closed_form"


def test_nuts_closed_form_and_program_potentials_give_the_same_chain(blobs):
    X = blobs[0][:30]
    options = {**NUTS_QUICK, "num_samples": 5, "num_warmup": 5, "num_chains": 1, "relabel": False}
    closed = fit_posterior(X, 2, seed=4, **options)
    program = fit_posterior(X, 2, seed=4, potential="program", **options)
    for name in ("weights", "means", "sigma"):
        np.testing.assert_allclose(closed.posterior[name].values, program.posterior[name].values, atol=1e-6)


def test_nuts_jit_compiled_program_runs(blobs):
    options = {**NUTS_QUICK, "num_samples": 3, "num_warmup": 3, "num_chains": 1}
    with pytest.warns(DeprecationWarning, match="torch.jit.trace` is deprecated"):  # Pyro's JIT uses it
        idata = fit_posterior(blobs[0][:20], 2, potential="program", jit_compile=True, **options)
    assert np.isfinite(idata.posterior["sigma"].values).all()


@pytest.mark.parametrize("method", ["svi", "map"])
def test_svi_and_map_layout(blobs, method):
    idata = fit_posterior(blobs[0], 3, method=method, sigma=0.5, **SVI_QUICK)
    post = idata.posterior
    assert post["means"].shape == (2, 20, 3, 2) and (post["sigma"] == 0.5).all()
    assert post.attrs["sigma"] == 0.5 and post.attrs["method"] == method
    if method == "map":
        assert post.attrs["point_estimate_repeated"] == 1 and post.attrs["guide"] == "AutoDelta"
        assert (post["means"] == post["means"][0, 0]).all()
    else:
        assert post.attrs["guide"] == "AutoMultivariateNormal"
        assert (post["means"].std(("chain", "draw")) > 0).all()


@pytest.mark.parametrize(
    "kwargs",
    [QUICK, {**NUTS_QUICK, "num_samples": 4, "num_warmup": 4}, {**SVI_QUICK, "method": "svi"}],
    ids=["gibbs", "nuts", "svi"],
)
def test_same_seed_same_draws_and_the_callers_rng_untouched(blobs, kwargs):
    torch.manual_seed(99)
    np.random.seed(99)  # noqa: NPY002 - pyro.poutine.seed touches the legacy global state
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()[1].copy()  # noqa: NPY002
    pyro.get_param_store().clear()
    pyro.param("callers_param", torch.ones(2))
    a = fit_posterior(blobs[0], 3, seed=5, **kwargs)
    b = fit_posterior(blobs[0], 3, seed=5, **kwargs)
    c = fit_posterior(blobs[0], 3, seed=6, **kwargs)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state)  # noqa: NPY002
    assert list(pyro.get_param_store().keys()) == ["callers_param"]
    for name in ("weights", "means", "sigma"):
        np.testing.assert_array_equal(a.posterior[name].values, b.posterior[name].values)
    assert not np.array_equal(a.posterior["means"].values, c.posterior["means"].values)
    pyro.get_param_store().clear()


def test_threads_are_restored(blobs):
    before = torch.get_num_threads()
    fit_posterior(blobs[0], 2, **{**QUICK, "num_samples": 2})
    assert torch.get_num_threads() == before


def test_float32_data(blobs):
    idata = fit_posterior(blobs[0].float(), 3, **QUICK)
    assert idata.posterior["means"].dtype == np.float32
    assert np.isfinite(idata.log_likelihood["x"].values).all()


def test_assignment_probabilities_and_coclustering(gibbs_fit, blobs):
    X, labels = blobs
    probs = assignment_probabilities(gibbs_fit)
    assert probs.shape == (60, 3) and np.allclose(probs.sum(1), 1.0)
    found = probs.argmax(1)
    for k in range(3):  # each blob is one component, whatever its label
        assert len(set(found[labels.numpy() == k])) == 1
    new = assignment_probabilities(gibbs_fit, torch.tensor([[-4.0, 0.0], [4.0, 0.1]]))
    assert new.shape == (2, 3) and new.max(1).min() > 0.99
    co = coclustering_matrix(gibbs_fit, max_draws=25)
    same = labels.numpy()[:, None] == labels.numpy()[None, :]
    assert co.shape == (60, 60) and np.allclose(co, co.T)
    assert co[same].min() > 0.95 and co[~same].max() < 0.05
    np.testing.assert_array_equal(np.diag(co), 1.0)  # a row is always clustered with itself
    # Off the diagonal, the average of Σ_k γ_nk γ_mk over the draws (z_n, z_m independent given θ).
    gamma = assignment_probabilities(gibbs_fit)  # mean γ: the same only when the draws agree
    assert np.abs(co[0, 1:] - (gamma[0] @ gamma[1:].T)).max() < 0.05


def test_coclustering_refuses_large_n_and_x_of_other_width(gibbs_fit):
    big = torch.randn(MAX_COCLUSTERING_SAMPLES + 1, 2)
    with pytest.raises(ValueError, match=f"n_samples={MAX_COCLUSTERING_SAMPLES + 1} should be <= 2000"):
        coclustering_matrix(gibbs_fit, big)
    with pytest.raises(ValueError, match="X has 3 features but the fit has 2"):
        assignment_probabilities(gibbs_fit, torch.zeros(4, 3))


def test_invariant_summary(gibbs_fit, blobs):
    table = invariant_summary(gibbs_fit)
    assert list(table.index) == ["weights_sorted[0]", "weights_sorted[1]", "weights_sorted[2]", "lp", "sigma"]
    assert {"mean", "sd", "ess_bulk", "r_hat"} <= set(table.columns)
    fixed = fit_posterior(blobs[0], 3, sigma=0.5, **QUICK)
    assert "sigma" not in invariant_summary(fixed).index


X_OK = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0], [3.0, 1.0]], dtype=torch.float64)


@pytest.mark.parametrize(
    ("X", "kwargs", "match"),
    [
        (torch.tensor([[0.0, float("nan")], [1.0, 1.0]]), {}, "X holds NaN or inf"),
        (torch.tensor([[0.0, float("inf")], [1.0, 1.0]]), {}, "X holds NaN or inf"),
        (torch.zeros(5), {}, r"X of shape \(5,\) should be 2-D"),
        (torch.zeros(0, 2), {}, r"X of shape \(0, 2\) is empty"),
        (torch.zeros(4, 2), {}, "X has 1 distinct points, fewer than n_clusters=2"),
        (X_OK, {"n_clusters": 0}, "n_clusters=0 should be an integer >= 1"),
        (X_OK, {"method": "hmc"}, "method='hmc' should be one of"),
        (X_OK, {"num_chains": 0}, "num_chains=0 should be an integer >= 1"),
        (X_OK, {"num_samples": 0}, "num_samples=0 should be an integer >= 1"),
        (X_OK, {"num_warmup": -1}, "num_warmup=-1 should be an integer >= 0"),
        (X_OK, {"sigma": -1.0}, r"sigma=-1.0 should be None or a finite number > 0"),
        (X_OK, {"sigma": 0.0}, r"sigma=0.0 should be None or a finite number > 0"),
        (X_OK, {"seed": -3}, "seed=-3 should be an integer in"),
        (X_OK, {"priors": {"alpha": 1}}, "priors should be a kmeans_limit.Priors, got dict"),
        (X_OK, {"step_size": 0.1}, r"unknown option\(s\) \['step_size'\] for method='gibbs'"),
        (X_OK, {"method": "nuts", "potential": "exact"}, "potential='exact' should be one of"),
        (X_OK, {"method": "nuts", "jit_compile": True}, "use it with potential='program'"),
        (X_OK, {"method": "nuts", "target_accept_prob": 1.5}, "target_accept_prob=1.5 should be"),
        (X_OK, {"method": "svi", "num_steps": 0}, "num_steps=0 should be an integer >= 1"),
        (X_OK, {"method": "map", "learning_rate": -0.1}, "learning_rate=-0.1 should be"),
        (X_OK, {"method": "svi", "learning_rate_decay": 0.0}, r"learning_rate_decay=0.0 .* in \(0, 1\]"),
        (X_OK, {"method": "map", "learning_rate_decay": 1.5}, r"learning_rate_decay=1.5 .* in \(0, 1\]"),
        (X_OK, {"method": "svi", "batch_size": 5}, "batch_size=5 should be <= n_samples=4"),
        (X_OK, {"method": "nuts", "full_mass": "yes"}, "full_mass='yes' should be True or False"),
    ],
)
def test_bad_input_names_the_value(X, kwargs, match):
    kwargs = {"n_clusters": 2, "progress": False, **kwargs}
    with pytest.raises(ValueError, match=match):
        fit_posterior(X, **kwargs)


def test_nuts_and_svi_raise_on_non_finite_values(monkeypatch, blobs):
    layout = samplers.FlatLayout(n_clusters=2, n_features=2, learn_sigma=True)
    recorder = samplers._NutsRecorder(layout, num_samples=3, chain=1)
    theta = torch.zeros(layout.size)
    theta[-1] = float("nan")  # log σ, the last coordinate
    with pytest.raises(
        FloatingPointError, match="NUTS produced a non-finite sigma at sample step 2 of chain 1"
    ):
        recorder(None, {"theta": theta}, "Sample", 2)
    monkeypatch.setattr(samplers.SVI, "step", lambda self, *args: float("nan"))
    with pytest.raises(FloatingPointError, match=r"SVI produced a non-finite loss \(nan\) at step 0"):
        fit_posterior(blobs[0], 2, method="svi", **SVI_QUICK)


@pytest.mark.parametrize("method", ["gibbs", "nuts"])
def test_data_that_overflow_the_dtype_raise_instead_of_returning_nan(method):
    X = torch.randn(20, 2, generator=torch.Generator().manual_seed(0)) * 1e19  # ‖x‖² overflows float32
    # The data model refuses them before any method starts (N·E‖x‖² · 16 > float32's max).
    with pytest.raises(ValueError, match=r"X is too large for torch.float32: its squared norms .* overflow"):
        fit_posterior(X, 2, method=method, progress=False, num_samples=2, num_warmup=2, num_chains=1)


def test_priors_are_used(blobs):
    tight = Priors(tau0=0.01)  # every centroid pinned near m0 = 0
    idata = fit_posterior(blobs[0], 3, priors=tight, **QUICK)
    assert np.abs(idata.posterior["means"].values).max() < 0.1


@pytest.mark.parametrize(
    "kwargs", [QUICK, {**SVI_QUICK, "method": "svi", "batch_size": 20}], ids=["gibbs", "minibatch-svi"]
)
def test_without_the_pointwise_log_likelihood_the_fit_and_lp_are_the_same(blobs, kwargs):
    full = fit_posterior(blobs[0], 3, seed=5, **kwargs)
    lean = fit_posterior(blobs[0], 3, seed=5, log_likelihood=False, **kwargs)
    assert "log_likelihood" in arviz_compat.group_names(
        full
    ) and "log_likelihood" not in arviz_compat.group_names(lean)
    for name in ("weights", "means", "sigma"):
        np.testing.assert_array_equal(lean.posterior[name].values, full.posterior[name].values)
    np.testing.assert_allclose(lean.sample_stats["lp"].values, full.sample_stats["lp"].values, rtol=1e-12)


def test_total_log_likelihood_is_the_sum_of_the_pointwise_one(blobs):
    from kmeans_limit.inference.density import pointwise_log_likelihood, total_log_likelihood

    generator = torch.Generator().manual_seed(1)
    weights = torch.randn(7, 3, generator=generator, dtype=torch.float64).softmax(-1)
    means = torch.randn(7, 3, 2, generator=generator, dtype=torch.float64)
    sigma = torch.rand(7, generator=generator, dtype=torch.float64) + 0.3
    pointwise = pointwise_log_likelihood(blobs[0], weights, means, sigma)
    torch.testing.assert_close(total_log_likelihood(blobs[0], weights, means, sigma), pointwise.sum(-1))
