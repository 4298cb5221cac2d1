"""A symmetric rank-k update (BLAS ``dsyrk``) callable from compiled code.

numba's ``np.dot`` takes a product of a matrix and its own transpose to the general ``?gemm``, which
computes both halves of the symmetric result: :func:`add_gram` asks BLAS's ``dsyrk`` for one half
(half the multiplications) and mirrors it. It is the same BLAS numba's ``np.dot`` calls: SciPy's
(``scipy.linalg.cython_blas``), so the threads it may use are set the same way.

The routine is reached through a named symbol registered with LLVM when this module is imported
(``llvmlite.binding.add_symbol``): compiled code refers to it by that name, so the functions that
call it keep numba's on-disk cache (a ``ctypes`` function pointer is a dynamic global, which would
not), and a cached function finds it again in a new process, since importing the module registers it
before any compiled function is loaded.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import binding, ir
from numba.core import cgutils
from numba.extending import get_cython_function_address, intrinsic

from ._fused import _compiled

__all__ = ["SYRK_FEATURES", "add_gram"]

#: From this many columns (features) on :func:`add_gram` calls ``dsyrk``; below, the general product,
#: which measured faster there (the update's own set-up costs more than the half it saves: N = 5000
#: rows of 32 columns a chunk of 256 at a time took 0.47 ms by ``dsyrk`` against 0.26 ms).
SYRK_FEATURES = 64

_SYMBOL = "kmeans_limit_cython_blas_dsyrk"
binding.add_symbol(_SYMBOL, get_cython_function_address("scipy.linalg.cython_blas", "dsyrk"))


@intrinsic
def _dsyrk(typingctx, lower, transpose, order, rank, a, lda, beta, c, ldc):  # pragma: no cover
    """``C ← A Aᵀ + β C`` (or ``AᵀA + β C`` with ``transpose``) on one triangle of the Fortran-ordered
    ``C`` (``lower``), for the Fortran-ordered ``A`` whose data ``a`` holds (leading dimension
    ``lda``); ``order`` is C's, ``rank`` the other dimension of A. Compiled code only."""
    float64 = numba.types.float64
    if not (isinstance(a, numba.types.Array) and a.dtype == float64 and isinstance(c, numba.types.Array)):
        return None
    if c.dtype != float64:
        return None
    signature = numba.types.void(lower, transpose, order, rank, a, lda, beta, c, ldc)

    def codegen(context, builder, sig, args):
        lower_v, transpose_v, order_v, rank_v, a_v, lda_v, beta_v, c_v, ldc_v = args
        char, int32, double = ir.IntType(8), ir.IntType(32), ir.DoubleType()

        def stored(value, value_type, to_type, llvm_type):
            cast = context.cast(builder, value, value_type, to_type)
            slot = cgutils.alloca_once(builder, llvm_type)
            builder.store(cast, slot)
            return slot

        i32 = numba.types.int32
        uplo = cgutils.alloca_once(builder, char)
        builder.store(builder.select(context.cast(builder, lower_v, sig.args[0], numba.types.boolean),
                                     char(ord("L")), char(ord("U"))), uplo)  # fmt: skip
        trans = cgutils.alloca_once(builder, char)
        builder.store(builder.select(context.cast(builder, transpose_v, sig.args[1], numba.types.boolean),
                                     char(ord("T")), char(ord("N"))), trans)  # fmt: skip
        n_slot = stored(order_v, sig.args[2], i32, int32)
        k_slot = stored(rank_v, sig.args[3], i32, int32)
        lda_slot = stored(lda_v, sig.args[5], i32, int32)
        ldc_slot = stored(ldc_v, sig.args[8], i32, int32)
        alpha_slot = cgutils.alloca_once_value(builder, double(1.0))
        beta_slot = stored(beta_v, sig.args[6], float64, double)
        a_data = context.make_array(sig.args[4])(context, builder, a_v).data
        c_data = context.make_array(sig.args[7])(context, builder, c_v).data
        pointer = char.as_pointer()
        arguments = [uplo, trans, n_slot, k_slot, alpha_slot, a_data, lda_slot, beta_slot, c_data, ldc_slot]
        function_type = ir.FunctionType(ir.VoidType(), [pointer] * len(arguments))
        function = cgutils.get_or_insert_function(builder.module, function_type, _SYMBOL)
        builder.call(function, [builder.bitcast(value, pointer) for value in arguments])
        return context.get_dummy_value()

    return signature, codegen


@_compiled()
def add_gram(z, matrix, transpose):  # pragma: no cover
    """``matrix += zᵀz`` (``zzᵀ`` with ``transpose``) for a C-ordered float64 ``z`` of shape (n, D):
    ``matrix`` is (D, D) (or (n, n)), C-ordered float64, and symmetric on entry.

    By ``dsyrk`` from ``SYRK_FEATURES`` columns on, into a C-contiguous ``matrix`` (both triangles are then written: the upper one
    by BLAS, the lower one mirrored), else by ``np.dot``. With no rows (or columns) there is nothing
    to add.
    """
    n_rows, n_features = z.shape
    if n_rows == 0 or n_features == 0:
        return
    z = np.ascontiguousarray(z)  # BLAS reads it as one block (a copy only where it is not)
    if n_features < SYRK_FEATURES or not matrix.flags.c_contiguous:
        matrix += np.dot(z, z.T) if transpose else np.dot(z.T, z)
        return
    # The C-ordered z is the Fortran-ordered zᵀ (D × n, leading dimension D): zᵀz is "A Aᵀ" of it,
    # zzᵀ is "AᵀA"; the C-ordered matrix's upper triangle is the Fortran-ordered one's lower.
    order = n_rows if transpose else n_features
    _dsyrk(True, transpose, order, n_features if transpose else n_rows, z, n_features, 1.0, matrix, order)
    for i in range(order):
        for j in range(i):
            matrix[i, j] = matrix[j, i]
