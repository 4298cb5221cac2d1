"""Inference for the spherical Gaussian mixture: pure functions on tensors, one algorithm a module."""

from .anneal import AnnealPath, AnnealResult, anneal
from .anneal_penalty import PenalizedAnnealResult, anneal_penalized
from .compare import TemperedPath, compare_k, compare_posteriors, tempered_path
from .dp_means import DPMeansResult, dp_means
from .dp_posterior import fit_dp_posterior
from .em import EMResult, em
from .init import kmeans_plusplus
from .kernels import SufficientStats, nearest_centroid, squared_distances, sufficient_stats
from .lloyd import LloydResult, lloyd
from .objective import kmeans_objective
from .posterior import fit_posterior
from .relabel import relabel
from .sampling import GeneratedData, PriorDraws, sample_from, sample_prior
from .summaries import assignment_probabilities, coclustering_matrix, invariant_summary

__all__ = [
    "DPMeansResult",
    "PenalizedAnnealResult",
    "anneal_penalized",
    "dp_means",
    "fit_dp_posterior",
    "AnnealPath",
    "AnnealResult",
    "EMResult",
    "LloydResult",
    "anneal",
    "em",
    "kmeans_plusplus",
    "lloyd",
    "TemperedPath",
    "assignment_probabilities",
    "coclustering_matrix",
    "compare_k",
    "compare_posteriors",
    "fit_posterior",
    "invariant_summary",
    "relabel",
    "tempered_path",
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
