"""Data shipped with the package: Old Faithful (the default of the main job) and three sipu sets.

Old Faithful geyser eruptions, R's ``datasets::faithful`` (Härdle 1991; Azzalini & Bowman 1990,
Applied Statistics 39:357-365), public domain; Bishop's PRML uses it in §9.1 and §9.2.

s1, a1 and r15 of the "clustering basic benchmark" of P. Fränti and colleagues (University of Eastern
Finland, https://cs.joensuu.fi/sipu/datasets/), as repackaged in M. Gagolewski's clustering-data-v1
battery (SoftwareX 20:101270, 2022), with their ground-truth labels.
"""

from __future__ import annotations

import csv
import gzip
from importlib import resources
from typing import NamedTuple

import torch

__all__ = ["SIPU_SETS", "Dataset", "load_faithful", "load_sipu", "standardize"]

#: The sipu sets shipped with the package: name -> (n_samples, n_clusters).
SIPU_SETS = {"s1": (5000, 15), "a1": (3000, 20), "r15": (600, 15)}


class Dataset(NamedTuple):
    """A data set: ``data`` of shape (n_samples, n_features), the column names, and labels if known."""

    data: torch.Tensor
    feature_names: tuple[str, ...]
    labels: torch.Tensor | None = None


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


def load_sipu(name: str, *, standardized: bool = False, dtype: torch.dtype = torch.float64) -> Dataset:
    """One of the shipped sipu benchmark sets (``"s1"``, ``"a1"``, ``"r15"``), 2-D, with ground truth.

    Parameters
    ----------
    name : {"s1", "a1", "r15"}
    standardized : bool, default False
    dtype : torch.dtype, default torch.float64

    Returns
    -------
    Dataset
        ``data`` of shape (n_samples, 2) and ``labels`` of shape (n_samples,) in 0..K-1.
    """
    if name not in SIPU_SETS:
        raise ValueError(f"name={name!r} should be one of {sorted(SIPU_SETS)}")
    folder = resources.files(__name__)
    data_text = gzip.decompress(folder.joinpath(f"{name}.data.gz").read_bytes()).decode()
    label_text = gzip.decompress(folder.joinpath(f"{name}.labels0.gz").read_bytes()).decode()
    data = torch.tensor(
        [[float(v) for v in line.split()] for line in data_text.splitlines() if line.strip()], dtype=dtype
    )
    labels = torch.tensor([int(v) - 1 for v in label_text.split()])
    return Dataset(standardize(data) if standardized else data, ("x", "y"), labels)
