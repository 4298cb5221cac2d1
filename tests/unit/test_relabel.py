"""Relabelling: known permutations are undone, invariants are untouched, Stephens lowers its KL."""

import numpy as np
import pytest
import torch

from kmeans_limit.inference import relabel
from kmeans_limit.inference.idata import PosteriorDraws, posterior_tensors, to_inference_data
from kmeans_limit.inference.relabel import _stephens_cost, pivot_permutations, stephens_permutations
from kmeans_limit.models import Priors

CENTRES = torch.tensor([[-3.0, 0.0], [0.0, 3.0], [3.0, 0.0]], dtype=torch.float64)


def scrambled_fit(spread=0.5, n_chains=2, n_draws=50, seed=0):
    """Draws scattered around CENTRES, each draw's components shuffled; and the unshuffled draws."""
    generator = torch.Generator().manual_seed(seed)
    shape = (n_chains, n_draws)
    means = CENTRES + 0.1 * torch.randn(*shape, 3, 2, generator=generator, dtype=torch.float64)
    weights = torch.softmax(0.2 * torch.randn(*shape, 3, generator=generator, dtype=torch.float64), -1)
    sigma = 0.5 + 0.01 * torch.rand(shape, generator=generator, dtype=torch.float64)
    perms = torch.stack([torch.randperm(3, generator=generator) for _ in range(n_chains * n_draws)]).reshape(
        *shape, 3
    )
    shuffled = PosteriorDraws(
        torch.gather(weights, -1, perms),
        torch.gather(means, -2, perms[..., None].expand(-1, -1, -1, 2)),
        sigma,
        {},
        {},
    )
    labels = torch.arange(3).repeat_interleave(10)
    X = CENTRES[labels] + spread * torch.randn(30, 2, generator=generator, dtype=torch.float64)
    idata = to_inference_data(shuffled, X, sigma=None, priors=Priors(), attrs={"method": "test"})
    return idata, weights, means


@pytest.mark.parametrize("method", ["pivot", "stephens", "ecr"])
def test_shuffled_components_are_put_back(method):
    idata, weights, means = scrambled_fit()
    fixed = relabel(idata, method=method, reference=CENTRES)
    np.testing.assert_array_equal(fixed.posterior["means"].values, means.numpy())
    np.testing.assert_array_equal(fixed.posterior["weights"].values, weights.numpy())
    assert fixed.posterior.attrs["relabelled"] == method and idata.posterior.attrs["relabelled"] == "none"


def test_default_reference_is_the_map_draw_so_labels_agree_up_to_one_permutation():
    idata, _, means = scrambled_fit()
    fixed = relabel(idata)
    relabelled = torch.as_tensor(fixed.posterior["means"].values)
    best = int(np.argmax(idata.sample_stats["lp"].values))
    reference = torch.as_tensor(idata.posterior["means"].values.reshape(-1, 3, 2)[best])
    assert torch.equal(relabelled.reshape(-1, 3, 2)[best], reference)
    order = pivot_permutations(reference[None], CENTRES)[0]  # labels of the MAP draw vs the truth
    np.testing.assert_array_equal(relabelled[..., order, :].numpy(), means.numpy())


def test_invariant_quantities_are_untouched():
    idata, _, _ = scrambled_fit()
    fixed = relabel(idata, method="stephens")
    for group, name in [("posterior", "sigma"), ("sample_stats", "lp"), ("log_likelihood", "x")]:
        np.testing.assert_array_equal(fixed[group][name].values, idata[group][name].values)
    np.testing.assert_allclose(
        np.sort(fixed.posterior["weights"].values, -1), np.sort(idata.posterior["weights"].values, -1)
    )


def test_stephens_never_increases_its_objective_and_converges():
    idata, _, _ = scrambled_fit(spread=2.0)  # overlapping components: responsibilities are soft
    weights, means, sigma = posterior_tensors(idata)
    X = torch.as_tensor(idata.observed_data["x"].values)
    identity = torch.arange(3).expand(weights.shape[0], 3)

    def objective(perms):
        cost = _stephens_cost(X, weights, means, sigma, perms)
        return (
            cost.gather(2, torch.argsort(perms, -1)[..., None]).sum().item()
        )  # Σ_m Σ_j cost[m, j, label(j)]

    perms, n_iter = stephens_permutations(X, weights, means, sigma, max_iter=50)
    assert n_iter < 50
    assert objective(perms) <= objective(identity) + 1e-9
    again, n_again = stephens_permutations(X, weights, means, sigma, init=perms)
    assert torch.equal(again, perms) and n_again == 1


def test_bad_arguments():
    idata, _, _ = scrambled_fit(n_draws=3)
    with pytest.raises(ValueError, match="method='kl' should be one of"):
        relabel(idata, method="kl")
    with pytest.raises(ValueError, match="reference has 2 centroids but the fit has 3"):
        relabel(idata, reference=CENTRES[:2])
    with pytest.raises(ValueError, match="means have 3 features but the data have n_features=2"):
        relabel(idata, reference=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="max_iter=0 should be an integer >= 1"):
        relabel(idata, max_iter=0)
