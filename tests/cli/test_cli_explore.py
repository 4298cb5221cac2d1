"""``kmeans-limit explore``: one self-contained HTML page, and its usage errors (status 2, one line)."""

import json

import pytest

from kmeans_limit.io import load_point_fit

BLOBS = "a,b,c\n" + "".join(
    f"{x + dx},{y + dy},{(dx * 7 + dy * 3) % 1}\n"
    for x, y in ((0, 0), (8, 0), (0, 8))
    for dx, dy in ((0.0, 0.0), (1.0, 0.3), (0.4, 1.1), (-0.9, 0.5), (0.2, -1.2), (-0.6, -0.7))
)


@pytest.fixture
def blobs_csv(tmp_path):
    path = tmp_path / "blobs.csv"
    path.write_text(BLOBS)
    return path


def _page_data(html: str) -> dict:
    start = html.index('<script type="application/json" id="kml-data">')
    body = html[html.index(">", start) + 1 : html.index("</script>", start)]
    return json.loads(body)


def test_explore_writes_one_self_contained_page(blobs_csv, tmp_path, run_cli):
    out = tmp_path / "pages" / "page.html"
    result = run_cli(
        "explore", blobs_csv, "-k", 3, "--draw", "b,a", "--cooling", 0.8, "--max-points", 10, "--out", out
    )
    assert result.returncode == 0, result.stderr
    assert "dense path:" in result.stdout and f"wrote {out}" in result.stdout
    assert "10 of 18 points drawn (random subsample)" in result.stdout
    html = out.read_text()
    assert "<script src" not in html and "<link" not in html and "https://" not in html
    assert html.replace("http://www.w3.org/2000/svg", "").count("http://") == 0  # the SVG namespace only
    data = _page_data(html)
    assert data["meta"]["n_clusters"] == 3 and data["meta"]["axis_names"] == ["b", "a"]
    assert data["meta"]["n_drawn"] == 10 and data["levels"]["sigma"][-1] == 0.0
    ratios = [b / a for a, b in zip(data["levels"]["sigma"][:-2], data["levels"]["sigma"][1:-1], strict=True)]
    assert all(abs(r - 0.8) < 1e-12 for r in ratios)


def test_explore_demo_by_default(tmp_path, run_cli):
    result = run_cli("explore", "--cooling", 0.8, "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Old Faithful" in result.stdout and "K = 2" in result.stdout and result.stderr == ""
    assert _page_data((tmp_path / "kmeans-limit-explorer.html").read_text())["meta"]["n_samples"] == 272


CASES = [
    (["explore", "blobs.csv", "--demo", "-k", "3"], ["give DATA or --demo, not both"]),
    (["explore", "blobs.csv"], ["DATA needs -k K"]),
    (["explore", "--demo", "--columns", "a"], ["--columns and --standardize apply to DATA"]),
    (["explore", "blobs.csv", "-k", "3", "--draw", "a"], ["--draw 'a' should name two different features"]),
    (["explore", "blobs.csv", "-k", "3", "--draw", "a,a"], ["two different features"]),
    (["explore", "blobs.csv", "-k", "3", "--draw", "a,z"], ["--draw 'a,z'", "column 'z'"]),
    (["explore", "blobs.csv", "-k", "3", "--draw", "a,5"], ["column 5"]),
    (["explore", "blobs.csv", "-k", "3", "--out", "taken.html"], ["--out taken.html exists", "--force"]),
    (["explore", "blobs.csv", "-k", "3", "--out", "folder"], ["--out folder is a directory"]),
    (["explore", "blobs.csv", "-k", "3", "--cooling", "1"], ["--cooling"]),
    (["explore", "blobs.csv", "-k", "3", "--max-points", "0"], ["--max-points"]),
    (["explore", "missing.csv", "-k", "3"], ["does not exist"]),
    (["explore", "blobs.csv", "-k", "30"], ["n_clusters=30"]),
    (["anneal", "blobs.csv", "-k", "3", "--path", "fine"], ["'fine' is not one of 'levels', 'dense'"]),
]


@pytest.mark.parametrize(("args", "fragments"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_explore_usage_errors(blobs_csv, monkeypatch, cli_in_process, one_line_error, args, fragments):
    monkeypatch.chdir(blobs_csv.parent)
    (blobs_csv.parent / "taken.html").write_text("mine")
    (blobs_csv.parent / "folder").mkdir()
    result = cli_in_process(*args)
    assert result.returncode == 2, result
    one_line_error(result.stderr, *fragments)
    assert result.stdout == ""
    assert (blobs_csv.parent / "taken.html").read_text() == "mine"
    assert not (blobs_csv.parent / "kmeans-limit-explorer.html").exists()


def test_explore_force_overwrites(blobs_csv, monkeypatch, cli_in_process):
    monkeypatch.chdir(blobs_csv.parent)
    (blobs_csv.parent / "taken.html").write_text("mine")
    args = ("explore", "blobs.csv", "-k", 3, "--cooling", 0.7, "--out", "taken.html", "--quiet")
    result = cli_in_process(*args, "--force")
    assert result.returncode == 0, result.stderr
    assert (blobs_csv.parent / "taken.html").read_text().startswith("<!DOCTYPE html>")


def test_anneal_path_option(blobs_csv, tmp_path, cli_in_process):
    levels = cli_in_process("anneal", blobs_csv, "-k", 3, "--out", tmp_path / "l", "--path", "levels", "-q")
    dense = cli_in_process("anneal", blobs_csv, "-k", 3, "--out", tmp_path / "d", "--cooling", 0.8, "-q")
    assert levels.returncode == 0 and dense.returncode == 0, (levels.stderr, dense.stderr)
    fit_levels = load_point_fit(tmp_path / "l" / "anneal.json")
    fit_dense = load_point_fit(tmp_path / "d" / "anneal.json")
    n_levels = len(fit_levels.extra["path"]["sigma"])
    sigma = fit_dense.extra["path"]["sigma"]
    assert len(sigma) > 3 * n_levels  # --out draws the dense path by default
    assert all(abs(b / a - 0.8) < 1e-12 for a, b in zip(sigma, sigma[1:], strict=False))
    assert fit_dense.extra["inertia"] == pytest.approx(fit_levels.extra["inertia"], rel=1e-12)
    assert "levels path" not in dense.stdout
