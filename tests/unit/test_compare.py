"""compare_posteriors, compare_k and tempered_path."""

import numpy as np
import pytest
import torch

from kmeans_limit.inference import arviz_compat, compare_k, compare_posteriors, fit_posterior, tempered_path
from kmeans_limit.inference.compare import kmeans_reference

QUICK = {"progress": False, "num_samples": 150, "num_warmup": 50, "num_chains": 2}


@pytest.fixture(scope="module")
def blobs():
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-4.0, 0.0], [0.0, 4.0], [4.0, 0.0]], dtype=torch.float64)
    labels = torch.arange(3).repeat_interleave(20)
    return centres[labels] + 0.6 * torch.randn(60, 2, generator=generator, dtype=torch.float64)


@pytest.fixture(scope="module")
def two_fits(blobs):
    return fit_posterior(blobs, 3, seed=1, **QUICK), fit_posterior(blobs, 3, seed=2, **QUICK)


def test_compare_posteriors_table(two_fits):
    table = compare_posteriors({"first": two_fits[0], "second": two_fits[1]})
    expected = ["sigma"] + [f"weights_sorted[{r}]" for r in range(3)]
    expected += [f"means[{k},{d}]" for k in range(3) for d in range(2)]
    assert list(table["parameter"]) == expected
    assert set(table[["a", "b"]].itertuples(index=False)) == {("first", "second")}
    assert {"mean_a", "mean_b", "z_mcse", "sd_a", "sd_b", "sd_ratio", "energy_distance"} <= set(table.columns)
    # Two runs of the same sampler: differences of a few MCSE, similar spreads, tiny energy distance.
    assert table["z_mcse"].abs().max() < 5
    assert table["sd_ratio"].between(0.7, 1.4).all() and (table["energy_distance"] < 0.1).all()


def test_a_fit_compared_with_itself_and_with_a_permuted_copy(two_fits):
    fit = two_fits[0]
    permuted = arviz_compat.copy(fit)
    permuted.posterior["means"] = (
        permuted.posterior["means"].isel(cluster=[2, 0, 1]).assign_coords(cluster=[0, 1, 2])
    )
    table = compare_posteriors({"a": fit, "b": fit, "c": permuted})
    assert len(table) == 3 * 10  # three pairs
    assert np.allclose(table["z_mcse"], 0.0) and np.allclose(table["sd_ratio"], 1.0)
    assert np.allclose(table["energy_distance"], 0.0, atol=1e-12)


def test_compare_posteriors_refuses_bad_input(two_fits, blobs):
    with pytest.raises(ValueError, match="at least two fits, got 1"):
        compare_posteriors({"only": two_fits[0]})
    other = fit_posterior(blobs, 2, **{**QUICK, "num_samples": 5})
    with pytest.raises(ValueError, match=r"the fits differ in \(n_clusters, n_features\)"):
        compare_posteriors({"k3": two_fits[0], "k2": other})


def test_compare_k_prefers_the_true_number_of_blobs(blobs):
    table = compare_k(blobs, [2, 3], **QUICK)
    assert list(table.index) == ["K=3", "K=2"]
    assert {"elpd_loo", "p_loo", "elpd_diff", "weight"} <= set(table.columns)
    with pytest.raises(ValueError, match="at least two different numbers of clusters"):
        compare_k(blobs, [3, 3])
    with pytest.raises(ValueError, match="n_clusters=0 should be an integer >= 1"):
        compare_k(blobs, [0, 2])


def test_tempered_path_concentrates_on_the_kmeans_solution(blobs):
    sigmas = [1.0, 0.3, 0.1, 0.01]
    path = tempered_path(blobs, 3, sigmas, num_samples=60, num_warmup=20, seed=3)
    summary = path.summary
    assert list(summary["sigma"]) == sigmas and set(path.posteriors) == set(sigmas)
    assert (np.diff(summary["means_sd"]) < 0).all()  # the posterior of the means narrows with σ
    last = summary.iloc[-1]
    assert last["centroid_distance"] < 0.01 and last["hard_agreement"] == 1.0
    assert last["assignment_entropy"] < 1e-6
    assert path.posteriors[0.01].posterior.attrs["sigma"] == 0.01
    # The k-means centroids used: the best of the Lloyd runs, three blobs here.
    assert torch.allclose(path.centroids, kmeans_reference(blobs, 3, seed=3))


@pytest.mark.parametrize(
    ("sigmas", "match"),
    [
        ([0.5, 1.0], "should be a non-empty, strictly decreasing sequence"),
        ([], "should be a non-empty, strictly decreasing sequence"),
        ([1.0, -0.1], "sigma=-0.1 should be a finite number > 0"),
    ],
)
def test_tempered_path_refuses_bad_sigmas(blobs, sigmas, match):
    with pytest.raises(ValueError, match=match):
        tempered_path(blobs, 3, sigmas)
