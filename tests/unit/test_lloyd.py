"""Lloyd's algorithm against scikit-learn's, step for step, and greedy k-means++ seeding."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning

from kmeans_limit.inference import kmeans_objective, kmeans_plusplus, lloyd


def blobs(n=600, centers=5, seed=0):
    X, _ = make_blobs(n, n_features=3, centers=centers, cluster_std=1.5, random_state=seed)
    return X


def sklearn_lloyd(X, init, sample_weight=None, **kwargs):
    with warnings.catch_warnings():
        # "Number of distinct clusters found smaller than n_clusters": not in these cases; kept narrow.
        warnings.filterwarnings("ignore", "Number of distinct clusters", ConvergenceWarning)
        km = KMeans(len(init), init=init, n_init=1, algorithm="lloyd", **kwargs)
        return km.fit(X, sample_weight=sample_weight)


def assert_same_as_sklearn(X, init, sample_weight=None, **kwargs):
    km = sklearn_lloyd(X, init, sample_weight, **kwargs)
    weight = None if sample_weight is None else torch.from_numpy(sample_weight)
    result = lloyd(torch.from_numpy(X), torch.from_numpy(init), sample_weight=weight, **kwargs)
    np.testing.assert_allclose(result.means.numpy(), km.cluster_centers_, rtol=0, atol=1e-8)
    np.testing.assert_array_equal(result.labels.numpy(), km.labels_)
    assert result.inertia == pytest.approx(km.inertia_, rel=1e-10)
    assert result.n_iter == km.n_iter_
    return result


def test_blobs_from_the_same_start():
    X = blobs()
    assert_same_as_sklearn(X, X[:5].copy())


def test_standardized_iris_from_the_same_start(load_dataset):
    X = load_dataset("iris").X
    assert_same_as_sklearn(X, X[[0, 1, 2]].copy())


def test_sipu_set_from_the_same_start(load_dataset):
    X = load_dataset("s1").X
    init = kmeans_plusplus(torch.from_numpy(X), 15, seed=3).numpy()
    assert_same_as_sklearn(X, init)


def test_weighted_blobs_from_the_same_start():
    X = blobs(seed=1)
    sample_weight = np.random.default_rng(0).uniform(0.0, 3.0, X.shape[0])
    assert_same_as_sklearn(X, X[10:14].copy(), sample_weight)


def test_loose_tolerance_stops_as_sklearn_does(load_dataset):
    X = load_dataset("a1").X
    init = X[:20].copy()
    result = assert_same_as_sklearn(X, init, tol=1e-2)
    assert result.converged


def test_empty_clusters_are_relocated_as_sklearn_does():
    X = blobs(n=400, centers=3, seed=2)
    init = np.vstack([X[:3], [[100.0, 100.0, 100.0], [-200.0, 0.0, 50.0]]])
    result = assert_same_as_sklearn(X, init)
    assert len(set(result.labels.tolist())) == 5


def test_hand_computed_case():
    X = torch.tensor([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0]], dtype=torch.float64)
    result = lloyd(X, X[[0, 2]])
    assert torch.equal(result.means, torch.tensor([[0.0, 0.5], [10.0, 0.5]], dtype=torch.float64))
    assert result.labels.tolist() == [0, 0, 1, 1]
    assert result.inertia == pytest.approx(1.0, abs=1e-12)
    assert result.n_iter == 2 and result.converged


def test_result_is_a_fixed_point_and_inertia_is_the_objective():
    X = torch.from_numpy(blobs(seed=4))
    result = lloyd(X, X[:5], tol=0.0)
    again = lloyd(X, result.means, max_iter=1)
    assert torch.equal(again.labels, result.labels)
    assert torch.allclose(again.means, result.means, rtol=0, atol=1e-12)
    assert result.inertia == pytest.approx(kmeans_objective(X, result.means, result.labels), rel=1e-12)


def test_max_iter_stops_unconverged():
    X = torch.from_numpy(blobs(seed=5))
    result = lloyd(X, X[:5], max_iter=1, tol=0.0)
    assert result.n_iter == 1 and not result.converged


def test_float32_keeps_its_dtype_and_agrees_with_float64():
    X = torch.from_numpy(blobs(seed=6))
    exact = lloyd(X, X[:5])
    single = lloyd(X.float(), X[:5].float())
    assert single.means.dtype == torch.float32 and single.labels.dtype == torch.long
    assert torch.allclose(single.means.double(), exact.means, atol=1e-4)
    assert (single.labels == exact.labels).float().mean() > 0.99


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"X": torch.zeros(5)}, "should be 2-D"),
        ({"X": torch.zeros(0, 2)}, "is empty"),
        ({"X": torch.tensor([[0.0, 1.0], [float("nan"), 0.0], [1.0, 1.0]])}, "NaN or inf"),
        ({"init": torch.zeros(2, 3)}, "init have 3 features"),
        ({"init": torch.zeros(2)}, "init of shape"),
        ({"init": torch.zeros(4, 2)}, "n_samples=3 should be >= n_clusters=4"),
        ({"max_iter": 0}, "max_iter=0"),
        ({"tol": -1.0}, "tol=-1.0"),
        ({"sample_weight": torch.ones(2)}, "sample_weight of shape"),
        ({"sample_weight": torch.tensor([1.0, -1.0, 1.0])}, "sample_weight should be >= 0"),
    ],
)
def test_bad_input_is_a_value_error(kwargs, match):
    args = {"X": torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 5.0]]), "init": torch.eye(2)}
    args.update(kwargs)
    X, init = args.pop("X"), args.pop("init")
    with pytest.raises(ValueError, match=match):
        lloyd(X, init, **args)


class TestKMeansPlusPlus:
    def test_returns_distinct_rows_of_x_reproducibly(self):
        X = torch.from_numpy(blobs(seed=7))
        centres = kmeans_plusplus(X, 8, seed=11)
        rows = [(X == c).all(1).nonzero().flatten().tolist() for c in centres]
        assert all(len(r) == 1 for r in rows) and len({r[0] for r in rows}) == 8
        assert torch.equal(centres, kmeans_plusplus(X, 8, seed=11))
        assert not torch.equal(centres, kmeans_plusplus(X, 8, seed=12))

    def test_one_seed_per_well_separated_blob(self):
        X, y = make_blobs(300, centers=[[0, 0], [50, 0], [0, 50]], cluster_std=1.0, random_state=0)
        for seed in range(5):
            centres = kmeans_plusplus(torch.from_numpy(X), 3, seed=seed).numpy()
            nearest = ((centres[:, None] - np.array([[0, 0], [50, 0], [0, 50]])) ** 2).sum(-1).argmin(1)
            assert sorted(nearest.tolist()) == [0, 1, 2]

    def test_rows_of_weight_zero_are_never_drawn(self):
        X = torch.from_numpy(blobs(seed=8))
        weight = torch.zeros(X.shape[0], dtype=X.dtype)
        weight[::3] = 1.0
        for seed in range(3):
            centres = kmeans_plusplus(X, 6, seed=seed, sample_weight=weight)
            rows = torch.cat([(X == c).all(1).nonzero().flatten() for c in centres])
            assert (rows % 3 == 0).all()

    def test_potential_is_comparable_to_sklearn(self, load_dataset):
        from sklearn.cluster import kmeans_plusplus as sk_plusplus

        X = load_dataset("s1").X
        ours = [kmeans_objective(X, kmeans_plusplus(torch.from_numpy(X), 15, seed=s)) for s in range(8)]
        theirs = [kmeans_objective(X, sk_plusplus(X, 15, random_state=s)[0]) for s in range(8)]
        assert np.median(ours) < 1.5 * np.median(theirs) and np.median(theirs) < 1.5 * np.median(ours)

    def test_float32_and_chunks(self, monkeypatch):
        import kmeans_limit.inference.kernels as kernels

        X = torch.from_numpy(blobs(seed=9))
        whole = kmeans_plusplus(X, 5, seed=0)
        monkeypatch.setattr(kernels, "CHUNK_ENTRIES", 64)
        assert torch.equal(kmeans_plusplus(X, 5, seed=0), whole)
        assert kmeans_plusplus(X.float(), 5, seed=0).dtype == torch.float32

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"n_clusters": 0}, "n_clusters=0"),
            ({"n_clusters": 4}, "3 distinct points, fewer than n_clusters=4"),
            ({"seed": -1}, "seed=-1"),
            ({"n_local_trials": 0}, "n_local_trials=0"),
            ({"sample_weight": torch.ones(5)}, "sample_weight of shape"),
        ],
    )
    def test_bad_input_is_a_value_error(self, kwargs, match):
        X = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 5.0], [1.0, 0.0]])
        args = {"n_clusters": 2, **kwargs}
        with pytest.raises(ValueError, match=match):
            kmeans_plusplus(X, args.pop("n_clusters"), **args)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_labels_and_distances_written_into_given_tensors(dtype):
    """``out=``: the same labels and distances as fresh ones, in the tensors given (annealing's
    levels write over their last ones: no second row-sized array)."""
    from kmeans_limit.inference.lloyd import assign_labels, labelled_sq_distances

    generator = torch.Generator().manual_seed(3)
    X = (torch.randn(700, 4, generator=generator, dtype=torch.float64) + 30.0).to(dtype)
    means = X[:9].clone()
    labels_out = torch.full((700,), -5, dtype=torch.long)
    distances_out = torch.full((700,), -1.0, dtype=dtype)
    labels = assign_labels(X, means, out=labels_out)
    distances = labelled_sq_distances(X, means, labels, out=distances_out)
    assert labels is labels_out and distances is distances_out
    assert torch.equal(labels, assign_labels(X, means))
    assert torch.equal(distances, labelled_sq_distances(X, means, labels))
