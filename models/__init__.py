"""Pyro generative programs of the spherical Gaussian mixture (no inference code here)."""

from .dp_gmm import (
    DP_SITE_NAMES,
    dp_concentration,
    dp_gmm,
    dp_gmm_marginal,
    log_dp_concentration,
    stick_weights,
)
from .priors import Priors, data_scaled_priors, prior_mean
from .spherical_gmm import SITE_NAMES, spherical_gmm, spherical_gmm_marginal

__all__ = [
    "DP_SITE_NAMES",
    "dp_concentration",
    "dp_gmm",
    "dp_gmm_marginal",
    "log_dp_concentration",
    "stick_weights",
    "Priors",
    "SITE_NAMES",
    "data_scaled_priors",
    "prior_mean",
    "spherical_gmm",
    "spherical_gmm_marginal",
]
