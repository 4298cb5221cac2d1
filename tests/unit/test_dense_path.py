"""The dense annealing path: equilibrium at every level, splits at the critical σ, the limit J/N at the end."""

import math

import pytest
import torch

from kmeans_limit.inference import anneal
from kmeans_limit.inference.dense_path import DensePath, dense_path
from kmeans_limit.inference.em import m_step
from kmeans_limit.inference.kernels import sufficient_stats
from kmeans_limit.inference.lloyd import lloyd


@pytest.fixture
def path3(three_blobs) -> tuple[torch.Tensor, DensePath]:
    X, _ = three_blobs
    return X, dense_path(X, 3)


def _nearest_born(X, means, weights):
    """Squared distance to, and index of, the nearest centroid of positive weight."""
    d2 = torch.cdist(X, means).square()
    d2[:, weights <= 0] = math.inf
    return d2.min(1)


def test_free_energy_is_within_the_sigma2_log_sigma2_bound_of_the_inertia_at_every_level(path3):
    # Per row, with d = min_k ‖x − μ_k‖², k* the nearest centroid and φ(d) = (2πσ²)^(−D/2) e^(−d/2σ²):
    # π_k* φ(d) <= p(x) <= φ(d), so 0 <= F − J(μ_σ)/N − Dσ² log(2πσ²) <= −2σ² mean log π_k*.
    X, path = path3
    n, d = X.shape
    for sigma, means, weights, free in zip(
        path.sigma, path.means, path.weights, path.free_energy, strict=True
    ):
        sigma, free = sigma.item(), free.item()
        d2, nearest = _nearest_born(X, means, weights)
        gap = free - d2.mean().item() - d * sigma**2 * math.log(2 * math.pi * sigma**2)
        upper = -2 * sigma**2 * weights[nearest].log().mean().item()
        assert -1e-10 <= gap <= upper + 1e-10
    # ... and at the last levels F is J/N of the σ = 0 end to within that bound (plus how far the last
    # level's centroids are from Lloyd's fixed point, in inertia).
    sigma = path.sigma[-1].item()
    assert sigma <= path.sigma_star / 20
    d2, nearest = _nearest_born(X, path.means[-1], path.weights[-1])
    bound = (
        abs(d * sigma**2 * math.log(2 * math.pi * sigma**2))
        - 2 * sigma**2 * path.weights[-1][nearest].log().mean().item()
    )
    assert abs(path.free_energy[-1].item() - path.mean_inertia) <= bound + abs(
        d2.mean().item() - path.mean_inertia
    )
    assert abs(path.free_energy[-1].item() - path.mean_inertia) < 0.03 * path.mean_inertia
    assert abs(d2.mean().item() - path.mean_inertia) < 1e-6 * path.mean_inertia


def test_every_level_is_an_em_fixed_point_at_its_sigma(path3):
    X, path = path3
    spread = X.var(0, unbiased=False).mean().sqrt().item()
    assert path.converged.all()
    for sigma, means, weights in zip(path.sigma.tolist(), path.means, path.weights, strict=True):
        born = weights > 0
        stats = sufficient_stats(X, means[born], weights[born].log(), sigma)
        new, _, _ = m_step(stats, means[born], learn_weights=True, learn_sigma=False, sigma=sigma)
        # EM stopped when its last plain step moved no centroid by more than the default tol (1e-7
        # of the spread). The step after it is not bounded by that: right after a SQUAREM jump the
        # steps may grow for a while before they contract (1.003 tol here at one level, after the
        # E step's rounding changed in its last bit). A level that is no fixed point moves by far more.
        assert (new - means[born]).norm(dim=1).max().item() < 2e-7 * spread


def _mirrored_pair(n=60, offset=3.0, seed=0) -> torch.Tensor:
    """Two clusters at (±offset, 0), exactly symmetric under x → −x (one is the other mirrored)."""
    generator = torch.Generator().manual_seed(seed)
    blob = torch.tensor([offset, 0.0], dtype=torch.float64) + 0.5 * torch.randn(
        n, 2, generator=generator, dtype=torch.float64
    )
    return torch.cat([blob, -blob])


def test_a_symmetric_pair_of_clusters_bifurcates_within_5_percent_of_sqrt_lambda_max():
    X = _mirrored_pair()
    sigma_c = torch.linalg.eigvalsh(torch.cov(X.T, correction=0)).max().sqrt().item()
    path = dense_path(X, 2)
    separation = (path.means[:, 0] - path.means[:, 1]).norm(dim=1)
    apart = path.sigma[separation > 0.05 * sigma_c]
    assert 0.95 * sigma_c <= apart.max().item() <= sigma_c
    above = path.sigma > sigma_c
    assert above.any() and (separation[above] == 0).all() and (path.weights[above, 1] == 0).all()
    assert path.critical_sigma[0].item() == pytest.approx(sigma_c, rel=1e-9)  # one cluster: Cov X itself
    assert 0.95 * sigma_c <= path.split_sigma[0].item() <= sigma_c
    # The data are symmetric, and so is the pitchfork: the children are mirror images at every σ.
    after = ~above
    torch.testing.assert_close(path.means[after, 0], -path.means[after, 1], atol=1e-6, rtol=0)


def test_finer_cooling_gives_more_levels_never_fewer(three_blobs):
    X, _ = three_blobs
    for sigma_end in (None, 0.05):
        counts = [len(dense_path(X, 3, cooling=c, sigma_end=sigma_end).sigma) for c in (0.6, 0.8, 0.9)]
        assert counts == sorted(counts) and len(set(counts)) == len(counts)


def test_the_end_is_a_lloyd_fixed_point_and_matches_anneal(path3):
    X, path = path3
    step = lloyd(X, path.final_means, max_iter=1)
    torch.testing.assert_close(step.means, path.final_means, atol=1e-12, rtol=0)
    assert torch.equal(step.labels, path.labels)
    assert path.inertia == pytest.approx(anneal(X, 3).inertia, rel=1e-9)
    assert path.mean_inertia == pytest.approx(path.inertia / X.shape[0])
    assert path.sigma_star == pytest.approx(math.sqrt(path.inertia / X.numel()))
    torch.testing.assert_close(
        path.final_weights, torch.bincount(path.labels, minlength=3).double() / X.shape[0]
    )
    assert path.births.tolist()[0] == 0 and path.parents.tolist()[0] == -1
    assert (path.split_sigma <= path.critical_sigma).all()


def test_far_from_the_origin_the_path_moves_with_the_data(three_blobs):
    X, _ = three_blobs
    shift = torch.tensor([1e4, -3e4], dtype=torch.float64)
    near, far = dense_path(X, 3, cooling=0.9), dense_path(X + shift, 3, cooling=0.9)
    torch.testing.assert_close(far.sigma, near.sigma, rtol=1e-9, atol=0)
    torch.testing.assert_close(far.means - shift, near.means, atol=1e-6, rtol=0)
    torch.testing.assert_close(far.free_energy, near.free_energy, rtol=1e-7, atol=1e-9)


def test_float32_gives_the_float64_path_to_its_precision(three_blobs):
    X, _ = three_blobs
    single, double = dense_path(X.float(), 3, cooling=0.9, tol=1e-5), dense_path(X, 3, cooling=0.9, tol=1e-5)
    assert single.means.dtype == torch.float32 and torch.isfinite(single.free_energy).all()
    assert single.inertia == pytest.approx(double.inertia, rel=1e-4)
    torch.testing.assert_close(single.split_sigma, double.split_sigma, rtol=1e-4, atol=0)


def test_integer_sample_weights_are_repeated_rows(three_blobs):
    X, _ = three_blobs
    counts = torch.arange(X.shape[0]) % 3 + 1
    # Tight tol: near a transition EM converges slowly, and a level is then only tol / (1 − rate) from
    # its fixed point (5e-5 at the default tol here): both runs must be close to the same fixed points.
    options = dict(cooling=0.9, tol=1e-11, max_iter=20_000)
    weighted = dense_path(X, 3, sample_weight=counts.double(), **options)
    repeated = dense_path(X.repeat_interleave(counts, 0), 3, **options)
    torch.testing.assert_close(weighted.sigma, repeated.sigma, rtol=1e-12, atol=0)
    torch.testing.assert_close(weighted.means, repeated.means, atol=1e-6, rtol=0)
    torch.testing.assert_close(weighted.free_energy, repeated.free_energy, atol=1e-7, rtol=1e-7)


def test_equal_weights_hold_every_born_component_at_one_over_m(three_blobs):
    X, _ = three_blobs
    path = dense_path(X, 3, weights="equal", cooling=0.9)
    for weights in path.weights:
        born = weights > 0
        torch.testing.assert_close(
            weights[born], torch.full((int(born.sum()),), 1 / born.sum().item(), dtype=X.dtype)
        )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"cooling": 1.0}, r"cooling=1\.0 should be a finite number in \(0, 1\)"),
        ({"weights": "mass"}, "weights='mass' should be 'learn' or 'equal'"),
        ({"tol": 0.0}, r"tol=0\.0 should be a finite number in \(0, inf\)"),
        (
            {"sigma_start": 1.0, "sigma_end": 2.0},
            "sigma_end=2.0 should be below the first level sigma_start=1.0",
        ),
        ({"max_iter": 0}, "max_iter=0 should be an integer >= 1"),
    ],
)
def test_bad_values_are_named(three_blobs, kwargs, match):
    with pytest.raises(ValueError, match=match):
        dense_path(three_blobs[0], 3, **kwargs)


def test_more_clusters_than_distinct_rows_is_refused():
    with pytest.raises(ValueError, match="n_clusters"):
        dense_path(torch.zeros(5, 2, dtype=torch.float64), 2)
