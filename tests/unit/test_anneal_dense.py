"""``anneal(path="dense")`` and ``AnnealedKMeans(path="dense")``: the dense path recorded, the fast fit kept."""

import pytest
import torch

from kmeans_limit import AnnealedKMeans
from kmeans_limit.inference import AnnealPath, anneal, dense_path
from kmeans_limit.inference.lloyd import lloyd


@pytest.fixture(scope="module")
def blobs():
    generator = torch.Generator().manual_seed(3)
    centres = torch.tensor([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]], dtype=torch.float64)
    X = centres.repeat_interleave(40, 0) + torch.randn(120, 2, generator=generator, dtype=torch.float64)
    return X + 1000.0  # far from the origin: the data model centres them


def test_dense_result_records_the_dense_path_and_keeps_the_levels_fit(blobs):
    fast = anneal(blobs, 3)
    dense = anneal(blobs, 3, path="dense", cooling=0.9)
    reference = dense_path(blobs, 3, cooling=0.9)
    assert isinstance(dense.path, AnnealPath)
    for name in AnnealPath._fields:
        assert torch.equal(getattr(dense.path, name), getattr(reference, name)), name
    assert torch.equal(dense.split_sigmas, reference.split_sigma)
    assert torch.equal(dense.critical_sigmas, reference.critical_sigma)
    assert (dense.critical_sigmas >= dense.split_sigmas).all()
    # The fit is the levels schedule's, its components reordered to the dense path's σ = 0 order.
    assert dense.inertia == fast.inertia and dense.sigma_star == fast.sigma_star
    order = torch.cdist(dense.means, fast.means).argmin(1)
    assert sorted(order.tolist()) == [0, 1, 2]
    assert torch.equal(dense.means, fast.means[order])
    assert torch.equal(dense.weights, fast.weights[order])
    assert torch.equal(order[dense.labels], fast.labels)
    assert torch.cdist(dense.means, reference.final_means).argmin(1).tolist() == [0, 1, 2]
    step = lloyd(blobs, dense.means, max_iter=1)
    assert torch.equal(step.labels, dense.labels)
    assert dense.n_iter > fast.n_iter


def test_finer_cooling_gives_more_dense_levels_never_fewer(blobs):
    counts = [len(anneal(blobs, 3, path="dense", cooling=c).path.sigma) for c in (0.7, 0.8, 0.9, 0.95)]
    assert counts == sorted(counts) and counts[0] < counts[-1], counts
    path = anneal(blobs, 3, path="dense", cooling=0.8).path
    ratios = path.sigma[1:] / path.sigma[:-1]
    assert torch.allclose(ratios, torch.full_like(ratios, 0.8), rtol=1e-12)  # what --cooling's help says


def test_levels_cooling_places_the_first_split(blobs):
    X = blobs - blobs.mean(0)
    lam = torch.linalg.eigvalsh(torch.cov(X.T, correction=0)).max().sqrt().item()
    for cooling in (0.8, 0.95):
        result = anneal(blobs, 3, cooling=cooling)
        assert result.split_sigmas[0].item() == pytest.approx(cooling * lam, rel=1e-9)


def test_bad_path_is_refused(blobs):
    with pytest.raises(ValueError, match=r"path='fine' should be 'levels'"):
        anneal(blobs, 3, path="fine")
    with pytest.raises(ValueError, match="cooling"):
        anneal(blobs, 3, path="dense", cooling=1.0)


def test_estimator_dense_path(blobs):
    fast = AnnealedKMeans(3).fit(blobs.numpy())
    model = AnnealedKMeans(3, path="dense", cooling=0.9).fit(blobs.numpy())
    assert len(model.path_.sigma) > 3 * len(fast.path_.sigma)
    assert model.inertia_ == pytest.approx(fast.inertia_, rel=1e-12)
    assert model.path_.means.shape[1:] == (3, 2)
    assert abs(model.path_.means[-1].mean().item() - 1000.0) < 10  # data units
    assert model.split_sigmas_.shape == (2,) and (model.critical_sigmas_ >= model.split_sigmas_).all()
