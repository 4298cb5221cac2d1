"""Exact bound-based Lloyd (Hamerly, Elkan): the labels, centroids and n_iter of plain Lloyd, bit for bit.

The reference is ``lloyd(algorithm="lloyd")`` from the same start (equal labels, equal centroids to
the last bit, equal ``n_iter`` and inertia), and scikit-learn's ``KMeans(algorithm="lloyd"/"elkan")``
in float64 (centroids within 1e-8, as tests/unit/test_lloyd.py holds plain Lloyd to). The bounds
themselves are checked against distances in extended precision after every step.
"""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning

from kmeans_limit.inference import _bounded, _fused, bounded, kmeans_plusplus, lloyd

BOUNDED = ("hamerly", "elkan")


def assert_same_as_plain(X, init, sample_weight=None, **kwargs):
    """Every bounded algorithm from ``init`` gives plain Lloyd's result exactly; returns plain's."""
    X, init = torch.as_tensor(X), torch.as_tensor(init)
    weight = None if sample_weight is None else torch.as_tensor(sample_weight)
    plain = lloyd(X, init, sample_weight=weight, algorithm="lloyd", **kwargs)
    for algorithm in BOUNDED:
        result = lloyd(X, init, sample_weight=weight, algorithm=algorithm, **kwargs)
        assert torch.equal(result.labels, plain.labels), algorithm
        assert torch.equal(result.means, plain.means), algorithm
        assert result.n_iter == plain.n_iter, algorithm
        assert result.converged == plain.converged
        assert result.inertia == plain.inertia
    return plain


def assert_same_as_sklearn(X, init, sample_weight=None, **kwargs):
    for sk_algorithm in ("lloyd", "elkan"):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Number of distinct clusters", ConvergenceWarning)
            km = KMeans(len(init), init=init, n_init=1, algorithm=sk_algorithm, **kwargs)
            km.fit(X, sample_weight=sample_weight)
        weight = None if sample_weight is None else torch.from_numpy(sample_weight)
        for algorithm in BOUNDED:
            result = lloyd(
                torch.from_numpy(X),
                torch.from_numpy(init),
                sample_weight=weight,
                algorithm=algorithm,
                **kwargs,
            )
            np.testing.assert_allclose(result.means.numpy(), km.cluster_centers_, rtol=0, atol=1e-8)
            np.testing.assert_array_equal(result.labels.numpy(), km.labels_)
            assert result.n_iter == km.n_iter_


def blobs(n, d, centers, seed=0, std=1.5):
    X, _ = make_blobs(n, n_features=d, centers=centers, cluster_std=std, random_state=seed)
    return X


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("d", [2, 13, 24])  # the direct loop (D <= 16) and the BLAS path
@pytest.mark.parametrize("weighted", [False, True])
def test_blobs_equal_plain_lloyd(dtype, d, weighted):
    X = blobs(3000, d, 12, seed=d).astype(dtype)
    rng = np.random.default_rng(d)
    init = X[rng.choice(len(X), 20, replace=False)].copy()
    weight = None
    if weighted:
        weight = rng.uniform(0.0, 3.0, len(X)).astype(dtype)
        weight[::7] = 0.0  # rows of weight 0 are labelled, never relocated onto
    assert_same_as_plain(X, init, weight, tol=0.0)
    assert_same_as_plain(X, init, weight)  # stopped by the tolerance: the last labels recomputed


@pytest.mark.parametrize("name", ["s1", "a1"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_packaged_sipu_sets_equal_plain_lloyd(load_dataset, name, dtype):
    X = load_dataset(name).X.astype(dtype)
    init = kmeans_plusplus(torch.from_numpy(X), 20, seed=1).numpy()
    assert_same_as_plain(X, init)


def test_sipu_set_equals_sklearn_lloyd_and_elkan(load_dataset):
    X = load_dataset("s1").X
    init = kmeans_plusplus(torch.from_numpy(X), 15, seed=3).numpy()
    assert_same_as_sklearn(X, init)


def test_weighted_blobs_equal_sklearn():
    X = blobs(800, 6, 5, seed=1)
    weight = np.random.default_rng(0).uniform(0.0, 3.0, len(X))
    assert_same_as_sklearn(X, X[10:18].copy(), weight)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_duplicate_rows_and_exact_ties_go_to_the_first_centroid(dtype):
    """A grid of integer points, each four times; centroids on grid points and duplicated: every
    distance is exact and many rows are exactly as far from two or more centroids."""
    grid = np.stack(np.meshgrid(np.arange(8.0), np.arange(8.0)), -1).reshape(-1, 2)
    X = np.repeat(grid, 4, axis=0).astype(dtype)
    init = np.array([[0, 0], [2, 0], [0, 2], [2, 0], [5, 5], [7, 7], [5, 5]], dtype=dtype)
    plain = assert_same_as_plain(X, init, tol=0.0)
    for algorithm in BOUNDED:  # the first step: duplicated centroids 3 and 6 get no row
        labels = first_labels(algorithm, X, init)
        assert labels[0] == 0 and not np.isin(labels, [3, 6]).any()
        np.testing.assert_array_equal(labels[X[:, 0] + X[:, 1] == 1], 0)  # as far from 0, 1 and 2
    assert plain.n_iter >= 2


def test_empty_clusters_are_relocated_as_plain_lloyd_and_sklearn():
    X = blobs(400, 3, 3, seed=2)
    init = np.vstack([X[:3], [[100.0, 100.0, 100.0], [-200.0, 0.0, 50.0]]])
    plain = assert_same_as_plain(X, init)
    assert len(set(plain.labels.tolist())) == 5
    assert_same_as_sklearn(X, init)


def test_more_centroids_than_distinct_rows():
    X = np.repeat(np.array([[0.0, 0.0, 0.0, 0.0, 1.0], [3.0, 1.0, 0.0, 0.0, 0.0]]), 50, axis=0)
    init = np.vstack([X[:1], X[-1:], X[:1] + 0.5, X[-1:] - 0.25])
    assert_same_as_plain(X, init)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("offset", [1e4, 1e7])
def test_far_from_the_origin(dtype, offset):
    X = (blobs(1500, 3, 6, seed=4) + offset).astype(dtype)
    init = X[:9].copy()
    assert_same_as_plain(X, init)


@pytest.mark.parametrize("d", [2, 8])
def test_rounding_noise_is_reproduced_not_corrected(d):
    """float32 rows 1e4 from the origin and not centred (the mean is small against the spread):
    there the scores ‖μ‖² − 2 x·μ round by more than the distances between the far cluster's
    centroids, and plain Lloyd's labels are the rounding's. The bound tests' margin sends those rows
    to the scores, so the bounded algorithms take the same labels (without the margin, hundreds
    of rows differ)."""
    rng = np.random.default_rng(d)
    X = np.vstack([rng.normal(size=(900, d)), rng.normal(size=(300, d)) + 1e4]).astype(np.float32)
    init = np.vstack([X[:3], X[900:906]]).copy()
    assert_same_as_plain(X, init, tol=0.0, max_iter=30)


def test_on_two_threads(monkeypatch):
    monkeypatch.setattr(_fused, "MIN_BLOCK_WORK", 1)  # two blocks on these few rows
    X = blobs(2000, 12, 9, seed=3)
    init = X[np.random.default_rng(0).choice(2000, 9, replace=False)].copy()
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert_same_as_plain(X, init, tol=0.0)
        assert_same_as_plain(X.astype(np.float32), init.astype(np.float32))
    finally:
        torch.set_num_threads(previous)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    d=st.sampled_from([1, 3, 7]),
    k=st.integers(2, 9),
    log_scale=st.floats(-6, 6),
    offset=st.sampled_from([0.0, 1.0, 1e3, -1e5]),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_property_any_offset_scale_and_dtype(seed, d, k, log_scale, offset, dtype):
    """Overlapping clusters at any scale and offset: still the plain result to the last bit."""
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(300, d)) + rng.integers(3, size=(300, 1))) * 10.0**log_scale + offset
    X = X.astype(dtype)
    init = X[rng.choice(300, k, replace=False)].copy()
    assert_same_as_plain(X, init, tol=0.0)


def _state(algorithm, x, k):
    """Fresh bounds for ``lloyd``'s first step, and the step and its constants."""
    n, d = x.shape
    labels, xsq, upper = np.zeros(n, dtype=np.int64), _bounded.row_sq_norms(x), np.full(n, np.inf)
    lower = np.zeros(n) if algorithm == "hamerly" else np.zeros((n, k), dtype=np.float32)
    step = _bounded.hamerly_step if algorithm == "hamerly" else _bounded.elkan_step
    coef = 4.0 * (d + 4) * float(np.finfo(x.dtype).eps)
    up, down = 1.0 + (d + 8) * 2.0**-52, 1.0 - (d + 8) * 2.0**-52
    return labels, xsq, upper, lower, step, coef, up, down


def first_labels(algorithm, x, means):
    labels, xsq, upper, lower, step, coef, up, down = _state(algorithm, x, len(means))
    geometry = bounded._geometry(algorithm, means, np.zeros(len(means)), coef, up, down)
    step(x, means, None, labels, xsq, upper, lower, geometry, with_sums=False, fresh=True, n_threads=1)
    return labels


def _true_distances(x, means):
    """‖x_n − μ_k‖ in extended precision (np.longdouble)."""
    difference = x.astype(np.longdouble)[:, None, :] - means.astype(np.longdouble)[None, :, :]
    return np.sqrt((difference * difference).sum(-1))


@pytest.mark.parametrize("algorithm", BOUNDED)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("d", [2, 9])
def test_bounds_hold_after_every_step(algorithm, dtype, d):
    """After each step (small random moves of the centroids) the labels are the plain step's and
    every upper bound is above, every lower bound below, the distances in extended precision."""
    rng = np.random.default_rng(d)
    x = (rng.normal(size=(1500, d)) + 50.0).astype(dtype)
    means = x[:12].copy()
    n, k = x.shape[0], means.shape[0]
    labels, xsq, upper, lower, step, coef, up, down = _state(algorithm, x, k)
    delta, old = np.zeros(k), means
    for iteration in range(6):
        geometry = bounded._geometry(algorithm, means, delta, coef, up, down)
        step(
            x,
            means,
            None,
            labels,
            xsq,
            upper,
            lower,
            geometry,
            with_sums=False,
            fresh=iteration == 0,
            n_threads=1,
        )
        want = np.empty(n, dtype=np.int64)
        _fused.assign(x, means, want)
        np.testing.assert_array_equal(labels, want)
        true = _true_distances(x, means)
        assert (upper >= true[np.arange(n), labels]).all()
        if algorithm == "hamerly":
            others = true.copy()
            others[np.arange(n), labels] = np.inf
            assert (lower <= others.min(1)).all()
        else:
            assert (lower.astype(np.longdouble) <= true).all()
        old, means = (
            means,
            (means + rng.normal(scale=10.0 ** -rng.integers(1, 4), size=means.shape)).astype(dtype),
        )
        delta = bounded._moves(means, old, up)


def test_choose_algorithm():
    choose = bounded.choose_algorithm
    assert choose("auto", 100_000, 16, 64, "cpu") == "hamerly"
    assert choose("auto", 100_000, 64, 256, "cpu") == "hamerly"
    assert choose("auto", 100_000, 2, 1024, "cpu") == "lloyd"  # the plain step in SIMD lanes is cheaper
    assert choose("auto", 100_000, 8, 64, "cpu") == "lloyd"  # 512 products a row
    assert choose("auto", 100_000, 64, 8, "cpu") == "lloyd"  # few clusters: a full step is as cheap
    assert choose("auto", 100, 2, 3, "cpu") == "lloyd"  # too small to pay for the bounds
    assert choose("auto", 100_000, 64, 256, "cuda") == "lloyd"
    assert choose("elkan", 100, 2, 3, "cpu") == "elkan"
    with pytest.raises(ValueError, match="CPU only"):
        choose("hamerly", 100_000, 2, 64, "cuda")
    with pytest.raises(ValueError, match="algorithm must be one of"):
        choose("yinyang", 100, 2, 3, "cpu")
    with pytest.raises(ValueError, match="algorithm must be one of"):
        lloyd(torch.zeros(10, 2), torch.zeros(2, 2), algorithm="fast")


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("max_iter", [1, 300])
def test_one_or_two_clusters_and_a_single_step(k, max_iter):
    X = blobs(500, 3, 2, seed=5)
    assert_same_as_plain(X, X[:k].copy(), max_iter=max_iter)
