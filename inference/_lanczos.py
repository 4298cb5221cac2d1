"""The top eigenpair of a large symmetric matrix by Lanczos iterations, for annealing's wide cells.

Private to :mod:`kmeans_limit.inference` (``_critical.top_eigenvalue`` and ``_split._top_eigenpair``,
which every CPU split proposal and critical σ reach, call it). A cluster's critical σ and its split axis need only the
top eigenpair of its covariance, but LAPACK's ``?syevr`` first reduces the whole matrix to
tridiagonal form (``4/3 m³`` flops at BLAS-2 speed: 1.4-2.4 ms at m = 256 here, each split taking
three of them). Lanczos' method finds the top pair from products of the matrix with vectors: on the
covariance of a cell holding several clusters, whose top eigenvalue stands apart, a few dozen of them.
Where it does not settle within ``MAX_STEPS`` (a near-degenerate top of the spectrum) the caller
takes ``?syevr`` after all.
"""

from __future__ import annotations

import numpy as np

from ._fused import _compiled

__all__ = ["LANCZOS_SIZE", "MAX_STEPS", "RESIDUAL", "lanczos_top"]

#: Matrices of at least this order go to Lanczos first (below it ``?syevr`` costs less: 0.09 ms at 64).
LANCZOS_SIZE = 128
#: Lanczos steps at most before the caller falls back to ``?syevr``.
MAX_STEPS = 64
#: Converged when ``‖C v − θ v‖ ≤ RESIDUAL · θ`` for the Ritz pair ``(θ, v)``: some eigenvalue of
#: ``C`` then lies within ``RESIDUAL · θ`` of ``θ`` (Weyl), far inside the 1e-10 the tests hold σ to.
RESIDUAL = 1e-13
#: The Ritz pair is tested every this many steps (each test an eigen-decomposition of ``T_j``).
CHECK_EVERY = 8


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
    its top eigenpair ``(θ, s)`` gives the Ritz pair ``(θ, Q s)`` (Golub & Van Loan, §10.1).
    """
    size = matrix.shape[0]
    steps = min(max_steps, size)
    basis = np.zeros((steps + 1, size))
    alpha = np.zeros(steps)
    beta = np.zeros(steps)
    basis[0] = _start(size)
    for j in range(steps):
        w = np.dot(matrix, basis[j])
        scale = np.sqrt(np.dot(w, w))
        alpha[j] = np.dot(w, basis[j])
        for _ in range(2):
            coefficients = np.dot(basis[: j + 1], w)
            w -= np.dot(coefficients, basis[: j + 1])
        norm = np.sqrt(np.dot(w, w))
        beta[j] = norm
        invariant = norm <= 1e-14 * scale  # the Krylov space holds an eigenvector: θ is exact
        if invariant or j == steps - 1 or (j + 1) % CHECK_EVERY == 0:
            tridiagonal = np.zeros((j + 1, j + 1))
            for i in range(j + 1):
                tridiagonal[i, i] = alpha[i]
                if i < j:
                    tridiagonal[i, i + 1] = tridiagonal[i + 1, i] = beta[i]
            values, vectors = np.linalg.eigh(tridiagonal)
            theta = values[j]
            s = vectors[:, j]
            if invariant or norm * abs(s[j]) <= residual_tol * abs(theta):
                vector = np.dot(s, basis[: j + 1])
                return theta, vector / np.sqrt(np.dot(vector, vector)), True
        basis[j + 1] = w / norm
    return 0.0, basis[0], False
