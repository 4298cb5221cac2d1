"""Freed heap memory handed back to the operating system between the steps of a fit on large data.

Private to :mod:`kmeans_limit.inference`. glibc serves blocks below its mmap threshold from heaps
and keeps them when they are freed; the threshold itself grows, up to 32 MB, as large blocks are
freed, so the row-sized arrays of one annealing level (labels, distances, a cell's rows and
weights: megabytes each on millions of rows) end up cached in the heaps, and the resident memory
grows by what the allocator holds free: annealing 2e6 × 32 rows into 256 clusters held 124 MB free
(``mallinfo2().fordblks``) after 650 s, over the 212 MB it had live. ``malloc_trim(0)`` returns the
free pages of every heap (``madvise(MADV_DONTNEED)``; it changes no setting of the allocator) in a
fraction of a millisecond. It runs only where the data are large enough for that to matter, and
only with glibc; elsewhere nothing is done.
"""

from __future__ import annotations

import ctypes
import functools

import torch

__all__ = ["TRIM_BYTES", "release_freed"]

#: Data of at least this many bytes (the rows themselves) have the freed heap memory released
#: after each annealing level and split-merge trial; below, a level's arrays are a few MB at most.
TRIM_BYTES = 64 << 20


@functools.cache
def _malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to call
        return None


def release_freed(X: torch.Tensor) -> bool:
    """Hand the heaps' free pages back to the system if ``X`` (the rows being fitted) is large.

    Parameters
    ----------
    X : tensor
        The data; on the CPU from ``TRIM_BYTES`` on, glibc's ``malloc_trim(0)`` is called.

    Returns
    -------
    bool
        Whether it was called.
    """
    if X.device.type != "cpu" or X.numel() * X.element_size() < TRIM_BYTES:
        return False
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
