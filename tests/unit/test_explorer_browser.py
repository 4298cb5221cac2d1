"""The explorer page in a real browser: headless Chromium loads it, moves the slider, draws it.

Chromium is Debian's ``chromium`` package (``apt-get install -y chromium``); another binary can be
named by ``KMEANS_LIMIT_CHROMIUM``. Without one these tests skip, saying so. The page writes its
state into the DOM (``#kml-state``: σ and the most responsible component of each drawn point;
``#kml-errors``: every error and ``console.error``; ``#kml-probe``: responsibilities asked for by
the URL's ``#probe=σ1,σ2,...``), and the URL's ``#sigma=...`` moves the slider, so ``--dump-dom``
after the scripts have run shows what the page did.
"""

import html
import json
import math
import os
import re
import shutil
import subprocess

import pytest
import torch

from kmeans_limit.explorer import path_at, sigma_to_t, write_explorer
from kmeans_limit.inference.kernels import log_responsibilities


def _chromium() -> str | None:
    named = os.environ.get("KMEANS_LIMIT_CHROMIUM")
    if named:
        return named
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


CHROMIUM = _chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium found: install Debian's 'chromium' package (apt-get install -y chromium) "
    "or set KMEANS_LIMIT_CHROMIUM to a Chrome/Chromium binary",
)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-4.0, 0.0], [4.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    X = centres.repeat_interleave(30, 0) + 0.7 * torch.randn(90, 2, generator=generator, dtype=torch.float64)
    folder = tmp_path_factory.mktemp("explorer")
    return X, write_explorer(
        folder / "page.html", X, 3, feature_names=("a", "b"), title="three blobs", cooling=0.9
    )


def _run(page, fragment: str, *extra: str) -> tuple[str, str]:
    """Chromium on the page with a URL fragment; returns (stdout, stderr)."""
    profile = page.path.parent / f"profile-{abs(hash((fragment, extra)))}"
    command = [
        CHROMIUM,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--no-first-run",
        "--disable-extensions",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=10000",
        *extra,
        page.path.resolve().as_uri() + fragment,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


def _element(dom: str, element_id: str):
    found = re.search(rf'<pre id="{element_id}"[^>]*>(.*?)</pre>', dom, re.S)
    assert found, f"#{element_id} missing from the DOM"
    return json.loads(html.unescape(found.group(1)))


def _dump(page, fragment: str) -> str:
    dom, log = _run(page, fragment, "--dump-dom")
    assert 'data-ready="1"' in dom, "the page's script did not run to its end"
    assert _element(dom, "kml-errors") == [], "the page recorded errors"
    console = [line for line in log.splitlines() if ":CONSOLE" in line]
    assert console == [], f"the page wrote to the console: {console}"
    return dom


def test_the_page_loads_without_errors_and_shows_the_hard_assignment_at_sigma_0(page):
    X, written = page
    state = _element(_dump(written, "#sigma=0"), "kml-state")
    assert state["sigma"] == 0 and state["t"] == len(written.record.sigma)
    assert state["labels"] == written.record.labels.tolist()
    assert state["mean_max_gamma"] == pytest.approx(1.0, abs=1e-12)  # one-hot (a mean of N ones, rounded)


def test_the_slider_moves_the_colours(page):
    _, written = page
    grid = written.data["levels"]["sigma"]
    above = _element(_dump(written, f"#sigma={grid[0]}"), "kml-state")
    assert set(above["labels"]) == {0}  # one centroid: one colour
    split = written.record.split_sigma[0].item()
    below = _element(_dump(written, f"#sigma={0.8 * split}"), "kml-state")
    assert below["digest"] != above["digest"] and len(set(below["labels"])) > 1
    assert below["sigma"] == pytest.approx(0.8 * split, rel=1e-12)
    assert 0.5 < below["mean_max_gamma"] < 1.0  # soft: the colours are mixed


def test_the_pages_responsibilities_are_the_packages(page):
    X, written = page
    grid = written.data["levels"]["sigma"]
    sigmas = [grid[2], 0.5 * (grid[6] + grid[7]), grid[-2] * 0.5, 0.0]
    probe = _element(_dump(written, "#probe=" + ",".join(map(repr, sigmas))), "kml-probe")
    centre = X.mean(0)
    for sigma, answer in zip(sigmas, probe, strict=True):
        value, means, weights = path_at(written.data["levels"], sigma_to_t(grid, sigma))
        assert answer["path_sigma"] == pytest.approx(value, rel=1e-12, abs=0)
        torch.testing.assert_close(
            torch.tensor(answer["weights"], dtype=torch.float64), weights, rtol=0, atol=1e-12
        )
        package = log_responsibilities(X, means + centre, weights.log(), value)[0]
        page_values = torch.tensor(
            [-math.inf if v is None else v for v in answer["log_gamma"]], dtype=torch.float64
        )
        page_values = page_values.reshape(package.shape)
        if value == 0:
            assert page_values.argmax(1).tolist() == written.record.labels.tolist()
            continue
        # The page sums squared differences, the package expands them: rounding of a few ulps of
        # ‖x‖² + ‖μ‖², over 2σ², apart.
        tolerance = 1e-9 + 64 * torch.finfo(X.dtype).eps * (X.square().sum(1).max() + 50) / value**2
        assert torch.equal(page_values.isneginf(), package.isneginf())  # the components not yet born
        born = ~package.isneginf()
        assert (page_values[born] - package[born]).abs().max() <= tolerance


def test_a_screenshot_is_written(page, tmp_path):
    _, written = page
    shot = tmp_path / "explorer.png"
    _run(
        written,
        "#sigma=" + repr(0.8 * written.record.split_sigma[-1].item()),
        f"--screenshot={shot}",
        "--window-size=1400,1700",
    )
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


@pytest.mark.parametrize("case", ["one feature", "one cluster", "subsampled"])
def test_edge_pages_load_cleanly_and_say_what_they_draw(tmp_path, case):
    generator = torch.Generator().manual_seed(1)
    X = torch.randn(60, 1 if case == "one feature" else 3, generator=generator, dtype=torch.float64)
    X[:30] += 4.0
    written = write_explorer(
        tmp_path / "edge.html",
        X,
        1 if case == "one cluster" else 2,
        cooling=0.85,
        max_points=25 if case == "subsampled" else 5000,
    )
    dom = _dump(written, "#sigma=0")
    state = _element(dom, "kml-state")
    assert len(state["labels"]) == written.data["meta"]["n_drawn"]
    subtitle = html.unescape(re.search(r'<p id="subtitle">(.*?)</p>', dom, re.S).group(1))
    assert ("random subsample of 25 of the 60 points" in subtitle) == (case == "subsampled")
