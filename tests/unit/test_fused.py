"""The compiled CPU step of Lloyd's algorithm against plain NumPy, on both of its paths and on threads."""

import numba
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs

from kmeans_limit.inference import _fused, lloyd


def reference(x, means):
    """Labels (first index on ties) from the full distance matrix."""
    return ((means * means).sum(1)[None, :] - 2.0 * x @ means.T).argmin(1)


# Up to D = 16 the loop computes the products itself (rows in SIMD lanes); D = 17 and 33 take BLAS.
@pytest.mark.parametrize("n_features", [2, 16, 17, 33])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_threads", [1, 3])
@pytest.mark.parametrize("weighted", [False, True])
def test_labels_sums_and_counts_match_numpy(n_features, dtype, n_threads, weighted, monkeypatch):
    rng = np.random.default_rng(n_features)
    x = rng.normal(size=(3001, n_features)).astype(dtype)
    means = x[rng.choice(3001, 40, replace=False)].copy()
    monkeypatch.setattr(_fused, "MIN_BLOCK_WORK", 1)  # blocks on these few rows too
    weight = rng.random(3001).astype(dtype) if weighted else None
    labels = np.full(3001, -1, dtype=np.int64)
    sums, counts = _fused.assign_and_sum(x, means, weight, labels, n_threads)
    want_labels = reference(x.astype(np.float64), means.astype(np.float64))
    # float32 products may round a near-tie the other way than float64; those rows are few.
    assert (labels == want_labels).mean() >= (1.0 if dtype == np.float64 else 0.995)
    # The sums and counts are those of the labels returned (accumulated in the data's dtype).
    w = np.ones(3001) if weight is None else weight.astype(np.float64)
    want_sums = np.zeros((40, n_features))
    np.add.at(want_sums, labels, x.astype(np.float64) * w[:, None])
    close = 1e-10 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(sums, want_sums, rtol=close, atol=close * np.abs(want_sums).max())
    np.testing.assert_allclose(counts, np.bincount(labels, weights=w, minlength=40), rtol=close)
    assert sums.dtype == counts.dtype == dtype
    only = np.full(3001, -1, dtype=np.int64)
    _fused.assign(x, means, only, n_threads)
    np.testing.assert_array_equal(only, labels)


@pytest.mark.parametrize("n_features", [2, 8])
def test_ties_go_to_the_first_centroid(n_features):
    x = np.zeros((5, n_features))
    means = np.array([[1.0] + [0.0] * (n_features - 1)] * 2 + [[-1.0] + [0.0] * (n_features - 1)] * 2)
    labels = np.empty(5, dtype=np.int64)
    sums, counts = _fused.assign_and_sum(x, means, None, labels)
    np.testing.assert_array_equal(labels, 0)  # four centroids at the same distance: the first
    np.testing.assert_array_equal(counts, [5, 0, 0, 0])


def test_more_threads_than_rows(monkeypatch):
    monkeypatch.setattr(_fused, "MIN_BLOCK_WORK", 1)
    x = np.array([[0.0, 0.0], [10.0, 10.0]])
    labels = np.empty(2, dtype=np.int64)
    sums, counts = _fused.assign_and_sum(x, x.copy(), None, labels, n_threads=8)
    np.testing.assert_array_equal(labels, [0, 1])
    np.testing.assert_array_equal(sums, x)


@pytest.mark.parametrize("threads", [1, 2])
def test_lloyd_on_wide_data_equals_sklearn_on_any_number_of_threads(threads, monkeypatch):
    monkeypatch.setattr(_fused, "MIN_BLOCK_WORK", 1)
    X, _ = make_blobs(2000, n_features=12, centers=9, cluster_std=2.0, random_state=3)
    init = X[np.random.default_rng(0).choice(2000, 9, replace=False)]
    km = KMeans(9, init=init, n_init=1, algorithm="lloyd", tol=0.0).fit(X)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        result = lloyd(torch.from_numpy(X), torch.from_numpy(init), tol=0.0)
    finally:
        torch.set_num_threads(previous)
    np.testing.assert_allclose(result.means.numpy(), km.cluster_centers_, rtol=0, atol=1e-8)
    np.testing.assert_array_equal(result.labels.numpy(), km.labels_)
    assert result.n_iter == km.n_iter_


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_labelled_sq_distances_are_the_differences(dtype):
    rng = np.random.default_rng(1)
    x, means = rng.normal(size=(500, 7)).astype(dtype), rng.normal(size=(6, 7)).astype(dtype)
    labels = rng.integers(6, size=500)
    got = _fused.labelled_sq_distances(x, means, labels)
    want = ((x.astype(np.float64) - means[labels]) ** 2).sum(1)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=1e-12 if dtype == np.float64 else 1e-6)


# Python >= 3.12 warns that forking a multi-threaded process may deadlock: the point of this test.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_runs_on_threads_of_its_own(monkeypatch):
    """Threads do not survive fork: the parent's pool would leave a child waiting for ever."""
    import multiprocessing

    monkeypatch.setattr(_fused, "MIN_BLOCK_WORK", 1)  # two blocks on few rows (the child inherits it)
    x = np.random.default_rng(2).normal(size=(1000, 3))
    labels = np.empty(len(x), dtype=np.int64)
    _fused.assign(x, x[:5].copy(), labels, n_threads=2)  # the parent's pool exists now
    assert _fused._pool_of_process.cache_info().currsize > 0
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        child = pool.apply_async(_child_labels, (x,)).get(timeout=60)
    np.testing.assert_array_equal(child, labels)


def _child_labels(x):
    labels = np.empty(len(x), dtype=np.int64)
    _fused.assign(x, x[:5].copy(), labels, n_threads=2)
    return labels


def test_without_a_place_for_the_cache_the_kernels_still_compile(monkeypatch):
    import numba

    njit = numba.njit

    def no_cache_dir(*args, **options):
        if options.get("cache"):
            raise RuntimeError("cannot cache function 'f': no locator available for file 'f.py'")
        return njit(*args, **options)

    monkeypatch.setattr(numba, "njit", no_cache_dir)

    @_fused._compiled()
    def double(x):
        return 2 * x

    assert double(21) == 42


@pytest.mark.parametrize("n_features", [2, 20])  # the direct loop and BLAS
@pytest.mark.parametrize("n_clusters", [15, 16, 17, 64, 127, 259])  # one chain; two passes, tails
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_first_smallest_score_of_repeated_centroids(n_features, n_clusters, dtype):
    """Integer rows and centroids (exact scores) with centroids repeated far apart: the label is
    the first of the equally near centroids, as the one-chain loop gives it."""
    rng = np.random.default_rng(n_clusters)
    x = rng.integers(-3, 4, size=(2000, n_features)).astype(dtype)
    means = rng.integers(-3, 4, size=(n_clusters, n_features)).astype(dtype)
    means[n_clusters - 1] = means[n_clusters - 6] = means[5]  # ties across the vectors and the tail
    labels = np.empty(2000, dtype=np.int64)
    _fused.assign(x, means, labels)
    scores = (means * means).sum(1)[None, :] - 2.0 * x.astype(np.float64) @ means.T.astype(np.float64)
    np.testing.assert_array_equal(labels, scores.argmin(1))  # exact: small integers
    near_tie = (scores == scores.min(1, keepdims=True)).sum(1) > 1
    assert near_tie.sum() > 10


@numba.njit
def _first_min_of(scores):
    return _fused._first_min(scores)


@numba.njit
def _one_chain(scores):
    best, low = 0, scores[0]
    for k in range(1, scores.shape[0]):
        if scores[k] < low:
            best, low = k, scores[k]
    return best


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 300),
    st.sampled_from([np.float32, np.float64]),
    st.integers(0, 2**32 - 1),
    st.sampled_from([3, 50, 10**6]),
)
def test_first_min_is_the_first_index_of_the_smallest(size, dtype, seed, spread):
    """``_first_min`` (one chain below ``SCAN_CLUSTERS`` scores, two vectorised passes from there)
    against the one-chain loop and ``np.argmin``: ties among few distinct values, signed zeros and
    infinities, at every length across the vector widths; a NaN still gives an index in range."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(-spread, spread + 1, size=size).astype(dtype)
    special = rng.random(size)
    scores[special < 0.05] = -0.0
    scores[(special > 0.05) & (special < 0.08)] = np.inf
    scores[(special > 0.08) & (special < 0.1)] = -np.inf
    best = _first_min_of(scores)
    assert best == _one_chain(scores) == np.argmin(scores)
    scores[rng.integers(size)] = np.nan
    assert 0 <= _first_min_of(scores) < size


def test_lloyd_with_many_clusters_equals_sklearn():
    """K = 140: the nearest centroid found in two vectorised passes, still scikit-learn's labels."""
    X, _ = make_blobs(3000, n_features=8, centers=140, cluster_std=1.0, random_state=4)
    init = X[np.random.default_rng(1).choice(3000, 140, replace=False)]
    km = KMeans(140, init=init, n_init=1, algorithm="lloyd", tol=0.0).fit(X)
    result = lloyd(torch.from_numpy(X), torch.from_numpy(init), tol=0.0, algorithm="lloyd")
    np.testing.assert_allclose(result.means.numpy(), km.cluster_centers_, rtol=0, atol=1e-8)
    np.testing.assert_array_equal(result.labels.numpy(), km.labels_)
    assert result.n_iter == km.n_iter_


@pytest.mark.parametrize("n_rows", [1, _fused.LANE_ROWS - 1, _fused.LANE_ROWS, _fused.LANE_ROWS + 1])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_features", [3, 16])
def test_lanes_give_the_first_smallest_score_of_each_row_and_its_sums(n_rows, dtype, n_features):
    """Blocks of rows in SIMD lanes: the labels of a row-by-row first-minimum over the same scores
    (duplicated centroids make ties), and the sums of those labels, in any block length; 14
    centroids: three groups of ``LANE_CLUSTERS`` and two met one at a time."""
    rng = np.random.default_rng(n_rows)
    x = rng.integers(-3, 4, size=(n_rows, n_features)).astype(dtype)  # small integers: exact scores
    means = np.repeat(rng.integers(-3, 4, size=(7, n_features)).astype(dtype), 2, axis=0)
    labels = np.full(n_rows, -1, dtype=np.int64)
    weight = rng.random(n_rows).astype(dtype)
    sums, counts = _fused.assign_and_sum(x, means, weight, labels)
    scores = (means * means).sum(1)[None, :] - 2.0 * x @ means.T
    want = np.array([next(k for k in range(14) if row[k] == row.min()) for row in scores])
    np.testing.assert_array_equal(labels, want)
    assert (labels % 2 == 0).all()  # of two equal centroids, the first
    want_sums = np.zeros((14, n_features))
    np.add.at(want_sums, labels, x.astype(np.float64) * weight[:, None].astype(np.float64))
    np.testing.assert_allclose(sums, want_sums, rtol=1e-5, atol=1e-5 * np.abs(want_sums).max())
    np.testing.assert_allclose(counts, np.bincount(labels, weights=weight, minlength=14), rtol=1e-5)


@numba.njit
def _fma(a, b, c):
    return _fused.fused_multiply_add(a, b, c)


@numba.njit
def _first_mins(x, means_t, bias):
    labels = np.empty(x.shape[0], dtype=np.int64)
    scores = np.empty(means_t.shape[1], dtype=x.dtype)
    for i in range(x.shape[0]):
        _fused.direct_scores(x, i, means_t, bias, scores)
        labels[i] = _fused._first_min(scores)
    return labels


def test_fused_multiply_add_rounds_once():
    """``(1 + 2⁻³⁰)² − (1 + 2⁻²⁹) = 2⁻⁶⁰`` exactly; a rounded product first would give 0."""
    a = 1.0 + 2.0**-30
    assert _fma(a, a, -(1.0 + 2.0**-29)) == 2.0**-60
    assert a * a - (1.0 + 2.0**-29) == 0.0
    b = np.float32(1.0 + 2.0**-13)
    assert _fma(b, b, np.float32(-(1.0 + 2.0**-12))) == np.float32(2.0**-26)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_features", [2, 9, 16])
def test_lanes_and_the_row_at_a_time_scores_are_the_same_numbers(dtype, n_features):
    """The plain step (rows in SIMD lanes) and the bounded steps' row-at-a-time scores
    (:func:`_fused.direct_scores`) pick the same label for every row, also where the centroids are
    copies of each other moved by a few units in the last place: there the label is decided by the
    last bit of the scores, so any difference in how either sums them would show."""
    rng = np.random.default_rng(n_features)
    x = rng.normal(size=(3000, n_features)).astype(dtype) * 7.0 + 3.0
    base = rng.normal(size=(5, n_features)).astype(dtype)
    eps = np.finfo(dtype).eps
    means = np.concatenate([base * (1.0 + eps * rng.integers(-4, 5, size=base.shape)) for _ in range(6)])
    means = means.astype(dtype)
    labels = np.full(3000, -1, dtype=np.int64)
    _fused.assign(x, means, labels)
    means_t = np.ascontiguousarray(-2.0 * means.T)
    bias = np.einsum("kd,kd->k", means, means)
    np.testing.assert_array_equal(labels, _first_mins(x, means_t, bias))
    # the copies tie but for the last bits: many rows go to a copy other than the first
    assert (labels >= 5).mean() > 0.2
