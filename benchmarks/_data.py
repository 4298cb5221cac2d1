"""Benchmark data: scikit-learn's bundled sets and the SIPU clustering benchmark, standardized.

The SIPU sets shipped with the package (``kmeans_limit.datasets.SIPU_SETS``: s1, a1, r15) are read
from the package. The others live outside the repository, in ``$KMEANS_LIMIT_DATA/sipu`` (default
``<repo>/../shared/data/sipu``): ``NAME.data.gz`` holds one point a line and ``NAME.labels0.gz`` one
ground-truth label a line (1..K).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from kmeans_limit.datasets import SIPU_SETS, load_sipu

__all__ = [
    "PACKAGED",
    "BLOBS",
    "SIPU",
    "SKLEARN",
    "Dataset",
    "available",
    "best_time",
    "best_times_interleaved",
    "centroid_index",
    "data_dir",
    "label_means",
    "load",
    "machine",
    "standardize",
]

SKLEARN = ("iris", "wine", "breast_cancer", "digits")
SIPU = ("s1", "s2", "s3", "s4", "a1", "a2", "a3", "unbalance", "r15", "d31", "birch1")
#: Gaussian blobs the benchmarks make (``make_blobs``, seed 0): N = 1024 rows around K = 16 centres
#: in 64 and 256 dimensions, where the distance products dominate.
BLOBS = {"blobs64": (1024, 64, 16), "blobs256": (1024, 256, 16)}
#: The SIPU sets that ship with the package: no files outside the repository are needed for them.
PACKAGED = tuple(name for name in SIPU if name in SIPU_SETS)


class Dataset(NamedTuple):
    """A standardized data set with its ground-truth partition.

    Attributes
    ----------
    name : str
    X : ndarray of shape (n_samples, n_features), float64, each feature of mean 0 and variance 1
    labels : int ndarray of shape (n_samples,), ground-truth labels 0..K-1
    n_clusters : int
        The number of ground-truth classes K.
    """

    name: str
    X: np.ndarray
    labels: np.ndarray
    n_clusters: int


def data_dir() -> Path:
    """``$KMEANS_LIMIT_DATA`` or ``<repo>/../shared/data``."""
    default = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
    return Path(os.environ.get("KMEANS_LIMIT_DATA", default))


def standardize(X: np.ndarray) -> np.ndarray:
    """Centre each column and scale it to unit variance (columns of variance 0 are only centred)."""
    X = np.asarray(X, dtype=np.float64)
    scale = X.std(axis=0)
    scale[scale == 0] = 1.0
    return (X - X.mean(axis=0)) / scale


def available(name: str) -> bool:
    """Whether the data set can be loaded here: bundled (scikit-learn's, or in the package) or found
    under :func:`data_dir`."""
    return (
        name in SKLEARN
        or name in BLOBS
        or name in PACKAGED
        or (data_dir() / "sipu" / f"{name}.data.gz").exists()
    )


def _load_sipu(name: str) -> tuple[np.ndarray, np.ndarray]:
    if name in PACKAGED:
        packaged = load_sipu(name)
        return packaged.data.numpy(), packaged.labels.numpy()
    folder = data_dir() / "sipu"
    with gzip.open(folder / f"{name}.data.gz", "rt") as handle:
        X = np.loadtxt(handle, dtype=np.float64)
    with gzip.open(folder / f"{name}.labels0.gz", "rt") as handle:
        labels = np.loadtxt(handle, dtype=np.int64)
    return X, labels


def _make_blobs(n_samples: int, n_features: int, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_blobs

    return make_blobs(n_samples, n_features, centers=n_clusters, random_state=0)


def _load_sklearn(name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    return bunch.data, bunch.target


def load(name: str) -> Dataset:
    """One data set by name (one of ``SKLEARN``, ``SIPU`` or ``BLOBS``), standardized."""
    if name in SKLEARN:
        X, labels = _load_sklearn(name)
    elif name in BLOBS:
        X, labels = _make_blobs(*BLOBS[name])
    elif name in SIPU:
        X, labels = _load_sipu(name)
    else:
        raise ValueError(f"unknown data set {name!r}; choose one of {SKLEARN + SIPU + tuple(BLOBS)}")
    _, labels = np.unique(labels, return_inverse=True)
    return Dataset(name, standardize(X), labels, int(labels.max()) + 1)


def centroid_index(centers_a: np.ndarray, centers_b: np.ndarray) -> int:
    """The centroid index CI of Fränti, Rezaei & Zhao (Pattern Recognition 47(9), 2014).

    Map every centroid of one solution to its nearest centroid in the other; the orphans are the
    centroids of the other that nothing maps to. CI is the larger orphan count of the two directions
    (0 when both solutions have the same cluster-level structure).
    """

    def orphans(source: np.ndarray, target: np.ndarray) -> int:
        d2 = ((source[:, None, :] - target[None, :, :]) ** 2).sum(-1)
        return len(target) - len(np.unique(d2.argmin(1)))

    return max(orphans(centers_a, centers_b), orphans(centers_b, centers_a))


def label_means(X: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The mean of each ground-truth class: the reference centroids for :func:`centroid_index`."""
    n_clusters = int(labels.max()) + 1
    return np.stack([X[labels == k].mean(axis=0) for k in range(n_clusters)])


def machine() -> str:
    """One line about the machine and the thread settings the timings ran under."""
    import platform

    import sklearn
    import torch
    from threadpoolctl import threadpool_info

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    pools = ", ".join(f"{p['internal_api']}={p['num_threads']}" for p in threadpool_info())
    return (
        f"{cpu}, {os.cpu_count()} CPUs; torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"scikit-learn {sklearn.__version__} ({pools}); load average {os.getloadavg()[0]:.2f}"
    )


def best_times_interleaved(functions, repeat: int) -> list[tuple[float, object]]:
    """:func:`best_time` of each function, their calls interleaved: every round calls each once, in
    turn, the order reversed every other round. On a shared machine whose speed drifts over seconds
    (here up to 2x between passes a few minutes apart) both sides of a ratio then see the same
    drift, where timing one side's runs after the other's folds the drift into the ratio."""
    import time

    best, results = [float("inf")] * len(functions), [None] * len(functions)
    for round_ in range(repeat):
        order = range(len(functions)) if round_ % 2 == 0 else reversed(range(len(functions)))
        for index in order:
            start = time.perf_counter()
            results[index] = functions[index]()
            best[index] = min(best[index], time.perf_counter() - start)
    return list(zip(best, results, strict=True))


def best_time(function, repeat: int) -> tuple[float, object]:
    """The shortest wall time of ``repeat`` calls, and the last call's result."""
    import time

    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result
