"""Freed heap memory handed back between the steps of large fits (``_heap.release_freed``).

It must run on large CPU data only, leave every result as it was, and, with glibc, actually lower
the resident memory that freed blocks kept.
"""

from __future__ import annotations

import ctypes
import sys

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

from kmeans_limit.inference import _heap, anneal  # the private helper: no public twin


def _glibc() -> bool:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return False
    return True


def _rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_only_large_cpu_data_are_trimmed(monkeypatch):
    calls = []
    monkeypatch.setattr(_heap, "_malloc_trim", lambda: calls.append)
    assert not _heap.release_freed(torch.zeros(10, 3))
    assert calls == []
    monkeypatch.setattr(_heap, "TRIM_BYTES", 10 * 3 * 4)
    assert _heap.release_freed(torch.zeros(10, 3))
    assert calls == [0]


def test_without_glibc_nothing_is_called(monkeypatch):
    monkeypatch.setattr(_heap, "_malloc_trim", lambda: None)
    monkeypatch.setattr(_heap, "TRIM_BYTES", 0)
    assert not _heap.release_freed(torch.zeros(10, 3))


def test_annealing_trims_after_each_level_and_split_merge_trial_with_the_same_result(monkeypatch):
    X, _ = make_blobs(1500, n_features=3, centers=8, cluster_std=1.0, random_state=2)
    X = torch.from_numpy(X)
    plain = anneal(X, 8, seed=0)
    calls = []
    monkeypatch.setattr(_heap, "_malloc_trim", lambda: calls.append)
    monkeypatch.setattr(_heap, "TRIM_BYTES", 0)
    trimmed = anneal(X, 8, seed=0)
    assert len(calls) >= 7  # seven splits at least, then the tail levels and split-merge trials
    assert torch.equal(trimmed.labels, plain.labels)
    assert torch.equal(trimmed.means, plain.means)
    assert torch.equal(trimmed.path.sigma, plain.path.sigma)
    assert trimmed.n_iter == plain.n_iter


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and _glibc()), reason="glibc's malloc_trim on Linux"
)
def test_freed_blocks_in_the_heap_leave_the_resident_memory():
    """Blocks of 4 MB, below the mmap threshold once a 16 MB block has been freed, come from the
    heap; freeing all but the last keeps them resident until the trim hands them back."""
    np.ones(2 << 20).fill(0.0)  # a 16 MB block, mmapped and freed: the threshold rises to 16 MB
    blocks = [np.ones(1 << 19) for _ in range(48)]  # 48 × 4 MB from the heap, touched
    last = blocks.pop()
    del blocks
    before = _rss_mb()
    assert _heap.release_freed(torch.zeros(0)) is False  # small data: nothing
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(_heap, "TRIM_BYTES", 0)
    try:
        assert _heap.release_freed(torch.zeros(1))
    finally:
        monkeypatch.undo()
    assert before - _rss_mb() > 100  # of the 188 MB freed
    assert last.sum() == 1 << 19
