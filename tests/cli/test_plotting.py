"""The pictures, on small synthetic records: they draw, save as valid PNGs and show what they claim."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from kmeans_limit import plotting
from kmeans_limit.inference import sufficient_stats

NAMES = ("a", "b")


@pytest.fixture(scope="module")
def blobs():
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-2.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    return centres.repeat_interleave(20, 0) + 0.4 * torch.randn(
        40, 2, generator=generator, dtype=torch.float64
    )


def critical_sigma(X):
    return float(torch.linalg.eigvalsh(torch.cov(X.T, correction=0)).max().sqrt())


@pytest.fixture(scope="module")
def path(blobs):
    """An annealing record shaped like the library's: one centroid born above σ_c (the other sits on
    it with weight 0), two below, EM equilibrated at each level."""
    sigma_c, centre = critical_sigma(blobs), blobs.mean(0)
    means = centre.repeat(2, 1)
    log_w = torch.tensor([0.0, -float("inf")], dtype=torch.float64)
    record = {k: [] for k in ("sigma", "means", "weights", "log_likelihood", "entropy")}
    for sigma in np.geomspace(4.0, 0.05, 25):
        if sigma < sigma_c and log_w[1] == -float("inf"):
            means = centre + torch.tensor([[-0.5, 0.0], [0.5, 0.0]], dtype=torch.float64)
            log_w = torch.full((2,), 0.5, dtype=torch.float64).log()
        for _ in range(30 if sigma < sigma_c else 1):
            stats = sufficient_stats(blobs, means, log_w, float(sigma))
            if sigma < sigma_c:
                means, log_w = stats.sums / stats.counts[:, None], (stats.counts / 40).log()
        values = (sigma, means, log_w.exp(), stats.log_likelihood, stats.entropy / 40)
        for key, value in zip(record, values, strict=True):
            record[key].append(value)
    return SimpleNamespace(
        sigma=np.array(record["sigma"]),
        means=torch.stack(record["means"]),
        weights=torch.stack(record["weights"]),
        log_likelihood=np.array(record["log_likelihood"]),
        entropy=np.array(record["entropy"]),
    )


def saved_png(figure, tmp_path, name="f.png"):
    target = plotting.save_figure(figure, tmp_path / name)
    with Image.open(target) as image:
        image.verify()
    with Image.open(target) as image:
        assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 200
    return target


def test_bifurcation_forks_at_the_critical_sigma_on_a_cooling_log_axis(path, blobs, tmp_path):
    sigma_c = critical_sigma(blobs)
    figure = plotting.plot_bifurcation(path, [sigma_c], NAMES, hard_means=path.means[-1])
    axes = [ax for ax in figure.axes if ax.get_ylabel() in NAMES]
    assert len(axes) == 2 and all(ax.get_xscale() == "log" and ax.xaxis_inverted() for ax in axes)
    lines = {line.get_label(): line for line in axes[0].lines if line.get_label().startswith("centroid")}
    first, second = lines["centroid 0"].get_xdata(), lines["centroid 1"].get_xdata()
    assert len(first) == 25 + 1 and first[0] == 4.0  # every level, plus the fork at σ_c
    assert second[0] == pytest.approx(sigma_c) and second[1] < sigma_c  # born at σ_c, not before
    top = axes[0].child_axes[0]
    assert [t.get_text() for t in top.get_xticklabels()] == [f"{sigma_c:.3g}"]
    saved_png(figure, tmp_path)


def test_responsibilities_go_from_blurry_to_hard(path, blobs, tmp_path):
    figure = plotting.plot_responsibilities(blobs, path, NAMES, hard=(path.means[-1], path.weights[-1]))
    titles = [ax.get_title() for ax in figure.axes]
    assert len(titles) == 5
    assert "1 of 2 centroids born" in titles[0] and "0.000 nats" in titles[0]
    assert float(titles[1].split("entropy ")[1].split(" ")[0]) > 0.1  # the blurriest level
    assert titles[-1].startswith("σ = 0 (Lloyd's fixed point)") and "0.000 nats" in titles[-1]
    saved_png(figure, tmp_path)


def test_entropy_and_loglik_panels(path, blobs, tmp_path):
    figure = plotting.plot_entropy_loglik(path, [critical_sigma(blobs)], 40, inertia=12.0)
    top, middle, bottom = (ax for ax in figure.axes if ax.get_ylabel())
    labels = [t.get_text() for t in top.get_legend().get_texts()]
    assert "levels with fewer than K centroids born" in labels and "log K = 0.693" in labels
    assert "maximum at σ" in middle.get_legend().get_texts()[0].get_text()
    assert any("falls off the axis" in t.get_text() for t in middle.texts)
    assert bottom.get_yscale() == "log"
    saved_png(figure, tmp_path)


def test_posterior_pairs_and_clouds(blobs, tmp_path):
    rng = np.random.default_rng(0)
    sigma = rng.uniform(0.3, 0.5, 200)
    weights = rng.dirichlet([20, 20, 20], 200)
    figure = plotting.plot_posterior_pairs(sigma, weights, reference={"σ": 0.4})
    visible = [ax for ax in figure.axes if ax.get_visible()]
    assert len(visible) == 6  # σ and two of three weights: 3 diagonal + 3 lower panels
    saved_png(figure, tmp_path, "pairs.png")
    fixed = plotting.plot_posterior_pairs(
        np.full(200, 0.4), weights[:, :2] / weights[:, :2].sum(1, keepdims=True)
    )
    assert len([ax for ax in fixed.axes if ax.get_visible()]) == 1  # σ fixed: weight 0 alone
    empty = plotting.plot_posterior_pairs(np.full(10, 0.4), np.ones((10, 1)))
    assert "no σ or weights vary" in empty.texts[0].get_text()
    means = rng.normal(size=(100, 2, 2)) * 0.05 + np.array([[-2.0, 0], [2, 0]])
    clouds = plotting.plot_centroid_clouds(blobs, means, NAMES, hard_means=means.mean(0))
    saved_png(clouds, tmp_path, "clouds.png")


def test_generated_panels_share_axes(blobs, tmp_path):
    z = torch.arange(40) % 2
    figure = plotting.plot_generated(blobs, {"fit": (blobs + 0.1, z), "hard": (blobs * 0, None)}, NAMES)
    assert [ax.get_title().split("\n")[0] for ax in figure.axes] == ["observed data", "fit", "hard"]
    assert figure.axes[0].get_xlim() == figure.axes[2].get_xlim()
    saved_png(figure, tmp_path)


def test_projection_for_one_two_and_many_features():
    X = np.random.default_rng(1).normal(size=(50, 4)) * np.array([5.0, 1.0, 0.1, 0.1])
    many = plotting.Projection(X, ["p", "q", "r", "s"])
    assert many.labels[0].startswith("PC1 (9") and many(X).shape == (50, 2)
    one = plotting.Projection(X[:, :1], ["p"])
    assert one.labels == ("p", "(jitter)") and np.all(one(X[:3, :1], jitter=False)[:, 1] == 0)
    two = plotting.Projection(X[:, :2], ["p", "q"])
    np.testing.assert_array_equal(two(X[:, :2]), X[:, :2])


def test_save_figure_refuses_to_overwrite(path, tmp_path):
    figure = plotting.plot_bifurcation(path, [], NAMES)  # no critical σ: plain lines
    saved_png(figure, tmp_path)
    with pytest.raises(FileExistsError, match="pass --force"):
        plotting.save_figure(figure, tmp_path / "f.png")
    plotting.save_figure(figure, tmp_path / "f.png", force=True)


@pytest.fixture(scope="module")
def annealed():
    """A real annealing run whose last splits are made in the hard limit (sigma_end above them)."""
    from sklearn.datasets import make_blobs

    from kmeans_limit.inference import anneal

    X = torch.from_numpy(make_blobs(300, n_features=2, centers=5, cluster_std=0.4, random_state=5)[0])
    result = anneal(X, 5, sigma_end=0.5 * critical_sigma(X))
    assert (result.split_sigmas == 0).any() and (result.split_sigmas > 0).any()
    return result


def test_bifurcation_marks_the_split_sigmas_and_counts_those_at_zero(annealed, tmp_path):
    split = annealed.split_sigmas.numpy()
    figure = plotting.plot_bifurcation(
        annealed.path, split, NAMES, hard_means=annealed.means, critical_sigmas=annealed.critical_sigmas
    )
    ax = next(ax for ax in figure.axes if ax.get_ylabel() == NAMES[0])
    dashed = [line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == "--"]
    np.testing.assert_array_equal(dashed, split[split > 0])
    top = ax.child_axes[0]
    assert top.get_xlabel() == f"σ of a split; {int((split == 0).sum())} more at σ = 0"
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    assert "σ of a split" in legend and "critical σ (√λmax of the split cluster)" in legend
    # A child born by a soft split forks off its parent at that split's σ.
    child = next(line.get_xdata() for line in ax.lines if line.get_label() == "centroid 1")
    assert child[0] == split[0]
    saved_png(figure, tmp_path)


def test_entropy_plot_marks_split_sigmas_and_breaks_at_births(annealed, tmp_path):
    split = annealed.split_sigmas.numpy()
    figure = plotting.plot_entropy_loglik(
        annealed.path, split, 300, inertia=annealed.inertia, critical_sigmas=annealed.critical_sigmas
    )
    top = next(ax for ax in figure.axes if ax.get_ylabel().startswith("mean responsibility"))
    labels = [t.get_text() for t in top.get_legend().get_texts()]
    assert "σ of a split" in labels
    solid = [line for line in top.lines if line.get_linestyle() == "-" and line.get_color() == "C0"]
    born = (annealed.path.weights > 0).sum(1)
    assert len(solid) == int((born.diff() > 0).sum()) + 1  # one piece per run of levels between births
    saved_png(figure, tmp_path)


# --- readable at large K (issue 18) -------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 10, 11, 20, 21, 100, 250])
def test_palette_never_repeats_a_colour(n):
    colours = plotting.palette(n)
    assert len(colours) == n and len(set(colours)) == n
    assert all(len(c) == 3 and all(0 <= v <= 1 for v in c) for c in colours)
    assert plotting.palette(min(n, 10)) == plotting.COLOURS[: min(n, 10)]  # tab10 while it suffices


def test_pair_plot_at_large_k_shows_invariant_quantities(tmp_path):
    rng = np.random.default_rng(0)
    weights = rng.dirichlet(np.full(15, 20.0), 300)
    reference = {"σ": 0.4, **{f"weight {k}": 1 / 15 for k in range(15)}}
    figure = plotting.plot_posterior_pairs(rng.uniform(0.3, 0.5, 300), weights, reference=reference)
    visible = [ax for ax in figure.axes if ax.get_visible()]
    assert len(visible) == 15  # σ and 4 invariant quantities: 5 diagonal + 10 lower panels
    assert "label-invariant quantities, not 14 weights" in figure._suptitle.get_text()
    assert "effective K" in visible[-1].get_xlabel() or any(
        "effective K" in ax.get_ylabel() for ax in visible
    )
    width, height = figure.get_size_inches() * plotting.DPI
    assert max(width, height) < 1600


def test_centroid_legend_stands_beside_the_data_and_names_no_centroid_at_large_k(blobs, tmp_path):
    rng = np.random.default_rng(0)
    means = rng.normal(size=(30, 12, 2))
    figure = plotting.plot_centroid_clouds(blobs, means, NAMES, hard_means=means.mean(0))
    ax = figure.axes[0]
    assert ax.get_legend() is None and len(figure.legends) == 1
    texts = [t.get_text() for t in figure.legends[0].get_texts()]
    assert texts[0] == "12 centroids,\none colour each" and not any("draws 11" in t for t in texts)
    few = plotting.plot_centroid_clouds(blobs, means[:, :3], NAMES)
    assert [t.get_text() for t in few.legends[0].get_texts()][1:] == [f"centroid draws {k}" for k in range(3)]
    point = plotting.plot_centroid_clouds(blobs, means[:1, :3], NAMES, point_estimate=True)
    assert "a point estimate" in point.axes[0].get_title()
    saved_png(figure, tmp_path)
