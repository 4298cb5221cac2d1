"""Pyro's own inference on the marginal program: NUTS, and SVI with an autoguide (MAP with AutoDelta).

Chains run one after another in this process, each under ``pyro.poutine.seed`` with a seed derived
from the caller's, so the draws depend on the seed alone and the caller's global RNG state (and Pyro's
parameter store) are left as they were.
"""

from __future__ import annotations

import functools

import numpy as np
import pyro
import torch
from pyro.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO
from pyro.infer.autoguide import AutoDelta, AutoMultivariateNormal, init_to_value
from pyro.infer.mcmc.util import initialize_model
from tqdm.auto import tqdm

from ..models import Priors, spherical_gmm_marginal
from ._validation import check_positive_int, check_real
from .density import MarginalPotential
from .gibbs import initial_state
from .idata import PosteriorDraws

__all__ = ["chain_seeds", "run_nuts", "run_svi"]

POTENTIALS = ("closed_form", "program")
GUIDES = {"svi": AutoMultivariateNormal, "map": AutoDelta}


def chain_seeds(seed: int, num_chains: int) -> list[int]:
    """Independent 32-bit seeds (what ``pyro.set_rng_seed`` takes), one a chain, from ``SeedSequence(seed)``."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(num_chains, dtype=np.uint32)]


def _init_values(X: torch.Tensor, n_clusters: int, sigma: float | None, seed: int) -> dict:
    """A k-means++ start for one chain, as Pyro site values."""
    generator = torch.Generator(device=X.device).manual_seed(seed)
    start = initial_state(X, n_clusters, 1, sigma, generator)
    values = {"weights": start.weights[0], "means": start.means[0]}
    if sigma is None:
        values["sigma"] = start.sigma[0]
    return values


class _CountingPotential:
    """Pyro's traced potential with a count of its evaluations (one per leapfrog step)."""

    def __init__(self, potential_fn):
        self.potential_fn = potential_fn
        self.n_calls = 0

    def __call__(self, params):
        self.n_calls += 1
        return self.potential_fn(params)


class _NutsRecorder:
    """An MCMC ``hook_fn``: per-draw step size, divergence, leapfrog steps and tree depth."""

    def __init__(self, potential, num_samples: int, chain: int):
        self.potential, self.chain = potential, chain
        self.stats = {name: np.zeros(num_samples) for name in ("step_size", "n_steps", "tree_depth")}
        self.stats["diverging"] = np.zeros(num_samples, dtype=bool)
        self.calls_before, self.divergences = 0, 0

    def __call__(self, kernel, params, stage, i):
        n_steps, self.calls_before = self.potential.n_calls - self.calls_before, self.potential.n_calls
        for name, value in params.items():
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
        self.stats["n_steps"][i] = n_steps
        self.stats["tree_depth"][i] = int(n_steps).bit_length()


def _nuts_chain(X, model_kwargs, *, seed, chain, num_samples, num_warmup, options, progress):
    """One NUTS chain under ``pyro.poutine.seed(seed)``: constrained draws and the recorder's stats."""
    sigma, n_clusters = model_kwargs["sigma"], model_kwargs["n_clusters"]
    with pyro.poutine.seed(rng_seed=seed):
        init, program_potential, transforms, _ = initialize_model(
            spherical_gmm_marginal,
            (X,),
            model_kwargs,
            jit_compile=options["jit_compile"],
            skip_jit_warnings=True,
            init_strategy=init_to_value(values=_init_values(X, n_clusters, sigma, seed)),
        )
        if options["potential"] == "closed_form":
            potential = MarginalPotential(X, model_kwargs["priors"], transforms, sigma)
        else:
            potential = _CountingPotential(program_potential)
        kernel = NUTS(
            potential_fn=potential,
            transforms=transforms,
            target_accept_prob=options["target_accept_prob"],
            max_tree_depth=options["max_tree_depth"],
        )
        recorder = _NutsRecorder(potential, num_samples, chain)
        mcmc = MCMC(
            kernel,
            num_samples=num_samples,
            warmup_steps=num_warmup,
            initial_params=init,
            hook_fn=recorder,
            disable_progbar=not progress,
        )
        mcmc.run()
    return mcmc.get_samples(), recorder.stats


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
) -> PosteriorDraws:
    """NUTS (Pyro's ``NUTS`` and ``MCMC``) on :func:`~kmeans_limit.models.spherical_gmm_marginal`.

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features)
    n_clusters : int
    sigma : float > 0, optional
        Fixed σ; ``None`` learns it.
    priors : Priors
    num_samples, num_warmup, num_chains : int
        Chains run one after another, each from a k-means++ start, with seeds from :func:`chain_seeds`.
    seed : int
    progress : bool
        Pyro's progress bar.
    potential : {"closed_form", "program"}, default "closed_form"
        ``"program"`` is the potential Pyro derives by tracing the program at every gradient;
        ``"closed_form"`` is the same function (:class:`~kmeans_limit.inference.density.MarginalPotential`,
        tested equal to it) at a fraction of the cost. Both move on Pyro's unconstrained space.
    jit_compile : bool, default False
        JIT-compile the traced potential (``potential="program"`` only).
    target_accept_prob : float, default 0.8
    max_tree_depth : int, default 10

    Returns
    -------
    PosteriorDraws
        With sample stats ``diverging``, ``step_size``, ``n_steps`` (leapfrog steps, counted as
        potential evaluations) and ``tree_depth`` (``n_steps.bit_length()``: the doublings of the tree).
    """
    target_accept_prob = check_real(
        "target_accept_prob", target_accept_prob, low=0.0, high=1.0, low_open=True, high_open=True
    )
    max_tree_depth = check_positive_int("max_tree_depth", max_tree_depth)
    if potential not in POTENTIALS:
        raise ValueError(f"potential={potential!r} should be one of {POTENTIALS}")
    if jit_compile and potential != "program":
        raise ValueError("jit_compile=True compiles the traced program: use it with potential='program'")
    model_kwargs = {"n_clusters": n_clusters, "sigma": sigma, "priors": priors}
    options = {
        "potential": potential,
        "jit_compile": jit_compile,
        "target_accept_prob": target_accept_prob,
        "max_tree_depth": max_tree_depth,
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


def _fit_guide(X, model, guide, *, num_steps, learning_rate, progress) -> None:
    """Adam on the ELBO; a non-finite loss raises, naming the step."""
    svi = SVI(model, guide, pyro.optim.Adam({"lr": learning_rate}), Trace_ELBO())
    for step in tqdm(range(num_steps), disable=not progress, desc="svi"):
        loss = svi.step(X)
        if not np.isfinite(loss):
            raise FloatingPointError(f"SVI produced a non-finite loss ({loss}) at step {step}")


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
) -> PosteriorDraws:
    """SVI with ``AutoMultivariateNormal`` (``method="svi"``) or MAP with ``AutoDelta`` (``"map"``).

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features)
    n_clusters : int
    method : {"svi", "map"}
    sigma : float > 0, optional
    priors : Priors
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

    Returns
    -------
    PosteriorDraws
        With attributes ``guide`` and, for MAP, ``point_estimate_repeated=1``.
    """
    num_steps = check_positive_int("num_steps", num_steps)
    learning_rate = check_real("learning_rate", learning_rate, low=0.0, low_open=True)
    model = functools.partial(spherical_gmm_marginal, n_clusters=n_clusters, sigma=sigma, priors=priors)
    store = pyro.get_param_store()
    saved = store.get_state()
    store.clear()
    try:
        with pyro.poutine.seed(rng_seed=seed):
            init = init_to_value(values=_init_values(X, n_clusters, sigma, seed))
            guide = GUIDES[method](model, init_loc_fn=init)
            _fit_guide(X, model, guide, num_steps=num_steps, learning_rate=learning_rate, progress=progress)
            sites = _guide_draws(guide, X, n_clusters, num_chains * num_samples)
    finally:
        store.clear()  # set_state merges: drop the guide's parameters first
        store.set_state(saved)
    chains = [
        {name: value[c * num_samples : (c + 1) * num_samples] for name, value in sites.items()}
        for c in range(num_chains)
    ]
    attrs = {"guide": GUIDES[method].__name__, "num_steps": num_steps}
    if method == "map":
        attrs["point_estimate_repeated"] = 1
    return PosteriorDraws(*_stack_chains(chains, X, sigma), {}, attrs)
