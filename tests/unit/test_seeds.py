"""One seed rule for the whole API: an integer in [0, 2**32 - 1], seeds derived by derive_seeds.

Before: ``anneal(seed=2**40)`` ran, ``fit_posterior(seed=2**40)`` raised, and
``tempered_path(seed=2**32 - 1)`` failed at its second σ (it fitted with ``seed + i``).
"""

import warnings

import numpy as np
import pytest
import torch

from kmeans_limit.inference import (
    anneal,
    compare_k,
    fit_posterior,
    kmeans_plusplus,
    sample_from,
    sample_prior,
    tempered_path,
)
from kmeans_limit.inference.compare import kmeans_reference
from kmeans_limit.inference.validation import check_seed, derive_seeds, make_generator

TOP = 2**32 - 1
MATCH = r"should be an integer in \[0, 2\*\*32 - 1\]"


@pytest.fixture(scope="module")
def X():
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-3.0, 0.0], [3.0, 0.0]], dtype=torch.float64)
    return centres.repeat(15, 1) + 0.5 * torch.randn(30, 2, generator=generator, dtype=torch.float64)


@pytest.mark.parametrize("seed", [0, 1, 2**31, TOP, np.uint32(7), np.int64(TOP)])
def test_check_seed_takes_the_range(seed):
    assert check_seed(seed) == int(seed) and type(check_seed(seed)) is int


@pytest.mark.parametrize("seed", [-1, 2**32, 2**40, 1.0, True, "3", None])
def test_check_seed_refuses_the_rest(seed):
    with pytest.raises(ValueError, match=rf"seed={seed!r} {MATCH}"):
        check_seed(seed)


def test_derived_seeds_stay_in_range_are_reproducible_and_prefix_stable():
    seeds = derive_seeds(TOP, 1000)
    assert all(type(s) is int and 0 <= s <= TOP for s in seeds)
    assert len(set(seeds)) == 1000  # 32-bit collisions among 1000: chance 1e-4, and this list has none
    assert derive_seeds(TOP, 1000) == seeds and derive_seeds(TOP, 3) == seeds[:3]
    assert derive_seeds(5, 0) == []
    assert list(np.random.SeedSequence(TOP).generate_state(3, dtype=np.uint32)) == seeds[:3]


def test_derived_seeds_of_neighbouring_seeds_do_not_overlap():
    """``seed + i`` makes seed s's i-th run seed s + 1's (i − 1)-th; derived seeds share nothing."""
    assert not set(derive_seeds(10, 50)) & set(derive_seeds(11, 50))


@pytest.mark.parametrize("n", [-1, 1.5])
def test_derive_seeds_refuses_a_bad_count(n):
    with pytest.raises(ValueError, match=f"n={n!r} should be an integer >= 0"):
        derive_seeds(0, n)


def test_make_generator_follows_the_rule():
    assert make_generator(TOP).initial_seed() == TOP
    with pytest.raises(ValueError, match=MATCH):
        make_generator(2**40)


def quiet_compare_k(X, seed):
    """compare_k on a few draws: LOO warns of its Pareto k, which is not what this test is about."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        # arviz 1.x's PSIS needs at least 5 draws in the tail: 2 x 25 draws give it 10
        return compare_k(X, [1, 2], seed=seed, num_samples=25, num_warmup=0, num_chains=2, progress=False)


@pytest.mark.parametrize(
    "call",
    [
        lambda X, seed: anneal(X, 2, seed=seed),
        lambda X, seed: kmeans_plusplus(X, 2, seed=seed),
        lambda X, seed: fit_posterior(
            X, 2, seed=seed, num_samples=2, num_warmup=0, num_chains=2, progress=False
        ),
        lambda X, seed: tempered_path(X, 2, [1.0, 0.5], seed=seed, num_samples=2, num_warmup=0),
        lambda X, seed: kmeans_reference(X, 2, seed=seed, n_init=2),
        quiet_compare_k,
        lambda X, seed: sample_prior(5, n_clusters=2, n_features=2, seed=seed),
        lambda X, seed: sample_from(X[:2], 5, sigma=0.1, seed=seed),
    ],
    ids=[
        "anneal",
        "kmeans_plusplus",
        "fit_posterior",
        "tempered_path",
        "kmeans_reference",
        "compare_k",
        "sample_prior",
        "sample_from",
    ],
)
def test_every_public_seed_follows_one_rule(X, call):
    call(X, TOP)  # the top of the range works, derived seeds included (tempered_path: two σ)
    for bad in (2**32, 2**40, -1):
        with pytest.raises(ValueError, match=rf"seed={bad} {MATCH}"):
            call(X, bad)


def test_tempered_path_fits_each_sigma_with_a_derived_seed(X):
    path = tempered_path(X, 2, [1.0, 0.5, 0.25], seed=TOP, num_samples=2, num_warmup=0)
    assert [idata.posterior.attrs["seed"] for idata in path.posteriors.values()] == derive_seeds(TOP, 3)


def test_kmeans_reference_restarts_from_derived_seeds(X):
    from kmeans_limit.inference import lloyd

    seeds = derive_seeds(3, 4)
    runs = [lloyd(X, kmeans_plusplus(X, 2, seed=s)) for s in seeds]
    best = min(runs, key=lambda run: run.inertia).means
    assert torch.equal(kmeans_reference(X, 2, seed=3, n_init=4), best)
