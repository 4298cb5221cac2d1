"""Data shipped with the package: Old Faithful (the default of the main job).

Old Faithful geyser eruptions, R's ``datasets::faithful`` (Härdle 1991; Azzalini & Bowman 1990,
Applied Statistics 39:357-365), public domain; Bishop's PRML uses it in §9.1 and §9.2.
"""

from __future__ import annotations

import csv
from importlib import resources
from typing import NamedTuple

import torch

__all__ = ["Dataset", "load_faithful", "standardize"]


class Dataset(NamedTuple):
    """A data set: ``data`` of shape (n_samples, n_features) and the column names."""

    data: torch.Tensor
    feature_names: tuple[str, ...]


def standardize(X: torch.Tensor) -> torch.Tensor:
    """Each column centred and scaled to unit (1/N) variance; constant columns are only centred.

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features)

    Returns
    -------
    tensor of shape (n_samples, n_features)
    """
    scale = X.std(0, unbiased=False)
    return (X - X.mean(0)) / torch.where(scale > 0, scale, torch.ones_like(scale))


def load_faithful(*, standardized: bool = False, dtype: torch.dtype = torch.float64) -> Dataset:
    """Old Faithful: 272 eruptions, columns ``eruptions`` and ``waiting`` (minutes).

    Parameters
    ----------
    standardized : bool, default False
        Centre each column and scale it to unit variance.
    dtype : torch.dtype, default torch.float64

    Returns
    -------
    Dataset
        ``data`` of shape (272, 2).
    """
    text = resources.files(__name__).joinpath("faithful.csv").read_text()
    rows = list(csv.reader(text.splitlines()))
    data = torch.tensor([[float(v) for v in row] for row in rows[1:]], dtype=dtype)
    return Dataset(standardize(data) if standardized else data, tuple(rows[0]))
