"""The σ of each split and the critical σ of the split cluster: two different things, both recorded.

``split_sigmas`` are the σ at which annealing made each split (its schedule); ``critical_sigmas`` are
``sqrt(λ_max)`` of the split cluster's responsibility-weighted covariance at the path level it was
split from (where it turned unstable). They are checked against the path itself and against the
theory: the first transition is at ``σ_c² = λ_max(Cov X)`` (Rose 1998), and no split can come
before it.
"""

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

from kmeans_limit.datasets import load_sipu
from kmeans_limit.inference import anneal
from kmeans_limit.inference._comm import LOCAL as LOCAL_COMM


def top_eigenvalue(X: torch.Tensor, u: torch.Tensor | None = None) -> float:
    """λ_max of the (u-weighted, 1/Σu) covariance of the rows of X, in float64 by NumPy."""
    X = X.double().numpy()
    u = np.ones(len(X)) if u is None else u.double().numpy()
    mean = u @ X / u.sum()
    cov = ((X - mean) * u[:, None]).T @ (X - mean) / u.sum()
    return float(np.linalg.eigvalsh(cov)[-1])


def soft_splits(path) -> list[tuple[int, int, int]]:
    """(split number, level split from, parent slot) of each split that has a path level.

    Slot j + 1 is born by split j; it is born at the first level where its weight is positive, and
    at the level before it the path repeats its parent's centroid there.
    """
    found = []
    for slot in range(1, path.weights.shape[1]):
        born = torch.nonzero(path.weights[:, slot] > 0).flatten()
        if born.numel() == 0:
            continue  # split in the hard limit, after the last level
        level = int(born[0]) - 1
        parents = [
            s
            for s in range(slot)
            if path.weights[level, s] > 0 and torch.equal(path.means[level, s], path.means[level, slot])
        ]
        assert len(parents) == 1, (slot, parents)
        found.append((slot - 1, level, parents[0]))
    return found


def direct_critical_sigma(X, path, level: int, parent: int) -> float:
    """sqrt(λ_max) of the parent's responsibility-weighted covariance at a path level, from scratch."""
    means, weights, sigma = path.means[level], path.weights[level], path.sigma[level].item()
    d2 = ((X[:, None, :] - means[None]) ** 2).sum(-1)
    gamma = torch.softmax(torch.log(weights) - d2 / (2 * sigma**2), -1)
    return math.sqrt(top_eigenvalue(X, gamma[:, parent]))


@pytest.fixture(scope="module")
def blobs_fit():
    X, _ = make_blobs(500, n_features=3, centers=6, cluster_std=1.3, random_state=3)
    X = torch.from_numpy(X)
    return X, anneal(X, 6, cooling=0.8)


@pytest.fixture(scope="module")
def separated_fit():
    """Far-apart blobs in 40 dimensions (the covariance of a cell from more rows than features)."""
    X, _ = make_blobs(400, n_features=40, centers=8, cluster_std=0.5, random_state=1)
    X = torch.from_numpy(X)
    return X, anneal(X, 8)


@pytest.fixture(scope="module")
def r15_fit():
    X = load_sipu("r15", standardized=True).data
    return X, anneal(X, 15)


@pytest.mark.parametrize("fit", ["blobs_fit", "r15_fit"])
def test_split_sigmas_one_per_split_non_increasing(fit, request):
    X, result = request.getfixturevalue(fit)
    n_splits = result.means.shape[0] - 1
    assert result.split_sigmas.shape == result.critical_sigmas.shape == (n_splits,)
    assert result.split_sigmas.dtype == result.critical_sigmas.dtype == torch.float64
    assert (result.split_sigmas.diff() <= 0).all(), result.split_sigmas
    assert (result.split_sigmas >= 0).all() and (result.critical_sigmas > 0).all()


@pytest.mark.parametrize("fit", ["blobs_fit", "r15_fit"])
def test_first_split_is_at_cooling_times_sigma_c_and_is_the_second_level(fit, request):
    X, result = request.getfixturevalue(fit)
    cooling = 0.8 if fit == "blobs_fit" else 0.9
    sigma_c = math.sqrt(top_eigenvalue(X))
    assert result.critical_sigmas[0].item() == pytest.approx(sigma_c, rel=1e-10)
    assert result.split_sigmas[0].item() == pytest.approx(cooling * sigma_c, rel=1e-10)
    # Level 0 is the start above σ_c (one centroid); level 1 is the first split's equilibrium.
    assert result.path.sigma[0].item() > sigma_c
    assert result.path.sigma[1].item() == result.split_sigmas[0].item()
    assert (result.path.weights[0, 1:] == 0).all() and (result.path.weights[1, :2] > 0).all()


def test_r15_no_split_before_the_first_transition(r15_fit):
    """The defect: the CLI printed "split at σ_c = 1, 1.048, ..." on r15, the second above the first."""
    X, result = r15_fit
    sigma_c = math.sqrt(top_eigenvalue(X))
    assert (result.split_sigmas <= sigma_c).all(), (result.split_sigmas, sigma_c)
    assert (result.split_sigmas[1:] <= result.split_sigmas[0]).all()


@pytest.mark.parametrize("fit", ["blobs_fit", "r15_fit"])
def test_each_soft_split_is_a_path_level_at_its_sigma(fit, request):
    X, result = request.getfixturevalue(fit)
    splits = soft_splits(result.path)
    assert splits, "no split with a path level"
    for j, level, _ in splits:
        assert result.path.sigma[level + 1].item() == result.split_sigmas[j].item()


@pytest.mark.parametrize("fit", ["blobs_fit", "r15_fit", "separated_fit"])
def test_critical_sigma_is_the_responsibility_weighted_one_at_the_level_split_from(fit, request):
    """Recomputed from the recorded path level: full softmax over all rows, NumPy eigvalsh.

    The routine restricts the sum to rows where the cluster's responsibility may exceed 1e-3 · eps,
    so the rest changes the covariance by less than rounding: 1e-9 relative is ample in float64.
    """
    X, result = request.getfixturevalue(fit)
    for j, level, parent in soft_splits(result.path):
        expected = direct_critical_sigma(X, result.path, level, parent)
        assert result.critical_sigmas[j].item() == pytest.approx(expected, rel=1e-9), j


def test_splits_in_the_hard_limit_are_at_sigma_zero():
    """With sigma_end above the last splits' σ, those are made at σ = 0: recorded as 0, critical > 0."""
    X, _ = make_blobs(300, n_features=2, centers=5, cluster_std=0.4, random_state=5)
    X = torch.from_numpy(X)
    sigma_c = math.sqrt(top_eigenvalue(X))
    result = anneal(X, 5, sigma_end=0.5 * sigma_c)
    split, critical = result.split_sigmas, result.critical_sigmas
    assert (split.diff() <= 0).all()
    assert (split == 0).any() and (split[split > 0] >= 0.5 * sigma_c).all()
    assert (critical > 0).all() and (critical[split == 0] < sigma_c).all()


@pytest.mark.parametrize(
    ("n_rows", "n_features", "indexed"), [(20, 50, False), (20, 50, True), (300, 64, True), (40, 8, False)]
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_principal_axis_equals_the_covariance_eigenpair(n_rows, n_features, indexed, dtype):
    """Every route (the n × n Gram matrix for few rows, LAPACK's top pair for large D, the full
    decomposition for small D) gives the top eigenpair of the weighted covariance itself."""
    from kmeans_limit.inference._split import _Cell, _principal_axis, covariance_top_eigenvalue

    generator = torch.Generator().manual_seed(n_rows + n_features)
    scales = torch.linspace(3.0, 0.5, n_features, dtype=torch.float64)  # a clear top direction
    X = torch.randn(n_rows + 7, n_features, generator=generator, dtype=torch.float64) * scales + 100.0
    index = torch.randperm(n_rows + 7, generator=generator)[:n_rows] if indexed else None
    rows = X if index is None else X[index]
    u = torch.rand(rows.shape[0], generator=generator, dtype=torch.float64) + 0.1
    mean = (u @ rows) / u.sum()
    cov = ((rows - mean) * u[:, None]).T @ (rows - mean) / u.sum()
    values, vectors = torch.linalg.eigh(cov)
    expected = vectors[:, -1] * vectors[:, -1][vectors[:, -1].abs().argmax()].sign()
    cell = _Cell(X.to(dtype), index)
    lam, axis = _principal_axis(cell, u.to(dtype), mean.to(dtype), u.sum().item(), LOCAL_COMM)
    tol = 1e-10 if dtype == torch.float64 else 2e-4
    assert lam == pytest.approx(values[-1].item(), rel=tol)
    assert torch.allclose(axis.double(), expected, atol=50 * tol)
    assert axis.dtype == dtype and axis.shape == (n_features,)
    top = covariance_top_eigenvalue(X.to(dtype), u.to(dtype), index=index if indexed else None)
    if not indexed:
        assert top == pytest.approx(values[-1].item(), rel=tol)
