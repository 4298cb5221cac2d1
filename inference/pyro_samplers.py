"""Pyro's own inference on the marginal program: NUTS, and SVI with an autoguide (MAP with AutoDelta).

Chains run one after another in this process, each under ``pyro.poutine.seed`` with a seed derived
from the caller's, so the draws depend on the seed alone and the caller's global RNG state (and Pyro's
parameter store) are left as they were.

NUTS moves on one flat vector θ, Pyro's unconstrained coordinates of the sites laid end to end
(:class:`FlatLayout`): one site instead of three saves Pyro's per-site bookkeeping at every leapfrog
step. With ``potential="closed_form"`` the kernel takes U(θ) and ∇U(θ) together from
:class:`ClosedFormPotential` (:class:`_GradientNUTS`) instead of asking autograd for ∇U at every step.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np
import pyro
import torch
from pyro.distributions.util import scalar_like
from pyro.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO
from pyro.infer.autoguide import AutoDelta, AutoMultivariateNormal, init_to_value
from pyro.infer.mcmc.nuts import _TreeInfo
from pyro.infer.mcmc.util import initialize_model
from pyro.util import torch_isnan
from torch.distributions import biject_to, constraints
from tqdm.auto import tqdm

from ..models import Priors, prior_mean, spherical_gmm_marginal
from .density import _check_parametrization
from .gibbs import initial_state
from .idata import PosteriorDraws
from .kernels import CHUNK_ENTRIES
from .validation import check_positive_int, check_real, derive_seeds, pyro_seed

__all__ = ["ClosedFormPotential", "FlatLayout", "chain_seeds", "run_nuts", "run_svi", "svi_model"]

POTENTIALS = ("closed_form", "program")
GUIDES = {"svi": AutoMultivariateNormal, "map": AutoDelta}
_SIMPLEX = biject_to(constraints.simplex)  # torch's StickBreakingTransform, as in Pyro


def chain_seeds(seed: int, num_chains: int) -> list[int]:
    """One seed a chain, in [0, 2**32 - 1] (what ``pyro.set_rng_seed`` takes): :func:`derive_seeds`."""
    return derive_seeds(seed, num_chains)


def _init_values(X: torch.Tensor, n_clusters: int, sigma: float | None, seed: int) -> dict:
    """A k-means++ start for one chain, as Pyro site values."""
    generator = torch.Generator(device=X.device).manual_seed(seed)
    start = initial_state(X, n_clusters, 1, sigma, generator)
    values = {"weights": start.weights[0], "means": start.means[0]}
    if sigma is None:
        values["sigma"] = start.sigma[0]
    return values


class FlatLayout(NamedTuple):
    """Where each site sits in the flat unconstrained vector θ that NUTS moves on.

    ``θ = (u, means[0], ..., means[K-1], log σ)``: ``u`` (K − 1 numbers) maps to ``weights`` by torch's
    stick-breaking transform, the means are unconstrained, and ``log σ`` is there only when σ is
    learned. These are the coordinates Pyro gives the sites of
    :func:`~kmeans_limit.models.spherical_gmm_marginal` (``biject_to`` of their supports), end to end.
    """

    n_clusters: int
    n_features: int
    learn_sigma: bool

    @property
    def size(self) -> int:
        """The length of θ: ``K − 1 + K·D``, plus 1 when σ is learned."""
        return self.n_clusters - 1 + self.n_clusters * self.n_features + int(self.learn_sigma)

    def pack(
        self, weights: torch.Tensor, means: torch.Tensor, sigma: torch.Tensor | None = None
    ) -> torch.Tensor:
        """θ of shape (size,) from the site values ``weights`` (K,), ``means`` (K, D) and ``sigma`` ()."""
        parts = [_SIMPLEX.inv(weights), means.reshape(-1)]
        if self.learn_sigma:
            parts.append(sigma.log().reshape(1))
        return torch.cat(parts)

    def sites(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Pyro's unconstrained value of each site, as views of θ of shape (..., size)."""
        K, D = self.n_clusters, self.n_features
        means = theta[..., K - 1 : K - 1 + K * D].reshape(*theta.shape[:-1], K, D)
        sites = {"weights": theta[..., : K - 1], "means": means}
        if self.learn_sigma:
            sites["sigma"] = theta[..., -1]
        return sites

    def constrain(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Site values ``weights`` (..., K), ``means`` (..., K, D) and ``sigma`` (...) from θ (..., size)."""
        sites = self.sites(theta)
        values = {"weights": _SIMPLEX(sites["weights"]), "means": sites["means"]}
        if self.learn_sigma:
            values["sigma"] = sites["sigma"].exp()
        return values


def _stick_breaking_log(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``log z`` (K − 1,) and ``log w`` (K,) for stick fractions ``z = sigmoid(x)``, ``w_k = z_k Π_{j<k} (1 − z_j)``."""
    log_z = -np.logaddexp(0.0, -x)
    log_weights = np.append(log_z, 0.0)
    log_weights[1:] += np.cumsum(log_z - x)  # log(1 − z) = log z − x
    return log_z, log_weights


def _stick_breaking_grad(a: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``∂/∂u_i Σ_k a_k log w_k(u) = a_i − z_i Σ_{j≥i} a_j``: a (K,), z (K − 1,) → (K − 1,)."""
    return a[:-1] - z * np.cumsum(a[::-1])[::-1][:-1]


def _log_density_constant(
    n_samples: int, n_features: int, n_clusters: int, priors: Priors, learn_sigma: bool
) -> float:
    """The terms of ``log p(X, θ)`` free of θ: the normalisers of the Dirichlet, the Normals and the σ prior."""
    alpha, two_pi = priors.alpha, 2.0 * math.pi
    constant = math.lgamma(n_clusters * alpha) - n_clusters * math.lgamma(alpha)
    constant -= n_clusters * n_features * math.log(priors.tau0 * math.sqrt(two_pi))
    constant -= 0.5 * n_samples * n_features * math.log(two_pi)
    if learn_sigma:
        constant += priors.a0 * math.log(priors.b0) - math.lgamma(priors.a0) + math.log(2.0)
    return constant


class ClosedFormPotential:
    """The potential NUTS moves on, ``U(θ) = −log p(X, sites(θ)) − log|det ∂sites/∂θ|``, in closed form.

    The same function as the potential Pyro derives by tracing
    :func:`~kmeans_limit.models.spherical_gmm_marginal` (a test holds value and gradient to it), on the
    flat θ of :class:`FlatLayout`. One chunked pass over the data gives ``Σ_n log p(x_n | θ)``, the
    responsibility-weighted counts ``N_k`` and sums ``S_k``; the gradient follows by Fisher's identity.

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features)
        The rows, used as they are: ``fit_posterior`` passes ``data.rows`` of
        :func:`~kmeans_limit.inference.data.prepare_data`, centred when that buys accuracy (the
        potential does not centre on its own). θ's means are in the frame of these rows.
    layout : FlatLayout
    priors : Priors
        In the rows' frame (``priors.shifted(data.offset)``); ``m0`` one value or one per feature.
    sigma : float, optional
        The fixed σ, given exactly when ``layout.learn_sigma`` is False.

    Attributes
    ----------
    n_calls : int
        Evaluations so far (NUTS makes one per leapfrog step).

    Notes
    -----
    With ``w = stick_breaking(u)``, the Dirichlet(α) log density ``(α − 1) Σ_k log w_k`` and the
    transform's log-Jacobian ``Σ_{i<K−1} [log w_i + log(1 − z_i)]`` add up to ``α Σ_k log w_k`` (the
    ``z_i`` are the stick fractions and ``Σ_i log(1 − z_i) = log w_K``). With ``a_k = N_k + α`` and
    ``γ_nk`` the responsibilities, the gradients of the log density are::

        ∂/∂u_i    = a_i − z_i Σ_{j≥i} a_j
        ∂/∂μ_k    = (S_k − N_k μ_k)/σ² − (μ_k − m0)/τ0²
        ∂/∂log σ  = (Σ_nk γ_nk ‖x_n − μ_k‖² + 2 b0)/σ² − N·D − 2 a0          (σ learned)

    The expansion ``‖x − μ‖² = ‖x‖² − 2 x·μ + ‖μ‖²`` is accurate in float32 on rows whose mean is
    small against their spread, which :func:`~kmeans_limit.inference.data.prepare_data` sees to (the
    one place where centring is decided). The pass over the data runs in their dtype on their device, in blocks of
    (K, rows) so that the reductions over K run along the short axis; the O(K·D) remainder runs in
    float64 NumPy, where an operation on a K-vector costs a fraction of torch's dispatch.
    """

    def __init__(self, X: torch.Tensor, layout: FlatLayout, priors: Priors, sigma: float | None = None):
        if layout.learn_sigma != (sigma is None):
            raise ValueError(f"sigma={sigma!r} does not match layout.learn_sigma={layout.learn_sigma}")
        n_samples, n_features = X.shape
        self.layout, self.priors, self.n_calls = layout, priors, 0
        self._rows = torch.cat([X, X.new_ones(n_samples, 1)], 1)  # (N, D + 1): [x_n, 1]
        self._columns = self._rows.T.contiguous()  # (D + 1, N)
        self._m0 = prior_mean(priors, n_features, torch.zeros((), dtype=torch.float64)).numpy()
        self._sum_sq = float(X.double().square().sum())
        self._n_entries = n_samples * n_features
        self._offsets = np.log(np.arange(layout.n_clusters - 1, 0, -1, dtype=np.float64))  # log(K − 1 − i)
        self._chunk = max(1, CHUNK_ENTRIES // layout.n_clusters)
        self._log_sigma = None if sigma is None else math.log(sigma)
        self._constant = _log_density_constant(
            n_samples, n_features, layout.n_clusters, priors, sigma is None
        )

    def __call__(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """``U`` at ``{"theta": θ}``, differentiable by autograd (Pyro's step-size search calls this)."""
        return _PotentialFunction.apply(params["theta"], self)

    def value_and_grad(self, params: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``U(θ)`` (a 0-dim tensor) and ``{"theta": ∇U(θ)}`` at ``{"theta": θ}``, in θ's dtype and device."""
        theta = params["theta"]
        value, grad = self.evaluate(theta.detach().cpu().double().numpy())
        return theta.new_tensor(value), {"theta": torch.from_numpy(grad).to(theta.device, theta.dtype)}

    def evaluate(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """``U`` and ``∇U`` (shape (size,)) at a float64 θ of shape (size,)."""
        self.n_calls += 1
        K, D, p = self.layout.n_clusters, self.layout.n_features, self.priors
        means = theta[K - 1 : K - 1 + K * D].reshape(K, D)
        log_sigma = theta[-1] if self._log_sigma is None else self._log_sigma
        with np.errstate(all="ignore"):  # a far leapfrog step gives NaN, which Pyro takes for a divergence
            precision = np.exp(-2.0 * log_sigma)
            log_z, log_weights = _stick_breaking_log(theta[: K - 1] - self._offsets)
            means_sq = np.einsum("kd,kd->k", means, means)
            log_lik, stats = self._e_step(means * precision, log_weights - 0.5 * precision * means_sq)
            sums, counts = stats[:, :D], stats[:, D]
            from_m0 = means - self._m0
            value = log_lik - 0.5 * precision * self._sum_sq - self._n_entries * log_sigma + self._constant
            value += p.alpha * log_weights.sum() - 0.5 * np.vdot(from_m0, from_m0) / p.tau0**2
            grad = np.empty(self.layout.size)
            grad[: K - 1] = _stick_breaking_grad(counts + p.alpha, np.exp(log_z))
            grad[K - 1 : K - 1 + K * D] = (
                (sums - counts[:, None] * means) * precision - from_m0 / p.tau0**2
            ).ravel()
            if self._log_sigma is None:
                residual = self._sum_sq - 2.0 * np.vdot(means, sums) + counts @ means_sq
                value -= 2.0 * p.a0 * log_sigma + p.b0 * precision
                grad[-1] = (residual + 2.0 * p.b0) * precision - self._n_entries - 2.0 * p.a0
        return -float(value), -grad

    def _e_step(self, scaled: np.ndarray, bias: np.ndarray) -> tuple[float, np.ndarray]:
        """``Σ_n logsumexp_k(x_n·scaled_k + bias_k)`` and ``[S | N]`` of shape (K, D + 1)."""
        weights = torch.from_numpy(np.column_stack([scaled, bias])).to(self._rows.device, self._rows.dtype)
        log_lik, stats = 0.0, 0.0
        for start in range(0, self._rows.shape[0], self._chunk):
            block = slice(start, start + self._chunk)
            logits = weights @ self._columns[:, block]  # (K, rows)
            top = logits.amax(0)
            gamma = logits.sub_(top).exp_()
            total = gamma.sum(0)
            stats = stats + gamma.div_(total) @ self._rows[block]
            log_lik += float(total.log_().sum() + top.sum())
        return log_lik, stats.cpu().double().numpy()


class _PotentialFunction(torch.autograd.Function):
    """``U(θ)`` as an autograd node whose gradient comes from the same pass as the value."""

    @staticmethod
    def forward(ctx, theta, potential):
        value, grads = potential.value_and_grad({"theta": theta})
        ctx.save_for_backward(grads["theta"])
        return value

    @staticmethod
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        return grad_output * grad, None


class _RecordingNUTS(NUTS):
    """Pyro's NUTS, keeping for each transition the tree depth and leapfrog steps of Pyro's own loop.

    Pyro's ``NUTS.sample`` counts the doublings of the tree in a local variable and returns only the
    new point. Its top-level ``_build_tree`` calls say the rest: the loop keeps a subtree of depth
    ``d`` (the tree is then ``d + 1`` deep) unless that subtree turned or diverged, where it stops at
    ``d``. ``tree_depth`` is that count, the value of Pyro's ``tree_depth`` when the transition ends
    (``max_tree_depth`` when the limit stopped it); ``n_steps`` sums the subtrees' ``num_proposals``,
    the leapfrog steps taken. ``n_steps.bit_length()`` would count an abandoned last subtree too.

    ``_build_tree`` is private Pyro: this class is tested against the Pyro versions that
    ``pyproject.toml`` allows (``pyro-ppl>=1.9,<1.10``), a test checks the signature it relies on.
    """

    def sample(self, params):
        self._nesting, self.tree_depth, self.n_steps = 0, 0, 0
        return super().sample(params)

    def _build_tree(self, z, r, z_grads, log_slice, direction, tree_depth, energy_current):
        outer = self._nesting == 0
        self._nesting += 1
        try:
            tree = super()._build_tree(z, r, z_grads, log_slice, direction, tree_depth, energy_current)
        finally:
            self._nesting -= 1
        if outer:  # a doubling of Pyro's loop in NUTS.sample (the others are its recursion)
            self.tree_depth = tree_depth if bool(tree.turning) or bool(tree.diverging) else tree_depth + 1
            self.n_steps += int(tree.num_proposals)
        return tree


class _GradientNUTS(_RecordingNUTS):
    """Pyro's NUTS whose leapfrog steps take ``U`` and ``∇U`` from ``potential_fn.value_and_grad``.

    Pyro's integrator asks autograd for ``∇U`` at every step (``pyro.ops.integrator.potential_grad``);
    with the gradient in closed form that machinery, not the potential, would be the main cost of a
    step. Only ``_build_basetree`` (one leapfrog step and its energy bookkeeping, as in Pyro 1.9) is
    replaced, with the same arithmetic; tree building, adaptation and the step-size search are Pyro's.
    A test holds its chains equal to those of Pyro's own kernel on the program's traced potential.

    ``_build_basetree`` is private Pyro, copied from Pyro 1.9: ``pyproject.toml`` pins
    ``pyro-ppl>=1.9,<1.10``, the versions this class is tested against (a test checks the signature
    of the method it replaces). Lift the bound only after that test and the chain-equality test pass
    on the new version.
    """

    def _build_basetree(self, z, r, z_grads, log_slice, direction, energy_current):
        step_size = self.step_size if direction == 1 else -self.step_size
        adapter = self.mass_matrix_adapter
        r_half = {name: value - 0.5 * step_size * z_grads[name] for name, value in r.items()}
        velocity = adapter.kinetic_grad(r_half)
        z_new = {name: value + step_size * velocity[name] for name, value in z.items()}
        potential_energy, z_new_grads = self.potential_fn.value_and_grad(z_new)
        r_new = {name: value - 0.5 * step_size * z_new_grads[name] for name, value in r_half.items()}
        r_new_unscaled = adapter.unscale(r_new)
        energy_new = potential_energy + self._kinetic_energy(r_new_unscaled)
        energy_new = scalar_like(energy_new, float("inf")) if torch_isnan(energy_new) else energy_new
        sliced_energy = energy_new + log_slice
        diverging = sliced_energy > self._max_sliced_energy
        accept_prob = (energy_current - energy_new).exp().clamp(max=1.0)
        if self.use_multinomial_sampling:
            tree_weight = -sliced_energy
        else:
            tree_weight = scalar_like(sliced_energy, 1.0 if sliced_energy <= 0 else 0.0)
        leaf = (z_new, r_new, r_new_unscaled, z_new_grads)
        proposal = (z_new, potential_energy, z_new_grads)
        return _TreeInfo(
            *leaf, *leaf, *proposal, r_new_unscaled, tree_weight, False, diverging, accept_prob, 1
        )


class _ProgramPotential:
    """Pyro's traced potential of the program, called on the flat θ, with a count of its evaluations."""

    def __init__(self, potential_fn, layout: FlatLayout):
        self.potential_fn, self.layout = potential_fn, layout
        self.n_calls = 0

    def __call__(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        self.n_calls += 1
        return self.potential_fn(self.layout.sites(params["theta"]))


def _program_potential(X, model_kwargs: dict, layout: FlatLayout, seed: int, jit_compile: bool):
    """The potential Pyro traces from the program (``initialize_model``), on θ; its coordinates checked."""
    with pyro_seed(seed, X.device):  # initialize_model runs the program once, drawing from the priors
        _, potential_fn, transforms, _ = initialize_model(
            spherical_gmm_marginal, (X,), model_kwargs, jit_compile=jit_compile, skip_jit_warnings=True
        )
    _check_parametrization(transforms, X.dtype)
    return _ProgramPotential(potential_fn, layout)


class _NutsRecorder:
    """An MCMC ``hook_fn``: per-draw step size, divergence, leapfrog steps and tree depth (Pyro's own)."""

    def __init__(self, layout: FlatLayout, num_samples: int, chain: int):
        self.layout, self.chain = layout, chain
        self.stats = {name: np.zeros(num_samples) for name in ("step_size", "n_steps", "tree_depth")}
        self.stats["diverging"] = np.zeros(num_samples, dtype=bool)
        self.divergences = 0

    def __call__(self, kernel, params, stage, i):
        for name, value in self.layout.sites(params["theta"]).items():
            if not torch.isfinite(value).all():
                raise FloatingPointError(
                    f"NUTS produced a non-finite {name} at {stage.lower()} step {i} of chain {self.chain}"
                )
        if stage != "Sample":
            return
        divergences = len(kernel.diagnostics()["divergences"])
        self.stats["diverging"][i] = divergences > self.divergences
        self.divergences = divergences
        self.stats["step_size"][i] = kernel.step_size
        self.stats["n_steps"][i] = kernel.n_steps
        self.stats["tree_depth"][i] = kernel.tree_depth


def _nuts_chain(X, model_kwargs, *, seed, chain, num_samples, num_warmup, options, progress):
    """One NUTS chain under ``pyro.poutine.seed(seed)``: constrained draws and the recorder's stats."""
    sigma, n_clusters = model_kwargs["sigma"], model_kwargs["n_clusters"]
    layout = FlatLayout(n_clusters, X.shape[1], sigma is None)
    if options["potential"] == "closed_form":
        potential = ClosedFormPotential(X, layout, model_kwargs["priors"], sigma)
        kernel_class = _GradientNUTS
    else:
        potential = _program_potential(X, model_kwargs, layout, seed, options["jit_compile"])
        kernel_class = _RecordingNUTS
    kernel = kernel_class(
        potential_fn=potential,
        target_accept_prob=options["target_accept_prob"],
        max_tree_depth=options["max_tree_depth"],
        full_mass=options["full_mass"],
    )
    recorder = _NutsRecorder(layout, num_samples, chain)
    mcmc = MCMC(
        kernel,
        num_samples=num_samples,
        warmup_steps=num_warmup,
        initial_params={"theta": layout.pack(**_init_values(X, n_clusters, sigma, seed))},
        hook_fn=recorder,
        disable_progbar=not progress,
    )
    with pyro_seed(seed, X.device):
        mcmc.run()
    return layout.constrain(mcmc.get_samples()["theta"]), recorder.stats


def _stack_chains(samples: list[dict], X: torch.Tensor, sigma: float | None) -> tuple[torch.Tensor, ...]:
    """Stack per-chain site draws into (chains, draws, ...) tensors; a fixed σ is repeated."""
    weights = torch.stack([s["weights"] for s in samples]).to(X.dtype)
    means = torch.stack([s["means"] for s in samples]).to(X.dtype)
    if sigma is None:
        return weights, means, torch.stack([s["sigma"] for s in samples]).to(X.dtype)
    return weights, means, X.new_full(weights.shape[:2], sigma)


def run_nuts(
    X: torch.Tensor,
    n_clusters: int,
    *,
    sigma: float | None,
    priors: Priors,
    num_samples: int,
    num_warmup: int,
    num_chains: int,
    seed: int,
    progress: bool,
    potential: str = "closed_form",
    jit_compile: bool = False,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    full_mass: bool = False,
) -> PosteriorDraws:
    """NUTS (Pyro's ``NUTS`` and ``MCMC``) on :func:`~kmeans_limit.models.spherical_gmm_marginal`.

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features)
        The rows to sample on (``fit_posterior`` passes ``data.rows``).
    n_clusters : int
    sigma : float > 0, optional
        Fixed σ; ``None`` learns it.
    priors : Priors
        In the frame of ``X`` (``fit_posterior`` passes ``priors.shifted(data.offset)``).
    num_samples, num_warmup, num_chains : int
        Chains run one after another, each from a k-means++ start, with seeds from :func:`chain_seeds`.
    seed : int
    progress : bool
        Pyro's progress bar.
    potential : {"closed_form", "program"}, default "closed_form"
        ``"program"`` is the potential Pyro derives by tracing the program at every gradient, its
        gradient from autograd; ``"closed_form"`` is the same function (:class:`ClosedFormPotential`,
        tested equal to it) with its gradient in closed form, at a fraction of the cost. Both move on
        Pyro's unconstrained coordinates, laid end to end in one vector (:class:`FlatLayout`).
    jit_compile : bool, default False
        JIT-compile the traced potential (``potential="program"`` only).
    target_accept_prob : float, default 0.8
    max_tree_depth : int, default 10
    full_mass : bool, default False
        Adapt a dense mass matrix instead of a diagonal one.

    Returns
    -------
    PosteriorDraws
        In the frame of ``X``, with sample stats ``diverging``, ``step_size``, ``n_steps`` (leapfrog
        steps) and ``tree_depth`` (the doublings Pyro's NUTS kept, its own count: a last subtree
        abandoned because it turned or diverged is not counted; ``max_tree_depth`` when the limit
        stopped the tree), from :class:`_RecordingNUTS`.
    """
    target_accept_prob = check_real(
        "target_accept_prob", target_accept_prob, low=0.0, high=1.0, low_open=True, high_open=True
    )
    max_tree_depth = check_positive_int("max_tree_depth", max_tree_depth)
    if potential not in POTENTIALS:
        raise ValueError(f"potential={potential!r} should be one of {POTENTIALS}")
    if jit_compile and potential != "program":
        raise ValueError("jit_compile=True compiles the traced program: use it with potential='program'")
    if not isinstance(full_mass, bool):
        raise ValueError(f"full_mass={full_mass!r} should be True or False")
    model_kwargs = {"n_clusters": n_clusters, "sigma": sigma, "priors": priors}
    options = {
        "potential": potential,
        "jit_compile": jit_compile,
        "target_accept_prob": target_accept_prob,
        "max_tree_depth": max_tree_depth,
        "full_mass": full_mass,
    }
    samples, stats = [], []
    for chain, chain_seed in enumerate(chain_seeds(seed, num_chains)):
        draws, chain_stats = _nuts_chain(
            X,
            model_kwargs,
            seed=chain_seed,
            chain=chain,
            num_samples=num_samples,
            num_warmup=num_warmup,
            options=options,
            progress=progress,
        )
        samples.append(draws)
        stats.append(chain_stats)
    sample_stats = {name: np.stack([s[name] for s in stats]) for name in stats[0]}
    return PosteriorDraws(*_stack_chains(samples, X, sigma), sample_stats, {"potential": potential})


def _check_batch_size(batch_size, n_samples: int) -> int | None:
    """``None``, or ``batch_size`` as an int in [1, n_samples]; a ValueError naming it otherwise."""
    if batch_size is None:
        return None
    batch_size = check_positive_int("batch_size", batch_size)
    if batch_size > n_samples:
        raise ValueError(f"batch_size={batch_size} should be <= n_samples={n_samples}, or None for all rows")
    return batch_size


def svi_model(n_clusters: int, *, sigma: float | None, priors: Priors, batch_size: int | None = None):
    """The marginal program SVI fits, observing ``batch_size`` random rows a call when given.

    Returns
    -------
    callable
        ``model(X)``: :func:`~kmeans_limit.models.spherical_gmm_marginal` with ``subsample_size=batch_size``.
    """
    return functools.partial(
        spherical_gmm_marginal, n_clusters=n_clusters, sigma=sigma, priors=priors, subsample_size=batch_size
    )


def _fit_guide(X, model, guide, *, num_steps, learning_rate, learning_rate_decay, progress):
    """Adam on the ELBO, its learning rate falling geometrically by ``learning_rate_decay`` over the run.

    A non-finite loss raises, naming the step. Returns Pyro's scheduler (one torch scheduler a parameter).
    """
    optim_args = {"lr": learning_rate}
    gamma = learning_rate_decay ** (1.0 / num_steps)
    scheduler = pyro.optim.ExponentialLR(
        {"optimizer": torch.optim.Adam, "optim_args": optim_args, "gamma": gamma}
    )
    svi = SVI(model, guide, scheduler, Trace_ELBO())
    for step in tqdm(range(num_steps), disable=not progress, desc="svi steps"):
        loss = svi.step(X)
        if not np.isfinite(loss):
            raise FloatingPointError(f"SVI produced a non-finite loss ({loss}) at step {step}")
        scheduler.step()
    return scheduler


def _guide_draws(guide, X: torch.Tensor, n_clusters: int, num_draws: int) -> dict:
    """``num_draws`` joint draws of the sites from a fitted guide (AutoDelta repeats its point)."""
    shapes = {"weights": (n_clusters,), "means": (n_clusters, X.shape[1]), "sigma": ()}
    if isinstance(guide, AutoDelta):
        return {
            name: value.detach().expand(num_draws, *value.shape) for name, value in guide.median(X).items()
        }
    predictive = Predictive(guide, num_samples=num_draws, parallel=True)
    with torch.no_grad():
        sites = predictive(X)
    return {
        name: sites[name].detach().reshape(num_draws, *shape)
        for name, shape in shapes.items()
        if name in sites
    }


def run_svi(
    X: torch.Tensor,
    n_clusters: int,
    *,
    method: str,
    sigma: float | None,
    priors: Priors,
    num_samples: int,
    num_chains: int,
    seed: int,
    progress: bool,
    num_warmup: int = 0,
    num_steps: int = 2000,
    learning_rate: float = 0.02,
    learning_rate_decay: float = 0.1,
    batch_size: int | None = None,
) -> PosteriorDraws:
    """SVI with ``AutoMultivariateNormal`` (``method="svi"``) or MAP with ``AutoDelta`` (``"map"``).

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features)
        The rows to fit (``fit_posterior`` passes ``data.rows``).
    n_clusters : int
    method : {"svi", "map"}
    sigma : float > 0, optional
    priors : Priors
        In the frame of ``X`` (``fit_posterior`` passes ``priors.shifted(data.offset)``).
    num_samples, num_chains : int
        Draws from the fitted guide, shaped as ``num_chains`` chains of ``num_samples`` (independent
        draws: the chains are a formatting convention here). MAP repeats its point.
    seed : int
    progress : bool
    num_warmup : int
        Unused (the optimisation has no warm-up; ``num_steps`` sets its length).
    num_steps : int, default 2000
        Adam steps on the ELBO of the marginal program, from a k-means++ start.
    learning_rate : float, default 0.02
        Adam's learning rate at the first step.
    learning_rate_decay : float in (0, 1], default 0.1
        The learning rate falls geometrically to ``learning_rate * learning_rate_decay`` at the last
        step (1 keeps it constant), so that the fit settles instead of jittering at the scale of the
        step about the optimum; the single-draw ELBO gradient is noisy, and more so with mini-batches.
    batch_size : int, optional
        Mini-batch SVI, for N too large for NUTS: each step observes ``batch_size`` rows drawn
        without replacement (``pyro.plate`` subsampling in the program), their log-likelihood scaled
        by ``N / batch_size``, an unbiased estimate of the ELBO and its gradient at O(batch_size) cost.
        An integer in [1, N]; ``None`` (the default) observes every row at every step.

    Returns
    -------
    PosteriorDraws
        In the frame of ``X``, with attributes ``guide``, ``num_steps``, ``batch_size`` (N when not given) and, for MAP,
        ``point_estimate_repeated=1``.
    """
    num_steps = check_positive_int("num_steps", num_steps)
    learning_rate = check_real("learning_rate", learning_rate, low=0.0, low_open=True)
    decay = check_real("learning_rate_decay", learning_rate_decay, low=0.0, high=1.0, low_open=True)
    batch_size = _check_batch_size(batch_size, X.shape[0])
    model = svi_model(n_clusters, sigma=sigma, priors=priors, batch_size=batch_size)
    store = pyro.get_param_store()
    saved = store.get_state()
    store.clear()
    try:
        with pyro_seed(seed, X.device):
            init = init_to_value(values=_init_values(X, n_clusters, sigma, seed))
            guide = GUIDES[method](model, init_loc_fn=init)
            schedule = {"num_steps": num_steps, "learning_rate": learning_rate, "learning_rate_decay": decay}
            _fit_guide(X, model, guide, **schedule, progress=progress)
            sites = _guide_draws(guide, X, n_clusters, num_chains * num_samples)
    finally:
        store.clear()  # set_state merges: drop the guide's parameters first
        store.set_state(saved)
    chains = [
        {name: value[c * num_samples : (c + 1) * num_samples] for name, value in sites.items()}
        for c in range(num_chains)
    ]
    attrs = {"guide": GUIDES[method].__name__, "num_steps": num_steps, "batch_size": batch_size or X.shape[0]}
    if method == "map":
        attrs["point_estimate_repeated"] = 1
    return PosteriorDraws(*_stack_chains(chains, X, sigma), {}, attrs)
