"""The embedded data sets load whole, with the documented moments."""

import numpy as np
import pytest
import torch

from kmeans_limit.datasets import SIPU_SETS, load_faithful, load_sipu, standardize


def test_faithful_is_bishops_old_faithful():
    data = load_faithful()
    assert data.data.shape == (272, 2) and data.feature_names == ("eruptions", "waiting")
    assert data.data.mean(0).tolist() == pytest.approx([3.4878, 70.8971], abs=1e-4)


def test_standardized_has_zero_mean_unit_variance():
    X = load_faithful(standardized=True, dtype=torch.float32).data
    assert X.dtype == torch.float32
    torch.testing.assert_close(X.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(X.std(0, unbiased=False), torch.ones(2), atol=1e-5, rtol=0)


def test_standardize_leaves_constant_columns_centred():
    X = torch.tensor([[1.0, 5.0], [3.0, 5.0]], dtype=torch.float64)
    assert standardize(X).tolist() == [[-1.0, 0.0], [1.0, 0.0]]


@pytest.mark.parametrize("name", sorted(SIPU_SETS))
def test_sipu_sets_with_ground_truth(name):
    n_samples, n_clusters = SIPU_SETS[name]
    data = load_sipu(name)
    assert data.data.shape == (n_samples, 2) and data.labels.shape == (n_samples,)
    assert torch.unique(data.labels).tolist() == list(range(n_clusters))


def test_unknown_sipu_set():
    with pytest.raises(ValueError, match="name='birch9' should be one of"):
        load_sipu("birch9")


@pytest.mark.parametrize("name", ["s1", "a1", "r15"])
def test_benchmark_loader_reads_the_packaged_sipu_sets_without_shared_files(
    name, benchmark_data, load_dataset, tmp_path, monkeypatch
):
    """On a fresh clone there is no ../shared/data: the unit tests' s1 and a1 cases must not skip."""
    monkeypatch.setenv("KMEANS_LIMIT_DATA", str(tmp_path))  # an empty folder: no sipu/ files at all
    assert benchmark_data.available(name)
    data = load_dataset(name)  # would skip (and so fail this test's expectations) if not read
    n_samples, n_clusters = SIPU_SETS[name]
    assert data.X.shape == (n_samples, 2) and data.n_clusters == n_clusters
    np.testing.assert_allclose(data.X, load_sipu(name, standardized=True).data.numpy(), rtol=0, atol=1e-12)
    assert np.array_equal(data.labels, load_sipu(name).labels.numpy())


def test_benchmark_loader_still_skips_a_set_it_cannot_find(benchmark_data, tmp_path, monkeypatch):
    monkeypatch.setenv("KMEANS_LIMIT_DATA", str(tmp_path))
    assert not benchmark_data.available("birch1") and benchmark_data.available("iris")
