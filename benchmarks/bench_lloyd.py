"""Per-iteration time of ``kmeans_limit.inference.lloyd`` against scikit-learn's Lloyd, same start.

Run from the repository root::

    .venv/bin/python benchmarks/bench_lloyd.py --quick
    .venv/bin/python benchmarks/bench_lloyd.py --threads 1

Both run a fixed number of iterations (``--iters``, tol=0) from the same initial centroids; the time
per iteration is the best of ``--repeat`` runs divided by the iterations each really ran. A ratio
below 1 means ``lloyd`` is faster. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math

import numpy as np
import torch
from _data import best_time, machine
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from kmeans_limit.inference import lloyd

FULL = {"n": (100_000, 1_000_000), "d": (2, 16, 64), "k": (8, 64, 256), "dtype": ("float32", "float64")}
QUICK = {"n": (100_000,), "d": (2, 16, 64), "k": (8, 64), "dtype": ("float64", "float32")}


def problem(n: int, d: int, k: int, dtype: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs around k random centres, and k random rows as the start."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=5.0, size=(k, d))
    X = (centres[rng.integers(k, size=n)] + rng.normal(size=(n, d))).astype(dtype)
    return X, X[rng.choice(n, size=k, replace=False)].copy()


def per_iteration(X: np.ndarray, init: np.ndarray, iters: int, repeat: int) -> tuple[float, float]:
    """Seconds per iteration: (scikit-learn, lloyd)."""
    sk_model = KMeans(len(init), init=init, n_init=1, max_iter=iters, tol=0.0, algorithm="lloyd")
    sk_time, fitted = best_time(lambda: sk_model.fit(X), repeat)
    X_t, init_t = torch.from_numpy(X), torch.from_numpy(init)
    our_time, result = best_time(lambda: lloyd(X_t, init_t, max_iter=iters, tol=0.0), repeat)
    return sk_time / fitted.n_iter_, our_time / result.n_iter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 1e5 only, K in {8, 64}")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch and scikit-learn threads")
    args = parser.parse_args()
    limits = contextlib.nullcontext()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
        limits = threadpool_limits(args.threads)
    grid = QUICK if args.quick else FULL
    with limits:
        print(f"# {machine()}")
        print(
            f"{'N':>9} {'D':>3} {'K':>4} {'dtype':>8} {'sklearn ms/it':>14} {'lloyd ms/it':>12} {'ratio':>6}"
        )
        ratios = []
        for n, d, k, dtype in itertools.product(grid["n"], grid["d"], grid["k"], grid["dtype"]):
            X, init = problem(n, d, k, dtype)
            theirs, ours = per_iteration(X, init, args.iters, args.repeat)
            ratios.append(ours / theirs)
            print(
                f"{n:>9} {d:>3} {k:>4} {dtype:>8} {1e3 * theirs:>14.3f} {1e3 * ours:>12.3f} {ratios[-1]:>6.2f}"
            )
        print(f"# geometric mean ratio {math.exp(np.mean(np.log(ratios))):.2f} over {len(ratios)} cases")


if __name__ == "__main__":
    main()
