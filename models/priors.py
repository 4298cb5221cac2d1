"""The conjugate priors of the spherical Gaussian mixture."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

__all__ = ["Priors", "data_scaled_priors", "prior_mean"]

#: The data-scaled default: ``tau0 = TAU0_SCALE · s`` and ``b0 = B0_SCALE · s²`` for data of mean
#: per-feature variance ``s²``, ``m0`` at the data mean (``Priors()`` on standardized data).
TAU0_SCALE = 2.0
B0_SCALE = 0.5


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

    Each value means exactly what it says, in the data's units. The defaults suit standardized data
    (each feature with mean 0 and variance 1): cluster centres within a few units of the origin, and a
    within-cluster variance whose prior mean ``b0 / (a0 - 1)`` is 0.5 with a heavy right tail. For
    data in other units, :func:`data_scaled_priors` moves and scales them to the data (it is what
    ``fit_posterior``, the estimators and the command line use when no priors are given).

    Parameters
    ----------
    alpha : float, default 1.0
        Symmetric Dirichlet concentration (1.0 is uniform on the simplex).
    m0 : float or sequence of floats of length n_features, default 0.0
        Prior mean of the centroids: the same for every coordinate, or one value per feature (kept as
        a tuple of floats).
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
        object.__setattr__(self, "m0", _check_m0(self.m0))

    def shifted(self, offset) -> Priors:
        """These priors for data moved by ``−offset``: ``m0 − offset`` (a tuple of n_features floats).

        Parameters
        ----------
        offset : tensor or sequence of shape (n_features,)
        """
        offset = [float(v) for v in torch.as_tensor(offset).reshape(-1).tolist()]
        if not any(offset):
            return self
        m0 = self.m0 if isinstance(self.m0, tuple) else (self.m0,) * len(offset)
        if len(m0) != len(offset):
            raise ValueError(f"m0 has {len(m0)} values but the data have n_features={len(offset)}")
        return replace(self, m0=tuple(m - o for m, o in zip(m0, offset, strict=True)))

    def rescaled(self, scale: float) -> Priors:
        """These priors for data divided by ``scale > 0``: ``m0 / scale``, ``tau0 / scale``, ``b0 / scale²``.

        ``alpha`` and ``a0`` have no units. If ``σ²_y ~ InverseGamma(a0, b0 / scale²)`` then
        ``scale² σ²_y ~ InverseGamma(a0, b0)``: the posterior of ``(scale·μ, scale·σ, weights)`` on the
        divided data is the posterior of ``(μ, σ, weights)`` on the data.
        """
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale={scale!r} should be a finite number > 0")
        if scale == 1.0:
            return self
        m0 = tuple(m / scale for m in self.m0) if isinstance(self.m0, tuple) else self.m0 / scale
        return replace(self, m0=m0, tau0=self.tau0 / scale, b0=self.b0 / scale**2)


def _check_m0(m0) -> float | tuple[float, ...]:
    """``m0`` as a finite float, or a non-empty tuple of finite floats."""
    if isinstance(m0, torch.Tensor):
        m0 = m0.item() if m0.numel() == 1 and m0.dim() == 0 else m0.tolist()
    if isinstance(m0, Sequence | range) or hasattr(m0, "__array__") and getattr(m0, "ndim", 0) > 0:
        try:
            values = tuple(float(v) for v in m0)
        except (TypeError, ValueError):
            raise ValueError(f"m0={m0!r} should be a finite number or a sequence of them") from None
        if not values or not all(math.isfinite(v) for v in values):
            raise ValueError(f"m0={m0!r} should be a finite number or a non-empty sequence of them")
        return values
    try:
        value = float(m0)
    except (TypeError, ValueError):
        raise ValueError(f"m0={m0!r} should be a finite number or a sequence of them") from None
    if not math.isfinite(value):
        raise ValueError(f"m0={m0!r} should be a finite number")
    return value


def prior_mean(priors: Priors, n_features: int, like: torch.Tensor) -> torch.Tensor:
    """``m0`` as a tensor of shape (n_features,) in ``like``'s dtype and device.

    Raises
    ------
    ValueError
        When ``m0`` holds one value per feature for another number of features.
    """
    if isinstance(priors.m0, tuple):
        if len(priors.m0) != n_features:
            raise ValueError(
                f"priors.m0 has {len(priors.m0)} values but the data have n_features={n_features}"
            )
        return torch.tensor(priors.m0, dtype=like.dtype, device=like.device)
    return like.new_full((n_features,), priors.m0)


def data_scaled_priors(mean, variance: float, *, alpha: float = 1.0, a0: float = 2.0) -> Priors:
    """Weakly informative priors in the data's units: ``Priors()`` moved to the data and scaled to them.

    Parameters
    ----------
    mean : tensor or sequence of shape (n_features,)
        The data's column means: ``m0``.
    variance : float > 0
        The data's mean per-feature variance ``s² = Σ_n ‖x_n − x̄‖² / (N·D)``.
    alpha, a0 : float
        The Dirichlet concentration and the σ² shape (not scaled: they have no units).

    Returns
    -------
    Priors
        ``m0 = x̄``, ``tau0 = 2 s``, ``a0 = 2``, ``b0 = 0.5 s²``: on standardized data these are
        ``Priors()``. Under ``X' = a X + b`` (a > 0) they become ``m0' = a m0 + b``, ``tau0' = a tau0``,
        ``b0' = a² b0``, so the posterior of ``(a μ + b, a σ, weights)`` on X' is that of
        ``(μ, σ, weights)`` on X.

    Raises
    ------
    ValueError
        When the data have no spread (every row the same), which leaves no scale to take.
    """
    if not (math.isfinite(variance) and variance > 0):
        raise ValueError(
            f"the data have no spread (mean per-feature variance {variance!r}): data-scaled priors need "
            "rows that differ; pass priors=Priors(...) in the data's units"
        )
    scale = math.sqrt(variance)
    return Priors(alpha=alpha, m0=_check_m0(mean), tau0=TAU0_SCALE * scale, a0=a0, b0=B0_SCALE * variance)
