"""Set partitions of a few rows, and the expected sorted weights of a Dirichlet: helpers of the exact posterior."""

from __future__ import annotations

import math

import numpy as np
from scipy.integrate import quad_vec
from scipy.special import gammaincc, gammainccinv

__all__ = ["count_partitions", "log_label_multiplicity", "set_partitions", "sorted_dirichlet_mean"]


def count_partitions(n_items: int, max_blocks: int) -> int:
    """The number of partitions of ``n_items`` items into at most ``max_blocks`` non-empty blocks.

    ``Σ_{m ≤ max_blocks} S(n_items, m)`` with S the Stirling numbers of the second kind, by the
    recurrence ``S(n, m) = m S(n−1, m) + S(n−1, m−1)`` in exact integers.
    """
    row = [1] + [0] * max_blocks  # S(0, m)
    for _ in range(n_items):
        row = [0] + [m * row[m] + row[m - 1] for m in range(1, max_blocks + 1)]
    return sum(row)


def set_partitions(n_items: int, max_blocks: int) -> np.ndarray:
    """Every partition of ``n_items`` items into at most ``max_blocks`` blocks, once each.

    Returns
    -------
    ndarray of int8, shape (count_partitions(n_items, max_blocks), n_items)
        Restricted growth strings: item 0 is in block 0 and item i in a block at most one more than
        the largest block of items 0..i−1, so every partition appears with exactly one labelling.
    """
    labels = np.zeros((1, 1), np.int8)
    largest = np.zeros(1, np.int8)
    for _ in range(1, n_items):
        parts, tops = [], []
        for block in range(max_blocks):
            keep = largest + 1 >= block
            parts.append(np.column_stack([labels[keep], np.full(keep.sum(), block, np.int8)]))
            tops.append(np.maximum(largest[keep], block).astype(np.int8))
        labels, largest = np.concatenate(parts), np.concatenate(tops)
    return labels


def sorted_dirichlet_mean(concentration) -> np.ndarray:
    """``E[w_(1) ≥ w_(2) ≥ ... ≥ w_(K)]`` for ``w ~ Dirichlet(concentration)``: the sorted weights' means.

    Parameters
    ----------
    concentration : array-like of shape (K,)
        Positive.

    Returns
    -------
    ndarray of shape (K,)
        Decreasing, summing to 1.

    Notes
    -----
    With ``w = G / ΣG`` for independent ``G_k ~ Gamma(a_k, 1)``, the total ``ΣG ~ Gamma(Σa)`` is
    independent of ``w`` (Lukacs), so ``E[G_(r)] = E[ΣG] E[w_(r)]`` and ``E[w_(r)] = E[G_(r)] / Σa``.
    ``E[G_(r)] = ∫_0^∞ P(at least r of the G_k exceed t) dt``, where the number of exceedances is a
    Poisson-binomial count with success probabilities ``Q(a_k, t)`` (regularized upper incomplete
    gamma): one integral on a finite range ``[0, t_max]`` (``Q(max a, t_max) = 1e-20``) done by
    ``scipy.integrate.quad_vec`` to an absolute error of 1e-13.
    """
    a = np.asarray(concentration, dtype=np.float64)
    if a.shape[0] == 1:
        return np.ones(1)

    def tails(t: float) -> np.ndarray:
        probs = gammaincc(a, t)
        count = np.zeros(a.shape[0] + 1)  # distribution of the number of G_k above t
        count[0] = 1.0
        for p in probs:
            count[1:] = count[1:] * (1 - p) + count[:-1] * p
            count[0] *= 1 - p
        return np.cumsum(count[::-1])[::-1][1:]  # P(count >= r), r = 1..K

    t_max = float(gammainccinv(a.max(), 1e-20))
    total, _ = quad_vec(tails, 0.0, t_max, epsabs=1e-13, epsrel=1e-12)
    return total / a.sum()


def log_label_multiplicity(n_clusters: int, n_blocks: np.ndarray) -> np.ndarray:
    """``log K!/(K−m)!``: the labelled assignments that share one partition into m blocks."""
    return math.lgamma(n_clusters + 1) - np.array([math.lgamma(n_clusters - m + 1) for m in n_blocks])
