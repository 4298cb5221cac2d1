"""Fixtures for the unit tests: the benchmark data sets of ``benchmarks/_data.py``."""

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "_data.py"


@pytest.fixture(scope="session")
def benchmark_data():
    """The ``benchmarks/_data.py`` module (standardized sklearn and SIPU sets, centroid index)."""
    spec = importlib.util.spec_from_file_location("kmeans_limit_benchmark_data", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_dataset(benchmark_data):
    """``load_dataset(name)``: a standardized data set. Those shipped with the package (s1, a1, r15)
    are read from it; the test is skipped only for a SIPU set that is neither shipped nor found."""

    def load(name: str):
        if not benchmark_data.available(name):
            folder = benchmark_data.data_dir() / "sipu"
            pytest.skip(f"SIPU data set {name} not found under {folder} (set KMEANS_LIMIT_DATA)")
        return benchmark_data.load(name)

    return load
