"""One rank of a data-parallel run, started by ``test_distributed.py`` (not a test module itself).

Usage: ``python worker.py CASE RANK WORLD_SIZE STORE OUT``. Joins a gloo process group through the
file ``STORE``, runs ``CASE`` on its shard of the shared test data and saves what it found to ``OUT``
with ``torch.save``.
"""

from __future__ import annotations

import datetime
import os
import sys
import time

import torch
import torch.distributed as dist

from kmeans_limit.inference import distributed
from kmeans_limit.inference.data import prepare_data

#: Rows of each rank: uneven on purpose.
SPLIT = 0.6


def shared_data() -> tuple[torch.Tensor, torch.Tensor]:
    """Four overlapping blobs in 3-D (float64) and positive sample weights: the test's reference data."""
    generator = torch.Generator().manual_seed(11)
    centres = torch.tensor([[0.0, 0.0, 0.0], [3.0, 0.0, 1.0], [0.0, 3.5, -1.0], [2.5, 3.0, 2.0]])
    labels = torch.arange(600) % 4
    X = centres[labels].double() + torch.randn(600, 3, generator=generator, dtype=torch.float64)
    weight = torch.rand(600, generator=generator, dtype=torch.float64) + 0.5
    return X, weight


def shard(tensor: torch.Tensor, rank: int) -> torch.Tensor:
    cut = int(SPLIT * tensor.shape[0])
    return tensor[:cut] if rank == 0 else tensor[cut:]


def fit(rank: int) -> dict:
    """Every data-parallel function on this rank's rows."""
    X, weight = (shard(t, rank) for t in shared_data())
    init = distributed.kmeans_plusplus(X, 4, seed=3)
    return {
        "init": init,
        "init_weighted": distributed.kmeans_plusplus(X, 5, seed=4, sample_weight=weight),
        "lloyd": distributed.lloyd(X, init, tol=0.0)._asdict(),
        "lloyd_empty": distributed.lloyd(X, far_init(init))._asdict(),
        "lloyd_weighted": distributed.lloyd(X, init, sample_weight=weight)._asdict(),
        "em": distributed.em(X, init, max_iter=500)._asdict(),
        "em_fixed": distributed.em(X, init, sigma=0.8, weights="equal", max_iter=500)._asdict(),
        "anneal": _anneal_record(distributed.anneal(X, 4)),
        "anneal_weighted": _anneal_record(distributed.anneal(X, 6, sample_weight=weight, seed=5)),
        "anneal_hard_splits": _anneal_record(distributed.anneal(X, 12, sigma_end=0.9)),
        "lloyd_surplus": distributed.lloyd(shard(surplus_rows(), rank), surplus_init())._asdict(),
        "lloyd_outlier": distributed.lloyd(
            shard(with_outlier(shared_data()[0]), rank),
            far_init(init),
            sample_weight=shard(outlier_weight(), rank),
        )._asdict(),
        "anneal_outlier": _anneal_record(
            distributed.anneal(
                shard(with_outlier(shared_data()[0]), rank), 4, sample_weight=shard(outlier_weight(), rank)
            )
        ),
    }


def surplus_rows() -> torch.Tensor:
    """Ten rows, two distinct points (one on each rank's shard)."""
    return torch.tensor([[0.0, 0.0, 0.0]] * 6 + [[1.0, 0.0, 0.0]] * 4, dtype=torch.float64)


def surplus_init() -> torch.Tensor:
    """Three centroids for the two points of ``surplus_rows``."""
    return torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [5.0, 5.0, 5.0]], dtype=torch.float64)


def with_outlier(X: torch.Tensor) -> torch.Tensor:
    """``X`` with its last row (on rank 1) moved far away: the farthest row from every centroid."""
    X = X.clone()
    X[-1] = 50.0
    return X


def outlier_weight() -> torch.Tensor:
    """Weights of ``with_outlier``'s rows: the outlier's is 0."""
    weight = shared_data()[1].clone()
    weight[-1] = 0.0
    return weight


def far_init(init: torch.Tensor) -> torch.Tensor:
    """``init`` with one centroid far from every row: its cluster is empty at the first step."""
    far = init.clone()
    far[2] = 100.0
    return far


def _anneal_record(result) -> dict:
    record = result._asdict()
    record["path"] = result.path._asdict()
    return record


def _error(call) -> str:
    try:
        call()
    except ValueError as error:
        return str(error)
    return "no error"


def errors(rank: int) -> dict:
    """Bad input on one rank: every rank should raise the same ValueError."""
    X = shard(shared_data()[0], rank)
    init = X[:4].clone() if rank == 0 else X[:4].clone() + 1.0
    good_init = torch.zeros(4, 3, dtype=torch.float64)
    return {
        "no_rows": _error(lambda: distributed.anneal(X if rank == 0 else X[:0], 3)),
        "features": _error(lambda: distributed.lloyd(X if rank == 0 else X[:, :2], good_init)),
        "options": _error(lambda: distributed.anneal(X, 3, cooling=0.9 if rank == 0 else 0.8)),
        "init": _error(lambda: distributed.lloyd(X, init)),
        "distinct": _error(lambda: distributed.anneal(torch.ones(5, 3, dtype=torch.float64) * rank, 3)),
        "distinct_weighted": _error(
            lambda: distributed.kmeans_plusplus(
                torch.arange(15.0, dtype=torch.float64).reshape(5, 3) + 100 * rank,
                3,
                sample_weight=torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64),
            )
        ),
        "nan": _error(lambda: distributed.em(X if rank == 0 else X * torch.nan, good_init)),
        "local_data": _error(lambda: distributed.lloyd(prepare_data(X), good_init)),
        "weight_zero": _error(lambda: distributed.lloyd(X, good_init, sample_weight=torch.zeros(X.shape[0]))),
        "after": distributed.lloyd(X, X[:2].clone() * 0.0 + torch.tensor([[0.0], [2.0]]), tol=0.0).inertia,
    }


def absent(rank: int) -> dict:
    """Rank 1 never calls: rank 0 should give up after the group's timeout, not hang."""
    if rank == 1:
        time.sleep(8.0)
        return {}
    X = shard(shared_data()[0], rank)
    start = time.monotonic()
    try:
        distributed.lloyd(X, X[:3].clone())
    except RuntimeError as error:
        return {"error": str(error), "seconds": time.monotonic() - start}
    return {"error": "no error", "seconds": time.monotonic() - start}


def main(case: str, rank: int, world_size: int, store: str, out: str) -> None:
    timeout = datetime.timedelta(seconds=3 if case == "absent" else 60)
    dist.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=world_size, timeout=timeout
    )
    try:
        torch.save({"fit": fit, "errors": errors, "absent": absent}[case](rank), out)
    finally:
        if case != "absent":
            dist.destroy_process_group()
    if case == "absent":
        # The group of the absent case is never torn down (its other rank is gone or never came), and
        # at the interpreter's exit gloo's still-running threads can abort the process ("terminate
        # called without an active exception", seen once in CI): the result is saved, so leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
