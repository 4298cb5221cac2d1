"""Shared fixtures: small float64 data sets with known structure."""

import pyro
import pytest
import torch


@pytest.fixture(autouse=True)
def empty_pyro_param_store():
    """Every test starts with an empty Pyro parameter store and leaves none of its parameters behind.

    A test that builds an autoguide fills the global store; the next test's guide of another shape
    would then find those parameters (``invalid shape of pyro.param(AutoDelta.means, ...)``).
    """
    store = pyro.get_param_store()
    saved = store.get_state()
    store.clear()
    yield
    store.clear()
    store.set_state(saved)


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
