"""The top eigenpair of a large symmetric matrix by Lanczos iterations, for annealing's wide cells.

Private to :mod:`kmeans_limit.inference` (``_critical.top_eigenvalue`` and ``_split._top_eigenpair``,
which every CPU split proposal and critical σ reach, call it). A cluster's critical σ and its split axis need only the
top eigenpair of its covariance, but LAPACK's ``?syevr`` first reduces the whole matrix to
tridiagonal form (``4/3 m³`` flops at BLAS-2 speed: 1.4-2.4 ms at m = 256 here, each split taking
three of them). Lanczos' method finds the top pair from products of the matrix with vectors: on the
covariance of a cell holding several clusters, whose top eigenvalue stands apart, a few dozen of them.
Where it does not settle within ``MAX_STEPS`` (a near-degenerate top of the spectrum) the caller
takes ``?syevr`` after all. A wide cell's covariance ``ZᵀZ`` need not be formed at all
(:func:`lanczos_top_rows`): products with ``Z`` and ``Zᵀ`` cost less than the ``?syrk`` while the pair
settles in fewer than ``m / 4`` steps.
"""

from __future__ import annotations

import numpy as np

from ._fused import _compiled

__all__ = [
    "IMPLICIT_ENTRIES",
    "IMPLICIT_FEATURES",
    "LANCZOS_SIZE",
    "MAX_STEPS",
    "RESIDUAL",
    "implicit_steps",
    "lanczos_top",
    "lanczos_top_rows",
]

#: Matrices of at least this order go to Lanczos first. On the cells' covariances of the 64-feature
#: benchmark sets (blobs64, digits: every one a split proposal or a critical σ takes) it took 0.52x
#: and 0.51x the time of ``?syevr`` (90 against 173 µs, 85 against 166); on the covariance of pure
#: noise, whose top does not stand apart, 1.7x (all 64 steps). Below 64 features ``?syevr`` costs
#: less than that worst case by more (2.1-2.8x at 16-48).
LANCZOS_SIZE = 64
#: Lanczos steps at most before the caller falls back to ``?syevr``.
MAX_STEPS = 64
#: Converged when ``‖C v − θ v‖ ≤ RESIDUAL · θ`` for the Ritz pair ``(θ, v)``: some eigenvalue of
#: ``C`` then lies within ``RESIDUAL · θ`` of ``θ`` (Weyl), far inside the 1e-10 the tests hold σ to.
RESIDUAL = 1e-13
#: The Ritz pair is tested every this many steps (each test a bisection and an inverse iteration on
#: ``T_j``, about 1 µs per 10 rows of it).
CHECK_EVERY = 4
#: A pair whose estimated residual passes is confirmed on the matrix: its residual there must be at
#: most this many times ``RESIDUAL · θ`` (rounding in the vector ``Q s``), else the iterations go on.
CONFIRM = 10.0
#: From this many features (and at least as many rows) a cell's top eigenpair is sought from its
#: weighted, centred rows (:func:`lanczos_top_rows`) before its covariance is formed.
IMPLICIT_FEATURES = 128
#: ... and only where those rows hold at most this many entries (a float64 copy: 16 MB).
IMPLICIT_ENTRIES = 1 << 21


@_compiled()
def _start(size):  # pragma: no cover
    """A fixed unit start vector of no special direction (a linear congruential sequence in
    [0.5, 1.5)): the same result every run, not orthogonal to structured eigenvectors such as
    those of data symmetric about a plane."""
    v = np.empty(size)
    state = np.uint64(88172645463325252)
    for i in range(size):
        state = state * np.uint64(6364136223846793005) + np.uint64(1442695040888963407)
        v[i] = 0.5 + float(state >> np.uint64(11)) * (1.0 / 9007199254740992.0)
    return v / np.sqrt(np.dot(v, v))


@_compiled()
def _count_below(alpha, beta, order, x):  # pragma: no cover
    """How many eigenvalues of the tridiagonal ``T`` (diagonal ``alpha``, off-diagonal ``beta``, its
    leading ``order`` rows) lie below ``x``: the negative pivots of ``T − x I = L D Lᵀ`` (Sturm)."""
    count = 0
    pivot = alpha[0] - x
    for i in range(order):
        if i > 0:
            if pivot == 0.0:  # an exact zero pivot: perturbed past it (Kahan's rule)
                pivot = -1e-300 if x > alpha[i - 1] else 1e-300
            pivot = alpha[i] - x - beta[i - 1] * beta[i - 1] / pivot
        if pivot < 0.0:
            count += 1
    return count


@_compiled()
def _tridiagonal_top(alpha, beta, order):  # pragma: no cover
    """The top eigenvalue of the leading ``order`` rows of a symmetric tridiagonal matrix and a unit
    eigenvector of it: the value by bisection on Sturm counts between its largest diagonal entry and
    Gershgorin's bound, to the last bit; the vector by two steps of inverse iteration at it (Gaussian
    elimination with partial pivoting, as LAPACK's ``?gtsv``). ``O(order)`` work a step."""
    low, high = alpha[0], alpha[0]
    for i in range(order):
        radius = (abs(beta[i - 1]) if i > 0 else 0.0) + (abs(beta[i]) if i < order - 1 else 0.0)
        low = max(low, alpha[i])
        high = max(high, alpha[i] + radius)
    for _ in range(2200):  # halves the interval (or stops at adjacent floats) every step
        middle = 0.5 * (low + high)
        if middle <= low or middle >= high:
            break
        if _count_below(alpha, beta, order, middle) == order:
            high = middle
        else:
            low = middle
    theta = high
    spread = 0.0
    for i in range(order):
        spread = max(spread, abs(alpha[i]) + (2.0 * abs(beta[i]) if i < order - 1 else 0.0))
    tiny = max(2.2e-16 * spread, 1e-300)  # a zero pivot: as large as rounding in T
    vector = np.ones(order)
    lower, diagonal, upper, upper2 = np.empty(order), np.empty(order), np.empty(order), np.empty(order)
    for _ in range(2):
        for i in range(order):
            diagonal[i] = alpha[i] - theta
            upper[i] = beta[i] if i < order - 1 else 0.0
            lower[i] = upper[i]
            upper2[i] = 0.0
        for i in range(order - 1):
            if abs(diagonal[i]) >= abs(lower[i]):
                if diagonal[i] == 0.0:
                    diagonal[i] = tiny
                factor = lower[i] / diagonal[i]
                diagonal[i + 1] -= factor * upper[i]
                vector[i + 1] -= factor * vector[i]
            else:  # rows i and i + 1 swapped
                factor = diagonal[i] / lower[i]
                diagonal[i] = lower[i]
                below = diagonal[i + 1]
                diagonal[i + 1] = upper[i] - factor * below
                if i < order - 2:
                    upper2[i] = upper[i + 1]
                    upper[i + 1] = -factor * upper[i + 1]
                upper[i] = below
                below = vector[i]
                vector[i] = vector[i + 1]
                vector[i + 1] = below - factor * vector[i + 1]
        if diagonal[order - 1] == 0.0:
            diagonal[order - 1] = tiny
        for i in range(order - 1, -1, -1):
            value = vector[i]
            if i < order - 1:
                value -= upper[i] * vector[i + 1]
            if i < order - 2:
                value -= upper2[i] * vector[i + 2]
            vector[i] = value / diagonal[i]
        vector /= np.abs(vector).max()  # first to the largest entry: no overflow in the norm
        vector /= np.sqrt(np.dot(vector, vector))
    return theta, vector


@_compiled()
def _apply(matrix, rows, v):  # pragma: no cover
    """``C v`` for ``C = matrix``, or for ``C = rowsᵀ rows`` (two matrix-vector products) when
    ``rows`` has any."""
    if rows.shape[0] > 0:
        return np.dot(np.dot(rows, v), rows)
    return np.dot(matrix, v)


@_compiled()
def _lanczos(matrix, rows, size, max_steps, residual_tol):  # pragma: no cover
    """:func:`lanczos_top` of the order-``size`` operator ``v ↦ C v`` of :func:`_apply`."""
    steps = min(max_steps, size)
    basis = np.zeros((steps + 1, size))
    alpha = np.zeros(steps)
    beta = np.zeros(steps)
    basis[0] = _start(size)
    for j in range(steps):
        w = _apply(matrix, rows, basis[j])
        scale = np.sqrt(np.dot(w, w))
        alpha[j] = np.dot(w, basis[j])
        for _ in range(2):
            coefficients = np.dot(basis[: j + 1], w)
            w -= np.dot(coefficients, basis[: j + 1])
        norm = np.sqrt(np.dot(w, w))
        beta[j] = norm
        invariant = norm <= 1e-14 * scale  # the Krylov space holds an eigenvector: θ is exact
        if invariant or j == steps - 1 or (j + 1) % CHECK_EVERY == 0:
            theta, s = _tridiagonal_top(alpha, beta, j + 1)
            if invariant or norm * abs(s[j]) <= residual_tol * abs(theta):
                vector = np.dot(s, basis[: j + 1])
                vector /= np.sqrt(np.dot(vector, vector))
                # The estimate β_j |s_j| holds for an exact pair of T_j: checked on C itself.
                residual = _apply(matrix, rows, vector) - theta * vector
                if invariant or np.sqrt(np.dot(residual, residual)) <= CONFIRM * residual_tol * abs(theta):
                    return theta, vector, True
        basis[j + 1] = w / norm
    return 0.0, basis[0], False


@_compiled()
def lanczos_top(matrix, max_steps, residual_tol):  # pragma: no cover
    """Lanczos with full reorthogonalisation for the top eigenpair of a symmetric float64 matrix.

    Parameters
    ----------
    matrix : float64 array of shape (m, m), symmetric
    max_steps : int
    residual_tol : float
        Stop when the Ritz pair's residual ``‖C v − θ v‖ = β_j |s_j|`` is at most ``residual_tol · |θ|``
        (or the Krylov space is invariant: then ``θ`` is exact).

    Returns
    -------
    value : float
        The top Ritz value ``θ``.
    vector : float64 array of shape (m,)
        Its unit Ritz vector.
    converged : bool
        False: the test never passed within ``max_steps`` (the caller should use a dense solver).

    Notes
    -----
    ``q_{j+1} β_j = C q_j − α_j q_j − β_{j−1} q_{j−1}``, reorthogonalised twice against every
    earlier ``q`` (classical Gram-Schmidt, "twice is enough"), so that rounding does not bring
    back copies of converged directions; ``T_j`` (tridiagonal, ``α`` and ``β``) holds ``Qᵀ C Q`` and
    its top eigenpair ``(θ, s)`` gives the Ritz pair ``(θ, Q s)`` (Golub & Van Loan, §10.1), found
    in ``O(j)`` a test (:func:`_tridiagonal_top`), not by a dense decomposition of ``T_j``; the
    residual of a pair that passes is confirmed on ``C``.
    """
    return _lanczos(matrix, np.zeros((0, matrix.shape[0])), matrix.shape[0], max_steps, residual_tol)


@_compiled()
def lanczos_top_rows(rows, max_steps, residual_tol):  # pragma: no cover
    """:func:`lanczos_top` of ``C = ZᵀZ`` for the float64 rows ``Z`` (of shape (n, m), n ≥ 1), never formed.

    Each step multiplies by ``Z`` and ``Zᵀ`` (``4 n m`` flops) instead of forming ``ZᵀZ`` once (``n m²``
    by ``?syrk``): the cheaper where the pair settles in fewer than ``m / 4`` steps, as on the wide
    cells of well-separated clusters (8-24 steps at ``m = 256``: see :func:`implicit_steps`).
    """
    return _lanczos(np.zeros((0, 0)), rows, rows.shape[1], max_steps, residual_tol)


def implicit_steps(n_rows: int, n_features: int) -> int:
    """The step budget of :func:`lanczos_top_rows` on ``n_rows × n_features`` rows; 0: form ``ZᵀZ``.

    ``n_features // 8`` steps cost half a ``?syrk`` of the rows; where they do not settle the caller
    forms the matrix after all (1.5x the dense path's time at worst). From ``IMPLICIT_FEATURES``
    features and as many rows on, and only for rows that fit in ``IMPLICIT_ENTRIES`` entries (a
    float64 copy of them is held).
    """
    if n_features < IMPLICIT_FEATURES or n_rows < n_features or n_rows * n_features > IMPLICIT_ENTRIES:
        return 0
    return n_features // 8
