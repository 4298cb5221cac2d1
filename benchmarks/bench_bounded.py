"""Time to convergence of the bound-based ``lloyd`` against scikit-learn's ``lloyd`` and ``elkan``, same start.

Run from the repository root::

    .venv/bin/python benchmarks/bench_bounded.py --quick
    .venv/bin/python benchmarks/bench_bounded.py --threads 1 2

Every run starts from the same k-means++ centroids (scikit-learn's ``kmeans_plusplus``) with the
default tolerance; ``ours`` is ``lloyd(algorithm="auto")`` (the algorithm it chose is printed), and
its labels, centroids and ``n_iter`` are checked against plain ``lloyd(algorithm="lloyd")``
(``=plain``: must be ``yes``) and its labels and ``n_iter`` against scikit-learn's Lloyd (``=sk``:
in float32 scikit-learn's own result depends on its thread count, through the order of its sums). faiss (``faiss-cpu``, when importable) runs as many iterations as scikit-learn's Lloyd
needed, without subsampling: it has no convergence test, so its column is the time of the same
iterations. The times are the best of ``--repeat``; a ratio below 1 means ``lloyd`` is faster.
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os

import numpy as np
import torch
from _data import best_time, machine
from sklearn.cluster import KMeans, kmeans_plusplus
from threadpoolctl import threadpool_limits

from kmeans_limit.inference import lloyd
from kmeans_limit.inference.bounded import choose_algorithm

try:
    import faiss
except ImportError:  # the faiss columns are left out, saying so
    faiss = None

FULL = {"n": (100_000,), "d": (2, 16, 64), "k": (8, 64, 256), "dtype": ("float32", "float64")}
QUICK = {"n": (30_000,), "d": (2, 16), "k": (16, 128), "dtype": ("float32",)}


def problem(n: int, d: int, k: int, dtype: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs around k random centres (overlapping a little), and a k-means++ start."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(k, d))
    X = (centres[rng.integers(k, size=n)] + rng.normal(size=(n, d))).astype(dtype)
    init, _ = kmeans_plusplus(X, k, random_state=seed)
    return X, init.astype(dtype)


def faiss_time(X: np.ndarray, init: np.ndarray, iters: int, threads: int, repeat: int) -> float:
    """faiss's k-means for ``iters`` iterations from ``init`` (float32, no subsampling), seconds."""
    X32, init32 = np.ascontiguousarray(X, dtype=np.float32), np.ascontiguousarray(init, dtype=np.float32)
    faiss.omp_set_num_threads(threads)

    def run():
        model = faiss.Kmeans(X.shape[1], len(init), niter=iters, max_points_per_centroid=1 << 30, seed=0)
        model.train(X32, init_centroids=init32)
        return model

    return best_time(run, repeat)[0]


def warm_up(dtypes) -> None:
    """Compile (or load from numba's cache) every kernel the timed runs take, outside the timings."""
    for dtype, d, algorithm in itertools.product(dtypes, (2, 16), ("lloyd", "hamerly", "elkan")):
        X, init = problem(2000, d, 8, dtype)
        for weight in (None, torch.ones(len(X), dtype=getattr(torch, dtype))):
            lloyd(torch.from_numpy(X), torch.from_numpy(init), algorithm=algorithm, sample_weight=weight)


def cell(X, init, threads: int, repeat: int) -> dict:
    """Seconds to convergence of each method, and whether ours reproduced scikit-learn's Lloyd."""
    k = len(init)
    times = {}
    for name in ("lloyd", "elkan"):
        model = KMeans(k, init=init, n_init=1, algorithm=name)
        times[name], fitted = best_time(lambda model=model: model.fit(X), repeat)
        if name == "lloyd":
            reference = fitted
    X_t, init_t = torch.from_numpy(X), torch.from_numpy(init)
    times["ours"], ours = best_time(lambda: lloyd(X_t, init_t), repeat)
    times["plain"], _ = best_time(lambda: lloyd(X_t, init_t, algorithm="lloyd"), repeat)
    plain = lloyd(X_t, init_t, algorithm="lloyd")
    same = bool(np.array_equal(ours.labels.numpy(), plain.labels.numpy())) and ours.n_iter == plain.n_iter
    same = same and bool(torch.equal(ours.means, plain.means))
    same_sk = (
        bool(np.array_equal(ours.labels.numpy(), reference.labels_)) and ours.n_iter == reference.n_iter_
    )
    if faiss is not None:
        times["faiss"] = faiss_time(X, init, reference.n_iter_, threads, repeat)
    return {"times": times, "same": same, "same_sk": same_sk, "n_iter": reference.n_iter_}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small grid (N = 3e4)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    grid = QUICK if args.quick else FULL
    warm_up(grid["dtype"])
    print(f"# {machine()}; load average {os.getloadavg()}")
    if faiss is None:
        print("# faiss-cpu is not importable: its column is left out (pip install faiss-cpu)")
    for threads in args.threads:
        torch.set_num_threads(threads)
        with threadpool_limits(threads):
            print(f"\n## {threads} thread(s)")
            columns = "sk lloyd s  sk elkan s     ours s   plain s   faiss s  /lloyd  /elkan  /faiss"
            print(f"{'N':>7} {'D':>3} {'K':>4} {'dtype':>7} {'algo':>7} {'it':>4} {columns} =plain =sk")
            ratios = {"lloyd": [], "elkan": [], "faiss": []}
            for n, d, k, dtype in itertools.product(grid["n"], grid["d"], grid["k"], grid["dtype"]):
                X, init = problem(n, d, k, dtype)
                result = cell(X, init, threads, args.repeat)
                t = result["times"]
                row = [t["lloyd"], t["elkan"], t["ours"], t["plain"], t.get("faiss", math.nan)]
                for name in ratios:
                    if name in t:
                        ratios[name].append(t["ours"] / t[name])
                shown = [t["ours"] / t[name] if name in t else math.nan for name in ratios]
                algorithm = choose_algorithm("auto", n, d, k, "cpu")
                print(
                    f"{n:>7} {d:>3} {k:>4} {dtype:>7} {algorithm:>7} {result['n_iter']:>4} "
                    + " ".join(f"{v:>9.3f}" for v in row)
                    + " "
                    + " ".join(f"{v:>7.2f}" for v in shown)
                    + f" {'yes' if result['same'] else 'NO':>6} {'yes' if result['same_sk'] else 'no':>3}"
                )
            for name, values in ratios.items():
                if values:
                    mean = math.exp(np.mean(np.log(values)))
                    print(
                        f"# ours / sklearn-or-faiss {name}: geometric mean {mean:.2f} over {len(values)} cells"
                    )


if __name__ == "__main__":
    main()
