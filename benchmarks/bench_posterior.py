"""Effective samples per second of the posterior samplers, against NumPyro's NUTS on the same model.

Run as a script (``python benchmarks/bench_posterior.py``). For each N (K = 3, D = 2, data drawn from
the program at σ = 0.5) it runs ``fit_posterior(method="gibbs")``, ``fit_posterior(method="nuts")``
and NumPyro's NUTS on the same marginal model, and prints, for each, the bulk ESS (``az.ess``) of σ,
of the sorted weights (the smallest of the K), of lp, their minimum, and that minimum per second of
wall time, with the ratio to NumPyro's; for the two NUTS, the mean leapfrog steps per kept draw too
(equal steps put the whole ratio on the cost of a step). The numbers are not asserted anywhere.

What is timed: ``fit_posterior`` end to end (sampling, pointwise log-likelihood, lp, relabelling) for
the package; ``MCMC.run`` after a first run that compiled it, for NumPyro. lp is the same quantity for
all three (log p(X, θ) with z summed out, computed by the package from the draws). Each method runs
``--repeat`` times with different seeds and the best ESS/s is kept (the machine may be shared).

NumPyro and JAX are optional (the ``bench`` extra): without them the NumPyro column is skipped.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _data import machine

from kmeans_limit.inference import fit_posterior, invariant_summary, sample_from
from kmeans_limit.inference.idata import PosteriorDraws, to_inference_data
from kmeans_limit.models import Priors

CENTRES = [[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]]


def make_data(n_samples: int, seed: int = 0) -> torch.Tensor:
    centres = torch.tensor(CENTRES, dtype=torch.float64)
    return sample_from(centres, n_samples, sigma=0.5, seed=seed).x


def ess_row(idata, seconds: float, steps: float = float("nan")) -> dict:
    """Bulk ESS of σ, the sorted weights (smallest) and lp, the minimum per second, and ``steps``."""
    table = invariant_summary(idata, kind="diagnostics")["ess_bulk"]
    weights = table[[name for name in table.index if name.startswith("weights_sorted")]].min()
    row = {"seconds": seconds, "ess_sigma": table["sigma"], "ess_weights": weights, "ess_lp": table["lp"]}
    row["steps"] = steps
    row["ess_min"] = min(row["ess_sigma"], row["ess_weights"], row["ess_lp"])
    row["ess_per_s"] = row["ess_min"] / seconds
    return row


def run_package(X: torch.Tensor, method: str, args) -> dict:
    chains = args.gibbs_chains if method == "gibbs" else args.chains
    options = {
        "num_samples": args.samples,
        "num_warmup": args.warmup,
        "num_chains": chains,
        "progress": False,
    }
    rows = []
    for repeat in range(args.repeat):
        start = time.perf_counter()
        idata = fit_posterior(X, 3, method=method, seed=1 + repeat, **options)
        seconds = time.perf_counter() - start
        steps = idata.sample_stats["n_steps"].mean().item() if method == "nuts" else float("nan")
        rows.append(ess_row(idata, seconds, steps))
    return max(rows, key=lambda row: row["ess_per_s"])


def numpyro_model():
    """The marginal program, written again in NumPyro (same priors, same σ² ~ InverseGamma)."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as nd

    priors = Priors()

    def model(X, n_clusters):
        weights = numpyro.sample("weights", nd.Dirichlet(jnp.full(n_clusters, priors.alpha)))
        with numpyro.plate("components", n_clusters):
            means = numpyro.sample(
                "means", nd.Normal(priors.m0, priors.tau0).expand([X.shape[1]]).to_event(1)
            )
        sigma2 = nd.InverseGamma(priors.a0, priors.b0)
        sigma = numpyro.sample("sigma", nd.TransformedDistribution(sigma2, nd.transforms.PowerTransform(0.5)))
        components = nd.Normal(means, sigma).to_event(1)
        with numpyro.plate("data", X.shape[0]):
            numpyro.sample("x", nd.MixtureSameFamily(nd.Categorical(weights), components), obs=X)

    return model


def run_numpyro(X: torch.Tensor, args) -> dict | None:
    try:
        import jax
        from numpyro.infer import MCMC, NUTS
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    mcmc = MCMC(
        NUTS(numpyro_model()),
        num_warmup=args.warmup,
        num_samples=args.samples,
        num_chains=args.chains,
        chain_method="sequential",
        progress_bar=False,
    )
    data = jax.numpy.asarray(X.numpy())
    mcmc.run(jax.random.PRNGKey(0), data, 3, extra_fields=("num_steps",))  # compiles
    rows = []
    for repeat in range(args.repeat):
        start = time.perf_counter()
        mcmc.run(jax.random.PRNGKey(1 + repeat), data, 3, extra_fields=("num_steps",))
        samples = jax.block_until_ready(mcmc.get_samples(group_by_chain=True))
        seconds = time.perf_counter() - start
        steps = float(np.mean(mcmc.get_extra_fields()["num_steps"]))
        as_torch = {name: torch.as_tensor(np.array(value)) for name, value in samples.items()}
        draws = PosteriorDraws(as_torch["weights"], as_torch["means"], as_torch["sigma"], {}, {})
        idata = to_inference_data(draws, X, sigma=None, priors=Priors(), attrs={"method": "numpyro"})
        rows.append(ess_row(idata, seconds, steps))
    return max(rows, key=lambda row: row["ess_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 5000])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--chains", type=int, default=2, help="chains of Pyro's and NumPyro's NUTS")
    parser.add_argument("--gibbs-chains", type=int, default=4, help="chains of Gibbs (vectorized)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per method; the best ESS/s is kept")
    args = parser.parse_args()
    print(machine())
    print(f"draws {args.samples} after {args.warmup} warm-up; best ESS/s of {args.repeat} runs")
    header = (
        f"{'N':>6} {'method':>8} {'s':>7} {'steps':>6} {'ESS σ':>7} {'ESS w':>7} {'ESS lp':>7} {'ESS/s':>8}"
        f" {'× NumPyro':>9}"
    )
    print(header)
    for n_samples in args.sizes:
        X = make_data(n_samples)
        rows = {"numpyro": run_numpyro(X, args)}
        rows["gibbs"] = run_package(X, "gibbs", args)
        rows["nuts"] = run_package(X, "nuts", args)
        reference = rows["numpyro"]["ess_per_s"] if rows["numpyro"] else None
        for method, row in rows.items():
            if row is None:
                print(f"{n_samples:>6} {method:>8}  (not installed: pip install 'kmeans-limit[bench]')")
                continue
            ratio = f"{row['ess_per_s'] / reference:9.2f}" if reference else f"{'-':>9}"
            print(
                f"{n_samples:>6} {method:>8} {row['seconds']:7.1f} {row['steps']:6.2f} {row['ess_sigma']:7.0f} "
                f"{row['ess_weights']:7.0f} {row['ess_lp']:7.0f} {row['ess_per_s']:8.1f} {ratio}"
            )


if __name__ == "__main__":
    main()
