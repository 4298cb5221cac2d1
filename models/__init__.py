"""Pyro generative programs of the spherical Gaussian mixture (no inference code here)."""

from .priors import Priors, data_scaled_priors, prior_mean
from .spherical_gmm import SITE_NAMES, spherical_gmm, spherical_gmm_marginal

__all__ = [
    "Priors",
    "SITE_NAMES",
    "data_scaled_priors",
    "prior_mean",
    "spherical_gmm",
    "spherical_gmm_marginal",
]
