"""Every kernel and algorithm runs on the data's device and agrees with the CPU there.

Parametrized over ``cpu`` and ``cuda`` (the CUDA cases are skipped without a GPU; run them with
``benchmarks/bench_gpu.py`` or ``pytest tests/unit/test_devices.py``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kmeans_limit.inference import (
    anneal,
    em,
    fit_posterior,
    kmeans_plusplus,
    lloyd,
    nearest_centroid,
    sample_from,
    squared_distances,
    sufficient_stats,
)
from kmeans_limit.inference.kernels import log_responsibilities
from kmeans_limit.inference.lloyd import assign_labels


@pytest.fixture(scope="module")
def blobs() -> tuple[torch.Tensor, torch.Tensor]:
    """3000 float64 rows around 12 centres in 5-D, and initial centroids (rows of the data)."""
    generator = torch.Generator().manual_seed(4)
    centres = 4.0 * torch.randn(12, 5, generator=generator, dtype=torch.float64)
    X = centres[torch.arange(3000) % 12] + torch.randn(3000, 5, generator=generator, dtype=torch.float64)
    return X, X[torch.randperm(3000, generator=generator)[:12]].clone()


def on(device, *tensors):
    return tuple(t.to(device) for t in tensors)


def test_kernels_run_on_the_device_and_match_the_cpu(blobs, device):
    X, means = blobs
    log_weights = torch.full((12,), -torch.log(torch.tensor(12.0)).item(), dtype=torch.float64)
    Xd, md, lwd = on(device, X, means, log_weights)
    d2 = squared_distances(Xd, md)
    assert d2.device.type == device.type
    torch.testing.assert_close(d2.cpu(), squared_distances(X, means))
    for sigma in (0.0, 0.3, 2.0):
        got = log_responsibilities(Xd, md, lwd, sigma)[0]
        assert got.device.type == device.type
        torch.testing.assert_close(got.cpu(), log_responsibilities(X, means, log_weights, sigma)[0])
        stats, expected = sufficient_stats(Xd, md, lwd, sigma), sufficient_stats(X, means, log_weights, sigma)
        assert stats.sums.device.type == device.type
        torch.testing.assert_close(stats.sums.cpu(), expected.sums)
        assert stats.log_likelihood == pytest.approx(expected.log_likelihood, rel=1e-10)
    labels, min_sq = nearest_centroid(Xd, md)
    assert torch.equal(labels.cpu(), nearest_centroid(X, means)[0])
    assert torch.equal(assign_labels(Xd, md).cpu(), labels.cpu())


def test_lloyd_on_the_device_equals_the_cpu(blobs, device):
    X, init = blobs
    expected = lloyd(X, init, tol=0.0)
    got = lloyd(*on(device, X, init), tol=0.0)
    assert got.means.device.type == device.type and got.labels.device.type == device.type
    torch.testing.assert_close(got.means.cpu(), expected.means, rtol=1e-10, atol=1e-10)
    assert torch.equal(got.labels.cpu(), expected.labels)
    assert got.n_iter == expected.n_iter


def test_em_on_the_device_equals_the_cpu(blobs, device):
    X, init = blobs
    expected = em(X, init, max_iter=300)
    got = em(*on(device, X, init), max_iter=300)
    assert got.means.device.type == device.type
    torch.testing.assert_close(got.means.cpu(), expected.means, rtol=1e-8, atol=1e-8)
    assert got.sigma == pytest.approx(expected.sigma, rel=1e-8)
    assert got.log_likelihood == pytest.approx(expected.log_likelihood, rel=1e-10)


def test_kmeans_plusplus_draws_rows_on_the_device(blobs, device):
    X = blobs[0].to(device)
    centres = kmeans_plusplus(X, 12, seed=1)
    assert centres.device.type == device.type
    assert torch.equal(centres, kmeans_plusplus(X, 12, seed=1))
    assert ((centres[:, None] - X[None]).abs().sum(-1).min(1).values == 0).all()  # rows of X


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_anneal_on_the_device_ends_at_a_lloyd_fixed_point(blobs, device, dtype):
    X = blobs[0].to(device=device, dtype=dtype)
    result = anneal(X, 12)
    assert result.means.device.type == device.type and result.labels.device.type == device.type
    assert torch.isfinite(result.means).all() and torch.isfinite(result.path.log_likelihood).all()
    step = lloyd(X, result.means, max_iter=1, tol=0.0)
    assert torch.equal(step.labels, result.labels)
    cpu = anneal(blobs[0], 12)
    assert result.inertia == pytest.approx(cpu.inertia, rel=1e-4 if dtype == torch.float32 else 1e-9)


@pytest.mark.parametrize("method", ["gibbs", "nuts", "svi"])
def test_posterior_samplers_and_sampling_run_on_the_device(blobs, device, method):
    X = blobs[0][:300].to(device)
    options = {"num_steps": 50} if method == "svi" else {}
    idata = fit_posterior(
        X, 3, method=method, num_samples=20, num_warmup=10, num_chains=2, progress=False, **options
    )
    assert idata.posterior["sigma"].shape == (2, 20)
    assert np.isfinite(idata.log_likelihood["x"].values).all()
    generated = sample_from(blobs[1][:3].to(device), 50, sigma=0.5, seed=0)
    assert generated.x.device.type == device.type


def test_seeded_draws_leave_the_callers_random_states_alone(blobs, device):
    """Pyro reseeds CUDA's generator under ``poutine.seed``: the package saves and restores it."""
    torch.manual_seed(123)
    cpu_state = torch.get_rng_state()
    cuda_state = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    sample_from(blobs[1][:3].to(device), 50, sigma=0.5, seed=7)
    assert torch.equal(torch.get_rng_state(), cpu_state)
    if cuda_state is not None:
        assert torch.equal(torch.cuda.get_rng_state(device), cuda_state)
