"""DP-means against KMeans at the K it found: J + λK, wall time, and the λ range that gives the true K.

Run from the repository root::

    .venv/bin/python benchmarks/bench_dp_means.py --quick
    .venv/bin/python benchmarks/bench_dp_means.py --birch

For each standardized data set, the annealing path's J(K) (``anneal_penalized`` with
``k_max = K_true + extra``) gives the lower convex hull and the interval of λ for which the true K is
chosen (empty when K_true is not a hull vertex). At λ* (the geometric mean of that interval), it
compares ``anneal_penalized`` and plain DP-means from the data mean (Kulis & Jordan's start) with
``KMeans(n_init=10)`` run at the K each found: the objective J + λ*K (ratio below 1 is better), the
centroid index against the ground-truth class means, and the wall time. ``pdc-dp-means`` is not a
peer: its wheels require scikit-learn < 1.3 and NumPy < 2 (and ship a patched copy of scikit-learn),
which conflicts with the project's. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from _data import centroid_index, label_means, load, machine
from sklearn.cluster import KMeans

from kmeans_limit.inference.anneal_penalty import anneal_penalized
from kmeans_limit.inference.dp_means import dp_means

QUICK = ("s1", "s2", "a1", "unbalance")
ALL = ("s1", "s2", "s3", "s4", "a1", "a2", "a3", "unbalance")


def timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def compare(name: str, extra: int) -> dict:
    data = load(name)
    X, truth = torch.from_numpy(data.X), label_means(data.X, data.labels)
    k_true = data.n_clusters
    path_time, path = timed(lambda: anneal_penalized(X, 1.0, k_max=k_true + extra))
    hull = path.hull
    ks = hull.n_clusters.tolist()
    if k_true in ks:
        i = ks.index(k_true)
        low, high = float(hull.penalty_low[i]), float(hull.penalty_high[i])
        penalty = math.sqrt(low * high) if math.isfinite(high) else 2 * low
    else:
        low = high = math.nan
        objective = path.curve.inertia + 0.0
        penalty = float((objective[k_true - 2] - objective[k_true]) / 2)  # the chord's slope around K_true
    row = {"name": name, "n": data.X.shape[0], "k_true": k_true, "low": low, "high": high, "penalty": penalty}
    anneal_time, ours = timed(lambda: anneal_penalized(X, penalty, k_max=k_true + extra))
    plain_time, plain = timed(lambda: dp_means(X, penalty))
    for tag, result, seconds in (("anneal", ours, anneal_time), ("plain", plain, plain_time)):
        k_time, km = timed(lambda k=result.n_clusters: KMeans(k, n_init=10, random_state=0).fit(data.X))
        km_objective = km.inertia_ + penalty * result.n_clusters
        row[f"{tag}_k"] = result.n_clusters
        row[f"{tag}_ratio"] = result.objective / km_objective
        row[f"{tag}_ci"] = centroid_index(result.means.numpy(), truth)
        row[f"{tag}_km_ci"] = centroid_index(km.cluster_centers_, truth)
        row[f"{tag}_time"] = seconds / k_time
    row["path_time"] = path_time
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    parser.add_argument("--birch", action="store_true", help="add birch1 (100,000 rows, K = 100; slow)")
    parser.add_argument("--extra", type=int, default=5, help="k_max = K_true + extra on the path")
    args = parser.parse_args()
    names = list(QUICK if args.quick else ALL) + (["birch1"] if args.birch else [])
    print(f"# {machine()}")
    header = (
        f"{'data':10} {'N':>7} {'K':>4} {'λ range giving K_true':>24} {'λ*':>9} | "
        f"{'anneal K':>8} {'obj/KM':>7} {'CI':>3} {'KM CI':>5} {'time/KM':>7} | "
        f"{'plain K':>7} {'obj/KM':>7} {'CI':>3} {'KM CI':>5} {'time/KM':>7}"
    )
    print(header)
    for name in names:
        r = compare(name, args.extra)
        interval = f"[{r['low']:.4g}, {r['high']:.4g}]"
        print(
            f"{r['name']:10} {r['n']:7d} {r['k_true']:4d} {interval:>24} {r['penalty']:9.4g} | "
            f"{r['anneal_k']:8d} {r['anneal_ratio']:7.4f} {r['anneal_ci']:3d} {r['anneal_km_ci']:5d} "
            f"{r['anneal_time']:7.2f} | {r['plain_k']:7d} {r['plain_ratio']:7.4f} {r['plain_ci']:3d} "
            f"{r['plain_km_ci']:5d} {r['plain_time']:7.2f}",
            flush=True,
        )
    print("obj/KM: J + λ*K over KMeans(n_init=10)'s J + λ*K at the same K (below 1 is better)")


if __name__ == "__main__":
    main()
