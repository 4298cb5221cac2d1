"""The DPMeans estimator: scikit-learn's contract, agreement with the core, sampling from the fitted DP."""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs
from sklearn.utils.estimator_checks import parametrize_with_checks

from kmeans_limit import DPMeans
from kmeans_limit.inference import dp_means


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks([DPMeans(), DPMeans(init="mean")])
def test_scikit_learn_compatible(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=150, centers=4, cluster_std=0.4, random_state=3)
    return X, y


def test_recovers_the_blobs_and_equals_the_core(blobs):
    X, y = blobs
    model = DPMeans(penalty=8.0).fit(X)
    assert model.n_clusters_ == 4 and model.cluster_centers_.shape == (4, 2)
    assert len({(a, b) for a, b in zip(model.labels_, y, strict=True)}) == 4  # a relabelling of y
    core = dp_means(torch.from_numpy(X), 8.0)
    assert model.objective_ == pytest.approx(core.objective, rel=1e-10)
    assert model.score(X) == pytest.approx(-model.objective_, rel=1e-10)
    np.testing.assert_array_equal(model.predict(X), model.labels_)
    distances = model.transform(X)
    np.testing.assert_allclose(
        distances.min(1) ** 2, ((X - model.cluster_centers_[model.labels_]) ** 2).sum(1), atol=1e-9
    )
    assert model.sigma_ == pytest.approx(np.sqrt(model.inertia_ / X.size), rel=1e-12)
    assert 0 < model.concentration_ < 1e-3  # α(σ̂) is tiny: a new cluster is improbable at this λ


def test_sample_draws_from_the_fitted_mixture_at_sigma_hat(blobs):
    X, _ = blobs
    model = DPMeans(penalty=8.0).fit(X)
    x, z = model.sample(4000)
    assert x.shape == (4000, 2) and set(np.unique(z)) <= set(range(5))
    counts = np.bincount(z, minlength=5)[:4] / 4000
    assert np.abs(counts - model.weights_).max() < 4 * np.sqrt(0.25 / 4000)
    residual = x - model.cluster_centers_[np.minimum(z, 3)]
    assert np.std(residual[z < 4]) == pytest.approx(model.sigma_, rel=0.05)
    x_again, _ = model.sample(4000)
    np.testing.assert_array_equal(x, x_again)  # seeded by random_state


def test_penalty_moves_k():
    X, _ = make_blobs(n_samples=200, centers=5, cluster_std=0.5, random_state=0)
    ks = [DPMeans(penalty=p).fit(X).n_clusters_ for p in (0.5, 5.0, 1e4)]
    assert ks[0] > ks[1] >= 4 and ks[2] == 1


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(penalty=0.0), r"penalty=0.0 should be a finite number in \(0, inf\)"),
        (dict(init="kmeans"), "init='kmeans' should be 'anneal' or 'mean'"),
        (dict(max_iter=0), "max_iter=0 should be an integer >= 1"),
    ],
)
def test_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        DPMeans(**params).fit(np.zeros((4, 2)) + np.arange(4)[:, None])


def test_float32_far_from_the_origin_keeps_its_labels(blobs):
    X, _ = blobs
    base = DPMeans(penalty=8.0).fit(X)
    far = DPMeans(penalty=8.0).fit((X + 1e4).astype(np.float32))
    np.testing.assert_array_equal(far.labels_, base.labels_)
    assert far.cluster_centers_.dtype == np.float32
    np.testing.assert_allclose(far.cluster_centers_ - 1e4, base.cluster_centers_, atol=2e-3)
