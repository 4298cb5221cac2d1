"""The hard fits take a prepared Data as well as raw rows, and give the same answer from either."""

import pytest
import torch
from sklearn.datasets import make_blobs

from kmeans_limit.inference import anneal, em, kmeans_objective, kmeans_plusplus, lloyd
from kmeans_limit.inference.data import prepare_data


@pytest.fixture(scope="module")
def far_rows() -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted float32 blobs 1e3 spreads from the origin (prepare_data centres them)."""
    X, _ = make_blobs(80, centers=[[0, 0], [6, 0], [0, 6]], cluster_std=1.0, random_state=2)
    weight = torch.linspace(0.5, 2.0, 80)
    return (torch.from_numpy(X) + 4e3).float(), weight


def test_every_fit_gives_the_same_from_raw_rows_and_from_their_data(far_rows):
    X, weight = far_rows
    data = prepare_data(X, weight)
    assert data.centred
    init = kmeans_plusplus(X, 3, sample_weight=weight)
    assert torch.equal(kmeans_plusplus(data, 3), init)
    for fit in (lloyd, em):
        raw, prepared = fit(X, init, sample_weight=weight), fit(data, init)
        assert torch.equal(raw.means, prepared.means), fit.__name__
    raw, prepared = anneal(X, 3, sample_weight=weight), anneal(data, 3)
    assert torch.equal(raw.means, prepared.means) and torch.equal(raw.labels, prepared.labels)
    assert kmeans_objective(data, raw.means) == kmeans_objective(X, raw.means, sample_weight=weight)
    assert kmeans_objective(data, raw.means) == pytest.approx(raw.inertia, rel=1e-6)


@pytest.mark.parametrize("fit", [lloyd, em])
def test_a_prepared_data_carries_its_weights(far_rows, fit):
    X, weight = far_rows
    with pytest.raises(ValueError, match="sample_weight should be None with a prepared Data"):
        fit(prepare_data(X), X[:3], sample_weight=weight)


def test_float64_centroids_move_into_float32_rows_with_their_digits():
    """``to_rows`` subtracts the offset before rounding to float32: digits relative to the spread stay."""
    X = (torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 1e5).float()
    data = prepare_data(X)
    centroid = torch.tensor([[1e5 + 0.123456789, 1e5 - 0.5]], dtype=torch.float64)
    expected = centroid - data.offset.double()
    # float32 of 1e5 + 0.12 keeps 0.008 of the spread; the moved centroid keeps 1e-7 of it.
    torch.testing.assert_close(data.to_rows(centroid).double(), expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize("offset", [0.0, 1e3, 1e7])
def test_lloyd_far_from_the_origin_stops_as_scikit_learn_does(offset):
    """Weighted, loose tolerance, far away: scikit-learn's centroids, labels and ``n_iter_``.

    scikit-learn scales ``tol`` by the unweighted mean feature variance whatever the weights; a
    weighted one would stop these runs at another iteration.
    """
    import numpy as np
    from sklearn.cluster import KMeans

    X, _ = make_blobs(500, n_features=3, centers=6, cluster_std=2.0, random_state=4)
    X = X + offset
    weight = np.random.default_rng(1).pareto(1.0, X.shape[0]) + 0.01
    init = X[:6].copy()
    for tol in (4e-4, 1.6e-2, 1e-1):  # the first two stop an iteration later with the weighted variance
        km = KMeans(6, init=init, n_init=1, algorithm="lloyd", tol=tol).fit(X, sample_weight=weight)
        ours = lloyd(
            torch.from_numpy(X), torch.from_numpy(init), tol=tol, sample_weight=torch.from_numpy(weight)
        )
        assert ours.n_iter == km.n_iter_, tol
        np.testing.assert_array_equal(ours.labels.numpy(), km.labels_)
        np.testing.assert_allclose(
            ours.means.numpy(), km.cluster_centers_, rtol=0, atol=1e-8 * max(offset, 1.0)
        )
        assert ours.inertia == pytest.approx(km.inertia_, rel=1e-8)
