"""Per-iteration time of ``kmeans_limit.inference.lloyd`` against scikit-learn's Lloyd, same start.

Run from the repository root::

    .venv/bin/python benchmarks/bench_lloyd.py --quick
    .venv/bin/python benchmarks/bench_lloyd.py --threads 1

Both run a fixed number of iterations (``--iters``, tol=0, fewer where the labels repeat first) from
the same initial centroids; the time per iteration is the best of ``--repeat`` runs divided by the
iterations each really ran (each call's fixed costs, checking the data and the last labels, are in it). A ratio
below 1 means ``lloyd`` is faster. Nothing is asserted.

faiss (``faiss-cpu``, when importable; its columns are left out, saying so, when not) runs as many
iterations as ``lloyd`` ran, from the same centroids with ``max_points_per_centroid`` large (no subsampling): its
k-means is an ``IndexFlatL2`` search of the rows per iteration (float32 only: float64 rows are
converted first, outside the timing). In the GEMM-bound cells (``D >= 16`` and ``K >= 64``) the
rate ``2 N D K`` flops per iteration is printed next to one plain ``torch.mm`` of the same shape
and dtype, timed in the same run on the same threads.
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

try:
    import faiss
except ImportError:  # the faiss columns are left out, saying so
    faiss = None

FULL = {
    "n": (100_000, 1_000_000),
    "d": (2, 16, 64, 256),
    "k": (8, 64, 256, 1024),
    "dtype": ("float32", "float64"),
}
GEMM = {"n": (100_000,), "d": (64, 256), "k": (256, 1024), "dtype": ("float32",)}
QUICK = {"n": (100_000,), "d": (2, 16, 64), "k": (8, 64), "dtype": ("float64", "float32")}


#: A cell runs at most this many flops (2 N D K an iteration) in all, and at least 2 iterations:
#: the largest cells (N = 1e6, D = 256, K = 1024: 5.2e11 flops an iteration) run fewer iterations.
FLOP_BUDGET = 1e12
#: Cells of more flops an iteration than this are timed once (a single run lasts seconds there).
ONCE = 2e10


def iterations(n: int, d: int, k: int, iters: int) -> int:
    """The iterations a cell runs: ``iters``, fewer where that would exceed ``FLOP_BUDGET``."""
    return max(2, min(iters, int(FLOP_BUDGET // (2 * n * d * k))))


def problem(n: int, d: int, k: int, dtype: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs around k random centres, and k random rows as the start."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=5.0, size=(k, d))
    X = (centres[rng.integers(k, size=n)] + rng.normal(size=(n, d))).astype(dtype)
    return X, X[rng.choice(n, size=k, replace=False)].copy()


def per_iteration(X: np.ndarray, init: np.ndarray, iters: int, repeat: int) -> tuple[float, float, int]:
    """Seconds per iteration: (scikit-learn, lloyd), plain Lloyd on both sides; and the iterations
    ``lloyd`` ran (fewer than ``iters`` where its labels repeat first, as scikit-learn's do)."""
    sk_model = KMeans(len(init), init=init, n_init=1, max_iter=iters, tol=0.0, algorithm="lloyd")
    sk_time, fitted = best_time(lambda: sk_model.fit(X), repeat)
    X_t, init_t = torch.from_numpy(X), torch.from_numpy(init)
    run = lambda: lloyd(X_t, init_t, max_iter=iters, tol=0.0, algorithm="lloyd")  # noqa: E731
    our_time, result = best_time(run, repeat)
    return sk_time / fitted.n_iter_, our_time / result.n_iter, result.n_iter


def faiss_per_iteration(X: np.ndarray, init: np.ndarray, iters: int, repeat: int, threads) -> float:
    """Seconds per iteration of faiss's k-means from ``init`` (float32, no subsampling)."""
    X32, init32 = np.ascontiguousarray(X, dtype=np.float32), np.ascontiguousarray(init, dtype=np.float32)
    if threads is not None:
        faiss.omp_set_num_threads(threads)

    def run():
        model = faiss.Kmeans(X.shape[1], len(init), niter=iters, max_points_per_centroid=1 << 30, seed=0)
        model.train(X32, init_centroids=init32)

    return best_time(run, repeat)[0] / iters


def mm_rate(X: np.ndarray, k: int, repeat: int) -> float:
    """GFLOP/s of one ``torch.mm`` of (N × D) by (D × K) in ``X``'s dtype, best of ``repeat``."""
    X_t = torch.from_numpy(X)
    other = torch.randn(X.shape[1], k, dtype=X_t.dtype)
    seconds, _ = best_time(lambda: torch.mm(X_t, other), max(repeat, 3))
    return 2.0 * X.shape[0] * X.shape[1] * k / seconds / 1e9


def gemm_bound(d: int, k: int) -> bool:
    """Cells where the distance product dominates the step."""
    return d >= 16 and k >= 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 1e5 only, K in {8, 64}")
    parser.add_argument(
        "--gemm", action="store_true", help="the GEMM-bound cells only: D in {64, 256}, K in {256, 1024}"
    )
    parser.add_argument("--iters", type=int, default=10, help="iterations a cell (fewer in the largest)")
    parser.add_argument(
        "--faiss-float32-only",
        action="store_true",
        help="faiss only on float32 cells (its k-means is float32; float64 rows would be converted)",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch and scikit-learn threads")
    parser.add_argument("--d", type=int, nargs="+", default=None, help="only these D of the grid")
    parser.add_argument("--n", type=int, nargs="+", default=None, help="only these N of the grid")
    args = parser.parse_args()
    limits = contextlib.nullcontext()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
        limits = threadpool_limits(args.threads)
    grid = dict(GEMM if args.gemm else QUICK if args.quick else FULL)
    for key in ("d", "n"):
        if getattr(args, key) is not None:
            grid[key] = tuple(v for v in grid[key] if v in getattr(args, key))
    with limits:
        print(f"# {machine()}")
        if faiss is None:
            print("# faiss-cpu is not importable: its columns are left out (pip install faiss-cpu)")
        print(
            f"{'N':>9} {'D':>3} {'K':>4} {'dtype':>8} {'sklearn ms/it':>14} {'lloyd ms/it':>12} {'ratio':>6}"
            f" {'faiss ms/it':>12} {'/faiss':>7} {'GFLOP/s':>8} {'mm GFLOP/s':>11} {'of mm':>6}"
        )
        ratios, faiss_ratios = [], []
        for n, d, k, dtype in itertools.product(grid["n"], grid["d"], grid["k"], grid["dtype"]):
            X, init = problem(n, d, k, dtype)
            iters = iterations(n, d, k, args.iters)
            repeat = 1 if 2 * n * d * k > ONCE else args.repeat
            theirs, ours, iters = per_iteration(X, init, iters, repeat)
            ratios.append(ours / theirs)
            line = f"{n:>9} {d:>3} {k:>4} {dtype:>8} {1e3 * theirs:>14.3f} {1e3 * ours:>12.3f} {ratios[-1]:>6.2f}"
            if faiss is not None and (dtype == "float32" or not args.faiss_float32_only):
                faiss_time = faiss_per_iteration(X, init, iters, repeat, args.threads)
                faiss_ratios.append(ours / faiss_time)
                line += f" {1e3 * faiss_time:>12.3f} {faiss_ratios[-1]:>7.2f}"
            else:
                line += f" {'-':>12} {'-':>7}"
            if gemm_bound(d, k):
                rate, mm = 2.0 * n * d * k / ours / 1e9, mm_rate(X, k, repeat)
                line += f" {rate:>8.1f} {mm:>11.1f} {rate / mm:>6.2f}"
            print(line + ("" if iters == args.iters else f"  ({iters} iterations)"), flush=True)
        print(
            f"# geometric mean ratio {math.exp(np.mean(np.log(ratios))):.2f} over {len(ratios)} cases, "
            f"worst {max(ratios):.2f}"
        )
        if faiss_ratios:
            mean = math.exp(np.mean(np.log(faiss_ratios)))
            print(
                f"# against faiss: geometric mean ratio {mean:.2f} over {len(faiss_ratios)} cases, "
                f"worst {max(faiss_ratios):.2f}"
            )


if __name__ == "__main__":
    main()
