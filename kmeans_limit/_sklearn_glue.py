"""What the scikit-learn estimators share: seeds from ``random_state``, and arrays to and from torch."""

from __future__ import annotations

import numbers

import numpy as np
import torch
from sklearn.utils import check_random_state

__all__ = ["array_like", "seed_from", "to_numpy", "to_torch"]


def seed_from(random_state) -> int:
    """An int seed for the core from scikit-learn's ``random_state`` (None, an int or a RandomState)."""
    if (
        isinstance(random_state, numbers.Integral)
        and not isinstance(random_state, bool)
        and random_state >= 0
    ):
        return int(random_state)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def to_torch(array: np.ndarray) -> torch.Tensor:
    """A tensor sharing the array's memory when it may, a copy when the array is read-only."""
    array = np.ascontiguousarray(array)
    return torch.from_numpy(array if array.flags.writeable else array.copy())


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A NumPy array of a tensor, detached and on the CPU."""
    return tensor.detach().cpu().numpy()


def array_like(value):
    """``value`` as scikit-learn's validation can read it: a torch tensor detached (no autograd graph:
    the fits are not differentiable) and on the CPU; anything else as it is."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    return value
