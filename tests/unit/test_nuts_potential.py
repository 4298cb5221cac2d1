"""The flat coordinates and closed-form potential behind method="nuts", held against Pyro's own."""

import math
import sys

import numpy as np
import pyro
import pytest
import torch
from pyro.infer import MCMC, NUTS
from pyro.ops.integrator import potential_grad

from kmeans_limit.inference import pyro_samplers as samplers
from kmeans_limit.inference.data import prepare_data
from kmeans_limit.inference.kernels import serial_if_small
from kmeans_limit.models import Priors

PRIORS = Priors(alpha=0.7, m0=-0.2, tau0=1.3, a0=3.0, b0=1.1)


@pytest.fixture
def X():
    """Off the origin, so that the potential's centring is exercised."""
    return 4.0 + 1.5 * torch.randn(40, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def program_potential(X, n_clusters, sigma, priors=PRIORS):
    layout = samplers.FlatLayout(n_clusters, X.shape[1], sigma is None)
    model_kwargs = {"n_clusters": n_clusters, "sigma": sigma, "priors": priors}
    return layout, samplers._program_potential(X, model_kwargs, layout, seed=0, jit_compile=False)


def points(layout, n_points=3, seed=2, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(layout.size, generator=generator, dtype=dtype) * scale for scale in (0.3, 1.0, 2.0)][
        :n_points
    ]


@pytest.mark.parametrize(("sigma", "n_clusters"), [(None, 3), (0.6, 3), (None, 1), (None, 5), (0.6, 2)])
def test_closed_form_potential_equals_pyros_potential_of_the_program(X, sigma, n_clusters):
    layout, program = program_potential(X, n_clusters, sigma)
    closed_form = samplers.ClosedFormPotential(X, layout, PRIORS, sigma)
    for theta in points(layout):  # all scales: Pyro's gradient comes from autograd through the traced program
        expected_grads, expected = potential_grad(program, {"theta": theta})
        value, grads = closed_form.value_and_grad({"theta": theta})
        assert torch.isclose(value, expected, rtol=1e-12, atol=1e-9)
        assert torch.allclose(grads["theta"], expected_grads["theta"], rtol=1e-9, atol=1e-9)
        autograd_grads, autograd_value = potential_grad(closed_form, {"theta": theta})  # the autograd node
        assert autograd_value == value and torch.equal(autograd_grads["theta"], grads["theta"])
    assert closed_form.n_calls == 6


def test_the_potential_in_chunks_equals_one_pass(X):
    layout = samplers.FlatLayout(3, 3, True)
    whole = samplers.ClosedFormPotential(X, layout, PRIORS)
    chunked = samplers.ClosedFormPotential(X, layout, PRIORS)
    chunked._chunk = 7  # 40 rows: five full blocks and one of 5
    for theta in points(layout):
        value, grad = whole.evaluate(theta.numpy())
        chunked_value, chunked_grad = chunked.evaluate(theta.numpy())
        assert chunked_value == pytest.approx(value, rel=1e-13)
        np.testing.assert_allclose(chunked_grad, grad, rtol=1e-11, atol=1e-11)


def test_float32_data_give_a_float32_potential_close_to_float64():
    """Far from the origin at small σ: the potential runs on the rows prepare_data centred, θ moved with them.

    The potential no longer centres on its own: on the raw float32 rows it loses the value to
    cancellation (off by 6.4 in 12132), on prepare_data's rows it keeps it.
    """
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[100.0, 100.0], [101.0, 100.0]], dtype=torch.float64)
    X = centres[torch.arange(2).repeat(50)] + 0.05 * torch.randn(
        100, 2, generator=generator, dtype=torch.float64
    )
    layout = samplers.FlatLayout(2, 2, True)
    theta = layout.pack(torch.tensor([0.4, 0.6]).double(), centres + 0.01, torch.tensor(0.05).double())
    exact, exact_grads = samplers.ClosedFormPotential(X, layout, PRIORS).value_and_grad({"theta": theta})
    data = prepare_data(X.float())
    assert data.centred
    offset = data.offset.double()
    moved = layout.pack(
        torch.tensor([0.4, 0.6]).double(), centres + 0.01 - offset, torch.tensor(0.05).double()
    )
    potential = samplers.ClosedFormPotential(data.rows, layout, PRIORS.shifted(data.offset))
    value, grads = potential.value_and_grad({"theta": moved.float()})
    assert value.dtype == grads["theta"].dtype == torch.float32
    assert abs(value.item() - exact.item()) < 1e-6 * abs(exact.item())
    assert torch.allclose(grads["theta"].double(), exact_grads["theta"], rtol=1e-3, atol=0.1)
    raw, _ = samplers.ClosedFormPotential(X.float(), layout, PRIORS).value_and_grad({"theta": theta.float()})
    assert abs(raw.item() - exact.item()) > 1.0  # the cancellation prepare_data's centring removes


@pytest.mark.parametrize(("log_sigma", "finite"), [(800.0, True), (-800.0, False), (math.nan, False)])
def test_far_leapfrog_steps_give_a_huge_or_non_finite_potential_without_warnings(X, log_sigma, finite):
    """Pyro takes a NaN or infinite energy for a divergence; NumPy must not warn (warnings are errors here)."""
    layout = samplers.FlatLayout(3, 3, True)
    theta = torch.zeros(layout.size, dtype=torch.float64)
    theta[-1] = log_sigma
    value, _ = samplers.ClosedFormPotential(X, layout, PRIORS).value_and_grad({"theta": theta})
    assert bool(torch.isfinite(value)) == finite
    assert not finite or value > 1e4  # σ = e^800: −log p ≈ N·D·log σ


def test_layout_packs_and_constrains_back():
    layout = samplers.FlatLayout(3, 2, True)
    weights, means, sigma = torch.tensor([0.2, 0.5, 0.3]), torch.arange(6.0).reshape(3, 2), torch.tensor(0.7)
    theta = layout.pack(weights, means, sigma)
    assert theta.shape == (layout.size,) == (9,)
    values = layout.constrain(torch.stack([theta, theta]))  # a batch of two draws
    assert (
        values["weights"].shape == (2, 3)
        and values["means"].shape == (2, 3, 2)
        and values["sigma"].shape == (2,)
    )
    assert torch.allclose(values["weights"][1], weights) and torch.equal(values["means"][0], means)
    assert torch.isclose(values["sigma"][0], sigma)
    fixed = samplers.FlatLayout(3, 2, False)
    assert fixed.size == 8 and set(fixed.constrain(fixed.pack(weights, means))) == {"weights", "means"}


def test_the_potential_refuses_a_sigma_that_does_not_match_the_layout(X):
    with pytest.raises(ValueError, match="sigma=0.5 does not match layout.learn_sigma=True"):
        samplers.ClosedFormPotential(X, samplers.FlatLayout(2, 3, True), PRIORS, sigma=0.5)


def run_chain(kernel_class, X, layout, seed=3):
    potential = samplers.ClosedFormPotential(X, layout, PRIORS)
    mcmc = MCMC(
        kernel_class(potential_fn=potential),
        num_samples=15,
        warmup_steps=15,
        initial_params={"theta": layout.pack(**samplers._init_values(X, layout.n_clusters, None, seed))},
        disable_progbar=True,
    )
    with pyro.poutine.seed(rng_seed=seed), serial_if_small(X.numel()):  # as fit_posterior runs it
        mcmc.run()
    return mcmc.get_samples()["theta"], potential.n_calls


def test_gradient_nuts_takes_the_steps_of_pyros_nuts():
    """The one method _GradientNUTS replaces gives the chain Pyro's NUTS gives with autograd's gradient."""
    generator = torch.Generator().manual_seed(0)
    X = (
        torch.randn(40, 3, generator=generator, dtype=torch.float64)
        + torch.tensor([2.0, -2.0]).repeat(20)[:, None]
    )
    layout = samplers.FlatLayout(2, 3, True)
    ours, our_calls = run_chain(samplers._GradientNUTS, X, layout)
    pyros, pyro_calls = run_chain(NUTS, X, layout)
    assert our_calls == pyro_calls > 30
    assert torch.allclose(ours, pyros, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kernel_class", [samplers._RecordingNUTS, samplers._GradientNUTS])
def test_the_recorded_tree_depth_is_pyros_own(kernel_class):
    """``tree_depth`` is the value of the ``tree_depth`` local of Pyro's ``NUTS.sample`` at its return,
    read here by a trace function; ``n_steps`` the leapfrog steps (potential evaluations)."""
    generator = torch.Generator().manual_seed(1)
    X = torch.randn(30, 2, generator=generator, dtype=torch.float64) + torch.tensor(
        [[3.0, 0.0], [-3.0, 0.0]]
    ).repeat(15, 1)
    layout = samplers.FlatLayout(2, 2, True)
    potential = samplers.ClosedFormPotential(X, layout, PRIORS)
    kernel = kernel_class(potential_fn=potential, max_tree_depth=4)
    seen, recorded, calls_before = [], [], [0]

    def local(frame, event, arg):
        if event == "return":
            seen.append(frame.f_locals["tree_depth"])
        return local

    def tracer(frame, event, arg):
        return local if frame.f_code is NUTS.sample.__code__ else None

    def hook(kernel, params, stage, i):
        recorded.append((kernel.tree_depth, kernel.n_steps, potential.n_calls - calls_before[0]))
        calls_before[0] = potential.n_calls

    mcmc = MCMC(
        kernel,
        num_samples=20,
        warmup_steps=10,
        initial_params={"theta": layout.pack(**samplers._init_values(X, 2, None, 0))},
        hook_fn=hook,
        disable_progbar=True,
    )
    sys.settrace(tracer)
    try:
        with pyro.poutine.seed(rng_seed=0):
            mcmc.run()
    finally:
        sys.settrace(None)
    depths = [depth for depth, _, _ in recorded]
    assert depths == seen and len(seen) == 30
    sample = recorded[10:]  # warm-up transitions also run the step-size search: evaluations differ there
    assert all(n_steps == calls for _, n_steps, calls in sample), sample
    # A U-turn inside the last subtree stops Pyro's loop before it counts that subtree:
    # n_steps.bit_length() then reports one more than Pyro's depth.
    assert any(int(n).bit_length() == depth + 1 for depth, n, _ in sample)
    assert max(depths) <= 4


def test_the_private_pyro_methods_we_replace_have_the_signatures_we_rely_on():
    """_GradientNUTS and _RecordingNUTS override private NUTS methods of Pyro 1.9 (pinned <1.10)."""
    import inspect

    assert pyro.__version__.startswith("1.9.")
    assert list(inspect.signature(NUTS._build_basetree).parameters) == [
        "self", "z", "r", "z_grads", "log_slice", "direction", "energy_current"
    ]  # fmt: skip
    assert list(inspect.signature(NUTS._build_tree).parameters) == [
        "self", "z", "r", "z_grads", "log_slice", "direction", "tree_depth", "energy_current"
    ]  # fmt: skip
    assert {"turning", "diverging", "num_proposals"} <= set(samplers._TreeInfo._fields)
