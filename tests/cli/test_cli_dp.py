"""``anneal --penalty`` (K chosen by λ) and ``posterior --dp`` (the posterior of K) on tiny data."""

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from kmeans_limit._dp_jobs import DP_POSTERIOR_FILES, hull_table, write_dp_posterior
from kmeans_limit._jobs import Data, plan_outputs
from kmeans_limit.inference import arviz_compat
from kmeans_limit.inference.anneal_penalty import penalty_hull
from kmeans_limit.inference.dp_posterior import TruncationWarning, fit_dp_posterior, occupied_summary
from kmeans_limit.io import load_point_fit

CENTRES = [[-4.0, 0.0], [0.0, 4.0], [4.0, 0.0]]


@pytest.fixture(scope="module")
def blobs_csv(tmp_path_factory):
    """24 points, 8 around each of three centres 4 apart (spread 0.3)."""
    generator = torch.Generator().manual_seed(1)
    X = torch.tensor(CENTRES, dtype=torch.float64).repeat_interleave(8, 0)
    X = X + 0.3 * torch.randn(24, 2, generator=generator, dtype=torch.float64)
    path = tmp_path_factory.mktemp("data") / "blobs.csv"
    path.write_text("left,up\n" + "\n".join(f"{x:.6f},{y:.6f}" for x, y in X.tolist()) + "\n")
    return path


def assert_png(path):
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 200, path


def test_anneal_with_a_penalty_chooses_k_and_writes_a_fit_that_sample_can_use(
    blobs_csv, tmp_path, run_cli, cli_in_process
):
    out = tmp_path / "dp"
    result = run_cli("anneal", blobs_csv, "--penalty", 5, "--out", out)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "λ = 5 (squared data units): K chosen = 3" in result.stdout
    assert "J + λK = " in result.stdout and "λ choosing it" in result.stdout
    assert "wrote into" in result.stdout and "dp_means.json, penalty_curve.png" in result.stdout
    document = json.loads((out / "dp_means.json").read_text())
    assert document["kind"] == "dp-means" and document["penalty"] == 5.0 and document["n_clusters"] == 3
    assert document["objective"] == pytest.approx(document["inertia"] + 5.0 * 3)
    fit = load_point_fit(out / "dp_means.json")
    np.testing.assert_array_equal(sorted(map(tuple, fit.means.numpy().round(0))), CENTRES)
    assert fit.weights.tolist() == pytest.approx([1 / 3] * 3)
    assert fit.sigma == pytest.approx((document["inertia"] / (24 * 2)) ** 0.5)
    # the hull row of K = 3 holds λ = 5, and the printed J + λK is the file's
    row = next(line for line in result.stdout.splitlines() if line.startswith("3 "))
    low, high = (float(v) for v in row.split()[-5::4])
    assert low <= 5.0 <= high
    assert_png(out / "penalty_curve.png")
    sampled = cli_in_process("sample", "-n", 4, "--from", out / "dp_means.json")
    assert sampled.returncode == 0 and len(sampled.stdout.splitlines()) == 5


def test_posterior_dp_prints_the_count_and_writes_netcdf_and_the_plot(blobs_csv, tmp_path, run_cli):
    out = tmp_path / "post"
    args = ["--num-samples", 60, "--num-warmup", 30, "--chains", 2, "--seed", 3]
    result = run_cli(
        "posterior", blobs_csv, "--dp", "--max-clusters", 12, *args, "--no-log-likelihood", "--out", out
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "DP posterior (blocked gibbs, truncated at 12 components" in result.stdout
    assert "number of occupied clusters:" in result.stdout and "mean 0 left" in result.stdout
    assert "with the modal K = 3" in result.stdout
    idata = arviz_compat.from_netcdf(out / "posterior.nc")
    assert {"posterior", "occupied_components", "coclustering", "sample_stats"} <= set(
        arviz_compat.group_names(idata)
    )
    assert "log_likelihood" not in arviz_compat.group_names(idata)  # --no-log-likelihood
    counts = idata.posterior["n_occupied"].values
    assert counts.shape == (2, 60) and (counts >= 1).all() and (counts <= 12).all()
    share = float((counts == 3).mean())
    assert f"3  {share:.3g}".replace("  ", " ") in " ".join(result.stdout.split())
    assert int(idata.posterior.attrs["max_clusters"]) == 12
    assert_png(out / "posterior_cluster_count.png")


def test_truncation_warning_is_one_line_on_stderr(blobs_csv, run_cli):
    """Three separated blobs in two components: the last one is occupied, and the CLI says so once."""
    result = run_cli(
        "posterior", blobs_csv, "--dp", "--max-clusters", 2, "--num-samples", 20, "--num-warmup", 5
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kmeans-limit: warning: the last of max_clusters=2"), lines
    assert "raise max_clusters" in lines[0]


def test_the_dp_posterior_round_trips_through_netcdf(tmp_path):
    """Every group, the custom ones too (values, dims and attributes), as written and read back."""
    X = torch.tensor(CENTRES, dtype=torch.float64).repeat_interleave(3, 0)
    X = X + 0.2 * torch.randn(9, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncationWarning)
        idata = fit_dp_posterior(X, 4, num_samples=15, num_warmup=5, num_chains=2, seed=1)
    data = Data(X, ("a", "b"), None, "test")
    paths = plan_outputs(tmp_path, DP_POSTERIOR_FILES, force=False)
    write_dp_posterior(idata, data, paths, force=False)
    back = arviz_compat.from_netcdf(paths["posterior.nc"])
    assert arviz_compat.group_names(back) == arviz_compat.group_names(idata)
    for name in arviz_compat.group_names(idata):
        written, read = arviz_compat.group(idata, name), arviz_compat.group(back, name)
        assert read.load().equals(written), name
    written_attrs = arviz_compat.group(idata, "occupied_components").attrs
    read_attrs = arviz_compat.group(back, "occupied_components").attrs
    for key, value in written_attrs.items():
        assert read_attrs[key] == value
    assert occupied_summary(back).equals(occupied_summary(idata))


def test_hull_table_is_shortened_when_long():
    ks = list(range(1, 31))
    hull = penalty_hull(ks, [100.0 / k**2 for k in ks])
    assert len(hull.n_clusters) == 30
    text = hull_table(hull)
    lines = text.splitlines()
    assert len(lines) == 2 + 10 and "... 21 more" in text
    assert lines[2].startswith("1 ") and lines[-1].startswith("30 ") and "0 < λ <=" in lines[-1]
    assert hull_table(penalty_hull([1], [0.0])).splitlines()[2].split() == ["1", "0", "every", "λ", ">", "0"]


CASES = [
    (["anneal", "ok.csv", "--penalty", "0"], ["'--penalty': '0' should be a finite number > 0"]),
    (["anneal", "ok.csv", "--penalty", "-2"], ["'-2' should be a finite number > 0"]),
    (["anneal", "ok.csv", "--penalty", "inf"], ["'inf' should be a finite number > 0"]),
    (["anneal", "ok.csv", "--penalty", "nan"], ["'nan' should be a finite number > 0"]),
    (["anneal", "ok.csv", "--penalty", "cheap"], ["'cheap' should be a finite number > 0"]),
    (["anneal", "ok.csv", "-k", "2", "--penalty", "1"], ["-k 2 and --penalty 1: give one"]),
    (["anneal", "ok.csv"], ["give -k K (the number of clusters) or --penalty L"]),
    (["posterior", "ok.csv"], ["give -k K (the number of clusters) or --dp"]),
    (
        ["posterior", "ok.csv", "--dp", "--max-clusters", "1"],
        ["--max-clusters 1 should be >= 2", "two components"],
    ),
    (["posterior", "ok.csv", "--dp", "--max-clusters", "0"], ["--max-clusters 0 should be >= 2"]),
    (["posterior", "ok.csv", "--dp", "--max-clusters", "two"], ["'two' is not a valid integer"]),
    (["posterior", "ok.csv", "--max-clusters", "5"], ["--max-clusters 5 applies with --dp only"]),
    (["posterior", "ok.csv", "--dp", "-k", "2"], ["-k 2 and --dp: give one"]),
    (["posterior", "ok.csv", "--dp", "--method", "nuts"], ["--dp samples with gibbs only", "not nuts"]),
    (["posterior", "ok.csv", "--dp", "--batch-size", "2"], ["--batch-size 2 applies to the svi and map"]),
    (["posterior", "ok.csv", "--dp", "--sigma", "0"], ["'--sigma': '0' should be a finite number > 0"]),
    (["anneal", "ok.csv", "--penalty", "1", "--out", "taken"], ["dp_means.json exists", "--force"]),
    (["posterior", "same.csv", "--dp", "--sigma", "0.5"], ["every row of 'same.csv' is the same point"]),
]


@pytest.mark.parametrize(("args", "fragments"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_values_are_one_line_and_status_2(
    tmp_path, monkeypatch, cli_in_process, one_line_error, args, fragments
):
    (tmp_path / "ok.csv").write_text("a,b\n0,0\n0,1\n5,5\n5,6\n")
    (tmp_path / "same.csv").write_text("a,b\n1,1\n1,1\n1,1\n")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "dp_means.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    result = cli_in_process(*args)
    assert result.returncode == 2, result
    one_line_error(result.stderr, *fragments)
    assert result.stdout == ""
    assert (tmp_path / "taken" / "dp_means.json").read_text() == "{}"
