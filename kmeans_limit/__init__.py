"""kmeans-limit: k-means as the zero-variance limit of a spherical Gaussian mixture."""

from .models import Priors, spherical_gmm, spherical_gmm_marginal

__version__ = "0.1.0"

__all__ = ["Priors", "__version__", "spherical_gmm", "spherical_gmm_marginal"]
