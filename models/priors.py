"""The conjugate priors of the spherical Gaussian mixture."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Priors"]


def _positive_finite(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} should be a positive finite number") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={value!r} should be a positive finite number")
    return value


@dataclass(frozen=True)
class Priors:
    """Hyper-parameters of the spherical GMM's conjugate priors.

    ``weights ~ Dirichlet(alpha * 1_K)``, ``means_k ~ Normal(m0, tau0**2 I_D)`` and
    ``sigma**2 ~ InverseGamma(a0, b0)`` (used only when σ is learned).

    The defaults suit standardized data (each feature with mean 0 and variance 1): cluster centres
    within a few units of the origin, and a within-cluster variance whose prior mean ``b0 / (a0 - 1)``
    is 0.5 with a heavy right tail.

    Parameters
    ----------
    alpha : float, default 1.0
        Symmetric Dirichlet concentration (1.0 is uniform on the simplex).
    m0 : float, default 0.0
        Prior mean of every coordinate of every centroid.
    tau0 : float, default 2.0
        Prior standard deviation of every centroid coordinate.
    a0 : float, default 2.0
        Shape of the inverse-gamma prior on σ².
    b0 : float, default 0.5
        Scale of the inverse-gamma prior on σ².
    """

    alpha: float = 1.0
    m0: float = 0.0
    tau0: float = 2.0
    a0: float = 2.0
    b0: float = 0.5

    def __post_init__(self) -> None:
        for name in ("alpha", "tau0", "a0", "b0"):
            object.__setattr__(self, name, _positive_finite(name, getattr(self, name)))
        try:
            m0 = float(self.m0)
        except (TypeError, ValueError):
            raise ValueError(f"m0={self.m0!r} should be a finite number") from None
        if not math.isfinite(m0):
            raise ValueError(f"m0={self.m0!r} should be a finite number")
        object.__setattr__(self, "m0", m0)
