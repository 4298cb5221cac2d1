"""Inference for the spherical Gaussian mixture: pure functions on tensors, one algorithm a module.

The names below are imported from their modules on first use (PEP 562): ``from
kmeans_limit.inference import sample_prior`` loads the sampling module and what it needs, not
scikit-learn, arviz and every other algorithm, which keeps the command line's start-up short.
"""

from __future__ import annotations

import importlib
import sys
import types

#: Public name -> the module (in this package) that defines it.
_LAZY = {
    "AnnealPath": ".anneal",
    "AnnealResult": ".anneal",
    "anneal": ".anneal",
    "ExactPosterior": ".exact",
    "exact_posterior": ".exact",
    "compare_to_reference": ".reference",
    "SBCResult": ".sbc",
    "sbc": ".sbc",
    "relabelling_diagnostics": ".relabel_diagnostics",
    "PenalizedAnnealResult": ".anneal_penalty",
    "anneal_penalized": ".anneal_penalty",
    "DPMeansResult": ".dp_means",
    "dp_means": ".dp_means",
    "fit_dp_posterior": ".dp_posterior",
    "TemperedPath": ".compare",
    "compare_k": ".compare",
    "compare_posteriors": ".compare",
    "tempered_path": ".compare",
    "DensePath": ".dense_path",
    "dense_path": ".dense_path",
    "EMResult": ".em",
    "em": ".em",
    "kmeans_plusplus": ".init",
    "SufficientStats": ".kernels",
    "nearest_centroid": ".kernels",
    "squared_distances": ".kernels",
    "sufficient_stats": ".kernels",
    "LloydResult": ".lloyd",
    "lloyd": ".lloyd",
    "kmeans_objective": ".objective",
    "fit_posterior": ".posterior",
    "relabel": ".relabel",
    "GeneratedData": ".sampling",
    "PriorDraws": ".sampling",
    "sample_from": ".sampling",
    "sample_prior": ".sampling",
    "assignment_probabilities": ".summaries",
    "coclustering_matrix": ".summaries",
    "invariant_summary": ".summaries",
}

__all__ = [
    "ExactPosterior",
    "SBCResult",
    "compare_to_reference",
    "exact_posterior",
    "relabelling_diagnostics",
    "sbc",
    "DPMeansResult",
    "PenalizedAnnealResult",
    "anneal_penalized",
    "dp_means",
    "fit_dp_posterior",
    "AnnealPath",
    "AnnealResult",
    "DensePath",
    "EMResult",
    "LloydResult",
    "anneal",
    "dense_path",
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


#: Functions named like the module that defines them: ``inference.anneal`` is the function.
_SHADOWED = frozenset(name for name, module in _LAZY.items() if module == "." + name)


class _Package(types.ModuleType):
    """This package, keeping a function named like its module in place of the module.

    Importing ``kmeans_limit.inference.anneal`` (the module) sets the package attribute ``anneal``
    to the module; as with eager imports in ``__init__``, the attribute is the function instead.
    """

    def __setattr__(self, name, value):
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
