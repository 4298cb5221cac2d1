"""``_syrk.add_gram``: the symmetric rank-k update that the critical σ and the wide split proposals use.

It must add exactly what NumPy's ``zᵀz`` (or ``zzᵀ``) adds, up to the rounding of a dot product, on
either side of ``SYRK_FEATURES`` (BLAS ``dsyrk`` from there on, the general product below), leave a
symmetric matrix, and add nothing for an empty ``z``. A mutation writing only the triangle BLAS writes
(no mirror), or passing BLAS the wrong dimension, fails these.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmeans_limit.inference import _syrk  # the kernel itself: no public twin


@settings(max_examples=60, deadline=None)
@given(
    n_rows=st.integers(0, 300),
    n_features=st.sampled_from([1, 7, 63, 64, 65, 130, 257]),
    transpose=st.booleans(),
    scale=st.sampled_from([1e-150, 1e-3, 1.0, 1e5, 1e150]),
    seed=st.integers(0, 2**16),
)
def test_add_gram_adds_the_gram_matrix(n_rows, n_features, transpose, scale, seed):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n_rows, n_features)) * scale
    order = n_rows if transpose else n_features
    start = rng.standard_normal((order, order))
    start = start + start.T  # symmetric on entry, as the callers' sums are
    matrix = start.copy()
    _syrk.add_gram(z, matrix, transpose)
    gram = z @ z.T if transpose else z.T @ z
    # Each entry is one dot product: within its length's rounding of the sum of |products|.
    bound = (np.abs(z) @ np.abs(z).T if transpose else np.abs(z).T @ np.abs(z)) * 4 * n_features * 2**-52
    if n_features >= _syrk.SYRK_FEATURES:
        np.testing.assert_array_equal(matrix, matrix.T)
    assert np.all(np.abs(matrix - start - gram) <= bound + 4 * np.abs(start) * 2**-52), (n_rows, n_features)


def test_add_gram_of_strided_rows():
    """A view that is not C-contiguous is never handed to BLAS as if it were."""
    rng = np.random.default_rng(0)
    wide = rng.standard_normal((100, 300))
    z = wide[:, :130]
    matrix = np.zeros((130, 130))
    _syrk.add_gram(z, matrix, False)
    np.testing.assert_allclose(matrix, z.T @ z, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("transpose", [False, True])
def test_add_gram_reaches_blas_from_the_threshold(transpose):
    """The same sums either way: ``dsyrk`` (from ``SYRK_FEATURES`` on) and the general product."""
    rng = np.random.default_rng(1)
    z = rng.standard_normal((200, _syrk.SYRK_FEATURES))
    order = 200 if transpose else _syrk.SYRK_FEATURES
    by_blas, by_dot = np.zeros((order, order)), z @ z.T if transpose else z.T @ z
    _syrk.add_gram(z, by_blas, transpose)
    np.testing.assert_allclose(by_blas, by_dot, rtol=1e-13, atol=1e-12)
