"""Data-parallel fitting on two gloo processes equals the single-process fit on all the rows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kmeans_limit.inference import anneal, distributed, em, kmeans_plusplus, lloyd

WORKER = Path(__file__).with_name("worker.py")
sys.path.insert(0, str(WORKER.parent))
from worker import (  # noqa: E402
    SPLIT,
    far_init,
    outlier_weight,
    shared_data,
    surplus_init,
    surplus_rows,
    with_outlier,
)

#: Seconds a two-process case may take before the test kills it.
BOUND = 180


def run_ranks(case: str, tmp_path: Path, world_size: int = 2) -> list[dict]:
    """Run ``case`` of the worker on ``world_size`` gloo processes; what each rank saved."""
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    store, outs = tmp_path / "store", [tmp_path / f"rank{rank}.pt" for rank in range(world_size)]
    ranks = [
        subprocess.Popen(
            [sys.executable, str(WORKER), case, str(rank), str(world_size), str(store), str(outs[rank])],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(world_size)
    ]
    try:
        logs = [rank.communicate(timeout=BOUND)[0] for rank in ranks]
    finally:
        for rank in ranks:
            rank.kill()
    for rank, log in zip(ranks, logs, strict=True):
        assert rank.returncode == 0, log
    return [torch.load(out, weights_only=False) for out in outs]


@pytest.fixture(scope="module")
def fits(tmp_path_factory) -> list[dict]:
    return run_ranks("fit", tmp_path_factory.mktemp("fit"))


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    return shared_data()


def assert_same(single: dict, ranks: list[dict], labels_of_shards: bool = True) -> None:
    """Every field equal to 1e-10; labels as the shards' labels in rank order; every rank alike."""
    for field, expected in single.items():
        if isinstance(expected, dict):
            assert_same(expected, [rank[field] for rank in ranks], labels_of_shards)
        elif field == "labels":
            assert torch.equal(torch.cat([rank[field] for rank in ranks]), expected)
        else:
            for rank in ranks:
                got = rank[field]
                if isinstance(expected, torch.Tensor):
                    assert got.shape == expected.shape, field
                    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10, msg=field)
                elif isinstance(expected, float):
                    assert got == pytest.approx(expected, rel=1e-10, abs=1e-10), field
                else:
                    assert got == expected, field


def test_kmeans_plusplus_picks_the_single_process_rows(fits, data):
    X, weight = data
    assert_same({"init": kmeans_plusplus(X, 4, seed=3)}, fits)
    assert_same({"init_weighted": kmeans_plusplus(X, 5, seed=4, sample_weight=weight)}, fits)


def test_lloyd_equals_single_process(fits, data):
    X, weight = data
    init = kmeans_plusplus(X, 4, seed=3)
    assert_same({"lloyd": lloyd(X, init, tol=0.0)._asdict()}, fits)
    assert_same({"lloyd_weighted": lloyd(X, init, sample_weight=weight)._asdict()}, fits)


def test_lloyd_relocates_an_empty_cluster_onto_the_farthest_row_of_any_rank(fits, data):
    X = data[0]
    single = lloyd(X, far_init(kmeans_plusplus(X, 4, seed=3)))
    assert_same({"lloyd_empty": single._asdict()}, fits)
    assert (torch.bincount(single.labels, minlength=4) > 0).all()


def test_lloyd_with_more_centroids_than_distinct_rows_over_all_ranks(fits):
    single = lloyd(surplus_rows(), surplus_init())
    assert_same({"lloyd_surplus": single._asdict()}, fits)
    assert single.inertia == 0.0 and single.converged


def test_lloyd_and_anneal_never_take_a_row_of_weight_zero(fits, data):
    X, weight = with_outlier(data[0]), outlier_weight()
    single = lloyd(X, far_init(kmeans_plusplus(data[0], 4, seed=3)), sample_weight=weight)
    assert_same({"lloyd_outlier": single._asdict()}, fits)
    assert (torch.bincount(single.labels[weight > 0], minlength=4) > 0).all()
    assert_same({"anneal_outlier": _record(anneal(X, 4, sample_weight=weight))}, fits)


def test_em_equals_single_process(fits, data):
    X = data[0]
    init = kmeans_plusplus(X, 4, seed=3)
    assert_same({"em": em(X, init, max_iter=500)._asdict()}, fits)
    assert_same({"em_fixed": em(X, init, sigma=0.8, weights="equal", max_iter=500)._asdict()}, fits)


def _record(result) -> dict:
    record = result._asdict()
    record["path"] = result.path._asdict()
    return record


@pytest.mark.parametrize(
    ("case", "n_clusters", "options"),
    [
        ("anneal", 4, {}),
        ("anneal_weighted", 6, {"seed": 5, "weighted": True}),
        ("anneal_hard_splits", 12, {"sigma_end": 0.9}),
    ],
)
def test_anneal_equals_single_process_path_and_all(fits, data, case, n_clusters, options):
    X, weight = data
    options = dict(options)
    if options.pop("weighted", False):
        options["sample_weight"] = weight
    single = anneal(X, n_clusters, **options)
    assert_same({case: _record(single)}, fits)
    assert len(single.path.sigma) > 1


def test_shards_are_uneven_and_both_nonempty(data):
    cut = int(SPLIT * data[0].shape[0])
    assert 0 < cut < data[0].shape[0] and cut != data[0].shape[0] - cut


@pytest.fixture(scope="module")
def errors(tmp_path_factory) -> list[dict]:
    return run_ranks("errors", tmp_path_factory.mktemp("errors"))


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("no_rows", r"rank 1: X of shape \(0, 3\) is empty"),
        ("features", r"same columns and dtype; got rank 0: n_features=3.*rank 1: n_features=2"),
        ("options", r"rank 1: options .*'cooling': '0.8'.* differ from rank 0's .*'cooling': '0.9'"),
        ("init", r"init differ between ranks"),
        ("distinct", r"X has 2 distinct points over all ranks, fewer than n_clusters=3"),
        ("distinct_weighted", r"X has 2 distinct points of positive sample_weight over all ranks"),
        ("nan", r"rank 1: X holds NaN or inf"),
        (
            "local_data",
            r"a prepared Data should be made with prepare_data\(\.\.\., comm=\.\.\.\) over every rank's rows \(600 in all\)",
        ),
        ("weight_zero", r"sample_weight sums to 0 over all ranks"),
    ],
)
def test_bad_input_on_one_rank_raises_the_same_error_on_every_rank(errors, case, match):
    import re

    assert [bool(re.search(match, rank[case])) for rank in errors] == [True, True], errors[0][case]
    assert errors[0][case] == errors[1][case]


def test_the_group_still_works_after_errors(errors):
    assert errors[0]["after"] == errors[1]["after"] > 0


def test_a_rank_that_never_calls_gives_an_error_not_a_hang(tmp_path):
    rank0 = run_ranks("absent", tmp_path)[0]
    assert "gave up waiting for the others in distributed.lloyd" in rank0["error"]
    assert rank0["seconds"] < 60


def test_uninitialised_process_group_is_a_clear_error():
    X = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="no process group: call torch.distributed.init_process_group"):
        distributed.anneal(X, 2)
