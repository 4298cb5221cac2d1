"""Inference for the spherical Gaussian mixture: pure functions on tensors, one algorithm a module."""

from .kernels import SufficientStats, nearest_centroid, squared_distances, sufficient_stats
from .objective import kmeans_objective
from .sampling import GeneratedData, PriorDraws, sample_from, sample_prior

__all__ = [
    "GeneratedData",
    "PriorDraws",
    "SufficientStats",
    "kmeans_objective",
    "nearest_centroid",
    "sample_from",
    "sample_prior",
    "squared_distances",
    "sufficient_stats",
]
