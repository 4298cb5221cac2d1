"""The generative program: sites, Pyro's own inference on it, and its marginal twin."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC, NUTS, SVI, TraceEnum_ELBO
from pyro.infer.autoguide import AutoDelta

from kmeans_limit.models import SITE_NAMES, Priors, spherical_gmm, spherical_gmm_marginal

MEANS = torch.tensor([[-2.0, 0.0], [1.0, 1.0], [2.0, -2.0]], dtype=torch.float64)
WEIGHTS = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)


def conditioned_trace(model, X, sigma, **sites):
    data = {"means": MEANS, "weights": WEIGHTS, **sites}
    trace = pyro.poutine.trace(pyro.condition(model, data=data)).get_trace(X, n_clusters=3, sigma=sigma)
    trace.compute_log_prob()
    return trace


def test_sites_and_shapes():
    with pyro.poutine.seed(rng_seed=0), pyro.poutine.trace() as tracer:
        x = spherical_gmm(n_clusters=3, n_features=2, n_samples=7)
    nodes = tracer.trace.nodes
    assert set(SITE_NAMES) <= set(nodes)
    assert x.shape == (7, 2) and nodes["z"]["value"].shape == (7,)
    assert nodes["means"]["value"].shape == (3, 2) and nodes["weights"]["value"].shape == (3,)
    assert nodes["sigma"]["value"].shape == () and nodes["sigma"]["value"] > 0
    assert nodes["z"]["infer"]["enumerate"] == "parallel"


def test_sigma_site_holds_sigma_with_inverse_gamma_square():
    """The learned-σ site is σ, and its density is that of σ² ~ InverseGamma(a0, b0) times the Jacobian 2σ."""
    priors = Priors(a0=3.0, b0=0.7)
    trace = pyro.poutine.trace(pyro.condition(spherical_gmm, data={"sigma": torch.tensor(0.6)})).get_trace(
        n_clusters=2, n_features=1, n_samples=1, priors=priors
    )
    site = trace.nodes["sigma"]
    expected = dist.InverseGamma(3.0, 0.7).log_prob(torch.tensor(0.36)) + math.log(2 * 0.6)
    assert site["fn"].log_prob(site["value"]).item() == pytest.approx(expected.item(), rel=1e-6)


def test_fixed_sigma_is_deterministic_and_zero_gives_centroids():
    with pyro.poutine.seed(rng_seed=1), pyro.poutine.trace() as tracer:
        x = spherical_gmm(n_clusters=4, n_features=3, n_samples=50, sigma=0.0, dtype=torch.float64)
    nodes = tracer.trace.nodes
    assert nodes["sigma"]["value"].item() == 0.0
    assert torch.equal(x, nodes["means"]["value"][nodes["z"]["value"]])


def test_marginal_equals_logsumexp_of_enumerated_program():
    """log p(x_n) of the marginal twin = logsumexp_k of the enumerated program's joint over z_n = k."""
    X = torch.randn(11, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    marginal = conditioned_trace(spherical_gmm_marginal, X, sigma=0.8).nodes["x"]["log_prob"]
    per_k = []
    for k in range(3):
        nodes = conditioned_trace(spherical_gmm, X, sigma=0.8, z=torch.full((11,), k)).nodes
        per_k.append(nodes["z"]["log_prob"] + nodes["x"]["log_prob"])
    assert marginal.shape == (11,)
    torch.testing.assert_close(marginal, torch.logsumexp(torch.stack(per_k), 0), rtol=0, atol=1e-10)


def test_marginal_equals_enumerated_program_with_learned_sigma():
    X = torch.randn(9, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    sigma = torch.tensor(0.9, dtype=torch.float64)
    data = {"means": MEANS, "weights": WEIGHTS, "sigma": sigma}
    marginal = pyro.poutine.trace(pyro.condition(spherical_gmm_marginal, data=data)).get_trace(
        X, n_clusters=3
    )
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    enumerated = pyro.condition(spherical_gmm, data=data)
    log_joint = -elbo.loss(enumerated, lambda *a, **k: None, X, n_clusters=3)
    assert marginal.log_prob_sum().item() == pytest.approx(log_joint, abs=1e-10)


def test_pyro_nuts_runs_on_the_enumerated_program():
    X = torch.randn(30, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    kernel = NUTS(spherical_gmm, max_plate_nesting=1)
    mcmc = MCMC(kernel, num_samples=5, warmup_steps=5, disable_progbar=True)
    with pyro.poutine.seed(rng_seed=0):
        mcmc.run(X, n_clusters=2)
    samples = mcmc.get_samples()
    assert samples["means"].shape == (5, 2, 2) and torch.isfinite(samples["sigma"]).all()


def test_pyro_svi_with_traceenum_elbo_runs_on_the_program():
    X = torch.randn(30, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    guide = AutoDelta(pyro.poutine.block(spherical_gmm, expose=["weights", "means", "sigma"]))
    svi = SVI(spherical_gmm, guide, pyro.optim.Adam({"lr": 0.05}), TraceEnum_ELBO(max_plate_nesting=1))
    pyro.clear_param_store()
    with pyro.poutine.seed(rng_seed=0):
        losses = [svi.step(X, n_clusters=2) for _ in range(30)]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_clusters": 0, "n_features": 2, "n_samples": 3}, "n_clusters=0"),
        ({"n_clusters": 2, "n_samples": 3}, "n_features=None"),
        ({"n_clusters": 2, "n_features": 2, "n_samples": 3, "sigma": -1.0}, "sigma=-1.0"),
        ({"n_clusters": 2, "n_features": 2, "n_samples": 3, "sigma": float("nan")}, "sigma=nan"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        spherical_gmm(**kwargs)


def test_sigma_zero_cannot_observe_data():
    with pytest.raises(ValueError, match="sigma=0 is the hard limit"):
        spherical_gmm(torch.zeros(3, 2), n_clusters=2, sigma=0.0)
    with pytest.raises(ValueError, match="sigma=0 has no mixture density"):
        spherical_gmm_marginal(torch.zeros(3, 2), n_clusters=2, sigma=0.0)


def test_data_shape_mismatch():
    with pytest.raises(ValueError, match="n_features=3 does not match"):
        spherical_gmm(torch.zeros(4, 2), n_clusters=2, n_features=3)
    with pytest.raises(ValueError, match="2-D tensor"):
        spherical_gmm(torch.zeros(4), n_clusters=2)


@pytest.mark.parametrize(
    ("field", "value"),
    [("alpha", 0.0), ("tau0", -1.0), ("a0", float("inf")), ("b0", "x"), ("m0", float("nan"))],
)
def test_priors_are_validated(field, value):
    with pytest.raises(ValueError, match=f"{field}="):
        Priors(**{field: value})


def test_priors_defaults_and_frozen():
    priors = Priors()
    assert (priors.alpha, priors.m0, priors.tau0, priors.a0, priors.b0) == (1.0, 0.0, 2.0, 2.0, 0.5)
    with pytest.raises(AttributeError):
        priors.alpha = 2.0
