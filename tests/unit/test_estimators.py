"""The scikit-learn estimators: the API contract, and agreement with the core and the Pyro program."""

import numpy as np
import pyro
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.datasets import load_iris
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from kmeans_limit import AnnealedKMeans, SphericalGMM
from kmeans_limit.inference import em, lloyd
from kmeans_limit.models import spherical_gmm_marginal


def expected_failures(estimator) -> dict[str, str]:
    """The one check scikit-learn's own KMeans is excused from, for the same reason (k-means++ draws)."""
    if isinstance(estimator, SphericalGMM):
        return {
            "check_sample_weight_equivalence_on_dense_data": (
                "k-means++ initialisation draws rows, so weights of 2 differ from repeated rows, as for KMeans"
            )
        }
    return {}


# The checks fit on tiny or degenerate data with few iterations, where EM may stop unconverged.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(
    [AnnealedKMeans(n_clusters=3), SphericalGMM(n_clusters=3)], expected_failed_checks=expected_failures
)
def test_scikit_learn_compatible(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def iris() -> np.ndarray:
    return StandardScaler().fit_transform(load_iris().data)


def test_annealed_kmeans_is_a_lloyd_fixed_point_at_least_as_good_as_kmeans(iris):
    model = AnnealedKMeans(n_clusters=3).fit(iris)
    best = KMeans(n_clusters=3, n_init=10, random_state=0).fit(iris).inertia_
    assert model.inertia_ <= best * (1 + 1e-3)
    step = lloyd(torch.from_numpy(iris), torch.from_numpy(model.cluster_centers_), max_iter=1)
    np.testing.assert_array_equal(step.labels.numpy(), model.labels_)
    np.testing.assert_allclose(step.means.numpy(), model.cluster_centers_, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(model.predict(iris), model.labels_)
    assert model.score(iris) == pytest.approx(-model.inertia_)
    assert model.sigma_ == pytest.approx((model.inertia_ / iris.size) ** 0.5)


def test_annealed_kmeans_soft_assignments_and_transform(iris):
    model = AnnealedKMeans(n_clusters=3).fit(iris)
    hard = model.predict_proba(iris, sigma=0.0)
    np.testing.assert_array_equal(hard.argmax(1), model.labels_)
    assert set(np.unique(hard)) <= {0.0, 1.0}
    soft = model.predict_proba(iris)
    np.testing.assert_allclose(soft.sum(1), 1.0, rtol=1e-12)
    assert 0 < soft.min() and soft.max() < 1
    distances = np.linalg.norm(iris[:, None, :] - model.cluster_centers_[None], axis=-1)
    np.testing.assert_allclose(model.transform(iris), distances, rtol=1e-10)
    X_new, labels = model.sample(50)
    assert X_new.shape == (50, 4) and labels.shape == (50,)


def test_spherical_gmm_is_em_from_the_same_init(iris):
    init = iris[[0, 50, 100]]
    model = SphericalGMM(n_clusters=3, init=init).fit(iris)
    result = em(torch.from_numpy(iris), torch.from_numpy(init), max_iter=100, tol=1e-6)
    np.testing.assert_allclose(model.means_, result.means.numpy(), rtol=0, atol=1e-12)
    assert model.sigma_ == pytest.approx(float(result.sigma), rel=1e-12)
    assert model.lower_bound_ == pytest.approx(result.log_likelihood / len(iris), rel=1e-12)


def test_spherical_gmm_score_samples_are_the_program_marginal_density(iris):
    model = SphericalGMM(n_clusters=3, n_init=2).fit(iris)
    X = torch.from_numpy(iris)
    data = {
        "means": torch.from_numpy(model.means_),
        "weights": torch.from_numpy(model.weights_),
        "sigma": torch.tensor(model.sigma_, dtype=torch.float64),
    }
    trace = pyro.poutine.trace(pyro.condition(spherical_gmm_marginal, data=data)).get_trace(X, n_clusters=3)
    trace.compute_log_prob()
    np.testing.assert_allclose(model.score_samples(iris), trace.nodes["x"]["log_prob"].numpy(), rtol=1e-10)
    assert model.score(iris) == pytest.approx(model.lower_bound_, rel=1e-6)
    n_params = 3 * 4 + 2 + 1
    assert model.bic(iris) == pytest.approx(-2 * model.score(iris) * 150 + n_params * np.log(150))
    assert model.aic(iris) == pytest.approx(-2 * model.score(iris) * 150 + 2 * n_params)
    np.testing.assert_array_equal(model.predict(iris), model.predict_proba(iris).argmax(1))


def test_spherical_gmm_fixed_sigma_is_kept(iris):
    model = SphericalGMM(n_clusters=3, sigma=0.4, weights="equal").fit(iris)
    assert model.sigma_ == 0.4
    np.testing.assert_allclose(model.weights_, 1 / 3)
    assert model.bic(iris) == pytest.approx(-2 * model.score(iris) * 150 + 12 * np.log(150))


def test_float32_stays_float32(iris):
    X = iris.astype(np.float32)
    assert AnnealedKMeans(n_clusters=3).fit(X).cluster_centers_.dtype == np.float32
    assert SphericalGMM(n_clusters=3).fit(X).means_.dtype == np.float32


@pytest.mark.parametrize(
    ("estimator", "match"),
    [
        (AnnealedKMeans(n_clusters=0), "n_clusters=0"),
        (AnnealedKMeans(n_clusters=3, cooling=1.5), "cooling=1.5"),
        (SphericalGMM(n_clusters=3, sigma=-1.0), "sigma=-1.0"),
        (SphericalGMM(n_clusters=3, n_init=0), "n_init=0"),
        (SphericalGMM(n_clusters=3, init="random"), "init='random'"),
        (SphericalGMM(n_clusters=3, init=np.zeros((2, 4))), r"init of shape \(2, 4\)"),
        (AnnealedKMeans(n_clusters=200), "n_samples=150 should be >= n_clusters=200"),
    ],
)
def test_bad_parameters(iris, estimator, match):
    with pytest.raises(ValueError, match=match):
        estimator.fit(iris)
