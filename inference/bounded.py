"""Exact bound-based Lloyd: Hamerly's (2010) and Elkan's (2003) algorithms, label for label as plain Lloyd.

Both skip distance computations with the triangle inequality and reach the labels, centroids and
iteration count of :func:`~kmeans_limit.inference.lloyd.lloyd_rows` from the same start.

The bounds, per row ``x`` with label ``a``:

- Hamerly: ``u ≥ ‖x − μ_a‖`` and ``l ≤ min_{k≠a} ‖x − μ_k‖``; with ``s_a = min_{k≠a} ‖μ_a − μ_k‖``
  every other centroid is at least ``L = max(l, s_a − u)`` away.
- Elkan: ``u`` and one ``l_k ≤ ‖x − μ_k‖`` per centroid; centroid k is at least
  ``max(l_k, ‖μ_a − μ_k‖ − u)`` away.

After the centroids move by ``δ_k`` the bounds become ``u + δ_a`` and ``l − δ_k`` (Hamerly: ``l``
minus the largest move of another centroid).

**Why the labels are plain Lloyd's.** Plain Lloyd labels a row with the first smallest computed score
``ŝ_k = fl(‖μ_k‖² − 2 x·μ_k)``, not with the exact distance. In the data's dtype (unit roundoff ``ε``,
``D`` features) ``|ŝ_k − (‖x − μ_k‖² − ‖x‖²)| ≤ γ_{D+1} (‖x‖ + ‖μ_k‖)²`` (the standard bound on a
sum of ``D + 1`` products, Cauchy-Schwarz on ``Σ|x_t μ_kt|``). Write ``E = 4 (D + 4) eps (‖x‖ + R)²``
with ``eps = 2ε`` the dtype's machine epsilon and ``R = max_k ‖μ_k‖``: more than twice that error,
also covering the float64 evaluation of ``‖x‖²``. If ``‖x − μ_k‖² − ‖x − μ_a‖² > 2E`` then
``ŝ_a < ŝ_k``, and plain Lloyd cannot pick k. So a bound test passes only as ``L² > u² + 2E``; a row
for which it fails (the margin included) gets every score computed as the plain step computes them
(its own loop for few features, one BLAS product of the chunk's put-aside rows otherwise), and the
first smallest is its label: ties go to the first centroid exactly as in plain Lloyd.

**Why the bounds are bounds under rounding.** They are kept in float64 (Elkan's ``l_k`` in float32).
Distances to single centroids are summed from float64 differences (relative error below
``(D + 2) 2⁻⁵³``); every quantity that enters an upper bound is multiplied by
``up = 1 + (D + 8) 2⁻⁵²`` and every one that enters a lower bound by ``down = 1 − (D + 8) 2⁻⁵²``
after it is formed (the moves ``δ_k`` and each update ``u + δ``, ``l − δ``, ``s_a − u``); the
centre-centre distances come from the Gram matrix less ``4 (D + 4) 2⁻⁵² (‖μ_a‖ + ‖μ_k‖)²``; a lower
bound taken from a score subtracts ``E``; one stored in float32 is first multiplied by
``1 − 2⁻²¹`` (float32 rounding is within ``2⁻²⁴``); the test itself rounds ``L²`` down and ``u²`` up.

Empty clusters are relocated, and the centroids updated, by the plain step's own code (the move of a
relocated centroid is just a larger ``δ``); with the same labels the sums are the plain step's bit for
bit (see :mod:`._bounded`). Hamerly, "Making k-means even faster", SDM 2010; Elkan, "Using the
triangle inequality to accelerate k-means", ICML 2003.
"""

from __future__ import annotations

import numpy as np
import torch

from . import _bounded
from ._comm import LOCAL, Comm
from .data import Data
from .kernels import cpu_threads
from .lloyd import LloydResult, _host, _host_labels, _update, labelled_sq_distances

__all__ = ["ALGORITHMS", "bounded_core", "bounded_rows", "choose_algorithm"]

ALGORITHMS = ("auto", "lloyd", "hamerly", "elkan")
#: Below this many clusters ``"auto"`` runs plain Lloyd: with few centroids a full step costs about
#: what keeping the bounds costs (measured 0.5-0.8x plain Lloyd's time at K = 8 in
#: benchmarks/bench_bounded.py).
MIN_CLUSTERS = 16
#: Below this many row × cluster × feature products the bounds do not pay for themselves.
MIN_WORK = 1 << 16
#: Up to this many features ``"auto"`` runs plain Lloyd at any K: its step (rows in SIMD lanes,
#: :mod:`._fused`) costs less than Hamerly's bookkeeping of a row. Measured on this project's 2-core
#: machine (N = 1e5 blobs float32, k-means++ start, time to convergence, Hamerly over plain):
#: 1.5-5.0x at D = 2-4 with K = 16-256; at D = 6 1.0-2.7x; at D = 8, K = 256 0.87x.
MAX_PLAIN_FEATURES = 4
#: ... and below this many cluster × feature products a row: at D = 8, K = 64 Hamerly took 2.7x
#: plain Lloyd's time, at D = 16, K = 64 0.9x, at D = 16, K = 256 0.58x.
MIN_ROW_WORK = 1024
_EPS64 = 2.0**-52


def choose_algorithm(algorithm: str, n_samples: int, n_features: int, n_clusters: int, device) -> str:
    """The algorithm ``lloyd(..., algorithm=...)`` runs: ``"lloyd"``, ``"hamerly"`` or ``"elkan"``.

    ``"auto"``: plain Lloyd off the CPU, below ``MIN_CLUSTERS`` clusters, up to
    ``MAX_PLAIN_FEATURES`` features, below ``MIN_ROW_WORK`` cluster × feature products a row and on
    tiny problems; Hamerly otherwise. Elkan's algorithm computes fewer distances than Hamerly's, but one at a
    time, where Hamerly's recomputed rows go through BLAS a chunk at once (above 16 features); in one run on this
    project's 2-core machine (N = 1e5, float32, D in 2-64, K in 16-256, benchmarks/bench_bounded.py
    data) Hamerly was the faster in every cell, by 1.3-3.9x, so ``"auto"`` never picks Elkan
    (which also keeps (rows × clusters) bounds). It is there by name.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    cpu = torch.device(device).type == "cpu"
    if algorithm == "auto":
        small = n_clusters < MIN_CLUSTERS or n_samples * n_clusters * n_features < MIN_WORK
        cheap = n_features <= MAX_PLAIN_FEATURES or n_clusters * n_features < MIN_ROW_WORK
        return "lloyd" if not cpu or small or cheap else "hamerly"
    if algorithm != "lloyd" and not cpu:
        raise ValueError(f"algorithm={algorithm!r} runs on the CPU only; the rows are on {device}")
    return algorithm


def bounded_core(
    data: Data, means: torch.Tensor, *, max_iter: int, tol: float, algorithm: str, comm: Comm = LOCAL
) -> LloydResult:
    """:func:`bounded_rows` on prepared data, centroids in the data's units (as ``lloyd_core``)."""
    result = bounded_rows(
        data.rows,
        data.to_rows(means),
        data.weight,
        max_iter=max_iter,
        tol=tol * data.variance,
        algorithm=algorithm,
        comm=comm,
    )
    return result._replace(means=data.to_data(result.means))


def _moves(new: np.ndarray, old: np.ndarray, up: float) -> np.ndarray:
    """``δ_k = ‖μ_k^new − μ_k^old‖`` in float64, rounded up."""
    difference = new.astype(np.float64) - old.astype(np.float64)
    return np.sqrt(np.einsum("kd,kd->k", difference, difference)) * up


def _centre_distances(means: np.ndarray, down: float) -> tuple[np.ndarray, float]:
    """``‖μ_a − μ_k‖`` rounded down (diagonal +inf), and ``R = max_k ‖μ_k‖`` rounded up."""
    m = means.astype(np.float64)
    sq = np.einsum("kd,kd->k", m, m)
    norms = np.sqrt(sq)
    slack = 4.0 * (m.shape[1] + 4) * _EPS64 * (norms[:, None] + norms[None, :]) ** 2
    c2 = sq[:, None] + sq[None, :] - 2.0 * (m @ m.T) - slack
    distances = np.sqrt(np.maximum(c2, 0.0)) * down
    np.fill_diagonal(distances, np.inf)
    return distances, float(norms.max()) * (1.0 + 4.0 * _EPS64)


def _geometry(algorithm, means, delta, coef, up, down):
    """The per-step constants of :mod:`._bounded`'s kernels."""
    distances, radius = _centre_distances(means, down)
    sep = distances.min(1)
    if algorithm == "elkan":
        return (distances, sep, delta, coef, radius, up, down)
    order = np.argsort(delta)
    far_index = int(order[-1])
    far_second = float(delta[order[-2]]) if len(delta) > 1 else 0.0
    return (sep, delta, float(delta[far_index]), far_second, far_index, coef, radius, up, down)


def bounded_rows(
    X: torch.Tensor,
    means: torch.Tensor,
    weight: torch.Tensor | None,
    *,
    max_iter: int,
    tol: float,
    algorithm: str,
    comm: Comm = LOCAL,
) -> LloydResult:
    """Hamerly's or Elkan's algorithm in the rows' own frame; arguments and result as ``lloyd_rows``.

    Parameters
    ----------
    X : CPU tensor of shape (n_samples, n_features), float32 or float64
        ``Data.rows``.
    means : tensor of shape (n_clusters, n_features)
    weight : tensor of shape (n_samples,) or None
    max_iter : int
    tol : float
        Absolute: stop when ``Σ_k ‖μ_k^new − μ_k^old‖² <= tol``.
    algorithm : {"hamerly", "elkan"}
    comm : Comm, default LOCAL

    Returns
    -------
    LloydResult
        The labels, centroids, inertia and ``n_iter`` of ``lloyd_rows`` from the same start.
    """
    if algorithm not in ("hamerly", "elkan"):
        raise ValueError(f"algorithm must be 'hamerly' or 'elkan', got {algorithm!r}")
    step = _bounded.hamerly_step if algorithm == "hamerly" else _bounded.elkan_step
    unweighted = weight is None
    weight_t = torch.ones(X.shape[0], dtype=X.dtype) if unweighted else weight
    x, w = _host(X), None if unweighted else _host(weight)
    n_samples, n_features = x.shape
    n_clusters = means.shape[0]
    labels_t = _host_labels(n_samples)
    labels = labels_t.numpy()
    labels[:] = 0
    xsq = _bounded.row_sq_norms(x)
    upper = np.full(n_samples, np.inf)
    shape = (n_samples,) if algorithm == "hamerly" else (n_samples, n_clusters)
    lower = np.zeros(shape, dtype=np.float64 if algorithm == "hamerly" else np.float32)
    coef = 4.0 * (n_features + 4) * float(np.finfo(x.dtype).eps)
    up, down = 1.0 + (n_features + 8) * _EPS64, 1.0 - (n_features + 8) * _EPS64
    delta = np.zeros(n_clusters)
    threads = cpu_threads()

    def run(means_np, with_sums, fresh):
        geometry = _geometry(algorithm, means_np, delta, coef, up, down)
        return step(
            x, means_np, w, labels, xsq, upper, lower, geometry,
            with_sums=with_sums, fresh=fresh, n_threads=threads,
        )  # fmt: skip

    strict, converged, n_iter = False, False, 0
    while n_iter < max_iter:
        n_iter += 1
        means_np = _host(means)
        changes, sums, counts = run(means_np, True, n_iter == 1)
        sums, counts = torch.from_numpy(sums), torch.from_numpy(counts)
        comm.sum_(sums, counts)
        means, old = _update(X, weight_t, labels_t, means, sums, counts, comm), means
        delta = _moves(_host(means), means_np, up)
        if n_iter > 1 and not comm.any(changes > 0):
            strict = converged = True
            break
        if (means - old).square_().sum().item() <= tol:
            converged = True
            break
    if not strict:  # the labels of the final centroids, as plain Lloyd's last E step
        run(_host(means), False, False)
    inertia = comm.total((labelled_sq_distances(X, means, labels_t) @ weight_t).item())
    return LloydResult(means, labels_t, inertia, n_iter, converged)
