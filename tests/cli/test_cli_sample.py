"""``kmeans-limit sample``, run as a subprocess: from the prior, from a point fit, from a posterior."""

import csv
import io
from pathlib import Path

import numpy as np
import pytest

from kmeans_limit.inference import arviz_compat
from kmeans_limit.io import PointFit, Standardization, save_point_fit, save_posterior


def parse_csv(text: str):
    rows = list(csv.reader(io.StringIO(text)))
    return rows[0], np.array(rows[1:], dtype=float)


def test_sample_from_the_prior_to_stdout_and_to_npy(tmp_path, run_cli, cli_in_process):
    result = run_cli("sample", "-n", 40, "-k", 3, "--sigma", 0.2, "--seed", 1)
    assert result.returncode == 0, result.stderr
    header, rows = parse_csv(result.stdout)
    assert header == ["x0", "x1", "component"] and rows.shape == (40, 3)
    assert set(rows[:, 2]) <= {0.0, 1.0, 2.0}
    again = cli_in_process(
        "sample", "-n", 40, "-k", 3, "--sigma", 0, "--features", 1, "--out", tmp_path / "g.npy"
    )
    assert again.returncode == 0, again.stderr
    assert "wrote 40 points" in again.stderr
    array = np.load(tmp_path / "g.npy", allow_pickle=False)
    assert array.shape == (40, 1) and len(np.unique(array)) <= 3  # σ = 0: only the centroids


@pytest.fixture
def saved_fits(tmp_path):
    stats = Standardization((10.0, -5.0), (2.0, 0.5))
    point = PointFit(np.array([[-1.0, 0.0], [1.0, 0.0]]), np.array([0.5, 0.5]), 0.1, ("u", "v"), stats, {})
    save_point_fit(tmp_path / "fit.json", point, kind="anneal")
    rng = np.random.default_rng(0)
    posterior = {
        "weights": rng.dirichlet([50, 50], size=(2, 25)),
        "means": np.array([[-1.0, 0.0], [1.0, 0.0]]) + 0.01 * rng.normal(size=(2, 25, 2, 2)),
        "sigma": rng.uniform(0.09, 0.11, size=(2, 25)),
    }
    idata = arviz_compat.from_dict(
        {"posterior": posterior}, dims={"weights": ["cluster"], "means": ["cluster", "feature"]}
    )
    save_posterior(tmp_path / "post.nc", idata, feature_names=("u", "v"), standardization=stats)
    return tmp_path


def test_sample_from_a_point_fit_in_the_data_units_or_standardized(saved_fits, run_cli, cli_in_process):
    result = run_cli("sample", "-n", 200, "--from", saved_fits / "fit.json", "--seed", 3)
    assert result.returncode == 0, result.stderr
    header, rows = parse_csv(result.stdout)
    assert header == ["u", "v", "component"]
    left = rows[rows[:, 2] == 0]
    np.testing.assert_allclose(left[:, :2].mean(0), [8.0, -5.0], atol=0.1)  # -1 * 2 + 10, 0 * 0.5 - 5
    hard = run_cli(
        "sample", "-n", 30, "--from", saved_fits / "fit.json", "--sigma", 0, "--standardized-units"
    )
    assert hard.returncode == 0, hard.stderr
    _, rows = parse_csv(hard.stdout)
    assert set(map(tuple, rows[:, :2])) <= {(-1.0, 0.0), (1.0, 0.0)}


def test_sample_from_a_posterior_file(saved_fits, run_cli, cli_in_process, one_line_error):
    out = saved_fits / "new.csv"
    result = run_cli("sample", "-n", 300, "--from", saved_fits / "post.nc", "-k", 2, "--out", out)
    assert result.returncode == 0, result.stderr
    header, rows = parse_csv(out.read_text())
    assert header == ["u", "v", "component"] and rows.shape == (300, 3)
    assert abs(rows[:, 2].mean() - 0.5) < 0.15
    np.testing.assert_allclose(rows[rows[:, 2] == 1, :2].mean(0), [12.0, -5.0], atol=0.1)
    refused = cli_in_process("sample", "-n", 5, "--from", saved_fits / "post.nc", "--out", out)
    assert refused.returncode == 2
    one_line_error(refused.stderr, "exists", "--force")
    sigma = cli_in_process("sample", "-n", 5, "--from", saved_fits / "post.nc", "--sigma", 1)
    assert sigma.returncode == 2
    one_line_error(sigma.stderr, "--sigma cannot be combined with a posterior fit")


@pytest.mark.parametrize("name", ["posterior_arviz023.nc", "posterior_arviz1.nc"])
def test_sample_from_a_posterior_saved_by_either_arviz_line(name, cli_in_process):
    """The files of tests/data were saved under arviz 0.23 and 1.x (tests/unit/test_arviz_lines.py)."""
    path = Path(__file__).resolve().parents[1] / "data" / name
    result = cli_in_process("sample", "-n", 20, "--from", path, "--seed", 1)
    assert result.returncode == 0, result.stderr
    header, rows = parse_csv(result.stdout)
    assert header[:2] == ["u", "v"] and rows.shape[0] == 20 and np.isfinite(rows).all()
