"""The explorer page: its data, its size, its self-containment, and its arithmetic (run under Node).

The browser itself is driven in test_explorer_browser.py.
"""

import json
import math
import re
import shutil
import subprocess

import pytest
import torch

from kmeans_limit._explorer_math_js import MATH_JS
from kmeans_limit.explorer import explore, explorer_data, path_at, sigma_to_t, write_explorer
from kmeans_limit.inference.dense_path import dense_path
from kmeans_limit.inference.kernels import log_responsibilities

NODE = shutil.which("node")
needs_node = pytest.mark.skipif(
    NODE is None, reason="no Node.js ('node') on PATH: the page's JavaScript is not run"
)


def _blobs(n_per=30, d=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.zeros(3, d, dtype=torch.float64)
    centres[0, 0], centres[1, 0], centres[2, 1] = -4.0, 4.0, 4.0
    labels = torch.arange(3).repeat_interleave(n_per)
    return centres[labels] + 0.6 * torch.randn(3 * n_per, d, generator=generator, dtype=torch.float64)


@pytest.fixture(scope="module")
def small():
    X = _blobs()
    record = dense_path(X, 3, cooling=0.9)
    return X, record, explorer_data(X, record, feature_names=("a", "b"), title="blobs")


def _data_levels(record):
    """The record's levels in data units, ending with the σ = 0 fit (what the page holds, before its frame)."""
    means = torch.cat([record.means, record.final_means[None]])
    weights = torch.cat([record.weights, record.final_weights[None]])
    return {"sigma": record.sigma.tolist() + [0.0], "means": means.tolist(), "weights": weights.tolist()}


def test_the_data_hold_the_path_down_to_sigma_0_and_the_fit(small):
    X, record, data = small
    n_levels = len(record.sigma)
    assert data["levels"]["sigma"][:-1] == record.sigma.tolist() and data["levels"]["sigma"][-1] == 0.0
    assert torch.tensor(data["levels"]["means"], dtype=torch.float64).shape == (n_levels + 1, 3, 2)
    assert data["fit"]["labels"] == record.labels.tolist()
    assert data["fit"]["mean_inertia"] == record.mean_inertia
    # the page's coordinates are the rows about the data mean; its centroids the record's, in that frame
    centre = X.mean(0)
    torch.testing.assert_close(
        torch.tensor(data["points"], dtype=torch.float64), X - centre, rtol=0, atol=1e-15
    )
    torch.testing.assert_close(
        torch.tensor(data["levels"]["means"][-1], dtype=torch.float64), record.final_means - centre
    )
    assert data["compare"]["n_starts"] == 10 and len(data["compare"]["labels"]) == X.shape[0]


def test_path_at_returns_the_recorded_levels_at_their_sigma_and_interpolates_between(small):
    _, record, data = small
    levels = data["levels"]
    for index in range(0, len(levels["sigma"]), 7):
        sigma = levels["sigma"][index]
        t = sigma_to_t(levels["sigma"], sigma)
        assert t == pytest.approx(index, abs=1e-9)
        value, means, weights = path_at(levels, float(round(t)))
        assert value == sigma
        assert torch.equal(means, torch.tensor(levels["means"][index], dtype=torch.float64))
        assert torch.equal(weights, torch.tensor(levels["weights"][index], dtype=torch.float64))
    value, means, _ = path_at(levels, 2.25)
    assert value == pytest.approx(levels["sigma"][2] ** 0.75 * levels["sigma"][3] ** 0.25)
    expected = 0.75 * torch.tensor(levels["means"][2], dtype=torch.float64) + 0.25 * torch.tensor(
        levels["means"][3], dtype=torch.float64
    )
    torch.testing.assert_close(means, expected)
    last = len(levels["sigma"]) - 1
    assert path_at(levels, last - 0.5)[0] == pytest.approx(0.5 * levels["sigma"][-2])
    assert sigma_to_t(levels["sigma"], 0.0) == last and sigma_to_t(levels["sigma"], 1e9) == 0.0


def test_the_page_is_one_self_contained_file(tmp_path, small):
    X, _, _ = small
    page = write_explorer(tmp_path / "page.html", X, 3, cooling=0.9, compare=False)
    text = page.path.read_text(encoding="utf-8")
    assert page.n_bytes == len(text.encode("utf-8"))
    assert not re.search(r"<script[^>]*\bsrc=|<link\b|@import|<iframe|<img\b", text)
    # The only address in the page is the SVG namespace, an identifier that is never fetched.
    assert set(re.findall(r"https?://[^\s\"')]+", text)) == {"http://www.w3.org/2000/svg"}
    assert re.findall(r"url\(([^)]*)\)", text) == ["#fe-clip"]
    with pytest.raises(FileExistsError, match="exists"):
        write_explorer(page.path, X, 3, cooling=0.9, compare=False)


def test_5000_points_make_a_page_of_at_most_a_few_mb_and_larger_data_are_subsampled(tmp_path):
    X = _blobs(n_per=1700)  # 5100 rows
    record = dense_path(X, 3, cooling=0.85)
    full = explorer_data(X[:5000], record._replace(labels=record.labels[:5000]), compare=False)
    from kmeans_limit.explorer import page_json

    assert len(page_json(full)) < 3_000_000 and full["meta"]["n_drawn"] == 5000
    sub = explorer_data(X, record, compare=False)
    assert sub["meta"]["n_drawn"] == 5000 < sub["meta"]["n_samples"] == 5100
    assert len(sub["points"]) == len(sub["fit"]["labels"]) == 5000


def test_columns_and_principal_axes_choose_what_is_drawn():
    X = _blobs(d=4)
    record = dense_path(X, 3, cooling=0.85)
    pca = explorer_data(X, record, compare=False)
    assert pca["meta"]["axis_names"][0].startswith("principal axis 1")
    chosen = explorer_data(X, record, feature_names=list("pqrs"), columns=("s", "1"), compare=False)
    assert chosen["meta"]["axis_names"] == ["s", "q"]
    torch.testing.assert_close(torch.tensor(chosen["draw"]["points"], dtype=torch.float64), X[:, [3, 1]])
    with pytest.raises(ValueError, match=r"column 'z' should be one of \['p', 'q', 'r', 's'\]"):
        explorer_data(X, record, feature_names=list("pqrs"), columns=("z", "p"), compare=False)
    with pytest.raises(ValueError, match="should name two different features"):
        explorer_data(X, record, columns=(1, 1), compare=False)


def test_explore_writes_the_page_and_says_what_it_did(tmp_path):
    X = _blobs()
    summary = explore(X, 3, out=tmp_path / "e.html", source="blobs", cooling=0.9, compare=False)
    assert "explorer: blobs, N = 90, D = 2, K = 3" in summary and "wrote" in summary
    assert (tmp_path / "e.html").stat().st_size > 10_000


# ---- the page's arithmetic under Node ------------------------------------------------------------


def _run_node(tmp_path, cases: list) -> list:
    (tmp_path / "kml_math.js").write_text(MATH_JS)
    driver = tmp_path / "driver.js"
    driver.write_text(
        "const KML = require(process.argv[2]);\n"
        "const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));\n"
        "const clean = a => Array.from(a).map(v => (isFinite(v) ? v : null));\n"
        "const out = input.map(c => c.kind === 'resp'\n"
        "  ? clean(KML.logResponsibilities(c.X, c.D, c.means, c.weights, c.sigma))\n"
        "  : c.sigmas.map(s => { const t = KML.tOfSigma(c.levels.sigma, s);\n"
        "      const p = KML.pathAt({sigma: c.levels.sigma, means: c.levels.means.map(KML.flat),\n"
        "        weights: c.levels.weights}, t);\n"
        "      return {t: t, sigma: p.sigma, means: Array.from(p.means), weights: Array.from(p.weights)}; }));\n"
        "process.stdout.write(JSON.stringify(out));\n"
    )
    done = subprocess.run(
        [NODE, str(driver), str(tmp_path / "kml_math.js")],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


def _one_hot_labels(page: list, n_clusters: int) -> list:
    """The index of the 0 (log 1) in each row of a one-hot page answer whose other entries are null."""
    rows = [page[i : i + n_clusters] for i in range(0, len(page), n_clusters)]
    assert all(sorted(row, key=lambda v: v is None)[1:] == [None] * (n_clusters - 1) for row in rows)
    return [row.index(0) for row in rows]


def _package_log_gamma(X, means, weights, sigma) -> torch.Tensor:
    return log_responsibilities(X, means, torch.as_tensor(weights, dtype=X.dtype).log(), sigma)[0]


def assert_log_gamma_close(page, package: torch.Tensor, X, means, sigma):
    """Entries of weight 0 are −inf in both; the others agree to the rounding of the distances.

    The package expands ``‖x − μ‖² = ‖x‖² − 2x·μ + ‖μ‖²``, which rounds by a few ulps of
    ``‖x‖² + ‖μ‖²``, divided by 2σ² in the logits; the page sums squared differences. So the
    tolerance is ``1e-9 · max(1, |log γ|) + 64 ε (max ‖x‖² + max ‖μ‖²) / σ²``.
    """
    page = torch.tensor([math.nan if v is None else v for v in page], dtype=torch.float64).reshape(
        package.shape
    )
    assert torch.equal(page.isnan(), package.isneginf())
    finite = ~package.isneginf()
    scale = X.square().sum(1).max() + means.square().sum(1).max()
    tolerance = 1e-9 * package[finite].abs().clamp_min(1.0) + 64 * torch.finfo(X.dtype).eps * scale / sigma**2
    difference = (page[finite] - package[finite]).abs()
    assert (difference <= tolerance).all(), (difference - tolerance).max()


@needs_node
def test_the_pages_e_step_is_the_packages_at_every_sigma(tmp_path):
    generator = torch.Generator().manual_seed(1)
    X = torch.randn(40, 3, generator=generator, dtype=torch.float64)
    X[0] = 0.0  # equidistant from centroids 0 and 1 below: a tie, broken to the first index
    means = torch.tensor([[1.0, 0, 0], [-1.0, 0, 0], [0, 2.0, 0], [0, 0, 3.0]], dtype=torch.float64)
    weights = [0.5, 0.3, 0.2, 0.0]  # the last one is not born
    sigmas = [30.0, 3.0, 1.0, 0.3, 0.05, 1e-4, 1e-200, 0.0]  # 1e-200: 1/(2σ²) overflows: the limit
    cases = [
        {
            "kind": "resp",
            "X": X.flatten().tolist(),
            "D": 3,
            "means": means.flatten().tolist(),
            "weights": weights,
            "sigma": s,
        }
        for s in sigmas
    ]
    for sigma, page in zip(sigmas, _run_node(tmp_path, cases), strict=True):
        if sigma in (1e-200, 0.0):  # the package's hard branch: one-hot at the nearest centroid
            assert _one_hot_labels(page, 4) == torch.cdist(X, means[:3]).argmin(1).tolist()
            assert page[0:4] == [0, None, None, None]
        else:
            assert_log_gamma_close(page, _package_log_gamma(X, means, weights, sigma), X, means, sigma)


@needs_node
def test_the_pages_interpolation_is_path_at(tmp_path, small):
    _, record, data = small
    grid = data["levels"]["sigma"]
    sigmas = [2 * grid[0], grid[0], grid[3], 0.5 * (grid[5] + grid[6]), grid[-2] * 0.3, 0.0]
    (answers,) = _run_node(tmp_path, [{"kind": "path", "levels": data["levels"], "sigmas": sigmas}])
    for sigma, page in zip(sigmas, answers, strict=True):
        t = sigma_to_t(grid, sigma)
        value, means, weights = path_at(data["levels"], t)
        assert page["t"] == pytest.approx(t, abs=1e-12) and page["sigma"] == pytest.approx(
            value, rel=1e-12, abs=0
        )
        torch.testing.assert_close(
            torch.tensor(page["means"], dtype=torch.float64), means.flatten(), rtol=0, atol=1e-12
        )
        torch.testing.assert_close(
            torch.tensor(page["weights"], dtype=torch.float64), weights, rtol=0, atol=1e-12
        )


@needs_node
def test_the_pages_numbers_in_its_own_coordinates_are_the_packages_on_the_data(tmp_path):
    # Four features, the last two mirrored (every row (y, z) has its twin (y, −z)): every centroid has
    # z = 0, so the page holds the two coordinates of the centroids' span; the distances it drops are
    # the same for every centroid, and its responsibilities are still those of the 4-D data.
    Y, Z = _blobs(), torch.randn(90, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    X = torch.cat([torch.cat([Y, Z], 1), torch.cat([Y, -Z], 1)])
    record = dense_path(X, 3, cooling=0.85)
    data = explorer_data(X, record, compare=False)
    assert data["meta"]["math_dim"] == 2 and len(data["points"][0]) == 2
    grid = data["levels"]["sigma"]
    sigmas = [grid[1], 0.5 * (grid[4] + grid[5]), grid[-2], 0.0]
    r = data["meta"]["math_dim"]
    cases = []
    for sigma in sigmas:
        _, means, weights = path_at(data["levels"], sigma_to_t(grid, sigma))
        flat = torch.tensor(data["points"], dtype=torch.float64).flatten().tolist()
        cases.append(
            {
                "kind": "resp",
                "X": flat,
                "D": r,
                "means": means.flatten().tolist(),
                "weights": weights.tolist(),
                "sigma": sigma,
            }
        )
    for sigma, page in zip(sigmas, _run_node(tmp_path, cases), strict=True):
        value, means, weights = path_at(_data_levels(record), sigma_to_t(grid, sigma))  # data units, all D
        package = _package_log_gamma(X, means, weights.tolist(), value)
        if sigma == 0.0:
            assert _one_hot_labels(page, 3) == record.labels.tolist()
        else:
            assert_log_gamma_close(page, package, X, means, value)
