"""DP-means: exact small cases, monotone objective, fixed points, and the exhaustive optimum on N ≤ 8."""

import itertools
import math

import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

from kmeans_limit.inference.anneal import anneal
from kmeans_limit.inference.anneal_penalty import anneal_penalized, choose_k, penalty_hull
from kmeans_limit.inference.dp_means import dp_means, merge_costs, split_gains

F64 = torch.float64


def set_partitions(items):
    """Every partition of ``items`` into non-empty blocks (Bell(n) of them)."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for partition in set_partitions(rest):
        for i in range(len(partition)):
            yield partition[:i] + [[first, *partition[i]]] + partition[i + 1 :]
        yield [[first], *partition]


def block_costs(X, weight):
    """J of every subset of the rows (a bitmask: bit i for row i) around its weighted mean, float64."""
    X, weight = X.double(), weight.double()
    costs = {}
    for mask in range(1, 2 ** X.shape[0]):
        block = [i for i in range(X.shape[0]) if mask >> i & 1]
        x, w = X[block], weight[block]
        mean = (w[:, None] * x).sum(0) / w.sum()
        costs[mask] = (w * (x - mean).square().sum(-1)).sum().item()
    return costs


def exhaustive_optimum(X, penalty, weight=None):
    """min over every set partition of Σ_blocks J(block) + λ·#blocks."""
    weight = torch.ones(X.shape[0], dtype=F64) if weight is None else weight
    costs = block_costs(X, weight)
    masks = (
        [sum(1 << i for i in block) for block in partition]
        for partition in set_partitions(list(range(X.shape[0])))
    )
    return min(sum(costs[m] for m in partition) + penalty * len(partition) for partition in masks)


def blobs(seed, n_per=(3, 3, 2), spread=0.3, separation=10.0, d=2, dtype=F64):
    gen = torch.Generator().manual_seed(seed)
    centres = separation * torch.randn(len(n_per), d, generator=gen, dtype=dtype)
    return torch.cat(
        [
            c + spread * torch.randn(n, d, generator=gen, dtype=dtype)
            for c, n in zip(centres, n_per, strict=True)
        ]
    )


def assert_fixed_point(X, result, penalty, weight=None, splits=True):
    """No single reassignment (centroids held), opening, merge, deletion or split lowers J + λK."""
    weight = torch.ones(X.shape[0], dtype=F64) if weight is None else weight.double()
    X, means = X.double(), result.means.double()
    d2 = torch.cdist(X, means).square()
    own = d2[torch.arange(X.shape[0]), result.labels]
    tol = 1e-9 * (1.0 + result.objective)
    assert (own <= d2.min(1).values + tol).all(), "a reassignment lowers J"
    assert (weight * own <= penalty + tol).all(), "opening a cluster at a row lowers J + λK"
    mass = torch.bincount(result.labels, weights=weight, minlength=means.shape[0])
    assert (mass > 0).all()
    if means.shape[0] > 1:
        assert merge_costs(means, mass).min() >= penalty - tol, "a merge lowers J + λK"
        # deleting j sends its rows to their second-nearest centroid (the others held)
        two = d2.topk(2, dim=1, largest=False)
        rise = torch.zeros(means.shape[0], dtype=F64).index_add_(
            0, two.indices[:, 0], weight * two.values.diff(dim=1)[:, 0]
        )
        assert (rise >= penalty - tol).all(), "a deletion lowers J + λK"
    if splits:
        gains = [
            p.gain
            for p in split_gains(
                X.to(result.means.dtype), weight.to(result.means.dtype), result.labels, means.shape[0]
            )
        ]
        assert max(gains) <= penalty + tol, "a split lowers J + λK"


def test_hand_computed_case():
    X = torch.tensor([[0.0], [0.1], [10.0], [10.1]], dtype=F64)
    result = dp_means(X, 1.0)
    assert result.n_clusters == 2 and result.converged
    assert sorted(result.means[:, 0].tolist()) == pytest.approx([0.05, 10.05], abs=1e-12)
    assert result.inertia == pytest.approx(0.01, abs=1e-12) and result.objective == pytest.approx(
        2.01, abs=1e-12
    )
    assert result.labels[0] == result.labels[1] != result.labels[2] == result.labels[3]


def test_extreme_penalties():
    X = blobs(0)
    one = dp_means(X, 1e6)
    assert one.n_clusters == 1 and torch.allclose(one.means[0], X.mean(0), atol=1e-12)
    every = dp_means(X, 1e-8)
    assert every.n_clusters == X.shape[0] and every.inertia == pytest.approx(0.0, abs=1e-20)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("penalty", [0.3, 3.0, 30.0])
def test_objective_never_increases_and_ends_at_a_fixed_point(seed, penalty):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(80, 3, generator=gen, dtype=F64) + 4.0 * torch.randint(0, 3, (80, 1), generator=gen)
    result = dp_means(X, penalty)
    steps = result.history.diff()
    assert (steps <= 1e-12 * result.history[0]).all()
    assert result.history[-1].item() == pytest.approx(result.objective, rel=1e-12)
    assert_fixed_point(X, result, penalty)


@pytest.mark.parametrize("seed", range(6))
def test_reaches_the_exhaustive_optimum_on_well_separated_data(seed):
    X = blobs(seed)
    penalty = 4.0  # far above the within-blob spread (0.3²·…) and far below the separation²
    result = dp_means(X, penalty)
    assert result.objective == pytest.approx(exhaustive_optimum(X, penalty), rel=1e-10)
    assert result.n_clusters == 3


@pytest.mark.parametrize("seed", range(6))
def test_never_beats_the_exhaustive_optimum(seed):
    X = torch.randn(7, 2, generator=torch.Generator().manual_seed(seed), dtype=F64)
    for penalty in (0.2, 1.0, 3.0):
        result = dp_means(X, penalty)
        assert result.objective >= exhaustive_optimum(X, penalty) - 1e-12
        assert_fixed_point(X, result, penalty)


def test_integer_sample_weights_equal_repeated_rows():
    X = blobs(1, n_per=(4, 4, 4))
    weight = torch.tensor([1, 2, 3, 1, 1, 2, 1, 1, 3, 1, 2, 1], dtype=F64)
    weighted = dp_means(X, 2.0, sample_weight=weight)
    repeated = dp_means(X.repeat_interleave(weight.long(), 0), 2.0)
    assert weighted.n_clusters == repeated.n_clusters
    assert weighted.objective == pytest.approx(repeated.objective, rel=1e-10)
    assert_fixed_point(X, weighted, 2.0, weight)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale, offset", [(1.0, 0.0), (1e-3, 5.0), (1e3, -2e4), (1.0, 1e4)])
def test_equivariant_under_affine_maps_far_from_the_origin(dtype, scale, offset):
    """X' = aX + b with λ' = a²λ gives a·μ + b and the same labels (float32: relative 1e-4 of the spread)."""
    X = blobs(2, n_per=(20, 20, 20))
    base = dp_means(X, 4.0)
    moved = dp_means((scale * X + offset).to(dtype), 4.0 * scale**2)
    assert moved.n_clusters == base.n_clusters and torch.equal(moved.labels, base.labels)
    tol = 1e-4 if dtype == torch.float32 else 1e-9
    expected = scale * base.means + offset
    assert torch.allclose(moved.means.double(), expected, atol=tol * scale * 10.0, rtol=0)
    assert moved.objective == pytest.approx(base.objective * scale**2, rel=10 * tol)


def test_splits_free_a_start_at_the_mean():
    """Every row within sqrt(λ) of the mean: Kulis & Jordan's moves stay at K = 1, the splits find the blobs."""
    X = blobs(7, n_per=(25,) * 5, spread=0.3, separation=2.0)
    X = (X - X.mean(0)) / X.std(0)
    penalty = 1.01 * (X - X.mean(0)).square().sum(-1).max().item()
    plain = dp_means(X, penalty, splits=False)
    assert plain.n_clusters == 1
    assert_fixed_point(X, plain, penalty, splits=False)
    split = dp_means(X, penalty)
    assert split.n_clusters >= 3 and split.objective < 0.5 * plain.objective
    assert_fixed_point(X, split, penalty)


def test_warm_start_and_warning():
    X = blobs(3, n_per=(10, 10, 10))
    result = dp_means(X, 4.0, init=X[:1])
    assert result.n_clusters == 3
    with pytest.warns(ConvergenceWarning, match="max_iter=1"):
        dp_means(torch.randn(200, 2, generator=torch.Generator().manual_seed(0), dtype=F64), 0.5, max_iter=1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(penalty=0.0), r"penalty=0.0 should be a finite number in \(0, inf\)"),
        (dict(penalty=float("nan")), "penalty=nan should be a finite number"),
        (dict(penalty=1.0, max_iter=0), "max_iter=0 should be an integer >= 1"),
        (dict(penalty=1.0, seed=-1), "seed=-1 should be an integer"),
        (dict(penalty=1.0, init=torch.zeros(2, 3)), "init have 3 features but the data have n_features=2"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dp_means(torch.zeros(4, 2), **kwargs)


def test_set_partitions_counts_bell_numbers():
    assert [sum(1 for _ in set_partitions(list(range(n)))) for n in range(1, 7)] == [1, 2, 5, 15, 52, 203]
    assert len(list(itertools.islice(set_partitions(list(range(8))), 5000))) == 4140


# --- annealing with a penalty -------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_penalized_annealing_reaches_the_exhaustive_optimum(seed):
    X = blobs(seed)
    result = anneal_penalized(X, 4.0)
    assert result.objective == pytest.approx(exhaustive_optimum(X, 4.0), rel=1e-10)
    assert result.n_clusters == result.path_k == 3
    assert_fixed_point(X, result.dp, 4.0)


def test_hull_by_hand():
    hull = penalty_hull([1, 2, 3, 4], [10.0, 4.0, 3.0, 2.5])
    assert hull.n_clusters.tolist() == [1, 2, 3, 4]
    assert hull.penalty_high.tolist() == [math.inf, 6.0, 1.0, 0.5]
    assert hull.penalty_low.tolist() == [6.0, 1.0, 0.5, 0.0]
    hull = penalty_hull([1, 2, 3, 4], [10.0, 9.0, 0.0, 0.0])
    assert hull.n_clusters.tolist() == [1, 3] and hull.penalty_low.tolist() == [5.0, 0.0]
    with pytest.raises(ValueError, match="n_clusters should be increasing"):
        penalty_hull([2, 1], [1.0, 0.5])


def test_every_penalty_chooses_a_hull_vertex_inside_its_interval():
    X = blobs(5, n_per=(30, 20, 10, 5), spread=0.6, separation=4.0)
    result = anneal_penalized(X, 1.0, k_max=10)
    curve, hull = result.curve, result.hull
    assert curve.n_clusters.tolist() == list(range(1, 11))
    for penalty in torch.logspace(-2, 3, 60).tolist():
        k = choose_k(curve, penalty)
        i = hull.n_clusters.tolist().index(k)
        assert hull.penalty_low[i] - 1e-9 <= penalty <= hull.penalty_high[i] + 1e-9


def test_true_k_is_chosen_over_a_wide_range_of_penalties():
    X = blobs(6, n_per=(20, 20, 20), spread=0.5, separation=8.0)
    result = anneal_penalized(X, 10.0)
    hull = result.hull
    i = hull.n_clusters.tolist().index(3)
    assert hull.penalty_low[i] < 5.0 and hull.penalty_high[i] > 50.0
    assert result.n_clusters == 3


# --- anneal(X, penalty=λ): the same entry point, K chosen -----------------------------------------


@pytest.mark.parametrize("seed", range(2))
def test_anneal_with_a_penalty_reaches_the_exhaustive_optimum(seed):
    X = blobs(seed)
    result = anneal(X, penalty=4.0)
    assert result.objective == pytest.approx(exhaustive_optimum(X, 4.0), rel=1e-10)
    assert result.n_clusters == 3
    assert_fixed_point(X, result.dp, 4.0)


def test_anneal_with_a_penalty_is_anneal_penalized_with_the_same_options():
    X = blobs(3, n_per=(6, 5, 4), separation=6.0)
    weight = torch.arange(1, 16, dtype=F64) % 3 + 1
    options = dict(
        seed=2, cooling=0.8, weights="equal", max_iter=5, tol=1e-4, n_trials=0, sample_weight=weight
    )
    got = anneal(X, penalty=2.5, **options)
    want = anneal_penalized(X, 2.5, **options)
    assert type(got).__name__ == "PenalizedAnnealResult"
    torch.testing.assert_close(got.means, want.means, rtol=0, atol=0)
    assert torch.equal(got.labels, want.labels) and got.objective == want.objective
    torch.testing.assert_close(got.curve.inertia, want.curve.inertia, rtol=0, atol=0)
    # the weights count: a result on the weighted rows, not on the rows alone
    assert got.objective == pytest.approx(
        float((weight * (X - got.means[got.labels]).square().sum(1)).sum()) + 2.5 * got.n_clusters, rel=1e-12
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, r"n_clusters=None and penalty=None: give exactly one of n_clusters"),
        ({"n_clusters": 2, "penalty": 1.0}, r"n_clusters=2 and penalty=1.0: give exactly one"),
        ({"penalty": 0.0}, r"penalty=0.0 should be a finite number in \(0, inf\)"),
        ({"penalty": -1.0}, r"penalty=-1.0 should be"),
        ({"penalty": math.inf}, r"penalty=inf should be"),
    ],
)
def test_anneal_needs_exactly_one_of_k_and_a_penalty(kwargs, match):
    with pytest.raises(ValueError, match=match):
        anneal(blobs(0), **kwargs)


def test_the_penalty_curve_on_small_data_runs_on_one_thread_as_anneal_does(monkeypatch):
    """Each K's Lloyd run and split-merge moves (``_hard_at``) run inside ``serial_if_small``, as
    ``anneal`` runs its levels: on small problems torch's threads only wait on each other (600 rows,
    64 features, a curve to K = 128: 23-29 s with two threads beside two busy processes, 14-17 s
    on one)."""
    import kmeans_limit.inference.anneal_penalty as penalized
    from kmeans_limit.inference.kernels import cpu_threads

    seen = []
    original = penalized._hard_at

    def recorded(*args):
        seen.append((torch.get_num_threads(), cpu_threads()))
        return original(*args)

    monkeypatch.setattr(penalized, "_hard_at", recorded)
    X = torch.randn(300, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        anneal_penalized(X, 2.0, k_max=6)
        assert torch.get_num_threads() == 2  # the caller's count, as it was
    finally:
        torch.set_num_threads(previous)
    assert seen and set(seen) == {(1, 2)}, seen  # one pool thread; the compiled steps keep the caller's
