"""ECR relabelling: known permutations undone, its agreement objective, and chains that switch labels."""

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from kmeans_limit.inference import fit_posterior, relabel
from kmeans_limit.inference.ecr import ecr, ecr_iterative, relabel_allocations
from kmeans_limit.inference.gibbs import GibbsState
from kmeans_limit.inference.relabel_diagnostics import relabelling_diagnostics
from kmeans_limit.models import Priors


def scrambled_allocations(n_draws=40, n_samples=30, n_clusters=3, noise=0.1, seed=0):
    """Draws of one allocation with a few rows changed, each draw's labels permuted at random."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_clusters, n_samples)
    z = np.tile(truth, (n_draws, 1))
    flip = rng.random(z.shape) < noise
    z[flip] = rng.integers(0, n_clusters, flip.sum())
    perms = np.stack([rng.permutation(n_clusters) for _ in range(n_draws)])  # perm[m, k]: component for k
    scrambled = np.take_along_axis(perms, z, axis=1)  # label k is written as component perm[m, k]
    return scrambled, z, truth, perms


def test_ecr_with_the_true_pivot_undoes_the_permutations():
    scrambled, z, truth, perms = scrambled_allocations()
    found = ecr(scrambled, truth, 3)
    np.testing.assert_array_equal(found, perms)
    np.testing.assert_array_equal(relabel_allocations(scrambled, found), z)


def test_ecr_maximises_the_agreement_draw_by_draw():
    scrambled, _, truth, _ = scrambled_allocations(noise=0.6, seed=1)  # much disagreement
    found = ecr(scrambled, truth, 3)
    agreement = (relabel_allocations(scrambled, found) == truth).sum(1)
    for m, row in enumerate(scrambled):
        table = np.zeros((3, 3), int)
        np.add.at(table, (row, truth), 1)
        best = table[linear_sum_assignment(table, maximize=True)].sum()
        assert agreement[m] == best


def test_iterative_ecr_needs_no_pivot_and_agrees_up_to_one_permutation():
    scrambled, z, _, _ = scrambled_allocations(seed=2)
    found, n_iter = ecr_iterative(scrambled, 3)
    assert n_iter < 10
    relabelled = relabel_allocations(scrambled, found)
    # One global permutation maps the relabelled allocations onto the unscrambled ones.
    table = np.zeros((3, 3), int)
    np.add.at(table, (relabelled.ravel(), z.ravel()), 1)
    assert (table > 0).sum(1).tolist() == [1, 1, 1]


def test_bad_allocations_are_refused():
    with pytest.raises(ValueError, match="labels in 0..2"):
        ecr(np.array([[0, 3]]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="should be integers"):
        ecr(np.array([[0.5, 1.0]]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="pivot has 3 rows but the allocations 2"):
        ecr(np.array([[0, 1]]), np.array([0, 1, 2]), 3)


def test_chains_started_in_different_label_orders_are_relabelled(three_blobs):
    """4 Gibbs chains on 3 blobs, each started at the true centres in another order: each chain keeps
    its labelling (the blobs are 8σ apart), so the raw means have huge R-hat. After ECR every label
    means one blob in every chain: the means match the truth and R-hat is below 1.01."""
    X, centres = three_blobs
    orders = torch.tensor([[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 2, 1]])
    init = GibbsState(torch.full((4, 3), 1 / 3, dtype=torch.float64), centres[orders], torch.full((4,), 0.5))
    raw = fit_posterior(
        X, 3, method="gibbs", priors=Priors(tau0=5.0), num_samples=500, num_warmup=50, num_chains=4, seed=0,
        progress=False, relabel=False, init=init,
    )  # fmt: skip
    fixed = relabel(raw, method="ecr")
    assert fixed.posterior.attrs["relabelled"] == "ecr"
    table = relabelling_diagnostics(raw, fixed)
    means = [f"means[{k},{d}]" for k in range(3) for d in range(2)]
    assert table.loc[means, "r_hat_before"].max() > 2
    assert table["r_hat_after"].max() < 1.01, table.to_string()
    assert table.loc[means, "ess_bulk_after"].min() > 400
    posterior_means = torch.as_tensor(fixed.posterior["means"].mean(("chain", "draw")).values)
    order = linear_sum_assignment(torch.cdist(posterior_means, centres).numpy())[1]
    # Each blob has 20 rows of spread 0.5: its mean is known to about 0.5/√20 ≈ 0.11 (plus the sample's own noise).
    assert torch.cdist(posterior_means, centres[order]).diagonal().max() < 0.35
    np.testing.assert_allclose(
        table["mean_after"].values[3:].reshape(3, 2), posterior_means.numpy(), rtol=0, atol=1e-12
    )
