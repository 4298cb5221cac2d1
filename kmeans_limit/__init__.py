"""kmeans-limit: k-means as the zero-variance limit of a spherical Gaussian mixture.

The names below are imported on first use (PEP 562), so that ``import kmeans_limit`` and the
command line's ``--help`` start without loading torch, Pyro or scikit-learn.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: Public name -> the submodule that defines it.
_LAZY = {
    "AnnealedKMeans": ".estimators",
    "DPMeans": ".dp_estimator",
    "SphericalGMM": ".estimators",
    "explore": ".explorer",
    "Priors": ".models",
    "spherical_gmm": ".models",
    "spherical_gmm_marginal": ".models",
}

__all__ = [
    "AnnealedKMeans",
    "DPMeans",
    "Priors",
    "SphericalGMM",
    "__version__",
    "explore",
    "spherical_gmm",
    "spherical_gmm_marginal",
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
