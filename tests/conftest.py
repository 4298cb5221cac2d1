"""Shared fixtures: small float64 data sets with known structure."""

import pytest
import torch


@pytest.fixture
def three_blobs() -> tuple[torch.Tensor, torch.Tensor]:
    """60 float64 points around three well-separated centres, and those centres."""
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-4.0, 0.0], [0.0, 4.0], [4.0, 0.0]], dtype=torch.float64)
    labels = torch.arange(3).repeat_interleave(20)
    X = centres[labels] + 0.5 * torch.randn(60, 2, generator=generator, dtype=torch.float64)
    return X, centres


#: Every device test runs on the CPU and, where one is present, on a CUDA GPU.
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """A device to put the data on: ``cpu``, and ``cuda`` when a GPU is present (skipped otherwise)."""
    return torch.device(request.param)
