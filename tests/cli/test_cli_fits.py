"""``anneal``, ``posterior`` and ``compare`` as subprocesses on small data: the summary and the files."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from kmeans_limit.inference import arviz_compat
from kmeans_limit.io import load_fit, load_point_fit, load_posterior


@pytest.fixture(scope="module")
def blobs_csv(tmp_path_factory):
    """60 points around three centres, with a text column to skip with --columns."""
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-4.0, 0.0], [0.0, 4.0], [4.0, 0.0]], dtype=torch.float64)
    X = centres.repeat_interleave(20, 0) + 0.5 * torch.randn(60, 2, generator=generator, dtype=torch.float64)
    path = tmp_path_factory.mktemp("data") / "blobs.csv"
    lines = ["name,left,up"] + [f"p{i},{x:.6f},{y:.6f}" for i, (x, y) in enumerate(X.tolist())]
    path.write_text("\n".join(lines) + "\n")
    return path


def assert_pngs(folder, names):
    for name in names:
        with Image.open(folder / name) as image:
            assert image.format == "PNG" and min(image.size) > 200, name


def test_anneal_prints_the_hard_fit_and_writes_a_fit_that_sample_can_use(
    blobs_csv, tmp_path, run_cli, cli_in_process
):
    out = tmp_path / "fit"
    result = run_cli("anneal", blobs_csv, "-k", 3, "--columns", "left,up", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr.lower() and result.stderr == ""  # not a terminal: no progress
    assert "it is Lloyd's fixed point" in result.stdout and "changes 0 of 60 labels" in result.stdout
    assert "mean 2 up" in result.stdout and "wrote into" in result.stdout
    document = json.loads((out / "anneal.json").read_text())
    assert document["format"] == "kmeans-limit/point-fit" and document["lloyd_fixed_point"] is True
    fit = load_point_fit(out / "anneal.json")
    assert fit.feature_names == ("left", "up") and fit.means.shape == (3, 2) and fit.standardization is None
    centres = np.array(sorted(map(tuple, fit.means.numpy().round(0))))
    np.testing.assert_array_equal(centres, [[-4.0, 0.0], [0.0, 4.0], [4.0, 0.0]])
    assert len(document["labels"]) == 60 and len(document["critical_sigmas"]) == 2
    assert_pngs(out, ["anneal_bifurcation.png", "anneal_responsibilities.png", "anneal_entropy.png"])
    again = cli_in_process("anneal", blobs_csv, "-k", 3, "--columns", "1,2", "--out", out)
    assert again.returncode == 2 and "--force" in again.stderr
    forced = cli_in_process(
        "anneal", blobs_csv, "-k", 3, "--columns", "1,2", "--out", out, "--force", "--standardize"
    )
    assert forced.returncode == 0, forced.stderr
    assert load_point_fit(out / "anneal.json").standardization is not None


def test_anneal_without_out_writes_nothing(blobs_csv, tmp_path, monkeypatch, cli_in_process):
    monkeypatch.chdir(tmp_path)
    result = cli_in_process("anneal", blobs_csv, "-k", 2, "--columns", "up", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "no files written" in result.stdout and list(tmp_path.iterdir()) == []


def test_posterior_gibbs_writes_netcdf_and_plots(blobs_csv, tmp_path, run_cli):
    out = tmp_path / "post"
    args = ["--columns", "left,up", "--num-samples", 60, "--num-warmup", 30, "--chains", 2, "--out", out]
    result = run_cli("posterior", blobs_csv, "-k", 3, *args)
    assert result.returncode == 0, result.stderr
    assert "posterior (gibbs): 2 chains x 60 draws" in result.stdout and "r-hat" in result.stdout
    fit = load_posterior(out / "posterior.nc")
    assert fit.means.shape == (120, 3, 2) and fit.feature_names == ("left", "up")
    idata = arviz_compat.from_netcdf(out / "posterior.nc")
    assert {"posterior", "log_likelihood", "sample_stats"} <= set(arviz_compat.group_names(idata))
    assert_pngs(out, ["posterior_pairs.png", "posterior_centroids.png"])


@pytest.mark.parametrize("method", ["map", "svi", "nuts"])
def test_posterior_other_methods_in_process(blobs_csv, tmp_path, cli_in_process, method):
    args = [
        "--columns",
        "left,up",
        "--num-samples",
        20,
        "--num-warmup",
        20,
        "--chains",
        1,
        "--num-steps",
        50,
        "-q",
    ]
    result = cli_in_process("posterior", blobs_csv, "-k", 2, "--method", method, "--sigma", 1.0, *args)
    assert result.returncode == 0, result.stderr
    assert f"posterior ({method})" in result.stdout


def test_compare_writes_a_table_and_each_posterior(blobs_csv, tmp_path, run_cli):
    out = tmp_path / "cmp"
    args = [
        "--columns",
        "left,up",
        "--num-samples",
        40,
        "--num-warmup",
        20,
        "--chains",
        2,
        "--num-steps",
        100,
    ]
    result = run_cli("compare", blobs_csv, "-k", 3, "--methods", "gibbs,map", *args, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "gibbs" in result.stdout and "map" in result.stdout
    assert (out / "compare.csv").read_text().count("\n") >= 2
    for method in ("gibbs", "map"):
        assert load_fit(out / f"posterior_{method}.nc").means.shape[1:] == (3, 2)


def test_posterior_by_mini_batch_svi(blobs_csv, cli_in_process, monkeypatch):
    from kmeans_limit.inference import posterior

    seen, fit_posterior = {}, posterior.fit_posterior

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return fit_posterior(*args, **kwargs)

    monkeypatch.setattr(posterior, "fit_posterior", spy)
    args = ["--columns", "left,up", "--num-samples", 20, "--chains", 1, "--num-steps", 300, "-q"]
    result = cli_in_process("posterior", blobs_csv, "-k", 3, "--method", "svi", "--batch-size", 15, *args)
    assert result.returncode == 0, result.stderr
    assert "posterior (svi" in result.stdout
    assert seen["batch_size"] == 15 and seen["num_steps"] == 300
