"""The DP Gibbs posterior of the number of occupied clusters and of co-clustering against exact enumeration.

On N = 6 rows and the truncation K = 5, every labelled assignment z ∈ {0..4}^6 (15 625 of them) is
enumerated; the sticks integrate out in closed form (:func:`stick_log_marginal`, itself held against
the traced program by quadrature in tests/unit/test_dp_model.py), the means by conjugacy (each block
is N(m0·1, σ² I + τ0² 11ᵀ) per feature), and a learned σ² or a Gamma-distributed α by quadrature on a
log-spaced grid (trapezoid, 400 and 600 nodes: relative error far below the Monte-Carlo error). Each
posterior probability from Gibbs must lie within 4 MCSE of the exact one (``az.mcse`` of the indicator,
floored at the i.i.d. standard error of the exact probability, for states a chain rarely visits).
"""

import itertools
import math

import numpy as np
import pytest
import torch

from kmeans_limit.inference import arviz_compat
from kmeans_limit.inference.dp_kernels import stick_log_marginal
from kmeans_limit.inference.dp_posterior import fit_dp_posterior
from kmeans_limit.models import Priors

F64 = torch.float64
X = torch.tensor([[-1.3, 0.2], [-0.9, -0.1], [-0.2, 0.4], [0.5, -0.3], [1.0, 0.1], [1.4, 0.5]], dtype=F64)
PRIORS = Priors(m0=(0.1, 0.0), tau0=1.5, a0=3.0, b0=1.0)
K = 5


def block_log_marginal(labels: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
    """Σ_k log N(x_k-block | m0 1, σ² I + τ0² 11ᵀ) for every z (rows of ``labels``) and σ² (last axis)."""
    y = X - torch.tensor(PRIORS.m0, dtype=F64)
    one_hot = torch.nn.functional.one_hot(labels, K).to(F64)  # (Z, N, K)
    n = one_hot.sum(1)[..., None]  # (Z, K, 1)
    s = torch.einsum("znk,nd->zkd", one_hot, y)  # (Z, K, D)
    q = torch.einsum("znk,n->zk", one_hot, y.square().sum(-1))[..., None]  # (Z, K, 1)
    s2, t2, d = sigma2, PRIORS.tau0**2, X.shape[1]
    quad = (q - t2 * s.square().sum(-1, keepdim=True) / (s2 + n * t2)) / s2
    log_det = d * (n * torch.log(s2) + torch.log1p(n * t2 / s2))
    per_block = -0.5 * (n * d * math.log(2 * math.pi) + log_det + quad)
    return per_block.sum(1)  # (Z, n_sigma2)


def log_trapezoid(log_f: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log ∫ exp(log_f) dx over the last axis (trapezoid on the nodes x)."""
    widths = torch.diff(x)
    pairs = torch.logaddexp(log_f[..., 1:], log_f[..., :-1]) + torch.log(widths / 2)
    return torch.logsumexp(pairs, -1)


def exact_posterior(sigma=None, concentration=None, concentration_prior=None):
    labels = torch.tensor(list(itertools.product(range(K), repeat=X.shape[0])))
    counts = torch.nn.functional.one_hot(labels, K).sum(1).to(F64)
    if concentration_prior is None:
        log_prior_z = stick_log_marginal(counts, math.log(concentration))
    else:
        alpha = torch.logspace(-4, 2.5, 600, dtype=F64)
        a, b = concentration_prior
        log_gamma = a * math.log(b) - math.lgamma(a) + (a - 1) * alpha.log() - b * alpha
        log_prior_z = log_trapezoid(stick_log_marginal(counts[:, None, :], alpha.log()) + log_gamma, alpha)
    if sigma is not None:
        log_lik = block_log_marginal(labels, torch.tensor([sigma**2], dtype=F64))[:, 0]
    else:
        s2 = torch.logspace(-3, 2, 400, dtype=F64)
        a0, b0 = PRIORS.a0, PRIORS.b0
        log_ig = a0 * math.log(b0) - math.lgamma(a0) - (a0 + 1) * s2.log() - b0 / s2
        log_lik = log_trapezoid(block_log_marginal(labels, s2) + log_ig, s2)
    log_post = log_prior_z + log_lik
    p = torch.softmax(log_post, 0)
    occupied = (counts > 0).sum(-1)
    count_probs = {m: float(p[occupied == m].sum()) for m in range(1, K + 1)}
    same = (labels[:, :, None] == labels[:, None, :]).to(F64)
    coclustering = torch.einsum("z,zij->ij", p, same).numpy()
    return count_probs, coclustering


def within_mcse(indicator: np.ndarray, exact: float, label: str):
    draws = indicator.astype(float)
    mcse = arviz_compat.mcse(draws.reshape(1, -1)) if draws.std() > 0 else 0.0
    floor = math.sqrt(exact * (1 - exact) / draws.size)
    error = abs(draws.mean() - exact)
    assert error <= 4 * max(mcse, floor) + 1e-12, (
        f"{label}: {draws.mean():.4f} vs exact {exact:.4f} (mcse {mcse:.4f})"
    )


# The exact answer is that of the truncated program itself, so its last component being used is expected.
@pytest.mark.filterwarnings("ignore::kmeans_limit.inference.dp_posterior.TruncationWarning")
@pytest.mark.parametrize(
    "options",
    [
        dict(sigma=0.5, concentration=1.0),
        dict(sigma=0.5, concentration_prior=(2.0, 2.0)),
        dict(concentration=0.7),
    ],
    ids=["fixed", "alpha-gamma", "sigma-learned"],
)
def test_occupied_count_and_coclustering_equal_enumeration(options):
    idata = fit_dp_posterior(
        X, K, priors=PRIORS, num_samples=2500, num_warmup=200, num_chains=4, seed=5, **options
    )
    count_probs, coclustering = exact_posterior(**options)
    occupied = idata.posterior.n_occupied.values
    for m, exact in count_probs.items():
        within_mcse(occupied == m, exact, f"P(occupied = {m})")
    # the co-clustering of each pair, from the kept labels: rebuilt from the cluster sizes is not enough,
    # so compare the matrix with the exact one within 4 of the largest pair's i.i.d. error and the
    # per-pair MCSE bound 4·sqrt(p(1 − p)/ESS) with the ESS of the occupied count
    ess = arviz_compat.ess(occupied.astype(float).reshape(1, -1))
    co = idata.coclustering.probability.values
    bound = 4 * np.sqrt(np.maximum(coclustering * (1 - coclustering), 1e-12) / min(ess, occupied.size))
    assert (np.abs(co - coclustering) <= bound + 1e-9).all(), np.abs(co - coclustering).max()
