"""Data-parallel k-means++, Lloyd, EM and annealing over ``torch.distributed``.

Every process (rank) holds a shard of the rows and calls the same function with the same options;
the algorithms only combine rows through per-cluster sums (counts, weighted sums, sums of squares,
log-likelihoods, potentials), which are all-reduced, so every rank ends with the same parameters:
those of the single-process function on all the rows, up to rounding. Labels are returned for the
rank's own rows.

Launch with ``torchrun``, one process per shard (gloo on CPUs, NCCL with one GPU a process)::

    # one machine, 4 processes
    torchrun --standalone --nproc-per-node 4 my_script.py
    # two machines, 8 processes each: run on both, with the first machine's address
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 my_script.py

where ``my_script.py`` does::

    import datetime, torch.distributed as dist
    from kmeans_limit.inference import distributed
    dist.init_process_group("gloo", timeout=datetime.timedelta(minutes=5))  # "nccl" on GPUs
    X_local = ...  # this rank's rows: e.g. rows[dist.get_rank()::dist.get_world_size()]
    fit = distributed.anneal(X_local, 15)

A collective waits for the other ranks at most the process group's ``timeout``; then it raises
instead of hanging. Bad input on any rank (no rows, a different number of features, different
options or initial centroids) raises the same ``ValueError`` on every rank.
"""

from __future__ import annotations

import numpy as np
import torch

from ._comm import ProcessGroupComm
from .anneal import AnnealResult, anneal_core, anneal_options
from .data import Data, prepare_data
from .em import EMResult, em_fit, em_options, initial_log_weights, warn_unconverged
from .init import kmeans_plusplus_core
from .kernels import serial_if_small
from .lloyd import LloydResult, lloyd_core, lloyd_options
from .validation import (
    as_data,
    check_means,
    check_positive_int,
    check_sample_weight,
    make_generator,
)

__all__ = ["anneal", "em", "kmeans_plusplus", "lloyd"]


def _process_group(group) -> ProcessGroupComm:
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        raise ValueError(
            "torch.distributed has no process group: call torch.distributed.init_process_group "
            "(under torchrun) on every rank before kmeans_limit.inference.distributed"
        )
    return ProcessGroupComm(group)


def _attempt(check):
    """``(check(), None)``, or ``(None, message)`` if it raised a ValueError."""
    try:
        return check(), None
    except ValueError as error:
        return None, str(error)


def _raise_if_any(messages: list) -> None:
    """Raise one ValueError, the same on every rank, if any rank had a message."""
    bad = [f"rank {rank}: {message}" for rank, message in enumerate(messages) if message is not None]
    if bad:
        raise ValueError("; ".join(bad))


def _handshake(comm: ProcessGroupComm, function: str, mine: dict) -> list[dict]:
    """Every rank's ``mine``: the first collective of a call, where a missing rank shows."""
    try:
        return comm.gather_objects(mine)
    except RuntimeError as error:  # gloo and NCCL time out with a DistBackendError
        raise RuntimeError(
            f"rank {comm.rank} of {comm.world_size} gave up waiting for the others in "
            f"distributed.{function}: every rank must call it (with its own rows) at the same time"
        ) from error


def _shard(comm, function: str, X, sample_weight, options: dict) -> Data:
    """This rank's rows and weights, checked on every rank against the others, as one :class:`Data`.

    The rows are prepared (and centred or not) over the rows of every rank; a prepared ``Data``
    must have been made with ``comm`` over the same ranks.
    """
    checked, error = _attempt(lambda: _with_weight(comm, X, sample_weight))
    shape = None if error else (checked[0].shape[1], str(checked[0].dtype))
    prepared = isinstance(X, Data)
    options = {key: repr(value) for key, value in options.items()}
    everyone = _handshake(comm, function, dict(error=error, shape=shape, options=options, prepared=prepared))
    _raise_if_any([entry["error"] for entry in everyone])
    _raise_if_any([_differs(entry, everyone[0], "options") for entry in everyone])
    shapes = [entry["shape"] for entry in everyone]
    if len(set(shapes)) > 1:
        listed = ", ".join(f"rank {r}: n_features={f}, dtype {d}" for r, (f, d) in enumerate(shapes))
        raise ValueError(f"every rank needs rows with the same columns and dtype; got {listed}")
    if len({entry["prepared"] for entry in everyone}) > 1:
        raise ValueError("pass a prepared Data on every rank or on none")
    X, weight, given_data = checked
    total = comm.total(X.shape[0] if weight is None else weight.sum().item())
    if total <= 0:
        raise ValueError("sample_weight sums to 0 over all ranks: at least one row needs a positive weight")
    if not prepared:
        return prepare_data(X, weight, comm=comm, positive_total=False)
    n_rows = int(comm.total(X.shape[0]))
    if comm.any(given_data.n_total != n_rows):
        raise ValueError(
            f"a prepared Data should be made with prepare_data(..., comm=...) over every rank's rows "
            f"({n_rows} in all): its mean and spread are those of all the rows"
        )
    return given_data


def _with_weight(comm: ProcessGroupComm, X, sample_weight):
    """``(rows, weight, Data or None)`` of this rank, checked."""
    if isinstance(X, Data):
        if sample_weight is not None:
            raise ValueError("sample_weight should be None with a prepared Data (it carries its weights)")
        data, X, sample_weight = X, X.rows, X.weight
    else:
        data, X = None, as_data(X)
    if comm.device.type == "cuda" and X.device.type != "cuda":
        raise ValueError(f"the nccl backend needs the rows on a CUDA device, got X on {X.device}")
    return X, check_sample_weight(sample_weight, X, positive_total=False), data


def _differs(entry: dict, first: dict, key: str) -> str | None:
    if entry[key] == first[key]:
        return None
    return f"{key} {entry[key]} differ from rank 0's {first[key]}: every rank must pass the same"


def _agreed(comm, check, name: str) -> torch.Tensor:
    """``check()`` (a tensor) on every rank, equal on all of them (else a ValueError everywhere)."""
    checked, error = _attempt(check)
    everyone = comm.gather_objects(error if error else checked.cpu().numpy())
    _raise_if_any([entry if isinstance(entry, str) else None for entry in everyone])
    if any(not np.array_equal(entry, everyone[0]) for entry in everyone):
        raise ValueError(
            f"{name} differ between ranks: pass the same values on every rank "
            "(distributed.kmeans_plusplus gives every rank the same centroids)"
        )
    return checked


def _check_n_clusters(comm, n_clusters, data: Data, *, distinct: bool = True) -> int:
    """:func:`~kmeans_limit.inference.validation.check_n_clusters` over the rows of all ranks.

    Only rows of positive weight count as distinct points.
    """
    n_clusters = check_positive_int("n_clusters", n_clusters)
    n_samples = int(comm.total(data.n_samples))
    if n_samples < n_clusters:
        raise ValueError(f"n_samples={n_samples} (over all ranks) should be >= n_clusters={n_clusters}")
    if not distinct:
        return n_clusters
    X, which = data.rows, "distinct points"
    if comm.any(data.weight is not None and not bool((data.weight > 0).all())):
        which = "distinct points of positive sample_weight"
        X = X if data.weight is None else X[data.weight > 0]
    head = torch.unique(X[: 2 * n_clusters + 16], dim=0)
    local = head if head.shape[0] >= n_clusters else torch.unique(X, dim=0)
    if comm.any(local.shape[0] >= n_clusters):
        return n_clusters
    # Every rank has fewer than n_clusters distinct rows: count the union of them.
    union = np.unique(np.concatenate(comm.gather_objects(local.cpu().numpy())), axis=0)
    if union.shape[0] < n_clusters:
        raise ValueError(
            f"X has {union.shape[0]} {which} over all ranks, fewer than n_clusters={n_clusters}; "
            "use fewer clusters"
        )
    return n_clusters


def kmeans_plusplus(
    X, n_clusters: int, *, seed: int = 0, sample_weight=None, n_local_trials: int | None = None, group=None
) -> torch.Tensor:
    """Greedy k-means++ over the rows of every rank; see :func:`kmeans_limit.inference.kmeans_plusplus`.

    Parameters
    ----------
    X : tensor of shape (n_rows, n_features), or Data
        This rank's rows, or a ``Data`` that ``prepare_data(rows, weights, comm=...)`` made of them
        over every rank's rows.
    n_clusters, seed, sample_weight, n_local_trials
        As for the single-process function (``sample_weight`` of this rank's rows).
    group : ProcessGroup, optional
        Default: the world group.

    Returns
    -------
    tensor of shape (n_clusters, n_features)
        The same on every rank: the rows the single-process function picks from all rows in rank
        order (up to rounding of the running sums it draws from).
    """
    comm = _process_group(group)
    options = dict(n_clusters=n_clusters, seed=seed, n_local_trials=n_local_trials)
    data = _shard(comm, "kmeans_plusplus", X, sample_weight, options)
    n_clusters = _check_n_clusters(comm, n_clusters, data)
    if n_local_trials is None:
        n_local_trials = 2 + int(np.log(n_clusters))
    n_local_trials = check_positive_int("n_local_trials", n_local_trials)
    generator = make_generator(seed, data.device)
    with serial_if_small(data.n_samples * n_local_trials * n_clusters * (data.n_features + 1)):
        return kmeans_plusplus_core(data, n_clusters, n_local_trials, generator, comm)


def lloyd(X, init, *, max_iter: int = 300, tol: float = 1e-4, sample_weight=None, group=None) -> LloydResult:
    """Lloyd's algorithm over the rows of every rank; see :func:`kmeans_limit.inference.lloyd`.

    Parameters
    ----------
    X : tensor of shape (n_rows, n_features), or Data
        This rank's rows, or a ``Data`` that ``prepare_data(rows, weights, comm=...)`` made of them
        over every rank's rows.
    init : tensor of shape (n_clusters, n_features)
        The same on every rank.
    max_iter, tol, sample_weight
        As for the single-process function.
    group : ProcessGroup, optional

    Returns
    -------
    LloydResult
        ``labels`` of shape (n_rows,) are this rank's; the rest is the same on every rank.
    """
    comm = _process_group(group)
    data = _shard(comm, "lloyd", X, sample_weight, dict(max_iter=max_iter, tol=tol))
    options = lloyd_options(max_iter, tol)
    means = _agreed(comm, lambda: check_means(init, data.n_features, name="init"), "init")
    _check_n_clusters(comm, means.shape[0], data, distinct=False)
    with serial_if_small(data.n_samples * means.shape[0] * (data.n_features + 1)):
        return lloyd_core(data, means, comm=comm, **options)


def em(
    X,
    init,
    *,
    sigma: float | None = None,
    weights: str = "learn",
    max_iter: int = 100,
    tol: float = 1e-6,
    sample_weight=None,
    init_weights=None,
    group=None,
) -> EMResult:
    """EM for the shared-σ spherical mixture over the rows of every rank; see :func:`kmeans_limit.inference.em`.

    Parameters
    ----------
    X : tensor of shape (n_rows, n_features), or Data
        This rank's rows, or a ``Data`` that ``prepare_data(rows, weights, comm=...)`` made of them
        over every rank's rows.
    init : tensor of shape (n_clusters, n_features)
        The same on every rank.
    sigma, weights, max_iter, tol, sample_weight, init_weights
        As for the single-process function (``init_weights`` the same on every rank).
    group : ProcessGroup, optional

    Returns
    -------
    EMResult
        The same on every rank; the log-likelihood is over all rows.
    """
    comm = _process_group(group)
    given = dict(sigma=sigma, weights=weights, max_iter=max_iter, tol=tol)
    data = _shard(comm, "em", X, sample_weight, given)
    sigma, options = em_options(sigma, weights, max_iter, tol)
    means = _agreed(comm, lambda: check_means(init, data.n_features, name="init"), "init")
    n_clusters = _check_n_clusters(comm, means.shape[0], data, distinct=False)
    log_weights = _agreed(
        comm, lambda: initial_log_weights(init_weights, weights, n_clusters, data.rows), "init_weights"
    )
    result = em_fit(data, means, log_weights, sigma, comm=comm, **options)
    return warn_unconverged(result, stacklevel=3)


def anneal(
    X,
    n_clusters: int,
    *,
    sigma_start: float | None = None,
    sigma_end: float | None = None,
    cooling: float = 0.9,
    weights: str = "learn",
    seed: int = 0,
    sample_weight=None,
    max_iter: int = 10,
    tol: float = 1e-3,
    n_trials: int = 8,
    group=None,
) -> AnnealResult:
    """Deterministic annealing over the rows of every rank; see :func:`kmeans_limit.inference.anneal`.

    Parameters
    ----------
    X : tensor of shape (n_rows, n_features), or Data
        This rank's rows, or a ``Data`` that ``prepare_data(rows, weights, comm=...)`` made of them
        over every rank's rows.
    n_clusters, sigma_start, sigma_end, cooling, weights, seed, sample_weight, max_iter, tol, n_trials
        As for the single-process function, the same on every rank (``sample_weight`` of this
        rank's rows).
    group : ProcessGroup, optional

    Returns
    -------
    AnnealResult
        ``labels`` of shape (n_rows,) are this rank's; the centroids, weights, inertia, path and
        critical σ are the same on every rank, and those of the single-process run on all rows.
    """
    comm = _process_group(group)
    given = dict(
        n_clusters=n_clusters,
        sigma_start=sigma_start,
        sigma_end=sigma_end,
        cooling=cooling,
        weights=weights,
        seed=seed,
        max_iter=max_iter,
        tol=tol,
        n_trials=n_trials,
    )
    data = _shard(comm, "anneal", X, sample_weight, given)
    options = anneal_options(sigma_start, sigma_end, cooling, weights, max_iter, tol, n_trials)
    n_clusters = _check_n_clusters(comm, n_clusters, data)
    generator = make_generator(seed, data.device)
    with serial_if_small(data.n_samples * n_clusters * (data.n_features + 1)):
        return anneal_core(data, n_clusters, generator, comm=comm, **options)
