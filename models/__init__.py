"""Pyro generative programs of the spherical Gaussian mixture (no inference code here)."""

from .priors import Priors
from .spherical_gmm import SITE_NAMES, spherical_gmm, spherical_gmm_marginal

__all__ = ["Priors", "SITE_NAMES", "spherical_gmm", "spherical_gmm_marginal"]
