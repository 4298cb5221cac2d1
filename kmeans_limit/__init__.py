"""kmeans-limit: k-means as the zero-variance limit of a spherical Gaussian mixture."""

from .dp_estimator import DPMeans
from .estimators import AnnealedKMeans, SphericalGMM
from .models import Priors, spherical_gmm, spherical_gmm_marginal

__version__ = "0.1.0"

__all__ = [
    "AnnealedKMeans",
    "DPMeans",
    "Priors",
    "SphericalGMM",
    "__version__",
    "spherical_gmm",
    "spherical_gmm_marginal",
]
